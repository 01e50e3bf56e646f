//! Backups and point-in-time recovery in the lab: Type B with a backup host (pgBackRest over
//! SSH), `check` reporting the backups and WAL archiving (green, then red for a broken archive
//! and an old backup), restores that are refused and change nothing (no confirmation, a target
//! before the first backup), a restore to a time between two writes proven with real SQL on
//! every member, a scheduled backup after it, a re-run that changes nothing, and a restore back
//! to the end of the old timeline that is interrupted and run again; remove-node of the
//! leader; `remove`; and the takeover of a standalone PostgreSQL by a new cluster.

mod common;

use common::lab::{ok, TestLab};
use common::writer;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

const NAME: &str = "postgres-cluster";

#[test]
fn backups_and_point_in_time_recovery() {
    let started = Instant::now();
    let lab = TestLab::up();
    let bundle = lab.bundle();
    let inv = lab.inventory();
    let bundle_var = format!("package_bundle={}", bundle.display());
    let first = ok(lab.pgdeploy(&["cluster", "-i", &inv, "-e", &bundle_var]));
    assert!(first.contains("TASK [the first full backup]"), "{first}");
    eprintln!("deployed with backups: {:.0?}", started.elapsed());

    // check: the first backup and working archiving; red for an old backup and for a
    // repository that refuses WAL; green again.
    let green = lab.pgdeploy(&["check", "-i", &inv]);
    assert_eq!(green.code, 0, "{}\n--- the deploy ---\n{first}", green.out);
    let green = green.out;
    assert!(
        green.contains("WAL archiving: ok, last archived 0000000100"),
        "{green}"
    );
    assert!(
        green.contains("backups: 1, newest ") && green.contains("(full), 0.0 h old"),
        "{green}"
    );
    let old = lab.pgdeploy(&[
        "check",
        "-i",
        &inv,
        "-e",
        "pgbackrest_max_backup_age_hours=0",
    ]);
    assert_eq!(old.code, 2, "{}", old.out);
    assert!(
        old.out
            .contains("more than pgbackrest_max_backup_age_hours (0)"),
        "{}",
        old.out
    );
    ok(lab.play("break-archive.yml", BREAK_ARCHIVE, &[]));
    let red = lab.pgdeploy(&["check", "-i", &inv]);
    assert_eq!(red.code, 2, "{}", red.out);
    assert!(
        red.out.contains("WAL archiving fails on the leader"),
        "{}",
        red.out
    );
    ok(lab.play("mend-archive.yml", MEND_ARCHIVE, &[]));
    ok(lab.pgdeploy(&["check", "-i", &inv]));

    // Rows A, the time T from the server's clock, rows B.
    let secrets = lab.dir.join("pgdeploy-secrets.yml").display().to_string();
    let t = ok(lab.play("write.yml", WRITE, &["--vars-file", &secrets]));
    let t = t
        .lines()
        .find_map(|l| l.split("T=").nth(1))
        .expect("the time T")
        .trim()
        .to_string();
    let restore = |extra: &[&str]| {
        let mut a = vec!["restore", "-i", &inv];
        a.extend_from_slice(extra);
        lab.pgdeploy(&a)
    };
    let expect = |rows: &str| {
        let expect_rows = format!("expect_rows={rows}");
        ok(lab.play(
            "rows.yml",
            ROWS,
            &["--vars-file", &secrets, "-e", &expect_rows],
        ));
    };

    // Refused, and nothing changes: no confirmation; a wrong name; a target before the first
    // backup; a target in the future. --check shows the plan and touches nothing.
    let refused = restore(&["--pitr", &t]);
    assert_eq!(refused.code, 5, "{}", refused.out);
    assert!(
        refused.out.contains("refused, nothing was changed"),
        "{}",
        refused.out
    );
    assert_eq!(restore(&["--pitr", &t, "--confirm", "other"]).code, 5);
    let early = restore(&["--pitr", "2000-01-01 00:00:00+00", "--confirm", NAME]);
    assert_eq!(early.code, 2, "{}", early.out);
    assert!(
        early
            .out
            .contains("no backup on timeline 1 (or before it) ends before 2000-01-01 00:00:00+00"),
        "{}",
        early.out
    );
    let future = restore(&["--pitr", "2999-01-01 00:00:00+00", "--confirm", NAME]);
    assert!(future.out.contains("is in the future"), "{}", future.out);
    let plan = ok(restore(&["--pitr", &t, "--check"]));
    assert!(
        plan.contains(&format!(
            "restoring {NAME} to {t} on timeline 1 from backup "
        )),
        "{plan}"
    );
    expect("A,B");

    // The restore to T: A without B on every member, replicas streaming on the new timeline,
    // the VIP on the leader, check green.
    let at = Instant::now();
    let restored = ok(restore(&["--pitr", &t, "--confirm", NAME]));
    eprintln!("restore --pitr: {:.0?}", at.elapsed());
    assert!(restored.contains("replicas streaming"), "{restored}");
    expect("A");
    let after = ok(lab.pgdeploy(&["check", "-i", &inv]));
    assert!(!after.contains("timeline 1,"), "a new timeline:\n{after}");
    assert!(after.contains("healthy"), "{after}");

    // The cluster flow finds nothing to change; a scheduled backup works on the new timeline.
    let again = ok(lab.pgdeploy(&["cluster", "-i", &inv, "-e", &bundle_var]));
    for host in ["pgnode01", "pgnode02", "pgnode03", "pgbackup"] {
        assert!(
            again
                .lines()
                .any(|l| l.starts_with(&format!("{host} ")) && l.contains(" changed=0 ")),
            "{host}:\n{again}"
        );
    }
    ok(lab.play("scheduled.yml", SCHEDULED, &[]));

    // Back to the end of the old timeline (B again), interrupted during recovery and run again.
    let args = [
        "restore",
        "-i",
        &inv,
        "--pitr",
        "latest",
        "--timeline",
        "1",
        "--confirm",
        NAME,
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(args)
        .env("HOME", &lab.home)
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("TASK [PostgreSQL recovers to the target and promotes]") {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        seen.contains("TASK [PostgreSQL recovers"),
        "the restore got that far:\n{seen}"
    );
    let resumed = ok(lab.pgdeploy(&args));
    assert!(resumed.contains("on timeline 1 from backup"), "{resumed}");
    expect("A,B");
    ok(lab.pgdeploy(&["check", "-i", &inv]));
    eprintln!("backups and PITR: {:.0?}", started.elapsed());

    // remove-node of the leader: a fourth host joins (from the backup repository) and becomes
    // the leader by a switchover. remove-node without --switchover is refused and changes
    // nothing; with it (and --unsafe) a client writing through the VIP carries on with the new
    // leader, no acknowledged write missing, and the host's data is gone.
    let at = Instant::now();
    ok(lab.lab(&["add"]));
    ok(lab.pgdeploy(&["add-node", "-i", &inv, "-e", &bundle_var]));
    ok(lab.play("lead.yml", LEAD, &["-e", "leader=pgnode04"]));
    let leader_refused = lab.pgdeploy(&["remove-node", "--node", "pgnode04", "-i", &inv]);
    assert_eq!(leader_refused.code, 2, "{}", leader_refused.out);
    assert!(
        leader_refused
            .out
            .contains("pgnode04 is the leader: pass --switchover"),
        "{}",
        leader_refused.out
    );
    ok(lab.play("lead.yml", LEAD, &["-e", "leader=pgnode04"]));
    let writer_args = [
        "--vars-file",
        &secrets,
        "-e",
        r#"{"writer_host": "pgnode02", "writer_max_failed": 1000,
            "writer_url": "postgresql://postgres@{{ cluster_vip }}:5432/postgres",
            "writer_password": "{{ patroni_superuser_password }}"}"#,
    ];
    ok(lab.play("writer-start.yml", writer::START, &writer_args));
    let removed = ok(lab.pgdeploy(&[
        "remove-node",
        "--node",
        "pgnode04",
        "--switchover",
        "--unsafe",
        "-i",
        &inv,
        "-e",
        &bundle_var,
    ]));
    assert!(
        removed
            .split("TASK [a switchover hands leadership to another member]")
            .nth(1)
            .is_some_and(|rest| rest.lines().nth(1) == Some("changed: [pgnode04]"))
            && removed.contains("Its data directory is gone."),
        "{removed}"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let writes = ok(lab.play("writer-stop.yml", writer::STOP, &writer_args));
    eprintln!(
        "remove-node of the leader with a writer: {:.0?}, {}",
        at.elapsed(),
        writes
            .lines()
            .find(|l| l.contains("writer: "))
            .unwrap_or("")
    );
    lab.forget("pgnode04");
    let green = ok(lab.pgdeploy(&["check", "-i", &inv]));
    assert!(
        green.contains("healthy") && !green.contains("pgnode04"),
        "{green}"
    );

    // remove: without --unsafe it says what it would remove; without the name it is refused
    // too; nothing changes either way.
    let remove = |extra: &[&str]| {
        let mut a = vec!["remove", "-i", &inv];
        a.extend_from_slice(extra);
        lab.pgdeploy(&a)
    };
    let refused = remove(&[]);
    assert_eq!(refused.code, 5, "{}", refused.out);
    assert!(
        refused.out.contains("(item=/var/lib/postgresql/15/main)")
            && refused.out.contains("refused without --unsafe"),
        "{}",
        refused.out
    );
    assert_eq!(remove(&["--unsafe"]).code, 5);
    expect("A,B");
    // With both: nothing of the cluster is left on the hosts, the backups stay.
    ok(remove(&["--unsafe", "--confirm", NAME]));
    ok(lab.play("gone.yml", GONE, &["-e", "backups_kept=true"]));
    // A new cluster on the same hosts finds the old cluster's stanza and says what to do.
    let clash = lab.pgdeploy(&["cluster", "-i", &inv, "-e", &bundle_var]);
    assert_eq!(clash.code, 2, "{}", clash.out);
    assert!(
        clash
            .out
            .contains("holds stanza postgres-cluster of another cluster"),
        "{}",
        clash.out
    );
    // Removed with its backups, the hosts take a new cluster that works.
    ok(remove(&["--unsafe", "--confirm", NAME, "--remove-backups"]));
    ok(lab.play("gone.yml", GONE, &["-e", "backups_kept=false"]));
    ok(lab.pgdeploy(&["cluster", "-i", &inv, "-e", &bundle_var]));
    let fresh = ok(lab.pgdeploy(&["check", "-i", &inv]));
    assert!(
        fresh.contains("timeline 1,") && fresh.contains("backups: 1,"),
        "{fresh}"
    );
    eprintln!("backups, PITR and remove: {:.0?}", started.elapsed());

    // Takeover: a standalone PostgreSQL 15 holding a pgbench database (and a setting of its
    // own) on pgnode01 becomes the first Patroni leader of a new cluster. Every table's row
    // count and checksum are the same afterwards on every member; the downtime is printed and
    // the setting that changed is listed; a re-run changes nothing.
    let at = Instant::now();
    ok(remove(&["--unsafe", "--confirm", NAME, "--remove-backups"]));
    ok(lab.play("standalone.yml", STANDALONE, &[]));
    let before = ok(lab.play("sums.yml", SUMS, &["-l", "pgnode01"]));
    let sums = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split("SUMS ").nth(1))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let want = sums(&before);
    assert_eq!(want.len(), 1, "{before}");
    assert!(want[0].contains("pgbench_accounts=200000:"), "{before}");
    let inv_text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        inv_text.replacen(
            "pgnode01 ansible_host=10.77.0.11",
            "pgnode01 postgresql_exists=true ansible_host=10.77.0.11",
            1,
        ),
    )
    .unwrap();
    // This cluster runs without TLS (`tls_enabled: false`): the plain deployment is tested too.
    let plain = "tls_enabled=false";
    let plan = ok(lab.pgdeploy(&[
        "cluster",
        "-i",
        &inv,
        "-e",
        &bundle_var,
        "-e",
        plain,
        "--check",
    ]));
    assert!(plan.contains("work_mem = 7MB"), "{plan}");
    let took = ok(lab.pgdeploy(&["cluster", "-i", &inv, "-e", &bundle_var, "-e", plain]));
    let line = took
        .lines()
        .find(|l| {
            l.contains(
                "took over the standalone PostgreSQL in /var/lib/postgresql/15/main: it was down",
            )
        })
        .unwrap_or_else(|| panic!("{took}"));
    assert!(took.contains("work_mem: 7MB -> "), "{took}");
    let after = ok(lab.play("sums.yml", SUMS, &[]));
    let got = sums(&after);
    assert_eq!(got.len(), 3, "{after}");
    assert!(got.iter().all(|s| *s == want[0]), "{want:?} != {got:?}");
    assert!(!took.contains("TLS: the cluster's CA"), "{took}");
    assert_eq!(
        common::tls::http_get("10.77.0.11", 2379, "/version"),
        Ok(200),
        "etcd speaks plain http"
    );
    let again = ok(lab.pgdeploy(&["cluster", "-i", &inv, "-e", &bundle_var, "-e", plain]));
    assert!(
        again.contains("PLAY RECAP")
            && !again
                .lines()
                .any(|l| l.contains(" changed=") && !l.contains(" changed=0 ")),
        "{again}"
    );
    let green = ok(lab.pgdeploy(&["check", "-i", &inv, "-e", plain]));
    assert!(green.contains("healthy"), "{green}");
    eprintln!(
        "takeover: {:.0?} ({}); all of it: {:.0?}",
        at.elapsed(),
        line.trim(),
        started.elapsed()
    );
}

/// A standalone PostgreSQL 15 on pgnode01, as Debian makes one, with a setting of its own and
/// a pgbench database that has seen some traffic.
const STANDALONE: &str = r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - shell: |
        set -e
        rm -rf /etc/postgresql/15/main
        pg_createcluster 15 main --start
        echo "work_mem = '7MB'" >> /etc/postgresql/15/main/postgresql.conf
        systemctl restart postgresql@15-main
        runuser -u postgres -- pgbench -q -i -s 2 postgres
        runuser -u postgres -- pgbench -c 2 -T 3 postgres
"#;

/// Row count and checksum of every table in the database, from every member that runs here
/// (a replica after it has replayed what the leader has).
const SUMS: &str = r#"
- hosts: postgres_cluster
  gather_facts: no
  tasks:
    - shell: |
        for t in $(psql -XAtc "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"); do
          psql -XAtc "SELECT '$t=' || count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM $t x"
        done | tr '\n' ' '
      become: yes
      become_user: postgres
      register: s
      until: s.stdout is search('pgbench_accounts=200000')
      retries: 30
      delay: 1
      changed_when: false
    - debug: { msg: "SUMS {{ s.stdout }}" }
"#;

/// `leader` leads (after a switchover to it when it does not yet), the others stream from it.
const LEAD: &str = r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - uri: { url: "https://10.77.0.11:8008/cluster", ca_path: /etc/pgdeploy/tls/ca.crt }
      register: before
    - command: patronictl -c /etc/patroni/config.yml switchover --leader {{ current }} --candidate {{ leader }} --force
      when: current != leader
      vars:
        current: "{{ (before.json.members | selectattr('role', 'equalto', 'leader') | first).name }}"
    - uri: { url: "https://10.77.0.11:8008/cluster", ca_path: /etc/pgdeploy/tls/ca.crt }
      register: after
      until: >-
        after.json.members | selectattr('role', 'equalto', 'leader') | selectattr('state', 'equalto', 'running')
        | map(attribute='name') | list == [leader]
        and after.json.members | rejectattr('state', 'equalto', 'running') | list == []
      retries: 60
      delay: 1
"#;

/// Nothing of the cluster runs or stays on any host; the backups stay when `backups_kept`.
const GONE: &str = r#"
- hosts: all
  gather_facts: no
  tasks:
    - shell: for u in patroni etcd pgbouncer vip-manager pgbackrest-full.timer; do systemctl is-active $u; systemctl is-enabled $u; done 2>/dev/null; ip -o -4 addr show
      register: units
      changed_when: false
      failed_when: false
    - stat: { path: /var/lib/postgresql/15/main }
      register: data
    - stat: { path: /etc/patroni/config.yml }
      register: conf
    - stat: { path: /var/lib/etcd/postgres-cluster }
      register: etcd_data
    - assert:
        that:
          - "'active' not in units.stdout_lines and 'enabled' not in units.stdout_lines"
          - "(' ' ~ cluster_vip ~ '/') not in units.stdout"
          - not data.stat.exists and not conf.stat.exists and not etcd_data.stat.exists
        fail_msg: "{{ units.stdout }}"
- hosts: pgbackup
  gather_facts: no
  tasks:
    - stat: { path: /var/lib/pgbackrest/backup/postgres-cluster }
      register: repo
    - assert:
        that: repo.stat.exists == (backups_kept | bool)
"#;

/// Rows A, the server's clock, rows B (through the VIP).
const WRITE: &str = r#"
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: psql "postgresql://postgres@{{ cluster_vip }}:5432/postgres" -Atc "CREATE TABLE pitr (v text); INSERT INTO pitr VALUES ('A')"
      environment: { PGPASSWORD: "{{ patroni_superuser_password }}" }
    - command: psql "postgresql://postgres@{{ cluster_vip }}:5432/postgres" -Atc "SELECT pg_sleep(1), clock_timestamp()"
      environment: { PGPASSWORD: "{{ patroni_superuser_password }}" }
      register: t
    - command: psql "postgresql://postgres@{{ cluster_vip }}:5432/postgres" -Atc "SELECT pg_sleep(1); INSERT INTO pitr VALUES ('B')"
      environment: { PGPASSWORD: "{{ patroni_superuser_password }}" }
    - debug: { msg: "T={{ t.stdout.split('|')[1] }}" }
"#;

/// Every member holds `expect_rows`; the leader is alone, the replicas stream from it on its
/// timeline; the VIP reaches the leader.
const ROWS: &str = r#"
- hosts: postgres_cluster
  gather_facts: no
  tasks:
    - postgresql_query:
        query: >-
          SELECT pg_is_in_recovery() AS standby, (SELECT string_agg(v, ',' ORDER BY v) FROM pitr) AS rows,
                 (SELECT timeline_id FROM pg_control_checkpoint()) AS tl,
                 coalesce((SELECT status || ' ' || received_tli FROM pg_stat_wal_receiver), '') AS recv
      become: yes
      become_user: postgres
      register: r
      until: >-
        r.query_result | default([]) | length > 0 and r.query_result[0].rows == expect_rows and
        (r.query_result[0].standby == 'f' or r.query_result[0].recv.startswith('streaming'))
      retries: 60
      delay: 1
- hosts: postgres_cluster
  gather_facts: no
  tasks:
    - assert:
        that:
          - groups['postgres_cluster'] | map('extract', hostvars, ['r', 'query_result', 0, 'standby']) | select('equalto', 'f') | list | length == 1
          - r.query_result[0].standby == 'f' or r.query_result[0].recv == 'streaming ' ~ leader_tl
      vars:
        leader_tl: "{{ groups['postgres_cluster'] | map('extract', hostvars, ['r', 'query_result', 0]) | selectattr('standby', 'equalto', 'f') | map(attribute='tl') | first }}"
- hosts: pgnode03
  gather_facts: no
  tasks:
    - command: psql "postgresql://postgres@{{ cluster_vip }}:5432/postgres" -Atc "SELECT pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ patroni_superuser_password }}" }
      register: vip
      changed_when: false
    - assert: { that: vip.stdout == 'f' }
"#;

/// The repository refuses WAL: a segment the leader switches to cannot be archived.
const BREAK_ARCHIVE: &str = r#"
- hosts: pgbackup
  gather_facts: no
  tasks:
    - command: chmod 000 /var/lib/pgbackrest/archive
- hosts: master
  gather_facts: no
  tasks:
    # A segment with something in it, so that the switch makes one to archive.
    - postgresql_query: { query: "SELECT pg_logical_emit_message(false, 'pgdeploy-test', 'x')" }
      become: yes
      become_user: postgres
    - postgresql_query: { query: "SELECT pg_switch_wal()" }
      become: yes
      become_user: postgres
    - postgresql_query: { query: "SELECT coalesce(last_failed_time > last_archived_time, false) AS failing FROM pg_stat_archiver" }
      become: yes
      become_user: postgres
      register: a
      until: a.query_result[0].failing == 't'
      retries: 30
      delay: 1
"#;

const MEND_ARCHIVE: &str = r#"
- hosts: pgbackup
  gather_facts: no
  tasks:
    - command: chmod 750 /var/lib/pgbackrest/archive
- hosts: master
  gather_facts: no
  tasks:
    - postgresql_query: { query: "SELECT last_archived_time > last_failed_time AS ok FROM pg_stat_archiver" }
      become: yes
      become_user: postgres
      register: a
      until: a.query_result[0].ok == 't'
      retries: 150
      delay: 1
"#;

/// The timer's backup, started by hand, succeeds and lands in the repository.
const SCHEDULED: &str = r#"
- hosts: pgbackup
  gather_facts: no
  tasks:
    - command: systemctl start pgbackrest-backup@diff.service
    - command: pgbackrest --stanza=postgres-cluster info
      become: yes
      become_user: postgres
      register: info
      changed_when: false
    - assert:
        that: "'diff backup: ' in info.stdout"
"#;
