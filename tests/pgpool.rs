//! The Pgpool-II tier (with_pgpool) deployed to the lab: pgpool on the three hosts in front of
//! Patroni, its watchdog holding the VIP (delegate IP). One cluster, scenarios in sequence,
//! each ending healthy: a re-run changes nothing; seeds/000's verification (a write lands on
//! the primary, reads are spread over the replicas, a read in a transaction that wrote goes to
//! the primary); `check` green, and red while pgpool is down on a host; the VIP holder powered
//! off (the VIP moves, clients reconnect); the leader cut off while a client writes through
//! the VIP (writes resume on the new primary, none acknowledged is lost, the old leader comes
//! back as a replica that pgpool reads from again).

mod common;

use common::client::{psql, Client};
use common::lab::{assert_nothing_changed, ok, Run, TestLab};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PASSWORD: &str = "app-pw-p-7731";
const VIP: &str = "10.77.0.100";
const PORT: u16 = 9999;

const VARS: &str = r#"
with_pgpool: true
synchronous_mode: true
postgresql_allowed_networks: ["10.77.0.1/32"]
postgresql_users:
  - { name: app, password: "app-pw-p-7731" }
postgresql_databases:
  - { db: appdb, owner: app }
"#;

const NODES: [(&str, &str); 3] = [
    ("pgnode01", "10.77.0.11"),
    ("pgnode02", "10.77.0.12"),
    ("pgnode03", "10.77.0.13"),
];

#[test]
fn pgpool_tier_splits_reads_and_follows_patroni() {
    let s = Suite::deploy();

    // A re-run changes nothing.
    let at = Instant::now();
    let again = ok(s.cluster());
    assert_nothing_changed(&again, &NODES.map(|(n, _)| n));
    eprintln!("[pgpool] re-run: nothing changed ({:.1?})", at.elapsed());

    // seeds/000's verification through the delegate IP.
    let at = Instant::now();
    s.sql(
        "CREATE TABLE seen (id int PRIMARY KEY, at text DEFAULT host(inet_server_addr())); \
           CREATE TABLE writes (scenario text, id int, PRIMARY KEY (scenario, id))",
    );
    let leader = s.leader().expect("a leader");
    let wrote_on = s.sql("INSERT INTO seen (id) VALUES (1) RETURNING at");
    assert_eq!(wrote_on, ip_of(leader), "a write lands on the primary");
    let before = s.selects();
    let mut reads: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        *reads
            .entry(s.sql("SELECT host(inet_server_addr())"))
            .or_default() += 1;
    }
    let replicas: Vec<&str> = NODES
        .iter()
        .filter(|(n, _)| *n != leader)
        .map(|(_, ip)| *ip)
        .collect();
    assert!(
        reads.keys().all(|ip| replicas.contains(&ip.as_str())) && reads.len() == 2,
        "20 reads spread over both replicas {replicas:?}, none on the primary: {reads:?}"
    );
    let after = s.selects();
    for ip in &replicas {
        assert!(
            after[*ip] > before[*ip],
            "pool_nodes' select_cnt grows on {ip}: {before:?} -> {after:?}"
        );
    }
    let in_tx = s.session(&[
        "BEGIN",
        "INSERT INTO seen (id) VALUES (2)",
        "SELECT host(inet_server_addr())",
        "COMMIT",
    ]);
    assert!(
        in_tx.lines().any(|l| l == ip_of(leader)),
        "a read after a write in the same transaction goes to the primary: {in_tx}"
    );
    eprintln!(
        "[pgpool] verification: write on {leader}, reads {reads:?}, read in the writing transaction on the primary ({:.1?})",
        at.elapsed()
    );

    // check: green with pgpool's view; red while pgpool is down on a host.
    let green = ok(s.check());
    let holder = s.vip_holder();
    assert!(
        green.contains(&format!("VIP 10.77.0.100: {holder}"))
            && green.contains(&format!("{holder} Pgpool-II: ")),
        "check shows the VIP holder's pool_nodes:\n{green}"
    );
    assert!(
        green.contains(&format!("{leader} up primary")) && green.contains("healthy"),
        "{green}"
    );
    let other = NODES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != holder)
        .unwrap();
    s.on(other, "systemctl stop pgpool2");
    let red = s.check();
    assert_eq!(red.code, 2, "{}", red.out);
    assert!(
        red.out
            .contains(&format!("{other}: Pgpool-II does not answer on port 9999")),
        "{}",
        red.out
    );
    s.on(other, "systemctl start pgpool2");
    s.green(90);

    // The VIP holder powered off (a replica: the VIP first leaves the leader if it is there).
    let at = Instant::now();
    if s.vip_holder() == s.leader().unwrap() {
        let from = s.vip_holder();
        s.on(&from, "systemctl restart pgpool2");
        s.until(60, "the VIP leaves the leader", || {
            let h = s.vip_holders();
            h.len() == 1 && h[0] != from
        });
        s.green(90);
    }
    let holder = s.vip_holder();
    let reader = Client::read(&s.url(VIP), PASSWORD);
    std::thread::sleep(Duration::from_secs(2));
    ok(s.lab.lab(&["stop", &holder]));
    let off = Instant::now();
    s.until(60, "the VIP moves to another pgpool host", || {
        let h = s.vip_holders();
        h.len() == 1 && h[0] != holder
    });
    let moved = off.elapsed();
    s.until(60, "reads answer through the VIP", || {
        psql(&s.url(VIP), PASSWORD, "SELECT 1").is_ok()
    });
    let answered = off.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let r = reader.stop();
    eprintln!(
        "[pgpool] VIP holder {holder} off: the VIP moved after {:.1} s, reads answered again after {:.1} s; reads {} ({} failed, longest gap {:.1} s); errors {:?}",
        moved.as_secs_f64(),
        answered.as_secs_f64(),
        r.attempts,
        r.failed,
        r.longest_gap.as_secs_f64(),
        r.errors
    );
    assert!(r.last_ok, "reads answer again: {:?}", r.errors);
    ok(s.lab.lab(&["start", &holder]));
    s.green(180);
    eprintln!("[pgpool] VIP holder scenario ({:.1?})", at.elapsed());

    // The leader cut off while a client writes through the VIP.
    let at = Instant::now();
    let old = s.leader().expect("a leader");
    let writer = Client::write(&s.url(VIP), PASSWORD, "cut");
    std::thread::sleep(Duration::from_secs(2));
    ok(s.lab.lab(&["cut", old]));
    let cut = Instant::now();
    s.until(90, "another member leads", || {
        s.leader().is_some_and(|n| n != old)
    });
    let promoted = cut.elapsed();
    let new = s.leader().unwrap();
    s.until(
        90,
        "a write through the VIP lands on the new primary",
        || {
            psql(
                &s.url(VIP),
                PASSWORD,
                "INSERT INTO seen (id) SELECT coalesce(max(id), 0) + 1 FROM seen RETURNING at",
            )
            .is_ok_and(|at| at == ip_of(new))
        },
    );
    let resumed = cut.elapsed();
    ok(s.lab.lab(&["heal", old]));
    s.green(180);
    std::thread::sleep(Duration::from_secs(2));
    let w = writer.stop();
    let stored = s.sql("SELECT string_agg(id::text, ' ') FROM writes WHERE scenario = 'cut'");
    let lost = w.missing_from(&stored);
    eprintln!(
        "[pgpool] leader {old} cut off: {new} promoted after {:.1} s, writes through the VIP on it after {:.1} s; writes {} ({} failed, longest without one {:.1} s, {} acknowledged lost); errors {:?}",
        promoted.as_secs_f64(),
        resumed.as_secs_f64(),
        w.attempts,
        w.failed,
        w.longest_gap.as_secs_f64(),
        lost.len(),
        w.errors
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(w.last_ok, "writes work again: {:?}", w.errors);
    // The old leader is a replica pgpool reads from again.
    let mut on_old = 0;
    for _ in 0..20 {
        if s.sql("SELECT host(inet_server_addr())") == ip_of(old) {
            on_old += 1;
        }
    }
    assert!(on_old > 0, "no read of 20 went to {old}, back as a replica");
    eprintln!(
        "[pgpool] {old} back as a replica: {on_old} of 20 reads went to it ({:.1?})",
        at.elapsed()
    );

    let again = ok(s.cluster());
    assert_nothing_changed(&again, &NODES.map(|(n, _)| n));
    eprintln!("[pgpool] all in {:.0?}", s.started.elapsed());
}

struct Suite {
    lab: TestLab,
    inv: String,
    vars_arg: String,
    bundle_var: String,
    ca: std::path::PathBuf,
    started: Instant,
}

impl Suite {
    fn deploy() -> Suite {
        let started = Instant::now();
        let lab = TestLab::up();
        let bundle = lab.bundle();
        let vars = lab.tmp.path().join("pgpool.yml");
        std::fs::write(&vars, VARS).unwrap();
        let s = Suite {
            inv: lab.inventory(),
            vars_arg: format!("@{}", vars.display()),
            bundle_var: format!("package_bundle={}", bundle.display()),
            ca: lab.dir.join("pgdeploy-tls/ca.crt"),
            lab,
            started,
        };
        let first = ok(s.cluster());
        assert!(
            first.contains("Pgpool-II on 10.77.0.100: postgresql://10.77.0.100:9999/postgres"),
            "{first}"
        );
        eprintln!("[pgpool] deployed in {:.0?}", started.elapsed());
        s
    }

    fn cluster(&self) -> Run {
        self.lab.pgdeploy(&[
            "cluster",
            "-i",
            &self.inv,
            "-e",
            &self.bundle_var,
            "-e",
            &self.vars_arg,
        ])
    }

    fn check(&self) -> Run {
        self.lab
            .pgdeploy(&["check", "-i", &self.inv, "-e", &self.vars_arg])
    }

    /// Waits until check is green.
    fn green(&self, limit: u64) {
        let start = Instant::now();
        loop {
            let r = self.check();
            if r.code == 0 {
                return;
            }
            if start.elapsed() > Duration::from_secs(limit) {
                panic!("check is not green within {limit} s:\n{}", r.out);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn url(&self, host: &str) -> String {
        format!(
            "postgresql://app@{host}:{PORT}/appdb?sslmode=verify-full&sslrootcert={}",
            self.ca.display()
        )
    }

    /// One statement through the VIP, retried for up to 30 s; its output.
    fn sql(&self, sql: &str) -> String {
        let mut last = String::new();
        for _ in 0..30 {
            match psql(&self.url(VIP), PASSWORD, sql) {
                Ok(out) => return out,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("{sql}: {last}")
    }

    /// Several statements in one session through the VIP (each its own query); the output.
    fn session(&self, statements: &[&str]) -> String {
        let mut cmd = std::process::Command::new("psql");
        cmd.arg(self.url(VIP)).arg("-Atq");
        for st in statements {
            cmd.args(["-c", st]);
        }
        let o = cmd
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql (apt-get install -y postgresql-client)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// SHOW pool_nodes' select_cnt per backend address, from the pgpool behind the VIP.
    fn selects(&self) -> HashMap<String, u64> {
        self.sql("SHOW pool_nodes")
            .lines()
            .map(|l| l.split('|').collect::<Vec<_>>())
            .filter(|c| c.len() > 8)
            .map(|c| (c[1].to_string(), c[8].parse().unwrap_or(0)))
            .collect()
    }

    /// A shell command on `host`; it must succeed.
    fn on(&self, host: &str, cmd: &str) {
        let yaml = format!(
            "- hosts: {host}\n  gather_facts: no\n  tasks:\n    - shell: {}\n",
            serde_json::to_string(cmd).unwrap()
        );
        ok(self.lab.play("on.yml", &yaml, &[]));
    }

    /// The hosts that have the VIP on an interface (unreachable hosts count as not).
    fn vip_holders(&self) -> Vec<String> {
        let r = self.lab.play(
            "vip.yml",
            "- hosts: postgres_cluster\n  gather_facts: no\n  tasks:\n    - command: ip -o -4 addr show\n      register: a\n      changed_when: false\n    - debug: msg=\"holder {{ inventory_hostname }}\"\n      when: \"' 10.77.0.100/' in a.stdout\"\n",
            &["--connect-timeout", "3"],
        );
        r.out
            .lines()
            .filter_map(|l| {
                l.split_once("=> holder ")
                    .map(|(_, h)| h.trim().to_string())
            })
            .collect()
    }

    fn vip_holder(&self) -> String {
        let mut h = Vec::new();
        self.until(60, "one host holds the VIP", || {
            h = self.vip_holders();
            h.len() == 1
        });
        h.remove(0)
    }

    /// The member whose Patroni says it is the primary.
    fn leader(&self) -> Option<&'static str> {
        NODES
            .iter()
            .find(|(_, ip)| common::tls::https_get(ip, 8008, "/primary", &self.ca, None) == Ok(200))
            .map(|(n, _)| *n)
    }

    fn until(&self, limit: u64, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(limit),
                "{what}: not within {limit} s"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn ip_of(host: &str) -> &'static str {
    NODES
        .iter()
        .find(|(n, _)| *n == host)
        .expect("a lab host")
        .1
}
