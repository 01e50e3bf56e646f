//! Clients on this machine (the lab bridge's address) that keep writing or reading through an
//! endpoint of the cluster while a fault runs, one transaction per connection, and what they
//! measured. Each attempt is a psql process killed after a few seconds: a commit that hangs
//! (a leader cut off from its synchronous standby) counts as failed, never as acknowledged.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one attempt (connect, statement, commit) may take before it counts as failed.
const ATTEMPT_LIMIT: &str = "5";

pub struct Attempt {
    /// When the attempt ended, from the client's start.
    pub at: Duration,
    pub ok: bool,
    /// The row's id (writers) or the round (readers).
    pub id: u64,
    pub error: String,
}

pub struct Client {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Attempt>>,
}

/// What a client saw between its start and stop.
pub struct Measured {
    pub attempts: usize,
    pub failed: usize,
    /// The longest time without a successful attempt (from the start, between two successes,
    /// and before the stop).
    pub longest_gap: Duration,
    pub acknowledged: Vec<u64>,
    pub last_ok: bool,
    /// How many of the last three attempts succeeded.
    pub last_three_ok: usize,
    pub errors: Vec<String>,
}

/// Runs `sql` once through libpq `url` (password from the environment, never the command
/// line); stdout on success, stderr on failure.
pub fn psql(url: &str, password: &str, sql: &str) -> Result<String, String> {
    let o = Command::new("timeout")
        .args(["-s", "KILL", ATTEMPT_LIMIT, "psql", url, "-Atqc", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "3")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e} (apt-get install -y postgresql-client)"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        Err(if err.is_empty() {
            format!("no answer within {ATTEMPT_LIMIT} s")
        } else {
            err
        })
    }
}

impl Client {
    /// Inserts (scenario, n) into table `writes`, n = 1, 2, ... one per transaction.
    pub fn write(url: &str, password: &str, scenario: &str) -> Client {
        let scenario = scenario.to_string();
        Client::start(url, password, move |n| {
            format!("INSERT INTO writes VALUES ('{scenario}', {n})")
        })
    }

    /// Reads one row, one per connection.
    pub fn read(url: &str, password: &str) -> Client {
        Client::start(url, password, |_| "SELECT 1".to_string())
    }

    fn start(url: &str, password: &str, sql: impl Fn(u64) -> String + Send + 'static) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (url, password) = (url.to_string(), password.to_string());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut log = Vec::new();
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                let r = psql(&url, &password, &sql(n));
                log.push(Attempt {
                    at: start.elapsed(),
                    ok: r.is_ok(),
                    id: n,
                    error: r.err().unwrap_or_default(),
                });
                std::thread::sleep(Duration::from_millis(50));
            }
            log.push(Attempt {
                at: start.elapsed(),
                ok: true,
                id: 0,
                error: "stop".into(),
            });
            log
        });
        Client { stop, thread }
    }

    pub fn stop(self) -> Measured {
        self.stop.store(true, Ordering::Relaxed);
        let mut log = self.thread.join().unwrap();
        let end = log.pop().map(|a| a.at).unwrap_or_default();
        let mut last = Duration::ZERO;
        let mut longest = Duration::ZERO;
        for a in log.iter().filter(|a| a.ok) {
            longest = longest.max(a.at - last);
            last = a.at;
        }
        longest = longest.max(end - last);
        // Each different error once, with when it first came (seconds from the start).
        let mut errors: Vec<String> = Vec::new();
        let mut previous = "";
        for a in log.iter().filter(|a| !a.ok) {
            let e = a.error.lines().next().unwrap_or("");
            if e != previous {
                errors.push(format!("{:.1} s: {e}", a.at.as_secs_f64()));
                previous = e;
            }
        }
        Measured {
            attempts: log.len(),
            failed: log.iter().filter(|a| !a.ok).count(),
            longest_gap: longest,
            acknowledged: log.iter().filter(|a| a.ok).map(|a| a.id).collect(),
            last_ok: log.last().map(|a| a.ok).unwrap_or(false),
            last_three_ok: log.iter().rev().take(3).filter(|a| a.ok).count(),
            errors,
        }
    }
}

impl Measured {
    /// The acknowledged ids missing from `stored` (ids, whitespace-separated).
    pub fn missing_from(&self, stored: &str) -> Vec<u64> {
        let stored: std::collections::HashSet<u64> = stored
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        self.acknowledged
            .iter()
            .copied()
            .filter(|id| !stored.contains(id))
            .collect()
    }
}
