//! The cluster playbook (Type B core so far) deployed to the lab from bare hosts with the
//! offline bundle: a 3-member etcd, a Patroni leader and two streaming replicas, checked with
//! real SQL; a re-run changes nothing; the passwords never show.

mod common;

use common::lab::{ok, TestLab};

#[test]
fn type_b_core_deploys_and_reruns_clean() {
    let lab = TestLab::up();
    let bundle = lab.bundle();
    let inv = lab.inventory();
    // No passwords given: pgdeploy generates them once and keeps them beside the inventory.
    let bundle_var = format!("package_bundle={}", bundle.display());
    let args = ["cluster", "-i", &inv, "-e", &bundle_var];
    // A postgresql_cluster setting pgdeploy does not support stops the run before any change.
    // Pre-flight: every problem of a host is reported together, and nothing changes.
    let refused = lab.pgdeploy(&[
        "cluster",
        "-i",
        &inv,
        "-e",
        &bundle_var,
        "-e",
        "dcs_type=consul",
        "-e",
        "cluster_vip=192.168.99.100",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.out);
    assert!(
        refused.out.contains("dcs_type: consul is not supported"),
        "{}",
        refused.out
    );
    assert!(
        refused
            .out
            .contains("cluster_vip 192.168.99.100 is not in this host's subnet 10.77.0.0/24"),
        "{}",
        refused.out
    );
    assert_nothing_changed(&refused.out);
    let first = ok(lab.pgdeploy(&args));
    assert!(
        first.contains("members: pgnode01 (leader, running), pgnode02 (replica, "),
        "{first}"
    );
    let url = "postgresql://10.77.0.11:5432,10.77.0.12:5432,10.77.0.13:5432/postgres?target_session_attrs=read-write";
    assert!(
        first.contains(url),
        "the summary gives the multi-host URL:\n{first}"
    );
    let check = lab.tmp.path().join("check.yml");
    std::fs::write(
        &check,
        r#"
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
    - name: a row written on the leader
      postgresql_query:
        query: "CREATE TABLE IF NOT EXISTS pgdeploy_probe (v text); INSERT INTO pgdeploy_probe VALUES ('hello')"
      become: yes
      become_user: postgres
- hosts: replica
  gather_facts: no
  tasks:
    - name: is read back on every replica
      postgresql_query:
        query: "SELECT pg_is_in_recovery() AS standby, (SELECT count(*) FROM pgdeploy_probe WHERE v = 'hello') AS n"
      become: yes
      become_user: postgres
      register: row
      until: row.query_result | default([]) | length > 0 and row.query_result[0].n == '1'
      retries: 10
      delay: 1
    - assert:
        that: row.query_result[0].standby == 't'
- hosts: pgnode03
  gather_facts: no
  tasks:
    - name: clients through the VIP reach the leader
      postgresql_query:
        query: "SELECT pg_is_in_recovery() AS standby, (SELECT count(*) FROM pgdeploy_probe) AS n"
        login_host: "{{ cluster_vip }}"
        login_user: postgres
        login_password: "{{ patroni_superuser_password }}"
      register: via_vip
    - name: and through PgBouncer on the VIP
      postgresql_query:
        query: "SELECT pg_is_in_recovery() AS standby, (SELECT count(*) FROM pgdeploy_probe) AS n"
        login_host: "{{ cluster_vip }}"
        login_port: 6432
        login_user: postgres
        login_password: "{{ patroni_superuser_password }}"
      register: via_bouncer
    - assert:
        that:
          - via_vip.query_result[0].standby == 'f'
          - via_vip.query_result[0].n == '1'
          - via_bouncer.query_result[0].standby == 'f'
          - via_bouncer.query_result[0].n == '1'
    - name: the multi-host URL of the summary reaches the leader
      command: psql "postgresql://postgres@10.77.0.11:5432,10.77.0.12:5432,10.77.0.13:5432/postgres?target_session_attrs=read-write" -Atc "SELECT pg_is_in_recovery()"
      environment:
        PGPASSWORD: "{{ patroni_superuser_password }}"
      register: url
      changed_when: false
    - assert:
        that: url.stdout == 'f'
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
    - assert:
        that: not stray.stat.exists
"#,
    )
    .unwrap();
    let secrets = lab.dir.join("pgdeploy-secrets.yml");
    let secrets_arg = secrets.to_str().unwrap();
    ok(lab.pgdeploy(&[
        "run",
        check.to_str().unwrap(),
        "-i",
        &inv,
        "--vars-file",
        secrets_arg,
    ]));
    let again = ok(lab.pgdeploy(&args));
    assert_nothing_changed(&again);

    // After a switchover the inventory's `master` is a replica: a re-run still converges and
    // touches nothing.
    let switch = lab.tmp.path().join("switch.yml");
    std::fs::write(
        &switch,
        r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: patronictl -c /etc/patroni/config.yml switchover --candidate pgnode02 --force
      become: yes
      become_user: postgres
    - uri: { url: "http://10.77.0.12:8008/primary" }
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
"#,
    )
    .unwrap();
    ok(lab.pgdeploy(&["run", switch.to_str().unwrap(), "-i", &inv]));
    let after_switch = ok(lab.pgdeploy(&args));
    assert_nothing_changed(&after_switch);
    // The generated passwords: kept in a 0600 file, reused (the re-runs changed nothing),
    // never printed.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secrets).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let kept = std::fs::read_to_string(&secrets).unwrap();
    let passwords: Vec<&str> = kept
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(": ").map(|(_, v)| v.trim_matches('"')))
        .collect();
    assert_eq!(passwords.len(), 2, "{kept}");
    for out in [&first, &again, &after_switch] {
        for pw in &passwords {
            assert!(!out.contains(pw), "a password was printed:\n{out}");
        }
    }
}

fn assert_nothing_changed(out: &str) {
    for host in ["pgnode01", "pgnode02", "pgnode03"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{host} ")) && l.contains(" changed=0 ")),
            "the re-run must change nothing on {host}:\n{out}"
        );
    }
}
