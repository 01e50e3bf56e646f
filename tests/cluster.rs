//! Type B deployed to the lab from bare hosts with the offline bundle: pre-flight refusals that
//! change nothing, a 3-member etcd, a Patroni leader and two streaming replicas checked with
//! real SQL, users and databases, the VIP on the leader, PgBouncer, Patroni's REST API locked for
//! state-changing requests; a re-run changes nothing (not one file under /etc), also after a
//! switchover; passwords never show.

mod common;

use common::lab::{ok, TestLab};
use common::tls::{http_get, https_get, pg_login_answer};
use common::writer;

const VARS: &str = r#"
timezone: Etc/UTC
monitoring_install: true
postgresql_users:
  - { name: app, password: "app-pw-first-7f3a", flags: "LOGIN,CREATEDB" }
postgresql_databases:
  - { db: appdb, owner: app }
postgresql_parameters:
  - { option: log_min_duration_statement, value: "2000" }
  - { option: max_connections, value: "120" }
"#;

#[test]
fn type_b_deploys_converges_and_reruns_clean() {
    let lab = TestLab::up();
    let bundle = lab.bundle();
    let inv = lab.inventory();
    let vars = lab.tmp.path().join("cluster-vars.yml");
    std::fs::write(&vars, VARS).unwrap();
    let vars_arg = format!("@{}", vars.display());
    let bundle_var = format!("package_bundle={}", bundle.display());
    let args = ["cluster", "-i", &inv, "-e", &bundle_var, "-e", &vars_arg];
    let with = |extra: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(extra);
        lab.pgdeploy(&a)
    };

    // Pre-flight: every problem of a host is reported together, and nothing changes.
    // A password with a line break would add a line to PgBouncer's user list.
    let refused = with(&[
        "-e",
        "dcs_type=consul",
        "-e",
        "cluster_vip=192.168.99.100",
        "-e",
        r#"{"postgresql_users": [{"name": "app", "password": "pw\"\n\"evil\" \"x"}]}"#,
    ]);
    assert_eq!(refused.code, 2, "{}", refused.out);
    for problem in [
        "dcs_type: consul is not supported",
        "cluster_vip 192.168.99.100 is not in this host's subnet 10.77.0.0/24",
        "postgresql_users[0].password holds a line break",
    ] {
        assert!(refused.out.contains(problem), "{problem}:\n{}", refused.out);
    }
    assert_nothing_changed(&refused.out);
    // A VIP that another machine answers ARP for (this one's address on the lab's bridge).
    let taken = with(&["-e", "cluster_vip=10.77.0.1"]);
    assert_eq!(taken.code, 2, "{}", taken.out);
    assert!(
        taken.out.contains("cluster_vip 10.77.0.1 answers from ")
            && taken.out.contains("a machine outside the cluster"),
        "{}",
        taken.out
    );
    assert_nothing_changed(&taken.out);
    // Without the bundle the lab's hosts (no apt sources) have no package source: named, with
    // the fix, before anything changes.
    let no_source = lab.pgdeploy(&["cluster", "-i", &inv, "-e", &vars_arg]);
    assert_eq!(no_source.code, 2, "{}", no_source.out);
    for host in ["pgnode01", "pgnode02", "pgnode03", "pgbackup"] {
        let line = no_source
            .out
            .lines()
            .find(|l| {
                l.contains(&format!(
                    " cannot be installed on {host}: no package source has "
                ))
            })
            .unwrap_or_else(|| panic!("{host}:\n{}", no_source.out));
        assert!(
            line.contains("build an offline bundle with `pgdeploy bundle --out DIR` and pass `-e package_bundle=DIR`"),
            "{line}"
        );
        let what = if host == "pgbackup" {
            "pgbackrest"
        } else {
            "postgresql-15, postgresql-client-15, patroni"
        };
        assert!(line.contains(what), "{line}");
    }
    assert_nothing_changed(&no_source.out);
    // A VIP some other machine answers for (the lab's bridge), a port held by a stranger, and
    // a data directory the DCS does not know.
    ok(lab.play(
        "squat.yml",
        r#"
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: systemd-run --unit=squatter systemd-socket-activate -l 8008 /bin/cat
- hosts: pgnode03
  gather_facts: no
  tasks:
    - shell: mkdir -p /var/lib/postgresql/15/main && echo 15 > /var/lib/postgresql/15/main/PG_VERSION
"#,
        &[],
    ));
    let refused = with(&["-e", "cluster_vip=10.77.0.1"]);
    assert_eq!(refused.code, 2, "{}", refused.out);
    for problem in [
        "cluster_vip 10.77.0.1 answers from ",
        "port 8008 is taken by `systemd-socket-",
        "a data directory exists (/var/lib/postgresql/15/main/PG_VERSION) but the DCS cannot be reached",
    ] {
        assert!(refused.out.contains(problem), "{problem}:\n{}", refused.out);
    }
    assert_nothing_changed(&refused.out);
    ok(lab.play(
        "unsquat.yml",
        r#"
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: systemctl stop squatter
- hosts: pgnode03
  gather_facts: no
  tasks:
    - command: rm -rf /var/lib/postgresql
"#,
        &[],
    ));

    // --check --diff on bare hosts: the whole plan, readable, exit 0, and nothing touched.
    ok(lab.play("mark.yml", MARK, &[]));
    let plan = ok(with(&["--check", "--diff"]));
    assert_readable_plan(&plan);
    ok(lab.play("untouched.yml", &untouched("/etc /var/lib"), &[]));
    let tls_dir = lab.dir.join("pgdeploy-tls");
    assert!(!tls_dir.exists(), "--check made the CA");

    let first = ok(lab.pgdeploy(&args));
    assert!(
        first.contains("members: pgnode01 (leader, running), pgnode02 (replica, "),
        "{first}"
    );
    assert!(
        first.contains("Prometheus scrape targets (https, a client certificate of the cluster's CA): 10.77.0.11:9100 10.77.0.11:9187 10.77.0.11:8008/metrics 10.77.0.12:9100"),
        "{first}"
    );
    let url = "postgresql://10.77.0.11:5432,10.77.0.12:5432,10.77.0.13:5432/postgres?target_session_attrs=read-write";
    assert!(
        first.contains(url),
        "the summary gives the multi-host URL:\n{first}"
    );
    for skipped in ["skipped on pgnode01, a container", "vm.swappiness"] {
        assert!(first.contains(skipped), "{skipped}:\n{first}");
    }
    // check right after the deploy: green, every member's timeline and lag from its own answer.
    let green = ok(lab.pgdeploy(&["check", "-i", &inv, "-e", &vars_arg]));
    assert!(green.contains("healthy"), "{green}");
    assert!(
        green.contains("certificates: the earliest expires on "),
        "{green}"
    );
    for h in ["pgnode01", "pgnode02", "pgnode03"] {
        let line = green
            .lines()
            .find(|l| l.contains(&format!("{h}: ")) && l.contains(" timeline "))
            .unwrap_or_else(|| panic!("no line for {h}:\n{green}"));
        assert!(line.contains(", timeline 1"), "{line}");
        assert!(
            h == "pgnode01" || (line.contains(" bytes, ") && !line.contains("lag ?")),
            "{line}"
        );
    }
    let secrets = lab.dir.join("pgdeploy-secrets.yml");
    let secrets_arg = secrets.to_str().unwrap();
    let with_secrets = ["--vars-file", secrets_arg, "-e", &vars_arg];
    ok(lab.play("check.yml", CHECK, &with_secrets));
    // Reading ahead never runs a write early, even one its task calls read-only.
    ok(lab.play("read-ahead.yml", READ_AHEAD, &[]));
    // Read-only queries read ahead share one psql session, each as it would run alone: one
    // command for the three; a warning (stderr) leaves them all to run live, still right.
    let shared = ok(lab.play("sql-session.yml", &sql_session(""), &[]));
    assert_eq!(commands_of(&shared, "pgnode01"), 1, "{shared}");
    let warning = "pg_cancel_backend(0) AS w, ";
    let live = ok(lab.play("sql-warning.yml", &sql_session(warning), &[]));
    assert_eq!(commands_of(&live, "pgnode01"), 4, "{live}");

    // The re-run changes nothing: no task reports a change and no file under /etc is written.
    ok(lab.play("mark.yml", MARK, &[]));
    let again = ok(lab.pgdeploy(&args));
    assert_nothing_changed(&again);
    ok(lab.play("untouched.yml", &untouched("/etc"), &[]));
    // And the check of a converged cluster plans nothing.
    let plan = ok(with(&["--check", "--diff"]));
    assert_nothing_changed(&plan);
    assert!(
        !plan.contains("+++ ") && !plan.contains("would change"),
        "{plan}"
    );
    // The OS guards are undone by turning their vars the other way: --check --diff shows their
    // files going and nothing else.
    let undo = ok(with(&[
        "--tags",
        "system",
        "--check",
        "--diff",
        "-e",
        "logind_remove_ipc=true",
        "-e",
        "unattended_upgrades_exclude_cluster=false",
    ]));
    for task in [
        "TASK [systemd's own RemoveIPC when logind_remove_ipc is true]",
        "TASK [automatic upgrades as the system has them when unattended_upgrades_exclude_cluster is false]",
    ] {
        let after = undo
            .split_once(task)
            .unwrap_or_else(|| panic!("{task}:\n{undo}"))
            .1;
        let next_task = after.find("TASK [").unwrap_or(after.len());
        assert!(
            after[..next_task].contains("changed: [pgnode01]"),
            "{task} changes nothing:\n{undo}"
        );
    }
    for line in undo.lines().filter(|l| l.contains(" : ok=")) {
        assert!(
            line.contains(" changed=2 "),
            "only the two files: {line}\n{undo}"
        );
    }

    // One part of the flow: `--tags pgbouncer` with a PgBouncer setting changed changes only
    // PgBouncer's tasks (pre-flight still runs); a user's own tasks files run at their points,
    // before the deploy (an absolute path) and after it (relative to the inventory).
    let pre = lab.tmp.path().join("pre-hook.yml");
    std::fs::write(
        &pre,
        "- name: my pre-deploy task\n  shell: echo pre > /root/pre-hook\n",
    )
    .unwrap();
    std::fs::write(
        lab.dir.join("post-hook.yml"),
        "- name: my post-deploy task\n  shell: echo post > /root/post-hook\n",
    )
    .unwrap();
    let pre_arg = format!("pre_deploy_tasks={}", pre.display());
    let part = ok(with(&[
        "--tags",
        "pgbouncer",
        "-e",
        "pgbouncer_default_pool_size=33",
        "-e",
        &pre_arg,
        "-e",
        "post_deploy_tasks=post-hook.yml",
        "--json",
    ]));
    let events: Vec<serde_json::Value> = part
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let changed: Vec<(usize, String)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e["event"] == "task_result" && e["status"] == "changed" && e["item"].is_null()
        })
        .map(|(i, e)| (i, e["origin"].as_str().unwrap_or_default().to_string()))
        .collect();
    let at = |file: &str| {
        changed
            .iter()
            .filter(|(_, o)| o.contains(file))
            .map(|(i, _)| *i)
            .collect::<Vec<_>>()
    };
    let (pre_i, bouncer_i, post_i) = (
        at("pre-hook.yml"),
        at("roles/pgbouncer/"),
        at("post-hook.yml"),
    );
    assert!(
        changed
            .iter()
            .all(|(_, o)| o.contains("roles/pgbouncer/") || o.contains("-hook.yml")),
        "only PgBouncer and the hooks change: {changed:?}"
    );
    assert!(
        !pre_i.is_empty()
            && !bouncer_i.is_empty()
            && !post_i.is_empty()
            && pre_i.iter().max() < bouncer_i.iter().min()
            && bouncer_i.iter().max() < post_i.iter().min(),
        "pre hook, then PgBouncer, then post hook: {changed:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "play_start" && e["play"] == "pre-flight checks"),
        "pre-flight runs whatever the tags"
    );
    // Back to the settings of the test, then nothing to change.
    ok(with(&["--tags", "pgbouncer"]));
    assert_nothing_changed(&ok(lab.pgdeploy(&args)));

    // etcd is locked: plain HTTP and a TLS client without a certificate of the cluster's CA
    // get no key, a client with one does. The CA's key and the hosts' keys stay private.
    let leader_key = "/v2/keys/service/postgres-cluster/leader";
    let ca = tls_dir.join("ca.crt");
    let (cert, key) = (tls_dir.join("pgnode02.crt"), tls_dir.join("pgnode02.key"));
    // A client certificate of another CA (self-signed) gets nothing either.
    let stranger = rcgen::generate_simple_self_signed(vec!["10.77.0.1".to_string()]).unwrap();
    let (s_cert, s_key) = (
        lab.tmp.path().join("stranger.crt"),
        lab.tmp.path().join("stranger.key"),
    );
    std::fs::write(&s_cert, stranger.cert.pem()).unwrap();
    std::fs::write(&s_key, stranger.signing_key.serialize_pem()).unwrap();
    for ip in ["10.77.0.11", "10.77.0.12", "10.77.0.13"] {
        assert_eq!(
            https_get(ip, 2379, leader_key, &ca, Some((&cert, &key))),
            Ok(200),
            "{ip}"
        );
        let anonymous = https_get(ip, 2379, leader_key, &ca, None);
        assert!(
            anonymous.is_err(),
            "{ip} without a certificate: {anonymous:?}"
        );
        let foreign = https_get(ip, 2379, leader_key, &ca, Some((&s_cert, &s_key)));
        assert!(
            foreign.is_err(),
            "{ip} with another CA's certificate: {foreign:?}"
        );
        let plain = http_get(ip, 2379, leader_key);
        assert!(plain != Ok(200), "{ip} over http: {plain:?}");
        assert!(http_get(ip, 2379, "/v2/keys/x?value=1") != Ok(201));
    }
    // PostgreSQL: a client that checks the server's certificate against the CA connects (to
    // the VIP, which the certificate names); one without TLS is turned away; the replicas
    // stream over TLS.
    ok(lab.play(
        "pg-tls.yml",
        r#"
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: psql "host=10.77.0.100 dbname=appdb user=app sslmode=verify-full sslrootcert=/etc/pgdeploy/tls/ca.crt" -Atc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
      environment: { PGPASSWORD: app-pw-first-7f3a }
      register: verified
      failed_when: verified.stdout != 't'
    - command: psql "host=10.77.0.100 dbname=appdb user=app sslmode=disable" -Atc "SELECT 1"
      environment: { PGPASSWORD: app-pw-first-7f3a }
      register: plain
      failed_when: plain.rc == 0 or 'no encryption' not in plain.stderr
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: psql -Atc "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
      become: yes
      become_user: postgres
      register: streams
      failed_when: streams.stdout != '2|2'
"#,
        &[],
    ));
    // From outside the networks pg_hba.conf allows (this machine, 10.77.0.1), PgBouncer turns
    // the login away before any password is asked, as PostgreSQL does (its auth_hba_file
    // mirrors pg_hba.conf; "login rejected" is PgBouncer's word for no matching line).
    for (port, said) in [(5432, "no pg_hba.conf entry"), (6432, "login rejected")] {
        let answer = pg_login_answer("10.77.0.100", port, &ca, "app", "appdb");
        assert!(
            matches!(&answer, Err(e) if e.contains(said)),
            "port {port} from outside: {answer:?}"
        );
    }
    for (file, want) in [("", 0o700), ("ca.key", 0o600), ("pgnode01.key", 0o600)] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tls_dir.join(file)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, want, "{file}");
    }
    // Certificates close to expiry are issued again by a normal run (here: every certificate
    // counts as close), the services take them up, the diff shows no key, and the next run
    // changes nothing.
    let old_key = std::fs::read_to_string(tls_dir.join("pgnode01.key")).unwrap();
    let renewed = ok(with(&["--diff", "-e", "tls_cert_renew_days=900"]));
    let new_key = std::fs::read_to_string(tls_dir.join("pgnode01.key")).unwrap();
    assert_ne!(old_key, new_key);
    for line in old_key.lines().chain(new_key.lines()) {
        if !line.starts_with("-----") {
            assert!(!renewed.contains(line), "a key line is shown: {line}");
        }
    }
    assert_eq!(
        https_get("10.77.0.11", 2379, leader_key, &ca, Some((&cert, &key))),
        Ok(200)
    );
    assert_nothing_changed(&ok(lab.pgdeploy(&args)));

    // A user's new password converges (and works); the old one stops working.
    let new_pw = lab.tmp.path().join("new-pw.yml");
    std::fs::write(
        &new_pw,
        // Patroni's own passwords rotate too: its users follow, and the replicas keep (and,
        // after the switchover below, make) their connections with the new one.
        VARS.replace("app-pw-first-7f3a", "app-pw-second-9c1d")
            + "patroni_replication_password: Rotated-Repl-5b2e\npatroni_superuser_password: Rotated-Super-8d1f\n",
    )
    .unwrap();
    let new_pw_arg = format!("@{}", new_pw.display());
    let args = ["cluster", "-i", &inv, "-e", &bundle_var, "-e", &new_pw_arg];
    let changed_pw = ok(lab.pgdeploy(&args));
    for item in ["app", "replicator", "postgres"] {
        assert!(
            changed_pw.contains(&format!("changed: [pgnode01] => (item={item})")),
            "{item}: {changed_pw}"
        );
    }
    ok(lab.play(
        "login-new-pw.yml",
        r#"
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: psql "postgresql://app@10.77.0.100:6432/appdb" -Atc "SELECT current_user"
      environment: { PGPASSWORD: app-pw-second-9c1d }
      register: new
      changed_when: false
    - command: psql "postgresql://app@10.77.0.100:5432/appdb" -Atc "SELECT 1"
      environment: { PGPASSWORD: app-pw-first-7f3a }
      register: old
      failed_when: old.rc == 0
      changed_when: false
    - assert: { that: "new.stdout == 'app'" }
"#,
        &[],
    ));

    // After a switchover the inventory's `master` is a replica: a re-run still converges and
    // touches nothing.
    ok(lab.play("switch.yml", SWITCH, &[]));
    ok(lab.play("mark.yml", MARK, &[]));
    let after_switch = ok(lab.pgdeploy(&args));
    assert_nothing_changed(&after_switch);
    ok(lab.play("untouched.yml", &untouched("/etc"), &[]));

    // Multi-datacenter tags, as postgresql_cluster's inventory writes them (a host var):
    // pgnode03 is in another datacenter and may never be promoted. Set on the running cluster.
    let inv_text = std::fs::read_to_string(&inv).unwrap();
    let plain = "pgnode03 ansible_host=10.77.0.13 hostname=pgnode03";
    assert!(inv_text.contains(plain), "{inv_text}");
    let tagged = inv_text.replacen(
        plain,
        &format!("{plain} patroni_tags=\"datacenter=dc2,nofailover=true\""),
        1,
    );
    std::fs::write(&inv, tagged).unwrap();
    ok(lab.pgdeploy(&args));
    ok(lab.play("tags.yml", TAGS, &[]));

    // Asynchronous replication (Type B's default): the leader's host powered off while a client
    // on pgnode03 writes through VIP:5432. A replica takes over within ttl + loop_wait and the
    // VIP follows it; acknowledged writes not streamed yet may be lost: reported, and bounded
    // by maximum_lag_on_failover (1 MiB of WAL, more than 10,000 of these rows' records). The
    // old leader comes back as a replica, check is green and a re-run changes nothing.
    let writer_args = [
        "-e",
        r#"{"writer_host": "pgnode03", "writer_max_failed": 100000, "writer_max_lost": 10000,
            "writer_url": "postgresql://app@10.77.0.100:5432/appdb?connect_timeout=3",
            "writer_password": "app-pw-second-9c1d"}"#,
    ];
    let at = std::time::Instant::now();
    ok(lab.play("writer-start.yml", writer::START, &writer_args));
    std::thread::sleep(std::time::Duration::from_secs(2));
    ok(lab.lab(&["stop", "pgnode02"]));
    let off = std::time::Instant::now();
    let ca = lab.dir.join("pgdeploy-tls/ca.crt");
    let promoted = loop {
        if let Some(ip) = ["10.77.0.11", "10.77.0.13"]
            .into_iter()
            .find(|ip| https_get(ip, 8008, "/primary", &ca, None) == Ok(200))
        {
            break ip;
        }
        assert!(
            off.elapsed().as_secs() < 40,
            "no replica promoted within 40 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let failover = off.elapsed();
    assert_eq!(
        promoted, "10.77.0.11",
        "pgnode03 has nofailover: pgnode01 must be promoted"
    );
    // Writes on the new leader, once vip-manager has moved the VIP to it.
    std::thread::sleep(std::time::Duration::from_secs(10));
    let writes = ok(lab.play("writer-stop.yml", writer::STOP, &writer_args));
    ok(lab.lab(&["start", "pgnode02"]));
    let check = || lab.pgdeploy(&["check", "-i", &inv, "-e", &new_pw_arg]);
    let back = std::time::Instant::now();
    while check().code != 0 {
        assert!(
            back.elapsed().as_secs() < 120,
            "check is not green after pgnode02 came back:\n{}",
            check().out
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    assert_nothing_changed(&ok(lab.pgdeploy(&args)));
    eprintln!(
        "Type B, async: the leader's host powered off: {promoted} promoted after {:.1} s; {}; {:.0?} in all",
        failover.as_secs_f64(),
        writes
            .lines()
            .find_map(|l| l.split_once("=> writer: ").map(|(_, w)| w))
            .unwrap_or("?"),
        at.elapsed()
    );

    // Only the leader (pgnode01) and the nofailover member remain: the leader's Patroni stopping
    // leaves the cluster without a leader rather than promote pgnode03.
    ok(lab.play("nofailover.yml", STOP_TWO, &[]));
    std::thread::sleep(std::time::Duration::from_secs(20));
    assert_ne!(
        https_get("10.77.0.13", 8008, "/primary", &ca, None),
        Ok(200),
        "pgnode03 (nofailover) was promoted"
    );
    ok(lab.play("restart.yml", START_TWO, &[]));
    let back = std::time::Instant::now();
    while check().code != 0 {
        assert!(
            back.elapsed().as_secs() < 120,
            "check is not green after Patroni came back:\n{}",
            check().out
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    eprintln!(
        "nofailover: no member promoted while only pgnode03 remained; green again {:.0?} after",
        back.elapsed()
    );

    // A member that does not come back: the wait fails and shows that unit's journal there.
    ok(lab.play("break.yml", BREAK, &[]));
    let broken = with(&["-e", &new_pw_arg, "-e", "patroni_wait_retries=2"]);
    assert_eq!(broken.code, 2, "{}", broken.out);
    for shown in [
        "every member is the leader or a streaming replica failed on pgnode03",
        "last lines of `journalctl -u patroni` there:",
        "pgnode03 patroni[",
    ] {
        assert!(broken.out.contains(shown), "{shown}:\n{}", broken.out);
    }

    // The generated passwords: kept in a 0600 file, reused (the re-runs changed nothing),
    // never printed; nor are the users' passwords.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secrets).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let kept = std::fs::read_to_string(&secrets).unwrap();
    let mut passwords: Vec<&str> = kept
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(": ").map(|(_, v)| v.trim_matches('"')))
        .collect();
    // Patroni's superuser, replication and REST passwords, HAProxy's statistics, VRRP's, the
    // exporter's, and Pgpool-II's pcp password, pool_passwd key and watchdog key (made once,
    // for the day pgpool is turned on).
    assert_eq!(passwords.len(), 9, "{kept}");
    passwords.extend([
        "app-pw-first-7f3a",
        "app-pw-second-9c1d",
        "Rotated-Repl-5b2e",
        "Rotated-Super-8d1f",
    ]);
    for out in [
        &first,
        &again,
        &renewed,
        &changed_pw,
        &after_switch,
        &broken.out,
    ] {
        for pw in &passwords {
            assert!(!out.contains(pw), "a password was printed:\n{out}");
        }
    }
}

/// pgnode03's Patroni carries its patroni_tags.
const TAGS: &str = r#"
- hosts: pgnode03
  gather_facts: no
  tasks:
    - uri:
        url: "https://10.77.0.13:8008/patroni"
        ca_path: /etc/pgdeploy/tls/ca.crt
      register: me
      # Patroni applies a reloaded configuration on its next loop (loop_wait, 10 s).
      until: "me.json.tags | default({}) == {'datacenter': 'dc2', 'nofailover': true}"
      retries: 20
      delay: 1
"#;

/// Patroni stopped on pgnode02 and then on the leader, pgnode01; and started again.
const STOP_TWO: &str = r#"
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: systemctl stop patroni
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: systemctl stop patroni
"#;
const START_TWO: &str = r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: systemctl start patroni
- hosts: pgnode02
  gather_facts: no
  tasks:
    - command: systemctl start patroni
"#;

/// What the first deploy must have built, checked from the hosts with real SQL and requests.
/// A write marked `check_mode: false` (pgdeploy's mark of a read-only task) is read ahead only
/// inside a read-only transaction, where it fails and changes nothing; it then runs in its
/// turn, after the write before it.
const READ_AHEAD: &str = r#"
- hosts: master
  gather_facts: no
  become: yes
  become_user: postgres
  tasks:
    - postgresql_query: { query: "CREATE TABLE pgdeploy_read_ahead (n serial, what text)" }
    - postgresql_query: { query: "SELECT 1 AS one" }
      check_mode: false
    - postgresql_query: { query: "INSERT INTO pgdeploy_read_ahead (what) VALUES ('first')" }
    - postgresql_query: { query: "INSERT INTO pgdeploy_read_ahead (what) VALUES ('second')" }
      check_mode: false
    - postgresql_query:
        query: "SELECT string_agg(what, ',' ORDER BY n) AS seq FROM pgdeploy_read_ahead"
      check_mode: false
      register: seq
    - postgresql_query: { query: "DROP TABLE pgdeploy_read_ahead" }
    - assert:
        that:
          - seq.query_result[0].seq == 'first,second'
"#;

/// Three read-only queries (the first one selecting `first` too): session state one sets is
/// gone for the next, values with a line break arrive whole.
fn sql_session(first: &str) -> String {
    format!(
        r#"
- hosts: master
  gather_facts: no
  become: yes
  become_user: postgres
  tasks:
    - postgresql_query: {{ query: "SELECT {first}set_config('application_name', 'probe', false) AS a" }}
      check_mode: false
      register: a
    - postgresql_query: {{ query: "SELECT current_setting('application_name') AS a, E'two\\nlines' AS t" }}
      check_mode: false
      register: b
    - postgresql_query: {{ query: "SELECT count(*) AS n FROM pg_roles WHERE rolname = 'postgres'" }}
      check_mode: false
      register: c
    - assert:
        that:
          - a.query_result[0].a == 'probe'
          - b.query_result[0].a != 'probe'
          - b.query_result[0].t == 'two\nlines'
          - c.query_result[0].n | int == 1
"#
    )
}

/// The commands a host's connection ran, from the recap.
fn commands_of(out: &str, host: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{host} ")) && l.contains(" : ok="))
        .unwrap_or_else(|| panic!("no recap line for {host}:\n{out}"));
    line.rsplit("commands=")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

const CHECK: &str = r#"
- hosts: master
  gather_facts: no
  tasks:
    - name: two replicas stream from the leader
      postgresql_query:
        query: "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
      become: yes
      become_user: postgres
      register: rep
    - assert:
        that:
          - rep.query_result | map(attribute='application_name') | list == ['pgnode02', 'pgnode03']
          - rep.query_result | map(attribute='state') | unique | list == ['streaming']
    - name: settings from the base file, the DCS and the vars
      postgresql_query:
        query: >-
          SELECT current_setting('shared_buffers') AS sb, current_setting('work_mem') AS wm,
                 current_setting('max_connections') AS mc,
                 current_setting('log_min_duration_statement') AS lmd,
                 current_setting('password_encryption') AS pe,
                 (SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'app') AS scram,
                 (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb') AS owner
      become: yes
      become_user: postgres
      register: s
    - assert:
        that:
          - s.query_result[0].sb == '128MB'
          - s.query_result[0].wm == '4MB'
          - s.query_result[0].mc == '120'
          - s.query_result[0].lmd == '2s'
          - s.query_result[0].pe == 'scram-sha-256'
          - s.query_result[0].scram == 't'
          - s.query_result[0].owner == 'app'
    - name: pgdeploy's production defaults are live
      postgresql_query:
        query: >-
          SELECT current_setting('shared_preload_libraries') AS spl, current_setting('wal_level') AS wl,
                 current_setting('logging_collector') AS lc, current_setting('log_directory') AS ld,
                 current_setting('jit') AS jit, current_setting('idle_in_transaction_session_timeout') AS iit,
                 (SELECT count(*) FROM pg_stat_statements) > 0 AS statements
      become: yes
      become_user: postgres
      register: d
    - assert:
        that:
          - d.query_result[0].spl == 'pg_stat_statements,auto_explain'
          - d.query_result[0].wl == 'logical'
          - d.query_result[0].lc == 'on'
          - d.query_result[0].ld == '/var/log/postgresql/postgres-cluster'
          - d.query_result[0].jit == 'off'
          - d.query_result[0].iit == '10min'
          - d.query_result[0].statements == 't'
    - name: a setting given as a default and in postgresql_parameters is written once, the user's
      command: grep -c '^log_min_duration_statement = ' /etc/postgresql/15/main/postgresql.base.conf
      register: once
    - assert:
        that: [once.stdout == '1']
    - name: the base file holds the user's value
      command: grep -x "log_min_duration_statement = '2000'" /etc/postgresql/15/main/postgresql.base.conf
    - name: PostgreSQL logs to its own files
      shell: ls /var/log/postgresql/postgres-cluster/postgresql-*.log
    - name: systemd-logind's configuration, as systemd merges it, says RemoveIPC=no
      shell: systemd-analyze cat-config systemd/logind.conf | grep -x 'RemoveIPC=no'
    - name: unattended-upgrades would leave the cluster's packages alone (apt parses the list)
      shell: apt-config dump | grep -A3 '^Unattended-Upgrade::Package-Blacklist'
      register: blacklist
    - assert:
        that: ['"postgresql-" in blacklist.stdout']
    - name: logrotate rotates PgBouncer's log
      shell: logrotate -d /etc/logrotate.conf 2>&1 | grep -F 'considering log /var/log/postgresql/pgbouncer.log'
    - name: each exporter answers a client with a certificate of the cluster's CA, with live values
      uri:
        url: "https://{{ item.host }}/metrics"
        ca_path: /etc/pgdeploy/tls/ca.crt
        client_cert: /etc/pgdeploy/tls/server.crt
        client_key: /etc/pgdeploy/tls/root.key
        return_content: yes
      become: yes
      register: scraped
      failed_when: item.want not in scraped.content
      loop:
        - { host: "10.77.0.11:9187", want: "\npg_up 1\n" }
        - { host: "10.77.0.12:9187", want: "\npg_up 1\n" }
        # Each replica's lag in bytes, as the leader sees it.
        - { host: "10.77.0.11:9187", want: "\npg_stat_replication_pg_wal_lsn_diff{application_name=\"pgnode02\"" }
        - { host: "10.77.0.11:9187", want: "\npg_stat_replication_pg_wal_lsn_diff{application_name=\"pgnode03\"" }
        - { host: "10.77.0.11:9187", want: "\npg_stat_database_xact_commit{datid=" }
        - { host: "10.77.0.12:9100", want: "\nnode_load1 " }
        # PgBouncer's statistics, through the node exporter.
        - { host: "10.77.0.12:9100", want: "\npgbouncer_up 1\n" }
        - { host: "10.77.0.12:9100", want: "\npgbouncer_pools_cl_active{database=" }
        - { host: "10.77.0.11:8008", want: "\npatroni_primary{scope=\"postgres-cluster\"} 1\n" }
        - { host: "10.77.0.13:8008", want: "\npatroni_replica{scope=\"postgres-cluster\"} 1\n" }
    - name: and no answer without one
      uri:
        url: "https://10.77.0.12:9187/metrics"
        ca_path: /etc/pgdeploy/tls/ca.crt
      become: yes
      register: nocert
      ignore_errors: true
    - assert:
        that: [nocert is failed]
    - name: the exporters listen on the host's address only
      shell: ss -Htln | awk '{print $4}' | grep -E ':(9100|9187)$' | sort
      register: exporters_listen
    - assert:
        that: "exporters_listen.stdout_lines == ['10.77.0.11:9100', '10.77.0.11:9187']"
    - name: the exporter's role monitors and nothing more
      postgresql_query:
        query: >-
          SELECT pg_has_role('pgdeploy_monitor', 'pg_monitor', 'MEMBER') AS monitor,
                 (SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = 'pgdeploy_monitor') AS more
      become: yes
      become_user: postgres
      register: mon
    - assert:
        that:
          - mon.query_result[0].monitor == 't'
          - mon.query_result[0].more == 'f'
    - name: Patroni's REST API refuses a state-changing request without its password
      uri:
        url: "https://10.77.0.11:8008/restart"
        ca_path: /etc/pgdeploy/tls/ca.crt
        method: POST
        body: "{}"
        body_format: json
        status_code: 401
    - name: and takes a read-only one
      uri: { url: "https://10.77.0.11:8008/cluster", ca_path: /etc/pgdeploy/tls/ca.crt }
- hosts: pgnode03
  gather_facts: no
  tasks:
    - name: a row through the VIP
      command: psql "postgresql://app@{{ cluster_vip }}:5432/appdb" -Atc "CREATE TABLE probe (via text); INSERT INTO probe VALUES ('vip5432'); SELECT pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: via_vip
    - name: and one through PgBouncer on the VIP
      command: psql "postgresql://app@{{ cluster_vip }}:6432/appdb" -Atc "INSERT INTO probe VALUES ('vip6432'); SELECT pg_is_in_recovery()"
      environment: { PGPASSWORD: "{{ postgresql_users[0].password }}" }
      register: via_bouncer
    - assert:
        that:
          - via_vip.stdout_lines[-1] == 'f'
          - via_bouncer.stdout_lines[-1] == 'f'
    - name: the multi-host URL of the summary reaches the leader
      command: psql "postgresql://postgres@10.77.0.11:5432,10.77.0.12:5432,10.77.0.13:5432/postgres?target_session_attrs=read-write" -Atc "SELECT pg_is_in_recovery()"
      environment:
        PGPASSWORD: "{{ patroni_superuser_password }}"
      register: url
      changed_when: false
    - assert:
        that: url.stdout == 'f'
- hosts: replica
  gather_facts: no
  tasks:
    - name: both rows are read back on every replica
      postgresql_query:
        query: "SELECT pg_is_in_recovery() AS standby, string_agg(via, ',' ORDER BY via) AS rows FROM probe"
        db: appdb
      become: yes
      become_user: postgres
      register: row
      until: row.query_result | default([]) | length > 0 and row.query_result[0].rows == 'vip5432,vip6432'
      retries: 10
      delay: 1
    - assert:
        that: row.query_result[0].standby == 't'
- hosts: postgres_cluster
  gather_facts: no
  tasks:
    - name: the VIP is on the leader (pgnode01) only
      command: ip -o -4 addr show dev host0
      register: addrs
      changed_when: false
    - assert:
        that: "(' ' ~ cluster_vip ~ '/' in addrs.stdout) == (inventory_hostname == 'pgnode01')"
    - name: no stray one-member etcd data
      stat: { path: /var/lib/etcd/default }
      register: stray
    - name: system preparation
      command: cat /etc/timezone /etc/default/locale /etc/hosts /etc/security/limits.d/pgdeploy.conf
      register: sys
      changed_when: false
    - name: PostgreSQL listens on the host, the VIP and localhost, not on every interface
      shell: ss -Htln 'sport = :5432' | awk '{print $4}' | sort | tr '\n' ' '
      register: listen
      changed_when: false
    - assert:
        that:
          - not stray.stat.exists
          - "'Etc/UTC' in sys.stdout and 'LANG=C.UTF-8' in sys.stdout"
          - "'10.77.0.12 pgnode02' in sys.stdout and 'postgres  hard  nofile  200000' in sys.stdout"
          - listen.stdout == '10.77.0.100:5432 ' ~ ansible_host ~ ':5432 127.0.0.1:5432 '
"#;

const MARK: &str = r#"
- hosts: all
  gather_facts: no
  tasks:
    - command: touch /run/pgdeploy-rerun-mark
"#;

/// No file under `dirs` was written since MARK.
fn untouched(dirs: &str) -> String {
    format!(
        r#"
- hosts: all
  gather_facts: no
  tasks:
    - name: no file under {dirs} was written since the mark
      command: find {dirs} -newer /run/pgdeploy-rerun-mark -type f
      register: written
      changed_when: false
    - assert:
        that: written.stdout == ''
        fail_msg: "written: {{{{ written.stdout }}}}"
"#
    )
}

/// `cluster --check --diff` on bare hosts: the whole plan down to the summary, the files it
/// would write as text diffs, the bundle's packages as one line each, a count per host.
fn assert_readable_plan(plan: &str) {
    assert!(plan.len() < 400_000, "{} bytes of output", plan.len());
    assert!(
        !plan
            .chars()
            .any(|c| c == '\u{fffd}' || c.is_control() && c != '\n' && c != '\t'),
        "binary bytes in the output"
    );
    for file in [
        "+++ /etc/default/etcd (after)",
        "+++ /etc/patroni/config.yml (after)",
        "+++ /etc/postgresql/15/main/pg_hba.conf (after)",
        "+++ /etc/pgbouncer/pgbouncer.ini (after)",
        "+++ /etc/default/vip-manager (after)",
        "TASK [the cluster]",
    ] {
        assert!(plan.contains(file), "{file}:\n{plan}");
    }
    assert!(
        plan.lines()
            .any(|l| l.starts_with("/var/lib/pgdeploy/bundle/postgresql-15_")
                && l.contains(": binary file, ")
                && l.ends_with(" MB, would be created")),
        "a package of the bundle as one line:\n{plan}"
    );
    assert!(
        plan.contains("changed: [pgnode01] => would change; not checked, it needs changes this run has not made yet: unit etcd not found"),
        "{plan}"
    );
    let counts = plan.split("\nwould change:\n").nth(1).unwrap_or_default();
    for host in ["pgnode01", "pgnode02", "pgnode03"] {
        let line = counts
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_default();
        let n = |what: &str| -> u32 {
            line.split(", ")
                .find_map(|p| {
                    p.trim_start_matches(&format!("{host} : "))
                        .strip_suffix(what)
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        assert!(
            n("files") > 100 && n("packages") >= 8 && n("services") >= 4,
            "counts for {host}: {line}\n{plan}"
        );
    }
}

const SWITCH: &str = r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: patronictl -c /etc/patroni/config.yml switchover --candidate pgnode02 --force
      become: yes
      become_user: postgres
    - uri: { url: "https://10.77.0.12:8008/primary", ca_path: /etc/pgdeploy/tls/ca.crt }
      register: p
      until: p.status == 200
      retries: 30
      delay: 1
- hosts: pgnode02
  gather_facts: no
  tasks:
    - name: the VIP follows the new leader
      command: ip -o -4 addr show dev host0
      register: addrs
      until: "' 10.77.0.100/' in addrs.stdout"
      retries: 30
      delay: 1
      changed_when: false
    - name: both replicas stream from it, connected with the rotated replication password
      command: psql -Atc "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
      become: yes
      become_user: postgres
      register: streams
      until: streams.stdout == '2'
      retries: 60
      delay: 1
      changed_when: false
"#;

/// Patroni on pgnode03 paused (so it does not restart PostgreSQL) and PostgreSQL stopped.
const BREAK: &str = r#"
- hosts: pgnode03
  gather_facts: no
  tasks:
    - command: patronictl -c /etc/patroni/config.yml pause --wait
      become: yes
      become_user: postgres
    - command: /usr/lib/postgresql/15/bin/pg_ctl -D /var/lib/postgresql/15/main stop -m fast
      become: yes
      become_user: postgres
"#;

fn assert_nothing_changed(out: &str) {
    common::lab::assert_nothing_changed(out, &["pgnode01", "pgnode02", "pgnode03"]);
}
