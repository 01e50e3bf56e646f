//! What the user sees: per-task lines (or a progress line per host on a terminal), diffs,
//! newline-delimited JSON events with `--json`, and the recap. Every path masks secrets.

use crate::vars::Secrets;
use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
    Unreachable,
    Rescued,
    Ignored,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Skipped => "skipping",
            Status::Unreachable => "unreachable",
            Status::Rescued => "rescued",
            Status::Ignored => "ignored",
        }
    }
}

/// One host's result for a task (or for one loop item of it).
pub struct Line<'a> {
    pub host: &'a str,
    pub task: &'a str,
    pub status: Status,
    pub item: Option<&'a str>,
    pub msg: Option<&'a str>,
    pub diffs: &'a [String],
    /// Commands and their output, shown with -v.
    pub trace: &'a [String],
    /// What the task changed on the host (counted for the task's line, not its items').
    pub changes: Changes,
    /// Where the task is written (`file:line`), named with a failure.
    pub origin: Option<&'a str>,
    /// How long the task took on this host.
    pub duration: Option<Duration>,
}

impl<'a> Line<'a> {
    pub fn new(host: &'a str, task: &'a str, status: Status) -> Line<'a> {
        Line {
            host,
            task,
            status,
            item: None,
            msg: None,
            diffs: &[],
            trace: &[],
            changes: Changes::default(),
            origin: None,
            duration: None,
        }
    }
}

/// Counts per host, as Ansible's recap shows them.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct HostStats {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub unreachable: u32,
    pub rescued: u32,
    pub ignored: u32,
    /// What the changes touched (or, in check mode, would touch).
    pub changes: Changes,
    /// Commands (SSH channels) the run opened on the host: the round trips latency
    /// multiplies, a number that does not depend on this machine's speed.
    pub commands: u64,
}

/// What changes touch: files written, packages installed or removed, services started,
/// stopped, restarted or enabled, and other changes (commands, API calls, ...).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub files: u32,
    pub packages: u32,
    pub services: u32,
    pub other: u32,
}

impl Changes {
    pub fn files(n: u32) -> Changes {
        Changes {
            files: n,
            ..Default::default()
        }
    }
    pub fn packages(n: u32) -> Changes {
        Changes {
            packages: n,
            ..Default::default()
        }
    }
    pub fn services(n: u32) -> Changes {
        Changes {
            services: n,
            ..Default::default()
        }
    }
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
    pub fn add(&mut self, o: Changes) {
        self.files += o.files;
        self.packages += o.packages;
        self.services += o.services;
        self.other += o.other;
    }
    /// "3 files, 12 packages, 2 services, 1 other"
    fn describe(&self) -> String {
        let plural =
            |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        [
            plural(self.files, "file", "files"),
            plural(self.packages, "package", "packages"),
            plural(self.services, "service", "services"),
            plural(self.other, "other", "other"),
        ]
        .join(", ")
    }
}

/// Something timed: a task (with where it is written) or a play.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timed {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub origin: String,
    pub seconds: f64,
    /// A play: the commands each of its hosts ran, on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands_per_host: Option<f64>,
}

pub struct Reporter {
    pub secrets: Secrets,
    /// Print the time per play and the slowest tasks with the recap (`--profile`).
    pub profile: bool,
    /// Each task's wall time (all its hosts), and each play's, in the order they ran.
    task_times: Mutex<Vec<Timed>>,
    play_times: Mutex<Vec<Timed>>,
    json: bool,
    verbose: u8,
    start: Instant,
    stats: Mutex<IndexMap<String, HostStats>>,
    progress: Option<(MultiProgress, Mutex<IndexMap<String, ProgressBar>>)>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Reporter {
    pub fn new(secrets: Secrets, json: bool, verbose: u8) -> Reporter {
        let tty = std::io::stdout().is_terminal() && !json;
        Reporter {
            secrets,
            profile: false,
            task_times: Mutex::new(Vec::new()),
            play_times: Mutex::new(Vec::new()),
            json,
            verbose,
            start: Instant::now(),
            stats: Mutex::new(IndexMap::new()),
            progress: tty.then(|| (MultiProgress::new(), Mutex::new(IndexMap::new()))),
            out: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    /// A reporter writing to a buffer (tests).
    pub fn to_writer(
        secrets: Secrets,
        json: bool,
        verbose: u8,
        w: Box<dyn Write + Send>,
    ) -> Reporter {
        let mut r = Reporter::new(secrets, json, verbose);
        r.progress = None;
        r.out = Mutex::new(w);
        r
    }

    pub fn verbose(&self) -> u8 {
        self.verbose
    }

    fn line(&self, text: &str) {
        let text = self.secrets.mask(text);
        if let Some((mp, _)) = &self.progress {
            let _ = mp.println(text);
            return;
        }
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{text}");
        }
    }

    fn event(&self, v: Value) {
        let v = self.secrets.mask_value(&v);
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{}", serde_json::to_string(&v).unwrap_or_default());
        }
    }

    pub fn play(&self, name: &str, hosts: &[String]) {
        for h in hosts {
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(h.clone())
                .or_default();
        }
        if self.json {
            return self.event(json!({"event": "play_start", "play": name, "hosts": hosts}));
        }
        self.line(&format!(
            "\nPLAY [{name}] {}",
            "*".repeat(60usize.saturating_sub(name.len()))
        ));
    }

    pub fn task(&self, name: &str, hosts: &[String]) {
        if self.json {
            return self.event(json!({"event": "task_start", "task": name}));
        }
        self.line(&format!(
            "\nTASK [{name}] {}",
            "*".repeat(60usize.saturating_sub(name.len()))
        ));
        if let Some((mp, bars)) = &self.progress {
            let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
            for h in hosts {
                let bar = bars.entry(h.clone()).or_insert_with(|| {
                    let b = mp.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(h.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.set_message(self.secrets.mask(name));
            }
        }
    }

    /// One host's result for the current task (`item` names a loop item).
    pub fn result(&self, line: Line<'_>) {
        let Line {
            host,
            task,
            status,
            item,
            msg,
            diffs,
            trace,
            changes,
            origin,
            duration,
        } = line;
        {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            let s = stats.entry(host.to_string()).or_default();
            if item.is_none() {
                s.changes.add(changes);
                match status {
                    Status::Ok => s.ok += 1,
                    Status::Changed => {
                        s.ok += 1;
                        s.changed += 1
                    }
                    Status::Failed => s.failed += 1,
                    Status::Skipped => s.skipped += 1,
                    Status::Unreachable => s.unreachable += 1,
                    Status::Rescued => s.rescued += 1,
                    Status::Ignored => s.ignored += 1,
                }
            }
        }
        let diffs: Vec<String> = diffs.iter().map(|d| self.secrets.mask_diff(d)).collect();
        if self.json {
            return self.event(json!({
                "event": "task_result", "host": host, "task": task, "status": status.word(),
                "item": item, "msg": msg, "diff": diffs, "origin": origin,
                "duration_s": duration.map(|d| d.as_secs_f64()),
            }));
        }
        let mut text = format!("{}: [{host}]", status.word());
        if let Some(i) = item {
            text.push_str(&format!(" => (item={i})"));
        }
        if let Some(o) = origin.filter(|_| status == Status::Failed) {
            text.push_str(&format!(" at {o}"));
        }
        if let Some(m) = msg.filter(|m| !m.is_empty()) {
            text.push_str(&format!(" => {m}"));
        }
        self.line(&text);
        for d in &diffs {
            self.line(d.trim_end());
        }
        if self.verbose > 0 {
            for t in trace {
                self.line(&indent(t));
            }
        }
    }

    /// A task's wall time over all its hosts (for `--profile`).
    pub fn task_time(&self, task: &str, origin: &str, took: Duration) {
        self.task_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Timed {
                name: self.secrets.mask(task),
                origin: origin.to_string(),
                seconds: took.as_secs_f64(),
                commands_per_host: None,
            });
    }

    /// A play's wall time and commands per host (for `--profile`).
    pub fn play_time(&self, play: &str, took: Duration, commands_per_host: f64) {
        self.play_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Timed {
                name: self.secrets.mask(play),
                origin: String::new(),
                seconds: took.as_secs_f64(),
                commands_per_host: Some(commands_per_host),
            });
    }

    /// The profile: each play's time, then the slowest tasks (at most `top`).
    pub fn profile_text(&self, top: usize) -> String {
        let plays = self.play_times.lock().unwrap_or_else(|e| e.into_inner());
        let mut tasks = self
            .task_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = format!("\nPROFILE {}\n", "*".repeat(63));
        for p in plays.iter() {
            out.push_str(&format!(
                "{:>8.2} s  play  {}  ({:.1} commands per host)\n",
                p.seconds,
                p.name,
                p.commands_per_host.unwrap_or(0.0)
            ));
        }
        tasks.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        out.push_str(&format!("slowest tasks (of {}):\n", tasks.len()));
        for t in tasks.iter().take(top) {
            let at = if t.origin.is_empty() {
                String::new()
            } else {
                format!("  ({})", t.origin)
            };
            out.push_str(&format!("{:>8.2} s  {}{at}\n", t.seconds, t.name));
        }
        out
    }

    /// A message about the run (a skipped step, a warning).
    pub fn note(&self, text: &str) {
        if self.json {
            return self.event(json!({"event": "note", "msg": text}));
        }
        self.line(text);
    }

    /// Records how many commands a host's connection ran (read when the run ends).
    pub fn set_commands(&self, host: &str, n: u64) {
        if let Some(s) = self
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(host)
        {
            s.commands = n;
        }
    }

    pub fn stats(&self) -> IndexMap<String, HostStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `check`: the counts of what changed are what would change.
    pub fn recap(&self, interrupted: bool, check: bool) {
        if let Some((mp, bars)) = &self.progress {
            for b in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
                b.finish_and_clear();
            }
            let _ = mp.clear();
        }
        let stats = self.stats();
        let elapsed = self.start.elapsed();
        if self.json {
            let plays = self
                .play_times
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return self.event(json!({"event": "recap", "hosts": stats, "elapsed_s": elapsed.as_secs_f64(), "interrupted": interrupted, "check": check, "plays": plays}));
        }
        if self.profile {
            for l in self.profile_text(20).lines() {
                self.line(l);
            }
        }
        if interrupted {
            self.line("\nINTERRUPTED: stopped at the user's request; hosts may be part-way through the task above");
        }
        self.line(&format!("\nPLAY RECAP {}", "*".repeat(60)));
        let width = stats.keys().map(|h| h.len()).max().unwrap_or(0);
        for (h, s) in &stats {
            self.line(&format!(
                "{h:width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} rescued={:<4} ignored={:<4} commands={}",
                s.ok, s.changed, s.unreachable, s.failed, s.skipped, s.rescued, s.ignored, s.commands
            ));
        }
        let touched: Vec<_> = stats
            .iter()
            .filter(|(_, s)| !s.changes.is_empty())
            .collect();
        if !touched.is_empty() {
            self.line(if check {
                "\nwould change:"
            } else {
                "\nchanged:"
            });
            for (h, s) in touched {
                self.line(&format!("{h:width$} : {}", s.changes.describe()));
            }
        }
        self.line(&format!("\nelapsed: {:.2}s", elapsed.as_secs_f64()));
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
