//! Read-ahead for loops: the probes of all of a task's items in one round trip.
//!
//! A module's first command on a host is its probe, which only reads (see the module list in
//! [`reads_first`]). For a looped task the engine first runs each item's module in `Record`
//! mode: its first command is noted, not run, and the module stops there. All the noted probes
//! then run in one command, and each item runs for real in `Serve` mode: its probe is answered
//! from that batch (once), everything after it runs live. After an item changes something the
//! engine drops the batch, so later items probe again and never act on a stale answer.

use crate::transport::Output;
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::Mutex;

/// Modules whose first command is a read-only probe.
pub fn reads_first(module: &str) -> bool {
    matches!(
        module,
        "file" | "copy" | "template" | "lineinfile" | "stat" | "sysctl"
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

    /// One script that runs every probe (in its own subshell) and prints, per probe, its exit
    /// status, stdout and stderr in base64 on one line.
    pub fn batch_script(probes: &[Probe]) -> String {
        let mut s = String::from("__pgd=$(mktemp -d) || exit 1\n");
        for (i, p) in probes.iter().enumerate() {
            s.push_str(&format!(
                "( {}\n) >\"$__pgd/o\" 2>\"$__pgd/e\" </dev/null; __rc=$?\nprintf 'P{i} %s ' \"$__rc\"; base64 -w0 < \"$__pgd/o\"; printf ' '; base64 -w0 < \"$__pgd/e\"; echo\n",
                p.script
            ));
        }
        s.push_str("rm -rf \"$__pgd\"\n");
        s
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

    /// Reads the batch's output into answers for `Serve` mode. Probes whose line is missing
    /// are left out (they run live).
    pub fn serve(probes: Vec<(Probe, usize)>, batch_stdout: &str) -> ReadAhead {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut answers = HashMap::new();
        for line in batch_stdout.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(tag), Some(rc), out, err) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(i) = tag.strip_prefix('P').and_then(|i| i.parse::<usize>().ok()) else {
                continue;
            };
            let (Some((p, uses)), Ok(code)) = (probes.get(i), rc.parse::<u32>()) else {
                continue;
            };
            let (Ok(stdout), Ok(stderr)) = (
                b64.decode(out.unwrap_or_default()),
                b64.decode(err.unwrap_or_default()),
            ) else {
                continue;
            };
            answers.insert(
                p.clone(),
                (
                    Output {
                        code,
                        stdout,
                        stderr,
                    },
                    *uses,
                ),
            );
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
            .arg(ReadAhead::batch_script(&batch))
            .output()
            .unwrap();
        let ra = ReadAhead::serve(distinct, &String::from_utf8_lossy(&out.stdout));
        assert_eq!(ra.answer(&probes[0]).unwrap().stdout, b"a\nb\n\n");
        let e = ra.answer(&probes[1]).unwrap();
        assert_eq!((e.code, e.stderr.as_slice()), (3, &b"err\n"[..]));
        assert_eq!(ra.answer(&probes[2]).unwrap().stdout, b"P9 0 x\n");
        // Asked twice, answered twice, then no more.
        assert!(ra.answer(&probes[3]).is_some());
        assert!(ra.answer(&probes[3]).is_none());
    }
}
