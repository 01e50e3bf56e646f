//! Read-ahead for loops: the probes of all of a task's items in one round trip.
//!
//! A module's first command on a host is its probe, which only reads (see the module list in
//! [`reads_first`]). For a looped task the engine first runs each item's module in `Record`
//! mode: its first command is noted, not run, and the module stops there. All the noted probes
//! then run in one command, and each item runs for real in `Serve` mode: its probe is answered
//! from that batch (once), everything after it runs live. After an item changes something the
//! engine drops the batch, so later items probe again and never act on a stale answer.

use crate::transport::Output;
use std::collections::HashMap;
use std::sync::Mutex;

/// Modules whose first command is a read-only probe (command and shell record only their
/// `creates`/`removes` check, and nothing without one).
pub fn reads_first(module: &str) -> bool {
    matches!(
        module,
        "file" | "copy" | "template" | "lineinfile" | "stat" | "sysctl" | "command" | "shell"
    )
}

/// Returned by a command in `Record` mode: the module stops there.
#[derive(Debug)]
pub struct Recorded;

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe recorded for read-ahead")
    }
}

impl std::error::Error for Recorded {}

/// How a probe runs: the script, as which user, with which environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Probe {
    pub script: String,
    pub user: Option<String>,
    pub env: Vec<(String, String)>,
}

pub enum ReadAhead {
    Record(Mutex<Vec<Probe>>),
    /// Each answer with how many items may still take it (items with the same probe, such
    /// as lineinfile edits of one file, share one run of it).
    Serve(Mutex<HashMap<Probe, (Output, usize)>>),
}

impl ReadAhead {
    pub fn recorder() -> ReadAhead {
        ReadAhead::Record(Mutex::new(Vec::new()))
    }

    pub fn is_recording(&self) -> bool {
        matches!(self, ReadAhead::Record(_))
    }

    /// Whether the batch still has an answer to this probe.
    pub fn has(&self, probe: &Probe) -> bool {
        match self {
            ReadAhead::Serve(a) => a.lock().is_ok_and(|a| a.contains_key(probe)),
            ReadAhead::Record(_) => false,
        }
    }

    /// Takes the answer to a probe, if the batch has one left.
    pub fn answer(&self, probe: &Probe) -> Option<Output> {
        let ReadAhead::Serve(answers) = self else {
            return None;
        };
        let mut answers = answers.lock().ok()?;
        let (out, left) = answers.get_mut(probe)?;
        let out = out.clone();
        *left -= 1;
        if *left == 0 {
            answers.remove(probe);
        }
        Some(out)
    }

    /// The probes recorded so far (each item's first).
    pub fn recorded(&self) -> Vec<Probe> {
        match self {
            ReadAhead::Record(v) => v.lock().map(|v| v.clone()).unwrap_or_default(),
            ReadAhead::Serve(_) => vec![],
        }
    }

    /// One script that runs every probe (each in its own subshell). Each probe's stdout is
    /// printed as it is, then a line with `token`, its index and exit status, then its stderr
    /// (when there is any) and a second token line: few processes per probe, no re-encoding.
    /// `token` is random, so a probe's output cannot forge it.
    pub fn batch_script(probes: &[Probe], token: &str) -> String {
        let mut s = String::from("__pgde=$(mktemp) || exit 1\n");
        for (i, p) in probes.iter().enumerate() {
            s.push_str(&format!(
                "( {}\n) 2>\"$__pgde\" </dev/null; printf '\\n{token} {i} %s\\n' $?; [ -s \"$__pgde\" ] && cat \"$__pgde\"; printf '\\n{token}\\n'\n",
                p.script
            ));
        }
        s.push_str("rm -f \"$__pgde\"\n");
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

    /// Reads the batch's output into answers for `Serve` mode. Probes whose part is missing
    /// or malformed are left out (they run live).
    pub fn serve(probes: Vec<(Probe, usize)>, batch_stdout: &[u8], token: &str) -> ReadAhead {
        let mut answers = HashMap::new();
        let marker = format!("\n{token} ");
        let end = format!("\n{token}\n");
        let text = String::from_utf8_lossy(batch_stdout);
        let mut rest: &str = &text;
        while let Some(at) = rest.find(&marker) {
            let stdout = &rest[..at];
            let after = &rest[at + marker.len()..];
            let Some((head, tail)) = after.split_once('\n') else {
                break;
            };
            let Some(stop) = tail
                .find(&end)
                .or_else(|| tail.strip_prefix(&end[1..]).map(|_| 0))
            else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_runs_every_probe_and_keeps_their_outputs_apart() {
        let probe = |s: &str| Probe {
            script: s.into(),
            user: None,
            env: vec![],
        };
        let probes = vec![
            probe("printf 'a\\nb\\n\\n'"),
            probe("echo err >&2; exit 3"),
            probe("cat <<'EOF'\nP9 0 x\nEOF"),
            probe("echo err >&2; exit 3"),
        ];
        let distinct = ReadAhead::distinct(probes.clone());
        assert_eq!(distinct.len(), 3);
        let batch: Vec<Probe> = distinct.iter().map(|(p, _)| p.clone()).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(ReadAhead::batch_script(&batch, "TOK"))
            .output()
            .unwrap();
        let ra = ReadAhead::serve(distinct, &out.stdout, "TOK");
        assert_eq!(ra.answer(&probes[0]).unwrap().stdout, b"a\nb\n\n");
        let e = ra.answer(&probes[1]).unwrap();
        assert_eq!((e.code, e.stderr.as_slice()), (3, &b"err\n"[..]));
        assert_eq!(ra.answer(&probes[2]).unwrap().stdout, b"P9 0 x\n");
        // Asked twice, answered twice, then no more.
        assert!(ra.answer(&probes[3]).is_some());
        assert!(ra.answer(&probes[3]).is_none());
    }
}
