//! The HA fault table of SPEC.md (seeds/004) on one Type A cluster with synchronous_mode, HAProxy
//! and keepalived on the database hosts. The faults run one after the other on the same cluster,
//! each with a client on this machine writing one row per transaction through VIP:5000 and one
//! reading through VIP:5001; each fault is shown by `pgdeploy check` (exit 2, the right problem)
//! and ends with the cluster healthy again (check green) and converged (a `cluster` re-run
//! changes nothing). What the clients measured is printed as the rows of README's table "HA,
//! measured in the lab".

mod common;

use common::client::{psql, Client, Measured};
use common::lab::{ok, Run, TestLab};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VARS: &str = r#"
with_haproxy_load_balancing: true
synchronous_mode: true
postgresql_users:
  - { name: app, password: "app-pw-f-83d1" }
postgresql_databases:
  - { db: appdb, owner: app }
# The clients run on this machine, the lab bridge's address.
postgresql_allowed_networks: ["10.77.0.1/32"]
"#;
const PASSWORD: &str = "app-pw-f-83d1";
const VIP: &str = "10.77.0.100";

const NODES: [(&str, &str); 3] = [
    ("pgnode01", "10.77.0.11"),
    ("pgnode02", "10.77.0.12"),
    ("pgnode03", "10.77.0.13"),
];

#[test]
fn every_fault_of_the_ha_table_with_clients_writing() {
    common::lab::need("psql", "postgresql-client");
    let s = Suite::deploy();

    s.fault(
        "keepalived killed on the VIP holder",
        "the VIP moves to another balancer; 5000/5001 keep answering",
        |s| {
            let holder = s.vip_holder();
            // SIGKILL of the main process (its VRRP child ends with it).
            s.on(
                &holder,
                "kill -KILL $(systemctl show -p MainPID --value keepalived)",
            );
            s.until(30, "the VIP moves to another balancer", || {
                s.vip_holders().iter().any(|h| *h != holder)
            });
            s.check_red(&[&format!("{holder}: keepalived is not running")]);
            s.on(&holder, "systemctl start keepalived");
            format!("the VIP left {holder}")
        },
    );

    s.fault(
        "HAProxy stopped (kept down) on the VIP holder",
        "keepalived's check moves the VIP; 5000/5001 keep answering",
        |s| {
            let holder = s.vip_holder();
            s.on(&holder, "systemctl stop haproxy");
            s.until(30, "the VIP leaves the host without HAProxy", || {
                let now = s.vip_holders();
                now.len() == 1 && now[0] != holder
            });
            s.check_red(&[&format!("{holder}: HAProxy statistics do not answer")]);
            s.on(&holder, "systemctl start haproxy");
            format!("the VIP left {holder}")
        },
    );

    s.fault(
        "Patroni stopped on the leader",
        "a replica is promoted within 30 s; 5000 follows",
        |s| {
            s.leader_goes(
                (30, 60),
                "Patroni does not answer",
                |old| s.on(old, "systemctl stop patroni"),
                |old| s.on(old, "systemctl start patroni"),
            )
        },
    );

    s.fault(
        "PostgreSQL killed (SIGKILL of the postmaster) on the leader",
        "Patroni starts it again; no failover",
        |s| {
            let leader = s.leader().expect("a leader");
            let seen = LeaderWatch::start(s.ca.clone());
            s.on(
                leader,
                "kill -KILL $(head -1 /var/lib/postgresql/15/main/postmaster.pid)",
            );
            s.until(60, "the leader takes writes again", || {
                s.leader() == Some(leader) && s.direct_write(leader, "sigkill").is_ok()
            });
            let leaders = seen.stop();
            assert_eq!(
                leaders,
                vec![leader],
                "no failover while Patroni restarts it"
            );
            format!("{leader} stayed the leader")
        },
    );

    s.fault(
        "etcd stopped on one member",
        "no effect on the cluster",
        |s| {
            let leader = s.leader().expect("a leader");
            let member = s.replicas()[0];
            s.on(member, "systemctl stop etcd");
            s.check_red(&[&format!("{member}: etcd is not healthy")]);
            // check --watch shows it again and again until interrupted (each check takes
            // about 6 s now: etcdctl waits its 5 s for the stopped member).
            let watched = s.watch_check(Duration::from_secs(15));
            assert!(
                watched.matches("check: exit 2; again in 1 s").count() >= 2
                    && watched.contains(&format!("{member}: etcd is not healthy")),
                "{watched}"
            );
            std::thread::sleep(Duration::from_secs(5));
            assert_eq!(s.leader(), Some(leader), "the leader stays");
            s.on(member, "systemctl start etcd");
            format!("etcd on {member} stopped")
        },
    );

    s.fault(
        "etcd stopped on two of three members",
        "the leader demotes to read-only (no split brain); writes fail until etcd is back",
        |s| {
            let replicas = s.replicas();
            let probe = DirectWrites::start(s.ca.clone());
            for r in &replicas {
                s.on(r, "systemctl stop etcd");
            }
            let stopped = Instant::now();
            s.until(60, "no member takes writes", || {
                NODES
                    .iter()
                    .all(|(n, _)| s.direct_write(n, "quorum").is_err())
            });
            let demoted = stopped.elapsed();
            s.check_red(&["etcd has no quorum", "no leader"]);
            for r in &replicas {
                s.on(r, "systemctl start etcd");
            }
            s.until(60, "a leader again", || s.leader().is_some());
            std::thread::sleep(Duration::from_secs(2));
            let (rounds, accepted) = probe.stop();
            let both: Vec<_> = rounds.iter().filter(|r| r.len() > 1).collect();
            assert!(both.is_empty(), "two members took writes at once: {both:?}");
            // Every write a member acknowledged directly is still there: none was made on a
            // member that was rewound afterwards.
            let stored = s.sql(5000, "SELECT member || ':' || round FROM direct");
            let lost: Vec<_> = accepted
                .iter()
                .filter(|w| !stored.split_whitespace().any(|x| x == w.as_str()))
                .collect();
            assert!(lost.is_empty(), "direct writes lost: {lost:?}");
            format!(
                "demoted {:.0} s after the stop; {} direct writes, all kept",
                demoted.as_secs_f64(),
                accepted.len()
            )
        },
    );

    s.fault(
        "etcd stopped on two of three members, with patroni_failsafe_mode: true",
        "the leader stays primary and takes writes (every member answers it); no failover",
        |s| {
            let failsafe = |on: bool| {
                let var = format!("patroni_failsafe_mode={on}");
                let out =
                    ok(s.lab
                        .pgdeploy(&["cluster", "-i", &s.inv, "-e", &s.vars_arg, "-e", &var]));
                assert!(out.contains("failsafe_mode: "), "PATCH /config:\n{out}");
            };
            failsafe(true);
            // Failsafe mode protects only once the leader has written the members into etcd
            // (its /failsafe key, on its next loop) and every member has read them.
            s.until(30, "every member knows the failsafe members", || {
                NODES.iter().all(|(_, ip)| {
                    common::tls::https_get(ip, 8008, "/failsafe", &s.ca, None) == Ok(200)
                })
            });
            let leader = s.leader().expect("a leader");
            let replicas = s.replicas();
            for r in &replicas {
                s.on(r, "systemctl stop etcd");
            }
            // Past ttl (30 s) and a loop: without failsafe mode the leader has demoted by now.
            std::thread::sleep(Duration::from_secs(45));
            let still = s.leader();
            let write = s.direct_write(leader, "failsafe");
            s.check_red(&["etcd has no quorum"]);
            for r in &replicas {
                s.on(r, "systemctl start etcd");
            }
            s.until(60, "the leader in etcd again", || s.leader().is_some());
            failsafe(false);
            assert_eq!(
                still,
                Some(leader),
                "the leader stayed primary without etcd"
            );
            assert!(
                write.is_ok(),
                "the leader took a write without etcd: {write:?}"
            );
            format!("{leader} stayed primary 45 s without etcd's quorum")
        },
    );

    for (how, fault, back) in [
        ("powered off", "stop", "start"),
        ("cut off the network", "cut", "heal"),
    ] {
        s.fault(
            &format!("the leader's host {how}"),
            "failover within ttl + loop_wait (40 s); VIP and 5000 follow; it rejoins as a replica",
            |s| {
                s.leader_goes(
                    (40, 120),
                    "unreachable over SSH",
                    |old| drop(ok(s.lab.lab(&[fault, old]))),
                    |old| drop(ok(s.lab.lab(&[back, old]))),
                )
            },
        );
    }

    s.fault(
        "a replica's host powered off",
        "5001 keeps answering from the other replica",
        |s| {
            let holder = s.vip_holder();
            let replica = *s
                .replicas()
                .iter()
                .find(|r| **r != holder)
                .expect("a replica without the VIP");
            ok(s.lab.lab(&["stop", replica]));
            s.check_red(&[&format!("{replica}: unreachable over SSH")]);
            std::thread::sleep(Duration::from_secs(5));
            ok(s.lab.lab(&["start", replica]));
            format!("{replica} off")
        },
    );

    s.fault(
        "a balancer's host powered off (the VIP holder, a replica)",
        "the VIP moves to another balancer; 5000/5001 keep answering",
        |s| {
            let balancer = s.replicas()[0];
            s.move_vip_to(balancer);
            ok(s.lab.lab(&["stop", balancer]));
            s.until(30, "the VIP moves to another balancer", || {
                let now = s.vip_holders();
                now.len() == 1 && now[0] != balancer
            });
            s.check_red(&[&format!("{balancer}: unreachable over SSH")]);
            ok(s.lab.lab(&["start", balancer]));
            format!("{balancer} off")
        },
    );

    s.print_table();
}

struct Suite {
    lab: TestLab,
    inv: String,
    vars_arg: String,
    ca: PathBuf,
    started: Instant,
    rows: std::cell::RefCell<Vec<String>>,
}

impl Suite {
    fn deploy() -> Suite {
        let started = Instant::now();
        let lab = TestLab::up();
        let bundle = lab.bundle();
        let vars = lab.tmp.path().join("faults.yml");
        std::fs::write(&vars, VARS).unwrap();
        let s = Suite {
            inv: lab.inventory(),
            vars_arg: format!("@{}", vars.display()),
            ca: lab.dir.join("pgdeploy-tls/ca.crt"),
            lab,
            started,
            rows: Default::default(),
        };
        let bundle_var = format!("package_bundle={}", bundle.display());
        ok(s.lab.pgdeploy(&[
            "cluster",
            "-i",
            &s.inv,
            "-e",
            &bundle_var,
            "-e",
            &s.vars_arg,
        ]));
        s.sql(
            5000,
            "CREATE TABLE writes (scenario text, id int, PRIMARY KEY (scenario, id)); \
             CREATE TABLE direct (member text, round int)",
        );
        ok(s.check());
        eprintln!("[faults] deployed in {:.0?}", s.started.elapsed());
        s
    }

    /// Runs one fault with the clients writing and reading through the VIP: `inject` breaks
    /// something, shows it in check, and undoes it; then the cluster must be healthy again,
    /// and every acknowledged write there (synchronous_mode: none may be lost).
    fn fault(&self, fault: &str, expected: &str, inject: impl FnOnce(&Suite) -> String) {
        let number = self.rows.borrow().len() + 1;
        if !selected(number) {
            eprintln!("[faults] {number}. {fault}: left out (PGDEPLOY_FAULTS)");
            self.rows
                .borrow_mut()
                .push(format!("| {fault} | left out |"));
            return;
        }
        let at = Instant::now();
        let scenario = format!("f{number}");
        let writer = Client::write(&self.url(VIP, 5000), PASSWORD, &scenario);
        let reader = Client::read(&self.url(VIP, 5001), PASSWORD);
        std::thread::sleep(Duration::from_secs(2));
        let note = inject(self);
        let undone = at.elapsed();
        self.green(180);
        let green = at.elapsed();
        // Writes and reads after the recovery.
        std::thread::sleep(Duration::from_secs(3));
        let (w, r) = (writer.stop(), reader.stop());
        let stored = self.sql(
            5000,
            &format!("SELECT string_agg(id::text, ' ') FROM writes WHERE scenario = '{scenario}'"),
        );
        let lost = w.missing_from(&stored);
        let summary = format!(
            "{fault}: {note}; writes {} ({} failed, longest without a write {:.1} s, {} acknowledged lost); \
             reads {} ({} failed, longest gap {:.1} s); fault undone at {:.1} s, check green at {:.1} s, {:.0} s in all",
            w.attempts,
            w.failed,
            w.longest_gap.as_secs_f64(),
            lost.len(),
            r.attempts,
            r.failed,
            r.longest_gap.as_secs_f64(),
            undone.as_secs_f64(),
            green.as_secs_f64(),
            at.elapsed().as_secs_f64()
        );
        eprintln!(
            "[faults] {summary}\n  writer's errors: {:?}\n  reader's errors: {:?}",
            w.errors, r.errors
        );
        assert!(
            lost.is_empty(),
            "acknowledged writes lost {lost:?}: {summary}"
        );
        // Writes work again; reads answer again (a read may still meet a replica that came
        // back a moment ago: every error is printed above, with when it came).
        assert!(
            w.last_ok && r.last_three_ok > 0,
            "{summary}\nwriter: {:?}\nreader: {:?}",
            w.errors,
            r.errors
        );
        // Converged: a re-run changes nothing (after a failover too).
        self.nothing_changes();
        self.rows
            .borrow_mut()
            .push(table_row(fault, expected, &w, &r, lost.len()));
    }

    fn url(&self, host: &str, port: u16) -> String {
        app_url(&self.ca, host, port)
    }

    /// One statement through VIP:`port`, retried for up to 30 s; its output.
    fn sql(&self, port: u16, sql: &str) -> String {
        let mut last = String::new();
        for _ in 0..30 {
            match psql(&self.url(VIP, port), PASSWORD, sql) {
                Ok(out) => return out,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("{sql}: {last}")
    }

    /// A row written straight to `host`'s PostgreSQL (not through the VIP).
    fn direct_write(&self, host: &str, what: &str) -> Result<String, String> {
        let ip = ip_of(host);
        psql(
            &self.url(ip, 5432),
            PASSWORD,
            &format!("INSERT INTO direct VALUES ('{host}', -1) RETURNING '{what}'"),
        )
    }

    fn check(&self) -> Run {
        self.lab.pgdeploy(&[
            "check",
            "-i",
            &self.inv,
            "-e",
            &self.vars_arg,
            "--connect-timeout",
            "3",
        ])
    }

    /// `check --watch 1` for `how_long`, then interrupted as by Ctrl-C (SIGINT); its output.
    fn watch_check(&self, how_long: Duration) -> String {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
            .args([
                "check",
                "--watch",
                "1",
                "-i",
                &self.inv,
                "-e",
                &self.vars_arg,
            ])
            .args(["--connect-timeout", "3"])
            .env("HOME", &self.lab.home)
            .env_remove("SSH_AUTH_SOCK")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(how_long);
        let interrupted = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(interrupted.success());
        let o = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        // Interrupted while waiting: the last report's exit; while asking: 130.
        assert!(
            matches!(o.status.code(), Some(2) | Some(130)),
            "check --watch exited {:?}:\n{out}",
            o.status.code()
        );
        out
    }

    /// check exits 2 and names every problem in `expected` (within 60 s: Patroni and etcd
    /// notice some faults only after a loop).
    fn check_red(&self, expected: &[&str]) {
        let start = Instant::now();
        loop {
            let r = self.check();
            if r.code == 2 && expected.iter().all(|e| r.out.contains(e)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "check (exit {}) does not report {expected:?}:\n{}",
                r.code,
                r.out
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Waits until check is green; the last report if it is not within `limit` seconds.
    fn green(&self, limit: u64) {
        let start = Instant::now();
        loop {
            let r = self.check();
            if r.code == 0 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(limit),
                "check is not green within {limit} s (exit {}):\n{}",
                r.code,
                r.out
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn nothing_changes(&self) {
        let at = Instant::now();
        let out = ok(self
            .lab
            .pgdeploy(&["cluster", "-i", &self.inv, "-e", &self.vars_arg]));
        common::lab::assert_nothing_changed(&out, &NODES.map(|(n, _)| n));
        eprintln!("[faults] re-run: nothing changed ({:.0?})", at.elapsed());
    }

    /// A shell command on `host` (through pgdeploy run); it must succeed.
    fn on(&self, host: &str, cmd: &str) {
        self.lab.on(host, cmd)
    }

    /// The hosts that have the VIP on an interface (unreachable hosts count as not).
    fn vip_holders(&self) -> Vec<String> {
        self.lab.vip_holders()
    }

    fn vip_holder(&self) -> String {
        let h = self.vip_holders();
        assert_eq!(h.len(), 1, "one VIP holder: {h:?}");
        h[0].clone()
    }

    /// Moves the VIP to `host`: keepalived stopped everywhere else until it holds it, then
    /// started again (nopreempt: the VIP stays).
    fn move_vip_to(&self, host: &str) {
        let others: Vec<&str> = NODES
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != host)
            .collect();
        for o in &others {
            self.on(o, "systemctl stop keepalived");
        }
        self.until(30, "the VIP moves", || self.vip_holders() == [host]);
        for o in &others {
            self.on(o, "systemctl start keepalived");
        }
    }

    /// The member whose Patroni says it is the primary (asked from this machine over https).
    fn leader(&self) -> Option<&'static str> {
        common::lab::leader(&NODES, &self.ca)
    }

    fn role(&self, host: &str) -> Option<&'static str> {
        let ip = ip_of(host);
        if common::tls::https_get(ip, 8008, "/replica", &self.ca, None) == Ok(200) {
            Some("replica")
        } else if common::tls::https_get(ip, 8008, "/primary", &self.ca, None) == Ok(200) {
            Some("leader")
        } else {
            None
        }
    }

    fn replicas(&self) -> Vec<&'static str> {
        let leader = self.leader();
        NODES
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| Some(*n) != leader)
            .collect()
    }

    /// The leader goes (`fault`): another member leads within `limit` seconds, check names
    /// the old one with `shown`; after `undo` it is back as a replica within `rejoin` seconds.
    /// The note.
    fn leader_goes(
        &self,
        (limit, rejoin): (u64, u64),
        shown: &str,
        fault: impl FnOnce(&str),
        undo: impl FnOnce(&str),
    ) -> String {
        let old = self.leader().expect("a leader");
        fault(old);
        let (new, took) = self.new_leader(old, limit);
        self.check_red(&[&format!("{old}: {shown}")]);
        undo(old);
        self.until(rejoin, "the old leader rejoins as a replica", || {
            self.role(old) == Some("replica")
        });
        format!("{new} promoted after {:.1} s", took.as_secs_f64())
    }

    /// Waits for a member other than `old` to become the leader; which one, and how long it
    /// took.
    fn new_leader(&self, old: &str, limit: u64) -> (&'static str, Duration) {
        let start = Instant::now();
        loop {
            if let Some(n) = self.leader().filter(|n| *n != old) {
                return (n, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(limit),
                "no new leader within {limit} s after {old} went"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn until(&self, limit: u64, what: &str, f: impl FnMut() -> bool) {
        common::lab::until(limit, what, f)
    }

    fn print_table(&self) {
        eprintln!(
            "[faults] all faults in {:.0?}\n\n| fault | expected | writes: longest without one | failed writes | acknowledged writes lost | reads on 5001: longest gap |\n|---|---|---|---|---|---|"
        , self.started.elapsed());
        for row in self.rows.borrow().iter() {
            eprintln!("{row}");
        }
    }
}

fn table_row(fault: &str, expected: &str, w: &Measured, r: &Measured, lost: usize) -> String {
    format!(
        "| {fault} | {expected} | {:.1} s | {} of {} | {lost} | {:.1} s |",
        w.longest_gap.as_secs_f64(),
        w.failed,
        w.attempts,
        r.longest_gap.as_secs_f64()
    )
}

/// For working on one fault: PGDEPLOY_FAULTS=5,9 runs only those (numbered as in the table);
/// each one left out is said so. Unset (CI), every fault runs.
fn selected(number: usize) -> bool {
    match std::env::var("PGDEPLOY_FAULTS") {
        Ok(list) => list.split(',').any(|n| n.trim() == number.to_string()),
        Err(_) => true,
    }
}

/// The app's libpq URL for `host:port`, TLS checked against the cluster's CA `ca`.
fn app_url(ca: &std::path::Path, host: &str, port: u16) -> String {
    format!(
        "postgresql://app@{host}:{port}/appdb?sslmode=verify-full&sslrootcert={}",
        ca.display()
    )
}

fn ip_of(host: &str) -> &'static str {
    NODES
        .iter()
        .find(|(n, _)| *n == host)
        .expect("a lab host")
        .1
}

/// Polls every member's /primary from this machine: the members that said they were the
/// primary, in order of first appearance.
struct LeaderWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<&'static str>>,
}

impl LeaderWatch {
    fn start(ca: PathBuf) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !s.load(Ordering::Relaxed) {
                for (n, ip) in NODES {
                    if common::tls::https_get(ip, 8008, "/primary", &ca, None) == Ok(200)
                        && !seen.contains(&n)
                    {
                        seen.push(n);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        LeaderWatch { stop, thread }
    }

    fn stop(self) -> Vec<&'static str> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Writes straight to every member's PostgreSQL (port 5432, not through the VIP), round after
/// round: which members took a write in each round, and every write acknowledged
/// ("member:round").
struct DirectWrites {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<Vec<&'static str>>, Vec<String>)>,
}

impl DirectWrites {
    fn start(ca: PathBuf) -> DirectWrites {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut rounds, mut accepted) = (Vec::new(), Vec::new());
            let mut round = 0;
            while !s.load(Ordering::Relaxed) {
                round += 1;
                let mut took = Vec::new();
                for (n, ip) in NODES {
                    if psql(
                        &app_url(&ca, ip, 5432),
                        PASSWORD,
                        &format!("INSERT INTO direct VALUES ('{n}', {round})"),
                    )
                    .is_ok()
                    {
                        took.push(n);
                        accepted.push(format!("{n}:{round}"));
                    }
                }
                rounds.push(took);
                std::thread::sleep(Duration::from_millis(200));
            }
            (rounds, accepted)
        });
        DirectWrites { stop, thread }
    }

    fn stop(self) -> (Vec<Vec<&'static str>>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
