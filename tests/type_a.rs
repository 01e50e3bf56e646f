//! Type A (HAProxy + keepalived, synchronous_mode) deployed to the lab from bare hosts, then
//! day two: `pgdeploy check` green and red, configuration changes (a reload-only one and a
//! restart-needing one, with a leader all along), a Patroni failover and a HAProxy outage; then
//! hosts change with a client writing: a replica added and removed, a balancer added and removed.

mod common;

use common::lab::{ok, TestLab};
use common::writer;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VARS: &str = r#"
with_haproxy_load_balancing: true
synchronous_mode: true
postgresql_users:
  - { name: app, password: "app-pw-a-51c2" }
postgresql_databases:
  - { db: appdb, owner: app }
"#;

const NODES: [(&str, &str); 3] = [
    ("pgnode01", "10.77.0.11"),
    ("pgnode02", "10.77.0.12"),
    ("pgnode03", "10.77.0.13"),
];

#[test]
fn type_a_deploys_and_survives_day_two() {
    let lab = TestLab::up();
    let bundle = lab.bundle();
    let inv = lab.inventory();
    let vars = lab.tmp.path().join("type-a.yml");
    std::fs::write(&vars, VARS).unwrap();
    let vars_arg = format!("@{}", vars.display());
    let bundle_var = format!("package_bundle={}", bundle.display());
    let cluster = |extra: &[&str]| {
        let mut a = vec!["cluster", "-i", &inv, "-e", &bundle_var, "-e", &vars_arg];
        a.extend_from_slice(extra);
        lab.pgdeploy(&a)
    };
    let check = || lab.pgdeploy(&["check", "-i", &inv, "-e", &vars_arg]);

    let first = ok(cluster(&[]));
    assert!(
        first.contains("HAProxy on 10.77.0.100: read-write postgresql://10.77.0.100:5000/postgres, read-only port 5001, sync replicas port 5002, async replicas port 5003"),
        "{first}"
    );
    let secrets = lab.dir.join("pgdeploy-secrets.yml");
    ok(lab.play(
        "ports.yml",
        PORTS,
        &["-e", &vars_arg, "--vars-file", secrets.to_str().unwrap()],
    ));

    // Datacenters: with pgnode02 in dc1 and pgnode03 in dc2 (patroni_tags), balancers of dc1
    // (balancer_tags) read only from dc1's replicas through 5001; without the tags, from both
    // again.
    let plain_inv = std::fs::read_to_string(&inv).unwrap();
    let mut tagged = plain_inv.clone();
    for (host, ip, dc) in [
        ("pgnode01", "10.77.0.11", "dc1"),
        ("pgnode02", "10.77.0.12", "dc1"),
        ("pgnode03", "10.77.0.13", "dc2"),
    ] {
        let line = format!("{host} ansible_host={ip} hostname={host}");
        assert!(tagged.contains(&line), "{tagged}");
        tagged = tagged.replacen(
            &line,
            &format!("{line} patroni_tags=\"datacenter={dc}\""),
            1,
        );
    }
    tagged.push_str("\n[balancers:vars]\nbalancer_tags=datacenter=dc1\n");
    std::fs::write(&inv, &tagged).unwrap();
    ok(cluster(&[]));
    ok(lab.play(
        "dc.yml",
        &reads_5001_from("['10.77.0.12']"),
        &["-e", &vars_arg],
    ));
    std::fs::write(&inv, &plain_inv).unwrap();
    ok(cluster(&[]));
    ok(lab.play(
        "nodc.yml",
        &reads_5001_from("['10.77.0.12', '10.77.0.13']"),
        &["-e", &vars_arg],
    ));

    // check: green, red while a member is stopped, green again.
    let green = ok(check());
    assert!(green.contains("healthy"), "{green}");
    ok(lab.play("stop.yml", &patroni_on("pgnode03", "stop"), &[]));
    let red = check();
    assert_eq!(red.code, 2, "{}", red.out);
    assert!(
        red.out.contains("pgnode03: Patroni does not answer"),
        "{}",
        red.out
    );
    ok(lab.play("start.yml", &patroni_on("pgnode03", "start"), &[]));
    until(Duration::from_secs(60), "check is green again", || {
        check().code == 0
    });

    let again = ok(cluster(&[]));
    assert_nothing_changed(&again);

    // A reload-only change: shown by --check --diff, which touches nothing; then live, with no
    // restart.
    let dry = ok(cluster(&["-e", "work_mem=8MB", "--check", "--diff"]));
    assert!(
        dry.contains("-work_mem = '4MB'") && dry.contains("+work_mem = '8MB'"),
        "{dry}"
    );
    let before = ok(lab.play("settings.yml", SETTINGS, &[]));
    assert!(
        before.contains("4MB|"),
        "--check changed nothing:\n{before}"
    );
    ok(cluster(&["-e", "work_mem=8MB"]));
    let after = ok(lab.play("settings.yml", SETTINGS, &[]));
    assert_eq!(
        start_times(&before),
        start_times(&after),
        "work_mem needs no restart:\n{before}\n{after}"
    );
    assert_eq!(after.matches("8MB|100|").count(), 3, "{after}");

    // A restart-needing change through Patroni's dynamic configuration: a leader all along.
    let dry = ok(cluster(&[
        "-e",
        "work_mem=8MB",
        "-e",
        "max_connections=150",
        "--check",
    ]));
    assert!(
        dry.contains("postgresql.parameters.max_connections: 100 -> 150"),
        "{dry}"
    );
    let watch = LeaderWatch::start(lab.dir.join("pgdeploy-tls"));
    ok(cluster(&[
        "-e",
        "work_mem=8MB",
        "-e",
        "max_connections=150",
    ]));
    let (polls, leaderless) = watch.stop();
    assert!(polls > 10, "the watch polled {polls} times");
    assert_eq!(
        leaderless, 0,
        "polls without a leader while members restarted"
    );
    let after = ok(lab.play("settings.yml", SETTINGS, &[]));
    assert_eq!(after.matches("8MB|150|").count(), 3, "{after}");
    ok(cluster(&[
        "-e",
        "work_mem=8MB",
        "-e",
        "max_connections=150",
    ]));

    // Patroni stopped on the leader: a replica is promoted within 30 s; 5000 follows, and the
    // row written before is there.
    ok(lab.play("stop.yml", &patroni_on("pgnode01", "stop"), &[]));
    let stopped = Instant::now();
    let mut new_leader = None;
    let ca = lab.dir.join("pgdeploy-tls/ca.crt");
    while new_leader.is_none() && stopped.elapsed() < Duration::from_secs(30) {
        new_leader = NODES[1..]
            .iter()
            .find(|(_, ip)| common::tls::https_get(ip, 8008, "/primary", &ca, None) == Ok(200))
            .map(|(n, _)| *n);
        std::thread::sleep(Duration::from_millis(250));
    }
    let new_leader = new_leader.expect("no replica was promoted within 30 s");
    let promoted_in = stopped.elapsed();
    println!("failover: {new_leader} promoted {promoted_in:?} after Patroni stopped on the leader");
    let follow = ok(lab.play(
        "follow.yml",
        &FOLLOW.replace("NEW_LEADER", new_leader),
        &["-e", &vars_arg],
    ));
    assert!(follow.contains("failed=0"), "{follow}");

    // HAProxy stopped (and kept down) on the VIP holder: keepalived moves the VIP, and 5000
    // keeps answering.
    let holder = vip_holder(&lab);
    ok(lab.play(
        "haproxy-down.yml",
        &format!(
            "- hosts: {holder}\n  gather_facts: no\n  tasks:\n    - command: systemctl stop haproxy\n"
        ),
        &[],
    ));
    until(
        Duration::from_secs(30),
        "the VIP leaves the host without HAProxy",
        || {
            let now = vip_holder(&lab);
            !now.is_empty() && now != holder
        },
    );
    ok(lab.play(
        "through-vip.yml",
        THROUGH_VIP,
        &["-e", &vars_arg, "-l", new_leader],
    ));

    // add-node: a fourth host joins while a client writes through 5000, one row per
    // transaction; no write fails, none acknowledged goes missing; the new member streams and
    // 5001 answers from it; `cluster` afterwards changes nothing (new_node=true still set).
    ok(lab.play(
        "haproxy-up.yml",
        &format!("- hosts: {holder}\n  gather_facts: no\n  tasks:\n    - command: systemctl start haproxy\n"),
        &[],
    ));
    // HAProxy keeps its servers' state across the reloads add-node and remove-node cause
    // (pgdeploy-haproxy-state), and the new member starts DOWN in every pool: no write fails.
    let writer_args = [
        "-e",
        &vars_arg,
        "-e",
        r#"{"writer_host": "pgnode01", "writer_max_failed": 0,
            "writer_url": "postgresql://app@{{ cluster_vip }}:5000/appdb",
            "writer_password": "{{ postgresql_users[0].password }}"}"#,
    ];
    // The same client through the VIP's 5000 from a host that stays, while balancers change.
    let writer_args_vip = [
        "-e",
        &vars_arg,
        "-e",
        r#"{"writer_host": "pgnode02", "writer_max_failed": 50,
            "writer_url": "postgresql://app@{{ cluster_vip }}:5000/appdb",
            "writer_password": "{{ postgresql_users[0].password }}"}"#,
    ];
    let added_at = Instant::now();
    ok(lab.lab(&["add"]));
    ok(lab.play("writer-start.yml", writer::START, &writer_args));
    let added = ok(lab.pgdeploy(&["add-node", "-i", &inv, "-e", &bundle_var, "-e", &vars_arg]));
    assert!(
        added.contains("adding pgnode04 to postgres-cluster"),
        "{added}"
    );
    ok(lab.play("writer-stop.yml", writer::STOP, &writer_args));
    ok(lab.play("new-member.yml", NEW_MEMBER, &["-e", &vars_arg]));
    eprintln!("add-node with a writer: {:.0?}", added_at.elapsed());
    assert_nothing_changed(&ok(cluster(&[])));

    // remove-node: the new replica leaves while the client writes; no write fails. Its data
    // directory stays; the other members and HAProxy forget it; with it out of the inventory,
    // check is green and `cluster` changes nothing.
    let removed_at = Instant::now();
    ok(lab.play("writer-start.yml", writer::START, &writer_args));
    let removed = ok(lab.pgdeploy(&[
        "remove-node",
        "--node",
        "pgnode04",
        "-i",
        &inv,
        "-e",
        &bundle_var,
        "-e",
        &vars_arg,
    ]));
    assert!(removed.contains("pgnode04 left the cluster"), "{removed}");
    std::thread::sleep(Duration::from_secs(3));
    ok(lab.play("writer-stop.yml", writer::STOP, &writer_args));
    ok(lab.play("left.yml", LEFT, &["-e", &vars_arg]));
    eprintln!("remove-node with a writer: {:.0?}", removed_at.elapsed());
    lab.forget("pgnode04");
    let green = ok(check());
    assert!(green.contains("healthy"), "{green}");
    assert!(!green.contains("pgnode04"), "{green}");
    assert_nothing_changed(&ok(cluster(&[])));

    // A new balancer: add-node gives it HAProxy with the current backends and makes its
    // keepalived a peer of the others (the VIP moves to it when theirs stop); remove-node takes
    // it out again while the client writes through the VIP (it moves back), and the others'
    // keepalived forget it.
    let at = Instant::now();
    ok(lab.lab(&["add", "--balancer"]));
    let added = ok(lab.pgdeploy(&["add-node", "-i", &inv, "-e", &bundle_var, "-e", &vars_arg]));
    assert!(
        added.contains("adding pgbal05 to postgres-cluster"),
        "{added}"
    );
    ok(lab.play("new-balancer.yml", NEW_BALANCER, &["-e", &vars_arg]));
    assert_nothing_changed(&ok(cluster(&[])));
    ok(lab.play("writer-start.yml", writer::START, &writer_args_vip));
    ok(lab.pgdeploy(&[
        "remove-node",
        "--node",
        "pgbal05",
        "-i",
        &inv,
        "-e",
        &bundle_var,
        "-e",
        &vars_arg,
    ]));
    // Writes after the change, enough of them whatever one costs (each is a new TLS login).
    std::thread::sleep(Duration::from_secs(8));
    let writes = ok(lab.play("writer-stop.yml", writer::STOP, &writer_args_vip));
    ok(lab.play("balancer-left.yml", BALANCER_LEFT, &[]));
    lab.forget("pgbal05");
    assert!(ok(check()).contains("healthy"));
    assert_nothing_changed(&ok(cluster(&[])));
    eprintln!(
        "a balancer added and removed: {:.0?}, {}",
        at.elapsed(),
        writes
            .lines()
            .find(|l| l.contains("writer: "))
            .unwrap_or("")
    );
}

/// pgbal05 runs HAProxy (5000 on its own address reaches the leader) and keepalived; the
/// other balancers list it as a peer; with their keepalived stopped the VIP moves to it and
/// 5000 answers through the VIP; then theirs run again (the VIP stays: nopreempt).
const NEW_BALANCER: &str = r#"
- hosts: pgnode01:pgnode02:pgnode03
  gather_facts: no
  tasks:
    - command: grep -c "10.77.0.15" /etc/keepalived/keepalived.conf
      changed_when: false
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: psql "postgresql://app@10.77.0.15:5000/appdb" -Atc "SELECT NOT pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: direct
      failed_when: direct.stdout != 't'
- hosts: pgnode01:pgnode02:pgnode03
  gather_facts: no
  tasks:
    - command: systemctl stop keepalived
- hosts: pgbal05
  gather_facts: no
  tasks:
    - command: ip -o -4 addr show
      register: a
      until: "' 10.77.0.100/' in a.stdout"
      retries: 20
      delay: 1
      changed_when: false
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: psql "postgresql://app@{{ cluster_vip }}:5000/appdb" -Atc "SELECT NOT pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: via_vip
      until: via_vip.stdout == 't'
      retries: 10
      delay: 1
- hosts: pgnode01:pgnode02:pgnode03
  gather_facts: no
  tasks:
    - command: systemctl start keepalived
"#;

/// pgbal05 runs neither HAProxy nor keepalived, and no other balancer lists it.
const BALANCER_LEFT: &str = r#"
- hosts: pgbal05
  gather_facts: no
  tasks:
    - command: systemctl is-active haproxy keepalived
      register: active
      failed_when: active.stdout_lines != ['inactive', 'inactive']
- hosts: pgnode01:pgnode02:pgnode03
  gather_facts: no
  tasks:
    - command: grep -c "10.77.0.15" /etc/keepalived/keepalived.conf
      register: named
      failed_when: named.stdout != '0'
"#;

/// pgnode04 runs no Patroni (disabled) and keeps its data; no member's pg_hba and no HAProxy
/// names it; Patroni does not list it.
const LEFT: &str = r#"
- hosts: pgnode04
  gather_facts: no
  tasks:
    - command: systemctl is-enabled patroni
      register: enabled
      failed_when: enabled.stdout != 'disabled'
    - command: systemctl is-active patroni
      register: active
      failed_when: active.stdout != 'inactive'
    - stat: { path: /var/lib/postgresql/15/main/PG_VERSION }
      register: data
      failed_when: not data.stat.exists
- hosts: pgnode01:pgnode02:pgnode03
  gather_facts: no
  tasks:
    - command: grep -c 10.77.0.14 /etc/postgresql/15/main/pg_hba.conf /etc/haproxy/haproxy.cfg
      register: named
      failed_when: named.stdout_lines | map('regex_replace', '^.*:', '') | map('int') | sum != 0
    - uri: { url: "https://10.77.0.11:8008/cluster", ca_path: /etc/pgdeploy/tls/ca.crt }
      register: c
      failed_when: "'pgnode04' in c.json.members | map(attribute='name')"
      run_once: true
"#;

/// Reads through 5001 come from exactly these replicas (waiting for Patroni's next loop to
/// apply changed tags and HAProxy's checks to see it).
fn reads_5001_from(ips: &str) -> String {
    format!(
        r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - shell: |
        for i in 1 2 3 4 5 6; do
          psql "postgresql://app@{{{{ cluster_vip }}}}:5001/appdb" -Atc "SELECT split_part(current_setting('listen_addresses'), ',', 1)"
        done
      environment: {{ PGPASSWORD: "{{{{ postgresql_users[0].password }}}}" }}
      register: r
      changed_when: false
      until: r.stdout_lines | unique | sort | list == {ips}
      retries: 30
      delay: 2
"#
    )
}

/// The new member streams, and 5001 answers from it.
const NEW_MEMBER: &str = r#"
- hosts: pgnode04
  gather_facts: no
  tasks:
    - postgresql_query:
        query: "SELECT status FROM pg_stat_wal_receiver"
      become: yes
      become_user: postgres
      register: r
    - assert: { that: "r.query_result[0].status == 'streaming'" }
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: psql "postgresql://app@{{ cluster_vip }}:5001/appdb" -Atc "SELECT split_part(current_setting('listen_addresses'), ',', 1)"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: via5001
      until: via5001.stdout == '10.77.0.14'
      retries: 20
      delay: 0
      changed_when: false
"#;

/// Through every HAProxy port, from pgnode01: 5000 reaches the leader and takes a row that
/// every replica reads back; 5001 reaches both replicas; 5002 the sync one, 5003 the async one;
/// 7000 lists the backends (to its user and password only).
const PORTS: &str = r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - name: a row through 5000
      command: psql "postgresql://app@{{ cluster_vip }}:5000/appdb" -Atc "CREATE TABLE probe (v text); INSERT INTO probe VALUES ('via5000'); SELECT split_part(current_setting('listen_addresses'), ',', 1), pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: w
    - name: reads through 5001, 5002 and 5003
      shell: |
        for p in 5001 5001 5001 5001 5002 5003; do
          echo "$p $(psql "postgresql://app@{{ cluster_vip }}:$p/appdb" -Atc "SELECT split_part(current_setting('listen_addresses'), ',', 1), pg_is_in_recovery()")"
        done
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: r
      changed_when: false
    - name: who is the sync standby
      uri: { url: "https://10.77.0.11:8008/cluster", ca_path: /etc/pgdeploy/tls/ca.crt }
      register: c
    - name: HAProxy's statistics ask for a password
      uri: { url: "http://{{ cluster_vip }}:7000/;csv", status_code: 401 }
    - name: HAProxy's statistics
      uri:
        url: "http://{{ cluster_vip }}:7000/;csv"
        url_username: admin
        url_password: "{{ haproxy_stats_password }}"
      register: stats
    - assert:
        that:
          - w.stdout_lines[-1] == '10.77.0.11|f'
          - r.stdout_lines | select('match', '^5001 ') | map('regex_replace', '^5001 ', '') | unique | sort | list == ['10.77.0.12|t', '10.77.0.13|t']
          - ('5002 ' ~ sync_ip ~ '|t') in r.stdout_lines
          - ('5003 ' ~ async_ip ~ '|t') in r.stdout_lines
          - stats.content is search('\nmaster,pgnode01,([^,]*,){15}UP,')
          - stats.content is search('\nreplicas,pgnode02,([^,]*,){15}UP,')
          - stats.content is search('\nmaster,pgnode02,([^,]*,){15}DOWN,')
      vars:
        sync: "{{ (c.json.members | selectattr('role', 'equalto', 'sync_standby') | first).name }}"
        sync_ip: "{{ hostvars[sync]['ansible_host'] }}"
        async_ip: "{{ '10.77.0.13' if sync_ip == '10.77.0.12' else '10.77.0.12' }}"
- hosts: replica
  gather_facts: no
  tasks:
    - name: the row is read back on every replica
      postgresql_query:
        query: "SELECT pg_is_in_recovery() AS standby, (SELECT count(*) FROM probe WHERE v = 'via5000') AS n"
        db: appdb
      become: yes
      become_user: postgres
      register: row
      until: row.query_result[0].n == '1'
      retries: 10
      delay: 1
    - assert:
        that: row.query_result[0].standby == 't'
- hosts: pgnode02
  gather_facts: no
  tasks:
    # TLS end to end through HAProxy: PgBouncer's certificate checked against the CA for the
    # VIP's name, and PgBouncer's own connection to PostgreSQL over TLS.
    - command: psql "host={{ cluster_vip }} port=5000 dbname=appdb user=app sslmode=verify-full sslrootcert=/etc/pgdeploy/tls/ca.crt" -Atc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: tls5000
      changed_when: false
      failed_when: tls5000.stdout != 't'
- hosts: pgnode01:pgbackup
  gather_facts: no
  tasks:
    # HAProxy lets in only the networks pg_hba.conf allows: a connection from pgbackup (not a
    # cluster host, not in postgresql_allowed_networks) is closed at once; one from pgnode01
    # stays open, waiting for PostgreSQL's startup packet.
    - shell: timeout 3 bash -c 'exec 3<>/dev/tcp/{{ cluster_vip }}/5000; head -c1 <&3 >/dev/null'; echo "rc=$?"
      register: door
      changed_when: false
      failed_when: ("rc=124" in door.stdout) != (inventory_hostname == 'pgnode01')
"#;

/// work_mem, max_connections and the postmaster's start time on every member.
const SETTINGS: &str = r#"
- hosts: postgres_cluster
  gather_facts: no
  tasks:
    - command: psql -Atc "SELECT current_setting('work_mem') || '|' || current_setting('max_connections') || '|' || pg_postmaster_start_time()"
      become: yes
      become_user: postgres
      register: s
      changed_when: false
    - debug: msg="setting {{ inventory_hostname }} {{ s.stdout }}"
"#;

/// After the failover: 5000 reaches the new leader and the row written before is there.
const FOLLOW: &str = r#"
- hosts: NEW_LEADER
  gather_facts: no
  tasks:
    - name: 5000 follows the new leader
      command: psql "postgresql://app@{{ cluster_vip }}:5000/appdb" -Atc "SELECT split_part(current_setting('listen_addresses'), ',', 1), pg_is_in_recovery(), (SELECT count(*) FROM probe WHERE v = 'via5000')"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: f
      until: f.rc == 0 and f.stdout == ansible_host ~ '|f|1'
      retries: 20
      delay: 1
      changed_when: false
"#;

const THROUGH_VIP: &str = r#"
- hosts: all
  gather_facts: no
  tasks:
    - name: 5000 answers through the VIP on its new holder
      command: psql "postgresql://app@{{ cluster_vip }}:5000/appdb" -Atc "SELECT NOT pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: v
      until: v.rc == 0 and v.stdout == 't'
      retries: 20
      delay: 1
      changed_when: false
"#;

fn patroni_on(host: &str, action: &str) -> String {
    format!("- hosts: {host}\n  gather_facts: no\n  tasks:\n    - command: systemctl {action} patroni\n")
}

/// The postmaster start times in SETTINGS' output, per host.
fn start_times(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once("=> setting ").map(|(_, s)| s.to_string()))
        .map(|s| {
            let (host, rest) = s.split_once(' ').unwrap_or_default();
            format!("{host} {}", rest.rsplit('|').next().unwrap_or_default())
        })
        .collect();
    v.sort();
    assert_eq!(v.len(), 3, "{out}");
    v
}

/// The host whose interface holds the VIP (empty when none).
fn vip_holder(lab: &TestLab) -> String {
    lab.vip_holders().into_iter().next().unwrap_or_default()
}

fn until(limit: Duration, what: &str, f: impl FnMut() -> bool) {
    common::lab::until(limit.as_secs(), what, f)
}

/// A plain HTTP GET from this machine (the lab's bridge reaches the hosts); the status code.
/// Polls etcd for Patroni's leader key while a run restarts members: each poll must find one.
struct LeaderWatch {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
    leaderless: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl LeaderWatch {
    /// etcd lets in only clients with a certificate of the cluster's CA (`tls`: its files).
    fn start(tls: std::path::PathBuf) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let leaderless = Arc::new(AtomicUsize::new(0));
        let (s, p, l) = (stop.clone(), polls.clone(), leaderless.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let key = "/v2/keys/service/postgres-cluster/leader";
                let (ca, cert, pkey) = (
                    tls.join("ca.crt"),
                    tls.join("pgnode01.crt"),
                    tls.join("pgnode01.key"),
                );
                let found = NODES.iter().any(|(_, ip)| {
                    common::tls::https_get(ip, 2379, key, &ca, Some((&cert, &pkey))) == Ok(200)
                });
                p.fetch_add(1, Ordering::Relaxed);
                if !found {
                    l.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        LeaderWatch {
            stop,
            polls,
            leaderless,
            thread,
        }
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.polls.load(Ordering::Relaxed),
            self.leaderless.load(Ordering::Relaxed),
        )
    }
}

fn assert_nothing_changed(out: &str) {
    common::lab::assert_nothing_changed(out, &NODES.map(|(n, _)| n));
}
