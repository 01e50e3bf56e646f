//! Read-ahead: the probes of many tasks (and loop items) in one round trip.
//!
//! A module declares its probe (`Spec::probe`): the read-only command whose answer describes
//! the host's state for its parameters, which is also the first command it runs. The engine
//! notes the probes of many tasks (and loop items) in a `Record`, runs them in one command, and
//! each task then runs in `Serve` mode: its probe is answered from that batch (once),
//! everything after it runs live. After something changes the engine drops the batch, so
//! later tasks probe again and never act on a stale answer (see `engine::prefetch`).

use crate::transport::{quote, Connection, Output};
use anyhow::Result;
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

pub enum ReadAhead {
    /// The probes noted, which of them are plain file probes (script -> path): those are
    /// answered together, with one `stat` and one `sha256sum` for all their files; and the
    /// requests made after them.
    Record(
        Mutex<Vec<Probe>>,
        Mutex<HashMap<String, String>>,
        Mutex<Vec<Exchange>>,
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

    /// Notes a request to make once the batch has answered.
    pub fn note_exchange(&self, exchange: Exchange) {
        if let ReadAhead::Record(_, _, x) = self {
            if let Ok(mut x) = x.lock() {
                x.push(exchange);
            }
        }
    }

    /// The requests noted (taken: each is made once).
    pub fn take_exchanges(&self) -> Vec<Exchange> {
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

    /// Keeps a response (or why there was none) as the answer to `key`, for one use.
    pub fn keep(&self, key: Probe, response: Result<Vec<u8>, String>) {
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
                a.insert(key, (out, 1));
            }
        }
    }

    /// Notes a probe to run ahead; `file` marks `files::probe_script`'s probe of that path
    /// without content, answered with the other files' (see `Record`).
    pub fn note(&self, probe: Probe, file: Option<String>) {
        if let ReadAhead::Record(v, files, _) = self {
            if let (Some(path), Ok(mut f)) = (file, files.lock()) {
                f.insert(probe.script.clone(), path);
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

    /// The file probes noted (script -> path).
    pub fn file_probes(&self) -> HashMap<String, String> {
        match self {
            ReadAhead::Record(_, f, _) => f.lock().map(|f| f.clone()).unwrap_or_default(),
            ReadAhead::Serve(_) => HashMap::new(),
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
    /// printed as it is, then a line with `token`, its index and exit status, then its stderr
    /// (when there is any) and a second token line: few processes per probe, no re-encoding.
    /// `token` is random, so a probe's output cannot forge it. A probe's stdin is a here
    /// document ended by the token (its text is never a secret: `ProbeCmd::stdin`).
    pub fn batch_script(probes: &[Probe], files: &HashMap<String, String>, token: &str) -> String {
        let mut s = String::from("__pgde=$(mktemp) || exit 1\n");
        let mut file_part = String::from("set --\n");
        for (i, p) in probes.iter().enumerate() {
            if let Some(stdin) = &p.stdin {
                let mut text = String::from_utf8_lossy(stdin).into_owned();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                s.push_str(&format!(
                    "( {}\n) 2>\"$__pgde\" <<'{token}-IN'\n{text}{token}-IN\nprintf '\\n{token} {i} %s\\n' $?; [ -s \"$__pgde\" ] && cat \"$__pgde\"; printf '\\n{token}\\n'\n",
                    p.script
                ));
                continue;
            }
            if let Some(path) = files.get(&p.script) {
                // What the probe would print, for all files at once: the kind of each path
                // here (shell builtins), then one stat and one sha256sum over the files.
                let q = quote(path);
                file_part.push_str(&format!(
                    "if [ -d {q} ]; then echo '{i} D'; elif [ -e {q} ]; then echo '{i} F'; set -- \"$@\" {q}; else echo '{i} A'; fi\n"
                ));
                continue;
            }
            s.push_str(&format!(
                "( {}\n) 2>\"$__pgde\" </dev/null; printf '\\n{token} {i} %s\\n' $?; [ -s \"$__pgde\" ] && cat \"$__pgde\"; printf '\\n{token}\\n'\n",
                p.script
            ));
        }
        s.push_str("rm -f \"$__pgde\"\n");
        if file_part.len() > "set --\n".len() {
            s.push_str(&format!("printf '\\n{token} FILES\\n'\n"));
            s.push_str(&file_part);
            s.push_str(&format!(
                "if [ $# -gt 0 ]; then printf '{token} STAT\\n'; stat -c '%U %G %a' -- \"$@\"; printf '{token} SHA\\n'; sha256sum -- \"$@\"; fi\nprintf '{token} END\\n'\n"
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

    /// Adds another batch's answers (`Serve` only).
    pub fn extend(&self, other: ReadAhead) {
        if let (ReadAhead::Serve(mine), ReadAhead::Serve(theirs)) = (self, other) {
            if let (Ok(mut m), Ok(t)) = (mine.lock(), theirs.into_inner()) {
                m.extend(t);
            }
        }
    }

    /// A batch with no answers: every probe runs live.
    pub fn empty() -> ReadAhead {
        ReadAhead::Serve(Mutex::new(HashMap::new()))
    }

    /// Reads the batch's output into answers for `Serve` mode. Probes whose part is missing
    /// or malformed are left out (they run live).
    pub fn serve(probes: Vec<(Probe, usize)>, batch_stdout: &[u8], token: &str) -> ReadAhead {
        let mut answers = HashMap::new();
        let marker = format!("\n{token} ");
        let end = format!("\n{token}\n");
        let text = String::from_utf8_lossy(batch_stdout);
        let (probe_part, file_part) = match text.split_once(&format!("\n{token} FILES\n")) {
            Some((p, f)) => (p.to_string(), Some(f.to_string())),
            None => (text.to_string(), None),
        };
        if let Some(f) = file_part {
            file_answers(&probes, &f, token, &mut answers);
        }
        let mut rest: &str = &probe_part;
        while let Some(at) = rest.find(&marker) {
            let stdout = &rest[..at];
            let after = &rest[at + marker.len()..];
            let Some((head, tail)) = after.split_once('\n') else {
                break;
            };
            // Each token line follows a newline of the batch's own, so an empty stderr ends at 0.
            let Some(stop) = tail.find(&end) else {
                break;
            };
            let stderr = &tail[..stop];
            rest = &tail[stop + end.len()..];
            let mut w = head.split_whitespace();
            let (Some(Ok(i)), Some(Ok(code))) = (
                w.next().map(str::parse::<usize>),
                w.next().map(str::parse::<u32>),
            ) else {
                continue;
            };
            if let Some((p, uses)) = probes.get(i) {
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

/// Answers for the file probes from the batch's files section: each path's kind, then the
/// `stat` and `sha256sum` lines of the regular files in order. When the counts do not add up
/// (a file could not be read, say), none is answered: those probes run live.
fn file_answers(
    probes: &[(Probe, usize)],
    section: &str,
    token: &str,
    answers: &mut HashMap<Probe, (Output, usize)>,
) {
    // kinds, then (when there are regular files) `STAT` lines and `SHA` lines, then `END`.
    let Some((body, _)) = section.split_once(&format!("{token} END\n")) else {
        return;
    };
    let (kinds, stats, shas) = match body.split_once(&format!("{token} STAT\n")) {
        None => (body, vec![], vec![]),
        Some((kinds, rest)) => {
            let Some((st, sh)) = rest.split_once(&format!("{token} SHA\n")) else {
                return;
            };
            (kinds, st.lines().collect(), sh.lines().collect::<Vec<_>>())
        }
    };
    let mut regular = 0;
    let mut found = Vec::new();
    for line in kinds.lines() {
        let Some((i, kind)) = line.split_once(' ') else {
            continue;
        };
        let Ok(i) = i.parse::<usize>() else { continue };
        found.push((i, kind.to_string(), regular));
        if kind == "F" {
            regular += 1;
        }
    }
    if stats.len() != regular || shas.len() != regular {
        return;
    }
    for (i, kind, k) in found {
        let Some((p, uses)) = probes.get(i) else {
            continue;
        };
        let stdout = match kind.as_str() {
            "D" => "DIR\n".to_string(),
            "A" => "ABSENT\n".to_string(),
            _ => {
                // sha256sum escapes odd names with a leading backslash; the hash follows.
                let hash = shas[k]
                    .trim_start_matches('\\')
                    .split_whitespace()
                    .next()
                    .unwrap_or_default();
                format!("FILE\n{hash}  -\n{}\n\n", stats[k])
            }
        };
        let out = Output {
            code: 0,
            stdout: stdout.into_bytes(),
            stderr: vec![],
        };
        answers.insert(p.clone(), (out, *uses));
    }
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
        let ra = ReadAhead::serve(distinct, &out.stdout, "TOK");
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

    /// The files section answers exactly what each file probe would have printed.
    #[test]
    fn file_probes_are_answered_together_as_each_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a file"), "x\n").unwrap();
        std::fs::write(d.join("b"), "").unwrap();
        let paths: Vec<String> = ["sub", "a file", "missing", "b"]
            .iter()
            .map(|n| d.join(n).display().to_string())
            .collect();
        // files::probe_file's own probe, without content.
        let script = |p: &str| super::super::files::probe_script(p, false);
        let mut files = HashMap::new();
        let mut probes = vec![Probe {
            script: "echo other".into(),
            user: None,
            env: vec![],
            stdin: None,
            keeps_failure: false,
        }];
        for p in &paths {
            files.insert(script(p), p.clone());
            probes.push(Probe {
                script: script(p),
                user: None,
                env: vec![],
                stdin: None,
                keeps_failure: false,
            });
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(ReadAhead::batch_script(&probes, &files, "TOK"))
            .output()
            .unwrap();
        let ra = ReadAhead::serve(ReadAhead::distinct(probes.clone()), &out.stdout, "TOK");
        assert_eq!(ra.answer(&probes[0]).unwrap().stdout, b"other\n");
        for p in &probes[1..] {
            let direct = std::process::Command::new("sh")
                .arg("-c")
                .arg(&p.script)
                .output()
                .unwrap();
            let got = ra.answer(p).expect("answered from the files section");
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                String::from_utf8_lossy(&direct.stdout)
            );
        }
    }
}
