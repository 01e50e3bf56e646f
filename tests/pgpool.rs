//! The Pgpool-II tier (with_pgpool) deployed to the lab: pgpool on the three hosts in front of
//! Patroni, its watchdog holding the VIP (delegate IP). One cluster, scenarios in sequence,
//! each ending healthy: a re-run changes nothing; seeds/000's verification (a write lands on
//! the primary, reads are spread over the replicas, a read in a transaction that wrote goes to
//! the primary); `check` green, and red while pgpool is down on a host; the VIP holder powered
//! off (the VIP moves, clients reconnect); the leader cut off while a client writes through
//! the VIP (writes resume on the new primary, none acknowledged is lost, the old leader comes
//! back as a replica that pgpool reads from again); the primary detached by pgpool alone (a
//! blip) attached again by pgdeploy-pgpool-follow; add-node and remove-node changing the
//! backends while a client writes; a pgpool.conf change restarting pgpool one
//! host at a time with a client reading.

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
    let again = ok(s.cluster(&[]));
    assert_nothing_changed(&again, &NODES.map(|(n, _)| n));
    eprintln!("[pgpool] re-run: nothing changed ({:.1?})", at.elapsed());

    // A user name pool_passwd cannot hold is refused before anything changes.
    let bad = s.cluster(&[
        "-e",
        r#"{"postgresql_users": [{"name": "a:b", "password": "pw-1"}]}"#,
    ]);
    assert_ne!(bad.code, 0, "{}", bad.out);
    assert!(
        bad.out.contains(
            "postgresql_users: the name a:b has a `:`, which Pgpool-II's pool_passwd cannot hold"
        ),
        "{}",
        bad.out
    );

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
    // seeds/000's verification as check shows it: reads on the replicas only, the read after
    // a write on the primary.
    let routing = green
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "Pgpool-II routing (through {holder}): 6 reads went to "
            ))
        })
        .unwrap_or_else(|| panic!("check shows pgpool's routing:\n{green}"));
    let (reads, written) = routing
        .split_once("; a read after a write in the same transaction went to ")
        .unwrap();
    assert_eq!(written, leader, "{routing}");
    let read_hosts: Vec<&str> = reads
        .rsplit("went to ")
        .next()
        .unwrap()
        .split(' ')
        .collect();
    assert!(
        read_hosts.len() == 6 && !read_hosts.contains(&leader),
        "six reads, none on the leader: {routing}"
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

    // pgpool detaches the primary, which stays the primary (a blip shorter than Patroni's
    // ttl): once pgpool's search for another primary has ended (search_primary_node_timeout,
    // 50 s), pgdeploy-pgpool-follow attaches it again and writes work again.
    let leader = s.leader().expect("a leader");
    let id = NODES.iter().position(|(n, _)| *n == leader).unwrap();
    let holder = s.vip_holder();
    s.on(
        &holder,
        &format!("PCPPASSFILE=/etc/pgpool2/pcppass pcp_detach_node -h /var/run/postgresql -p 9898 -U pgdeploy_pcp -w -n {id}"),
    );
    let detached = Instant::now();
    s.until(120, "pgpool has the primary up again", || {
        psql(
            &s.url(VIP),
            PASSWORD,
            "INSERT INTO seen (id) SELECT coalesce(max(id), 0) + 1 FROM seen RETURNING at",
        )
        .is_ok_and(|at| at == ip_of(leader))
    });
    eprintln!(
        "[pgpool] the primary {leader} detached by pgpool: attached again and writing after {:.1} s",
        detached.elapsed().as_secs_f64()
    );
    s.green(60);

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

    let again = ok(s.cluster(&[]));
    assert_nothing_changed(&again, &NODES.map(|(n, _)| n));

    // add-node: a fourth member becomes a backend of every pgpool (a rolling restart) while a
    // client writes through the VIP; remove-node takes it out of the backends again.
    let at = Instant::now();
    let writer = Client::write(&s.url(VIP), PASSWORD, "add");
    ok(s.lab.lab(&["add"]));
    let added = ok(s.pgdeploy(&["add-node"], &[]));
    assert!(added.contains("adding pgnode04"), "{added}");
    let backends = s.sql("SHOW pool_nodes");
    assert!(
        backends.contains("|10.77.0.14|5432|up|"),
        "pgnode04 is a backend, up:\n{backends}"
    );
    let mut on_new = 0;
    for _ in 0..30 {
        if s.sql("SELECT host(inet_server_addr())") == "10.77.0.14" {
            on_new += 1;
        }
    }
    assert!(on_new > 0, "no read of 30 went to pgnode04");
    let removed = ok(s.pgdeploy(&["remove-node", "--node", "pgnode04"], &[]));
    assert!(removed.contains("pgnode04 left the cluster"), "{removed}");
    s.lab.forget("pgnode04");
    std::thread::sleep(Duration::from_secs(2));
    let w = writer.stop();
    let stored = s.sql("SELECT string_agg(id::text, ' ') FROM writes WHERE scenario = 'add'");
    let lost = w.missing_from(&stored);
    let backends = s.sql("SHOW pool_nodes");
    assert!(
        !backends.contains("10.77.0.14") && backends.lines().count() == 3,
        "pgnode04 is no backend any more:\n{backends}"
    );
    eprintln!(
        "[pgpool] add-node and remove-node of pgnode04 ({on_new} of 30 reads went to it): writes {} ({} failed, longest without one {:.1} s, {} acknowledged lost); errors {:?} ({:.1?})",
        w.attempts,
        w.failed,
        w.longest_gap.as_secs_f64(),
        lost.len(),
        w.errors,
        at.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(w.last_ok, "writes work after remove-node: {:?}", w.errors);
    s.green(120);
    assert_nothing_changed(&ok(s.cluster(&[])), &NODES.map(|(n, _)| n));

    // A pgpool.conf change restarts pgpool one host at a time while a client reads through
    // the VIP; a re-run with it changes nothing.
    let at = Instant::now();
    let reader = Client::read(&s.url(VIP), PASSWORD);
    std::thread::sleep(Duration::from_secs(2));
    let changed = ok(s.cluster(&["-e", "pgpool_num_init_children=40"]));
    assert!(
        changed.contains("TASK [pgpool restarts for a changed configuration, one host at a time]"),
        "{changed}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let r = reader.stop();
    eprintln!(
        "[pgpool] pgpool.conf changed, rolling restart: reads {} ({} failed, longest gap {:.1} s); errors {:?} ({:.1?})",
        r.attempts,
        r.failed,
        r.longest_gap.as_secs_f64(),
        r.errors,
        at.elapsed()
    );
    assert!(r.last_ok, "reads answer after the restarts: {:?}", r.errors);
    let again = ok(s.cluster(&["-e", "pgpool_num_init_children=40"]));
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
        // README's first command on bare hosts: the whole plan, exit 0, nothing changed.
        let plan = ok(s.cluster(&["--check", "--diff"]));
        assert!(
            plan.contains("TASK [pgpool.conf]") && plan.contains("+delegate_IP = '10.77.0.100'"),
            "{plan}"
        );
        let first = ok(s.cluster(&[]));
        assert!(
            first.contains("Pgpool-II on 10.77.0.100: postgresql://10.77.0.100:9999/postgres"),
            "{first}"
        );
        eprintln!("[pgpool] deployed in {:.0?}", started.elapsed());
        s
    }

    fn cluster(&self, extra: &[&str]) -> Run {
        self.pgdeploy(&["cluster"], extra)
    }

    /// A pgdeploy command with the lab's inventory, the bundle and the test's vars, then
    /// `extra` (a later -e wins).
    fn pgdeploy(&self, command: &[&str], extra: &[&str]) -> Run {
        let common = [
            "-i",
            &self.inv,
            "-e",
            &self.bundle_var,
            "-e",
            &self.vars_arg,
        ];
        self.lab.pgdeploy(&[command, &common, extra].concat())
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
        self.lab.on(host, cmd)
    }

    /// The hosts that have the VIP on an interface (unreachable hosts count as not).
    fn vip_holders(&self) -> Vec<String> {
        self.lab.vip_holders()
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
        common::lab::leader(&NODES, &self.ca)
    }

    fn until(&self, limit: u64, what: &str, f: impl FnMut() -> bool) {
        common::lab::until(limit, what, f)
    }
}

fn ip_of(host: &str) -> &'static str {
    NODES
        .iter()
        .find(|(n, _)| *n == host)
        .expect("a lab host")
        .1
}
