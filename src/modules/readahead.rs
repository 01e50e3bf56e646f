//! Read-ahead: the probes of many tasks (and loop items) in one round trip.
//!
//! A module declares its probe (`Spec::probe`): the read-only command whose answer describes
//! the host's state for its parameters, which is also the first command it runs. The engine
//! notes the probes of many tasks (and loop items) in a `Record`, runs them in one command, and
//! each task then runs in `Serve` mode: its probe is answered from that batch (once),
//! everything after it runs live. After something changes the engine drops the batch, so
//! later tasks probe again and never act on a stale answer (see `engine::prefetch`).

use super::files::{hash_hex, MAX_DIFF_BYTES};
use crate::transport::{quote, Connection, Output};
use anyhow::Result;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a probe runs: the script, as which user, with which environment, reading what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Probe {
    pub script: String,
    pub user: Option<String>,
    pub env: Vec<(String, String)>,
    /// What it reads on stdin (psql's SQL); never a secret (see `ProbeCmd::stdin`).
    pub stdin: Option<Vec<u8>>,
    /// An answer that says it failed is taken too (see `ProbeCmd::keeps_failure`).
    pub keeps_failure: bool,
}

/// A request a module may make ahead of its turn (uri's GET): made once the batch has
/// answered the probe it needs (the TLS files), side by side with the others, each through its
/// own channel of the host's connection. Its answer goes in the batch under `key` (as its
/// task's user and environment): the response, or why there was none (a server that does not
/// answer is not waited for twice).
pub struct Exchange {
    pub key: Probe,
    pub needs: Option<Probe>,
    pub run: ExchangeRun,
}

/// An `Exchange`'s request, from the connection and the answer to the probe it needs.
pub type ExchangeRun =
    Box<dyn FnOnce(Arc<Connection>, Option<Output>) -> BoxFuture<'static, Result<Vec<u8>>> + Send>;

/// A probe a batch answers together with the others of its kind, in one command for all of
/// them, exactly as each would have answered alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fold {
    /// `files::probe_script` of this path: one `stat` and one `sha256sum` for every file, and
    /// one `head` for the content of those that show it.
    File { path: String, content: bool },
    /// `file::probe_script` of this path: one `stat` (a link runs live: its target is read).
    Path(String),
    /// `service::show` of this unit: one `systemctl show` for every unit.
    Unit(String),
    /// `sysctl::probe_script`: the file read once, one `head` for every live value.
    Sysctl { file: String, path: String },
    /// `postgresql::sql_probe`: its SQL (stdin) through one psql `session` for every probe
    /// with the same connection, each in its own transaction when `single` (psql's `-1`),
    /// the session's state discarded between them.
    Psql { session: String, single: bool },
}

pub enum ReadAhead {
    /// The probes noted, which of them are folded (script -> how: answered together with the
    /// others of their kind, see `Fold`), and the requests made after them.
    Record(
        Mutex<Vec<Probe>>,
        Mutex<HashMap<String, Fold>>,
        Mutex<Vec<(Exchange, usize)>>,
    ),
    /// Each answer with how many items may still take it (items with the same probe, such
    /// as lineinfile edits of one file, share one run of it).
    Serve(Mutex<HashMap<Probe, (Output, usize)>>),
}

impl ReadAhead {
    pub fn recorder() -> ReadAhead {
        ReadAhead::Record(
            Mutex::new(Vec::new()),
            Mutex::new(HashMap::new()),
            Mutex::new(Vec::new()),
        )
    }

    /// Notes a request to make once the batch has answered; tasks that make the same request
    /// share one (as many uses of its answer as there were tasks).
    pub fn note_exchange(&self, exchange: Exchange) {
        if let ReadAhead::Record(_, _, x) = self {
            if let Ok(mut x) = x.lock() {
                match x.iter_mut().find(|(e, _)| e.key == exchange.key) {
                    Some((_, uses)) => *uses += 1,
                    None => x.push((exchange, 1)),
                }
            }
        }
    }

    /// The requests noted, with how many tasks make each (taken: each is made once).
    pub fn take_exchanges(&self) -> Vec<(Exchange, usize)> {
        match self {
            ReadAhead::Record(_, _, x) => x
                .lock()
                .map(|mut x| x.drain(..).collect())
                .unwrap_or_default(),
            ReadAhead::Serve(_) => vec![],
        }
    }

    /// The answer to a probe, left for its task (an exchange reads the TLS files it needs).
    pub fn peek(&self, probe: &Probe) -> Option<Output> {
        let ReadAhead::Serve(answers) = self else {
            return None;
        };
        let answers = answers.lock().ok()?;
        answers
            .get(probe)
            .map(|(out, _)| out.clone())
            .filter(Output::ok)
    }

    /// Keeps a response (or why there was none) as the answer to `key`, for `uses` tasks.
    pub fn keep(&self, key: Probe, response: Result<Vec<u8>, String>, uses: usize) {
        if let ReadAhead::Serve(answers) = self {
            if let Ok(mut a) = answers.lock() {
                let out = match response {
                    Ok(stdout) => Output {
                        code: 0,
                        stdout,
                        stderr: vec![],
                    },
                    Err(why) => Output {
                        code: 1,
                        stdout: vec![],
                        stderr: why.into_bytes(),
                    },
                };
                add(&mut a, key, out, uses);
            }
        }
    }

    /// Notes a probe to run ahead, answered with the others of its kind when it folds.
    pub fn note(&self, probe: Probe, fold: Option<Fold>) {
        if let ReadAhead::Record(v, folds, _) = self {
            if let (Some(fold), Ok(mut f)) = (fold, folds.lock()) {
                f.insert(probe.script.clone(), fold);
            }
            if let Ok(mut v) = v.lock() {
                v.push(probe);
            }
        }
    }

    /// Whether the batch still has an answer to this probe.
    pub fn has(&self, probe: &Probe) -> bool {
        match self {
            ReadAhead::Serve(a) => a.lock().is_ok_and(|a| a.contains_key(probe)),
            ReadAhead::Record(..) => false,
        }
    }

    /// Takes the answer to a probe, if the batch has one left. An answer that says the probe
    /// failed is not taken: the probe runs again live, as the task reaches it (a server that
    /// was still starting when the batch ran, say, may answer by then).
    pub fn answer(&self, probe: &Probe) -> Option<Output> {
        let ReadAhead::Serve(answers) = self else {
            return None;
        };
        let mut answers = answers.lock().ok()?;
        let (out, left) = answers.get_mut(probe)?;
        if !out.ok() && !probe.keeps_failure {
            answers.remove(probe);
            return None;
        }
        let out = out.clone();
        *left -= 1;
        if *left == 0 {
            answers.remove(probe);
        }
        Some(out)
    }

    /// The folded probes noted (script -> how).
    pub fn folds(&self) -> HashMap<String, Fold> {
        match self {
            ReadAhead::Record(_, f, _) => f.lock().map(|f| f.clone()).unwrap_or_default(),
            ReadAhead::Serve(_) => HashMap::new(),
        }
    }

    /// Notes another recorder's probes here, not its requests (`Record` only): the probes of
    /// a task that may not run (its `when` not known yet) are read, nothing is asked of a
    /// server for it.
    pub fn absorb_probes(&self, other: ReadAhead) {
        if let (ReadAhead::Record(v, f, _), ReadAhead::Record(ov, of, _)) = (self, other) {
            if let (Ok(mut v), Ok(ov)) = (v.lock(), ov.into_inner()) {
                v.extend(ov);
            }
            if let (Ok(mut f), Ok(of)) = (f.lock(), of.into_inner()) {
                f.extend(of);
            }
        }
    }

    /// The probes recorded so far (each item's first).
    pub fn recorded(&self) -> Vec<Probe> {
        match self {
            ReadAhead::Record(v, _, _) => v.lock().map(|v| v.clone()).unwrap_or_default(),
            ReadAhead::Serve(_) => vec![],
        }
    }

    /// One script that runs every probe (each in its own subshell). Each probe's stdout is
    /// printed as it is, then a line with `token`, its index and exit status; its stderr goes
    /// to the command's stderr, followed by a line with `token` and its index: few processes
    /// per probe, no re-encoding. Folded probes are answered after them, each kind by one
    /// command (`Fold`). `token` is random, so a probe's output cannot forge it. A probe's
    /// stdin is a here document ended by the token (its text is never a secret:
    /// `ProbeCmd::stdin`).
    pub fn batch_script(probes: &[Probe], folds: &HashMap<String, Fold>, token: &str) -> String {
        let mut s = String::new();
        let (mut paths, mut files, mut units) = (String::new(), String::new(), Vec::new());
        let mut sysctl: Vec<(&str, Vec<(usize, &str)>)> = Vec::new();
        let mut any_content = false;
        let mut psql: Vec<(&str, String, Vec<usize>)> = Vec::new();
        for (i, p) in probes.iter().enumerate() {
            match folds.get(&p.script) {
                Some(Fold::Path(path)) => {
                    // The path's kind here (shell builtins); links are left to run live.
                    let q = quote(path);
                    paths.push_str(&format!(
                        "if [ -L {q} ]; then echo '{i} L'; elif [ -d {q} ]; then echo '{i} D'; set -- \"$@\" {q}; elif [ -e {q} ]; then echo '{i} F'; set -- \"$@\" {q}; else echo '{i} A'; fi\n"
                    ));
                    continue;
                }
                Some(Fold::File { path, content }) => {
                    // A file whose content is shown is `C`; `$c` keeps its place in "$@".
                    let q = quote(path);
                    let (kind, keep) = match content {
                        true => ("C", " c=\"$c $#\";"),
                        false => ("F", ""),
                    };
                    any_content |= content;
                    files.push_str(&format!(
                        "if [ -d {q} ]; then echo '{i} D'; elif [ -e {q} ]; then echo '{i} {kind}'; set -- \"$@\" {q};{keep} else echo '{i} A'; fi\n"
                    ));
                    continue;
                }
                Some(Fold::Unit(name)) => {
                    units.push((i, quote(name)));
                    continue;
                }
                Some(Fold::Psql { session, single }) if p.stdin.is_some() => {
                    let sql = String::from_utf8_lossy(p.stdin.as_deref().unwrap_or_default());
                    let (begin, commit) = if *single {
                        ("BEGIN;\n", "COMMIT;\n")
                    } else {
                        ("", "")
                    };
                    let entry = match psql.iter_mut().find(|(s, _, _)| s == session) {
                        Some(e) => {
                            e.1.push_str("DISCARD ALL;\n");
                            e
                        }
                        None => {
                            psql.push((session, String::new(), vec![]));
                            psql.last_mut().expect("just pushed")
                        }
                    };
                    // `;` ends a statement left open; then the next probe's marker.
                    entry
                        .1
                        .push_str(&format!("\\echo {token} Q {i}\n{begin}{sql}\n;\n{commit}"));
                    entry.2.push(i);
                    continue;
                }
                Some(Fold::Sysctl { file, path }) => {
                    match sysctl.iter_mut().find(|(f, _)| f == file) {
                        Some((_, keys)) => keys.push((i, path)),
                        None => sysctl.push((file, vec![(i, path)])),
                    }
                    continue;
                }
                _ => {}
            }
            let input = match &p.stdin {
                None => "</dev/null".to_string(),
                Some(stdin) => {
                    let mut text = String::from_utf8_lossy(stdin).into_owned();
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    format!("<<'{token}-IN'\n{text}{token}-IN")
                }
            };
            s.push_str(&format!(
                "( {}\n) {input}\nprintf '\\n{token} {i} %s\\n' $?; printf '\\n{token} {i}\\n' >&2\n",
                p.script
            ));
        }
        if paths.is_empty()
            && files.is_empty()
            && units.is_empty()
            && sysctl.is_empty()
            && psql.is_empty()
        {
            return s;
        }
        s.push_str(&format!("printf '\\n{token} FOLD\\n'\n"));
        if !paths.is_empty() {
            s.push_str(&format!(
                "printf '{token} PATHS\\n'\nset --\n{paths}if [ $# -gt 0 ]; then printf '{token} PSTAT\\n'; stat -c '%U %G %a' -- \"$@\"; fi\n"
            ));
        }
        if !files.is_empty() {
            s.push_str(&format!(
                "printf '{token} FILES\\n'\nset --; c=\n{files}if [ $# -gt 0 ]; then printf '{token} STAT\\n'; stat -c '%U %G %a %s' -- \"$@\"; printf '{token} SHA\\n'; sha256sum -- \"$@\"; fi\n"
            ));
        }
        if !units.is_empty() {
            let (order, names): (Vec<String>, Vec<String>) =
                units.into_iter().map(|(i, n)| (i.to_string(), n)).unzip();
            s.push_str(&format!(
                "printf '{token} UNITS {}\\n'\n{} {}\nprintf '\\n{token} UEXIT %s\\n' $?\n",
                order.join(" "),
                super::service::SHOW,
                names.join(" ")
            ));
        }
        for (file, keys) in sysctl {
            // The file's lines as the probe prints them, then `head -v`'s block per value
            // ("==> path <==" before each; a key this kernel lacks has none).
            // Each probe's index and path in the head line (`sysctl::check_name` keeps spaces
            // and quotes out of the path).
            let (order, paths): (Vec<String>, Vec<String>) = keys
                .into_iter()
                .map(|(i, p)| (format!("{i}:{p}"), quote(p)))
                .unzip();
            let f = quote(file);
            s.push_str(&format!(
                "printf '{token} SYSCTL {}\\n'\nif [ -r {f} ]; then while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < {f}; fi\nprintf '{token} LIVE\\n'\nhead -v -c 65536 -- {} 2>/dev/null\nprintf '\\n'\n",
                order.join(" "),
                paths.join(" ")
            ));
        }
        for (session, sql, order) in psql {
            // stdout straight out (fd 3), stderr kept: a probe alone prints none, so any
            // at all (a notice) leaves them all to run live. (The SQL goes to the group: dash
            // loses a here document inside `$( )`.)
            let order: Vec<String> = order.iter().map(usize::to_string).collect();
            s.push_str(&format!(
                "printf '{token} PSQL {}\\n'\nexec 3>&1\n{{ __e=$( ( {session}\n) 2>&1 >&3 ); printf '{token} PEXIT %s %s\\n' $? ${{#__e}}; }} <<'{token}-IN'\n{sql}\\echo {token} Q END\n{token}-IN\n",
                order.join(" ")
            ));
        }
        s.push_str(&format!("printf '{token} END\\n'\n"));
        if any_content {
            // The shown files' bytes, raw and back to back, after the lines: each file's size
            // (from `stat`) says where it ends, its hash that it was read whole.
            s.push_str(&format!(
                "printf '{token} CONTENT\\n'\nif [ -n \"$c\" ]; then k=$#; for n in $c; do eval \"set -- \\\"\\$@\\\" \\\"\\${{$n}}\\\"\"; done; shift $k; head -q -c {} -- \"$@\"; fi\nprintf '\\n{token} CEND\\n'\n",
                MAX_DIFF_BYTES + 1
            ));
        }
        s
    }

    /// A token for [`batch_script`](Self::batch_script).
    pub fn token() -> String {
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        format!("PGDEPLOY-{}", hex::encode(b))
    }

    /// The distinct probes, in order, and how many items asked for each.
    pub fn distinct(probes: Vec<Probe>) -> Vec<(Probe, usize)> {
        let mut out: Vec<(Probe, usize)> = Vec::new();
        for p in probes {
            match out.iter_mut().find(|(q, _)| *q == p) {
                Some((_, n)) => *n += 1,
                None => out.push((p, 1)),
            }
        }
        out
    }

    /// Adds another batch's answers (`Serve` only). A probe both hold keeps the newer answer
    /// for the uses of both: nothing changed in between, or the batches would be gone.
    pub fn extend(&self, other: ReadAhead) {
        if let (ReadAhead::Serve(mine), ReadAhead::Serve(theirs)) = (self, other) {
            if let (Ok(mut m), Ok(t)) = (mine.lock(), theirs.into_inner()) {
                for (probe, (out, uses)) in t {
                    add(&mut m, probe, out, uses);
                }
            }
        }
    }

    /// A batch with no answers: every probe runs live.
    pub fn empty() -> ReadAhead {
        ReadAhead::Serve(Mutex::new(HashMap::new()))
    }

    /// Reads the batch's output into answers for `Serve` mode. Probes whose part is missing
    /// or malformed are left out (they run live).
    pub fn serve(probes: Vec<(Probe, usize)>, batch: &Output, token: &str) -> ReadAhead {
        let mut answers = HashMap::new();
        let text = String::from_utf8_lossy(&batch.stdout);
        let (probe_part, fold_part) = match text.split_once(&format!("\n{token} FOLD\n")) {
            Some((p, f)) => (p, Some(f)),
            None => (&*text, None),
        };
        if let Some(f) = fold_part {
            let content = content_part(&batch.stdout, token);
            fold_answers(&probes, f, content, token, &mut answers);
        }
        let errors = stderr_parts(&String::from_utf8_lossy(&batch.stderr), token);
        let marker = format!("\n{token} ");
        let mut rest: &str = probe_part;
        while let Some(at) = rest.find(&marker) {
            // Each token line follows a newline of the batch's own, so an empty stdout ends at 0.
            let stdout = &rest[..at];
            let Some((head, tail)) = rest[at + marker.len()..].split_once('\n') else {
                break;
            };
            rest = tail;
            let mut w = head.split_whitespace();
            let (Some(Ok(i)), Some(Ok(code))) = (
                w.next().map(str::parse::<usize>),
                w.next().map(str::parse::<u32>),
            ) else {
                continue;
            };
            if let (Some((p, uses)), Some(stderr)) = (probes.get(i), errors.get(&i)) {
                let out = Output {
                    code,
                    stdout: stdout.as_bytes().to_vec(),
                    stderr: stderr.as_bytes().to_vec(),
                };
                answers.insert(p.clone(), (out, *uses));
            }
        }
        ReadAhead::Serve(Mutex::new(answers))
    }
}

/// Adds an answer for `uses` more tasks: one already there for the same probe is replaced
/// by the newer (nothing changed in between, or the batches would be gone) and keeps its uses.
fn add(answers: &mut HashMap<Probe, (Output, usize)>, probe: Probe, out: Output, uses: usize) {
    let (o, n) = answers.entry(probe).or_insert((Output::default(), 0));
    *o = out;
    *n += uses;
}

/// Each probe's stderr, by index: what precedes its token line on the batch's stderr.
fn stderr_parts(text: &str, token: &str) -> HashMap<usize, String> {
    let marker = format!("\n{token} ");
    let mut parts = HashMap::new();
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        let part = &rest[..at];
        let Some((head, tail)) = rest[at + marker.len()..].split_once('\n') else {
            break;
        };
        rest = tail;
        if let Ok(i) = head.trim().parse::<usize>() {
            parts.insert(i, part.to_string());
        }
    }
    parts
}

/// The fold section's parts: each from a `token NAME ...` line to the next, its head (the
/// rest of that line) and its lines. None when the section did not reach its end.
fn fold_parts<'a>(section: &'a str, token: &str) -> Option<Vec<(&'a str, Vec<&'a str>)>> {
    let mut parts: Vec<(&str, Vec<&str>)> = Vec::new();
    let prefix = format!("{token} ");
    // Split on \n alone: a line's own \r (a file written on Windows) stays, as each probe prints it.
    for line in section.split('\n') {
        match line.strip_prefix(&prefix) {
            Some("END") => return Some(parts),
            Some(head) => parts.push((head, Vec::new())),
            None => parts.last_mut()?.1.push(line),
        }
    }
    None
}

/// The shown files' raw bytes, after the fold's lines (None when they did not all come).
fn content_part<'a>(stdout: &'a [u8], token: &str) -> Option<&'a [u8]> {
    let head = format!("{token} END\n{token} CONTENT\n");
    let tail = format!("\n{token} CEND\n");
    let start = stdout
        .windows(head.len())
        .position(|w| w == head.as_bytes())?
        + head.len();
    let end = stdout.len().checked_sub(tail.len())?;
    (end >= start && stdout.ends_with(tail.as_bytes())).then(|| &stdout[start..end])
}

/// Answers for the folded probes, each as its own probe would have printed it. A kind whose
/// counts do not add up (a path gone between the test and the `stat`, say) answers nothing:
/// those probes run live.
fn fold_answers(
    probes: &[(Probe, usize)],
    section: &str,
    content: Option<&[u8]>,
    token: &str,
    answers: &mut HashMap<Probe, (Output, usize)>,
) {
    let Some(parts) = fold_parts(section, token) else {
        return;
    };
    let part = |name: &str| {
        parts
            .iter()
            .find(|(h, _)| *h == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    let mut give = |i: usize, stdout: String| {
        if let Some((p, uses)) = probes.get(i) {
            let out = Output {
                code: 0,
                stdout: stdout.into_bytes(),
                stderr: vec![],
            };
            answers.insert(p.clone(), (out, *uses));
        }
    };
    // Paths (file's probe): kind, then the owner, group and mode of those that exist.
    let kinds = indexed_kinds(&part("PATHS"));
    let stats = part("PSTAT");
    if kinds.iter().filter(|(_, k)| *k != "L" && *k != "A").count() == stats.len() {
        let mut stats = stats.iter();
        for (i, kind) in kinds {
            match kind {
                "D" | "F" => {
                    let name = if kind == "D" { "directory" } else { "file" };
                    give(i, format!("{name}\n{}\n", stats.next().unwrap_or(&"")));
                }
                "A" => give(i, "absent\n\n".into()),
                _ => {}
            }
        }
    }
    // Files (files::probe_script): kind, hash, owner, group, mode (and content: `C`).
    let kinds = indexed_kinds(&part("FILES"));
    let (stats, shas) = (part("STAT"), part("SHA"));
    let regular = kinds.iter().filter(|(_, k)| *k != "D" && *k != "A").count();
    if stats.len() == regular && shas.len() == regular {
        let shown = shown_contents(&kinds, &stats, &shas, content);
        let mut k = 0;
        for (i, kind) in kinds {
            let stdout = match kind {
                "D" => "DIR\n".to_string(),
                "A" => "ABSENT\n".to_string(),
                _ => {
                    let (hash, meta) = (sha_of(shas[k]), stats[k].rsplit_once(' '));
                    k += 1;
                    let Some((meta, _size)) = meta else { continue };
                    let shown = match kind {
                        "C" => match shown.as_ref().map(|s| s.get(&i)) {
                            Some(Some(Some(bytes))) => format!("C:{}", B64.encode(bytes)),
                            Some(Some(None)) => String::new(),
                            _ => continue,
                        },
                        _ => String::new(),
                    };
                    format!("FILE\n{hash}  -\n{meta}\n{shown}\n")
                }
            };
            give(i, stdout);
        }
    }
    // Units (service's probe): systemctl prints one block per unit, a blank line between.
    if let Some((head, lines)) = parts.iter().find(|(h, _)| h.starts_with("UNITS ")) {
        let order: Vec<usize> = head["UNITS ".len()..]
            .split_whitespace()
            .filter_map(|i| i.parse().ok())
            .collect();
        let blocks: Vec<String> = lines
            .join("\n")
            .trim_end_matches('\n')
            .split("\n\n")
            .map(|b| format!("{b}\n"))
            .collect();
        // Units systemd could not read (a name it refuses) fail the call: none is answered.
        let read = parts.iter().any(|(h, _)| *h == "UEXIT 0");
        if read && blocks.len() == order.len() {
            for (i, block) in order.into_iter().zip(blocks) {
                give(i, block);
            }
        }
    }
    // SQL (psql's probes): each query's output from its marker to the next, when the session
    // ended well and printed nothing on stderr.
    for (k, (head, _)) in parts.iter().enumerate() {
        let Some(order) = head.strip_prefix("PSQL ") else {
            continue;
        };
        let order: Vec<usize> = order
            .split_whitespace()
            .filter_map(|i| i.parse().ok())
            .collect();
        let len = order.len();
        let (Some(queries), Some(("PEXIT 0 0", _))) = (
            parts.get(k + 1..k + 2 + len),
            parts.get(k + 2 + len).map(|(h, l)| (*h, l)),
        ) else {
            continue;
        };
        let heads: Vec<String> = order
            .iter()
            .map(|i| format!("Q {i}"))
            .chain(["Q END".into()])
            .collect();
        if queries
            .iter()
            .map(|(h, _)| *h)
            .ne(heads.iter().map(String::as_str))
        {
            continue;
        }
        for (&i, (_, lines)) in order.iter().zip(queries) {
            give(i, lines.iter().map(|l| format!("{l}\n")).collect());
        }
    }
    // Sysctl (sysctl's probe): per file, its lines then the live values.
    for (k, (head, lines)) in parts.iter().enumerate() {
        let Some(order) = head.strip_prefix("SYSCTL ") else {
            continue;
        };
        let order: Vec<(usize, &str)> = order
            .split_whitespace()
            .filter_map(|w| {
                let (i, path) = w.split_once(':')?;
                Some((i.parse().ok()?, path))
            })
            .collect();
        let Some(("LIVE", live)) = parts.get(k + 1).map(|(h, l)| (*h, l)) else {
            continue;
        };
        sysctl_answers(&order, probes, lines, live, &mut give);
    }
}

/// Answers for the sysctl probes of one file: its lines, `--`, and each key's live value from
/// `head -v`'s blocks (a key without a block has no value, as `cat 2>/dev/null` prints none).
fn sysctl_answers(
    order: &[(usize, &str)],
    probes: &[(Probe, usize)],
    file: &[&str],
    live: &[&str],
    give: &mut impl FnMut(usize, String),
) {
    let mut values: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut current: Option<&str> = None;
    for line in live {
        if let Some(path) = line
            .strip_prefix("==> ")
            .and_then(|l| l.strip_suffix(" <=="))
        {
            current = Some(path);
            values.insert(path, Vec::new());
        } else if let Some(v) = current.and_then(|c| values.get_mut(c)) {
            v.push(line);
        }
    }
    let mut text = String::new();
    for l in file {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str("--\n");
    for &(i, path) in order {
        if probes.get(i).is_none() {
            continue;
        }
        let mut answer = text.clone();
        if let Some(lines) = values.get(path) {
            // head puts a blank line between blocks; a value ends with its own newline.
            let lines = match lines.last() {
                Some(&"") => &lines[..lines.len() - 1],
                _ => &lines[..],
            };
            for l in lines {
                answer.push_str(l);
                answer.push('\n');
            }
        }
        give(i, answer);
    }
}

/// The hash in a `sha256sum` line (it escapes odd names with a leading backslash).
fn sha_of(line: &str) -> &str {
    line.trim_start_matches('\\')
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

/// The content each `C` file's probe shows, by index (None: too large to show), cut from the
/// raw bytes by the sizes `stat` gave. None for all when they do not add up or a file's bytes
/// do not hash to what `sha256sum` read (it changed in between): those probes run live.
fn shown_contents<'a>(
    kinds: &[(usize, &str)],
    stats: &[&str],
    shas: &[&str],
    content: Option<&'a [u8]>,
) -> Option<HashMap<usize, Option<&'a [u8]>>> {
    let mut rest = content?;
    let mut shown = HashMap::new();
    let regular = kinds.iter().filter(|(_, k)| *k != "D" && *k != "A");
    for ((i, kind), (stat, sha)) in regular.zip(stats.iter().zip(shas)) {
        if *kind != "C" {
            continue;
        }
        let size: usize = stat.rsplit_once(' ')?.1.parse().ok()?;
        let read = size.min(MAX_DIFF_BYTES + 1);
        if rest.len() < read {
            return None;
        }
        let (bytes, tail) = rest.split_at(read);
        rest = tail;
        if size > MAX_DIFF_BYTES {
            shown.insert(*i, None);
        } else if hash_hex(bytes) == sha_of(sha) {
            shown.insert(*i, Some(bytes));
        } else {
            return None;
        }
    }
    rest.is_empty().then_some(shown)
}

/// `index kind` lines.
fn indexed_kinds<'a>(lines: &[&'a str]) -> Vec<(usize, &'a str)> {
    lines
        .iter()
        .filter_map(|l| {
            let (i, kind) = l.split_once(' ')?;
            Some((i.parse().ok()?, kind))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_runs_every_probe_and_keeps_their_outputs_apart() {
        let probe = |s: &str| Probe {
            script: s.into(),
            user: None,
            env: vec![],
            stdin: None,
            keeps_failure: false,
        };
        let probes = vec![
            probe("printf 'a\\nb\\n\\n'"),
            probe("echo err >&2; echo out"),
            probe("cat <<'EOF'\nP9 0 x\nEOF"),
            probe("printf 'a\\nb\\n\\n'"),
            Probe {
                stdin: Some(b"SELECT 1;\nTOK-IN not the end\nSELECT 2;".to_vec()),
                ..probe("tr a-z A-Z")
            },
            probe("echo failed >&2; exit 3"),
            Probe {
                keeps_failure: true,
                ..probe("echo checked; exit 2")
            },
        ];
        let distinct = ReadAhead::distinct(probes.clone());
        assert_eq!(distinct.len(), 6);
        let batch: Vec<Probe> = distinct.iter().map(|(p, _)| p.clone()).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(ReadAhead::batch_script(&batch, &HashMap::new(), "TOK"))
            .output()
            .unwrap();
        let ra = ReadAhead::serve(distinct, &output(out), "TOK");
        assert_eq!(ra.answer(&probes[0]).unwrap().stdout, b"a\nb\n\n");
        let e = ra.answer(&probes[1]).unwrap();
        assert_eq!(
            (e.stdout.as_slice(), e.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
        assert_eq!(ra.answer(&probes[2]).unwrap().stdout, b"P9 0 x\n");
        // What a probe reads on stdin reaches it whole.
        assert_eq!(
            ra.answer(&probes[4]).unwrap().stdout,
            b"SELECT 1;\nTOK-IN NOT THE END\nSELECT 2;\n"
        );
        // A failed probe's answer is not taken: it runs live when its task reaches it.
        assert!(ra.has(&probes[5]));
        assert!(ra.answer(&probes[5]).is_none());
        // Unless it keeps its failure (a check whose failure is its answer).
        let kept = ra.answer(&probes[6]).unwrap();
        assert_eq!((kept.code, kept.stdout.as_slice()), (2, &b"checked\n"[..]));
        // Asked twice, answered twice, then no more.
        assert!(ra.answer(&probes[3]).is_some());
        assert!(ra.answer(&probes[3]).is_none());
    }

    fn output(o: std::process::Output) -> Output {
        Output {
            code: o.status.code().unwrap_or(255) as u32,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }

    fn plain(script: String) -> Probe {
        Probe {
            script,
            user: None,
            env: vec![],
            stdin: None,
            keeps_failure: false,
        }
    }

    /// Folded probes (files, paths, units) are answered exactly as each would have been.
    #[test]
    fn folded_probes_are_answered_together_as_each_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a file"), "x\n").unwrap();
        std::fs::write(d.join("b"), "").unwrap();
        std::fs::write(d.join("bin"), [0u8, 0xff, b'\n', 0xc3]).unwrap();
        std::fs::write(d.join("large"), vec![b'x'; MAX_DIFF_BYTES + 7]).unwrap();
        std::os::unix::fs::symlink(d.join("sub"), d.join("link")).unwrap();
        let paths: Vec<String> = ["sub", "a file", "missing", "b", "bin", "large", "link"]
            .iter()
            .map(|n| d.join(n).display().to_string())
            .collect();
        // systemd is not here: a stand-in prints what `systemctl show` prints, a block per
        // unit and a blank line between them.
        let systemctl = "systemctl() { shift 7; n=0; for u; do [ $n -gt 0 ] && echo; n=1; \
            printf 'LoadState=loaded\\nActiveState=active\\nUnitFileState=%s\\n' \"$u\"; done; }\n";
        let mut folds = HashMap::new();
        let mut probes = vec![plain("echo other".into())];
        for p in &paths {
            for (script, fold) in [
                (
                    super::super::files::probe_script(p, false),
                    Fold::File {
                        path: p.clone(),
                        content: false,
                    },
                ),
                (
                    super::super::files::probe_script(p, true),
                    Fold::File {
                        path: p.clone(),
                        content: true,
                    },
                ),
                (super::super::file::probe_script(p), Fold::Path(p.clone())),
            ] {
                folds.insert(script.clone(), fold);
                probes.push(plain(script));
            }
        }
        // Two files' kernel parameters, one that this kernel lacks (no value, as `cat` gives
        // none); a net.* key (those files answer a read at an offset with nothing).
        let conf = d.join("90-x.conf").display().to_string();
        std::fs::write(&conf, "net.core.somaxconn = 4096\n--\nvm.swappiness=1").unwrap();
        for (name, file) in [
            ("net.core.somaxconn", conf.as_str()),
            ("net.ipv4.ip_local_port_range", conf.as_str()),
            ("kernel.no_such_key", conf.as_str()),
            ("vm.swappiness", "/nonexistent/99.conf"),
        ] {
            let cmd = super::super::sysctl::probe_of(name, file).unwrap();
            folds.insert(cmd.script.clone(), cmd.fold.unwrap());
            probes.push(plain(cmd.script));
        }
        for unit in ["etcd", "patroni"] {
            let script = super::super::service::show(unit);
            folds.insert(script.clone(), Fold::Unit(unit.into()));
            probes.push(plain(script));
        }
        let run = |script: &str| {
            output(
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("{systemctl}{script}"))
                    .output()
                    .unwrap(),
            )
        };
        let batch = run(&ReadAhead::batch_script(&probes, &folds, "TOK"));
        let ra = ReadAhead::serve(ReadAhead::distinct(probes.clone()), &batch, "TOK");
        assert_eq!(ra.answer(&probes[0]).unwrap().stdout, b"other\n");
        for p in &probes[1..] {
            let direct = run(&p.script);
            let Some(got) = ra.answer(p) else {
                // Only a link's path probe runs live (its target is read then).
                assert!(
                    p.script.contains("readlink") && p.script.contains("/link"),
                    "{}",
                    p.script
                );
                continue;
            };
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                String::from_utf8_lossy(&direct.stdout),
                "{}",
                p.script
            );
        }
        // A unit systemd refuses fails the call: no unit is answered (each runs live).
        let refusing = format!("{systemctl}systemctl() {{ echo 'LoadState=loaded'; return 1; }}\n");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{refusing}{}",
                ReadAhead::batch_script(&probes, &folds, "TOK")
            ))
            .output()
            .unwrap();
        let ra = ReadAhead::serve(ReadAhead::distinct(probes.clone()), &output(out), "TOK");
        assert!(ra.answer(probes.last().unwrap()).is_none());
        assert!(ra.answer(&probes[1]).is_some());

        // A shown file that changed between `sha256sum` and `head` is not answered.
        let shown = |ra: &ReadAhead| {
            probes
                .iter()
                .filter(|p| p.script.contains("base64") && p.script.contains("a file"))
                .map(|p| ra.answer(p).is_some())
                .collect::<Vec<_>>()
        };
        let changing = format!(
            "head() {{ printf 'y\\n' > {}; command head \"$@\"; }}\n{}",
            quote(&paths[1]),
            ReadAhead::batch_script(&probes, &folds, "TOK")
        );
        let ra = ReadAhead::serve(ReadAhead::distinct(probes.clone()), &run(&changing), "TOK");
        assert_eq!(shown(&ra), [false]);
        assert!(ra.answer(&probes[1]).is_some());
    }
}
