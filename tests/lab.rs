//! The lab end to end: systemd-nspawn hosts on a bridge, reached with pgdeploy over SSH with
//! their host keys verified, faults injected, and nothing left behind.
//!
//! One test, in sequence: the lab is one per machine (one bridge). Needs root,
//! systemd-container and debootstrap; without them it fails saying what to install.

mod common;

use common::lab::{ok, pgdeploy, TestLab};
use std::process::Command;

fn ssh_port_open(ip: &str) -> bool {
    std::net::TcpStream::connect_timeout(
        &format!("{ip}:22").parse().unwrap(),
        std::time::Duration::from_secs(2),
    )
    .is_ok()
}

/// The init processes of containers whose root is a lab host's under `dir`.
fn container_inits(dir: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let init = status
                .lines()
                .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"));
            init && std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
                m.lines().any(|l| {
                    l.split(' ').nth(4) == Some("/") && l.contains(&format!("upperdir={dir}/"))
                })
            })
        })
        .map(|pid| pid.to_string())
        .collect()
}

#[test]
fn lab_hosts_behave_like_real_hosts() {
    let t = TestLab::up();
    let (tmp, home, dir) = (&t.tmp, &t.home, &t.dir);
    let d = dir.to_str().unwrap();
    let lab = |args: &[&str]| t.lab(args);

    // A second `lab up` over a running (stale) lab cleans it first.
    ok(lab(&["up"]));
    let inventory = dir.join("inventory");
    let inv_text = std::fs::read_to_string(&inventory).unwrap();
    for (i, name) in ["pgnode01", "pgnode02", "pgnode03"].iter().enumerate() {
        assert!(
            inv_text.contains(&format!(
                "{name} ansible_host=10.77.0.1{} hostname={name}",
                i + 1
            )),
            "{inv_text}"
        );
    }
    for group in [
        "[etcd_cluster]",
        "[master]",
        "[replica]",
        "[postgres_cluster:children]",
        "[balancers]",
        "[pgbackrest]\npgbackup ansible_host=10.77.0.20 hostname=pgbackup\n",
        "cluster_vip=10.77.0.100",
        "vip_interface=host0",
        "shared_buffers=128MB",
    ] {
        assert!(
            inv_text.contains(group),
            "inventory lacks {group}:\n{inv_text}"
        );
    }
    // Distinct host keys and machine-ids.
    let known = std::fs::read_to_string(dir.join("known_hosts")).unwrap();
    let keys: std::collections::HashSet<&str> = known
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(keys.len(), 4, "{known}");
    let ids: std::collections::HashSet<String> = ["pgnode01", "pgnode02", "pgnode03", "pgbackup"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(dir.join("nodes").join(n).join("root/etc/machine-id")).unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 4);

    let play = tmp.path().join("checks.yml");
    std::fs::write(
        &play,
        r#"
- hosts: all
  tasks:
    - name: each host is itself, a systemd container on its own address
      assert:
        that:
          - ansible_hostname == inventory_hostname
          - ansible_default_ipv4.address == ansible_host
          - ansible_default_ipv4.interface == 'host0'
          - ansible_service_mgr == 'systemd'
          - ansible_is_container
    - name: hosts reach each other
      command: ping -c1 -W2 {{ hostvars[item].ansible_host }}
      loop: "{{ groups['all'] }}"
      changed_when: false
    - name: become root through sudo
      become: yes
      copy:
        content: "{{ ansible_user }}\n"
        dest: /root/written-as
"#,
    )
    .unwrap();
    let vip = tmp.path().join("vip.yml");
    std::fs::write(
        &vip,
        r#"
- hosts: pgnode01
  gather_facts: no
  tasks:
    - name: an address added here (as keepalived does with a VIP)
      command: ip addr add 10.77.0.200/24 dev host0
- hosts: pgnode02
  gather_facts: no
  tasks:
    - name: answers from another host
      command: ping -c1 -W2 10.77.0.200
      changed_when: false
- hosts: pgnode01
  gather_facts: no
  tasks:
    - command: ip addr del 10.77.0.200/24 dev host0
"#,
    )
    .unwrap();
    let inv = inventory.to_str().unwrap();
    ok(pgdeploy(home, &["run", play.to_str().unwrap(), "-i", inv]));
    ok(pgdeploy(home, &["run", vip.to_str().unwrap(), "-i", inv]));
    ok(pgdeploy(
        home,
        &[
            "run",
            play.to_str().unwrap(),
            "-i",
            inv,
            "-e",
            "ansible_user=pgdtest",
            "--limit",
            "pgnode02",
        ],
    ));
    let written = std::fs::read_to_string(dir.join("nodes/pgnode02/root/root/written-as")).unwrap();
    assert_eq!(
        written, "pgdtest\n",
        "the last write came through the sudo user"
    );

    // Power off: gone at once, and back with its disk as it was.
    ok(lab(&["stop", "pgnode03"]));
    assert!(
        !ssh_port_open("10.77.0.13"),
        "pgnode03 still answers after lab stop"
    );
    assert!(ok(lab(&["status"]))
        .lines()
        .any(|l| l.starts_with("pgnode03") && l.contains(" off ")));
    ok(lab(&["start", "pgnode03"]));
    assert!(ssh_port_open("10.77.0.13"));
    let ping = tmp.path().join("ping.yml");
    std::fs::write(&ping, "- hosts: pgnode03\n  gather_facts: no\n  tasks:\n    - command: cat /root/written-as\n      changed_when: false\n").unwrap();
    ok(pgdeploy(home, &["run", ping.to_str().unwrap(), "-i", inv]));

    // A cut link: the host runs but nobody reaches it, until healed.
    ok(lab(&["cut", "pgnode02"]));
    assert!(
        !ssh_port_open("10.77.0.12"),
        "pgnode02 answers through a cut link"
    );
    let from1 = tmp.path().join("from1.yml");
    std::fs::write(&from1, "- hosts: pgnode01\n  gather_facts: no\n  tasks:\n    - command: ping -c1 -W2 10.77.0.12\n      changed_when: false\n").unwrap();
    assert_eq!(
        pgdeploy(home, &["run", from1.to_str().unwrap(), "-i", inv]).code,
        2,
        "pgnode01 still reaches a cut pgnode02"
    );
    ok(lab(&["heal", "pgnode02"]));
    ok(pgdeploy(home, &["run", from1.to_str().unwrap(), "-i", inv]));
    assert!(ssh_port_open("10.77.0.12"));

    // The offline bundle: postgresql-15 installs on a host that has no internet and no apt
    // sources at all; a second run ships nothing (same hashes) and changes nothing.
    let bundle = tmp.path().join("bundle");
    ok(pgdeploy(
        home,
        &["bundle", "--out", bundle.to_str().unwrap()],
    ));
    assert!(bundle.join("Packages").exists() && bundle.join("Release").exists());
    let install = tmp.path().join("install.yml");
    std::fs::write(
        &install,
        format!(
            r#"
- hosts: pgnode01
  gather_facts: yes
  vars:
    bundle_install: [postgresql-15]
  tasks:
    - import_tasks: {}/playbooks/roles/packages/bundle.yml
    - command: /usr/lib/postgresql/15/bin/postgres --version
      register: version
      changed_when: false
    - assert:
        that: "'(PostgreSQL) 15.' in version.stdout"
    # systemd, sysctl and postgresql_query against a real host, converging on the re-run.
    - copy:
        dest: /etc/systemd/system/pgd-probe.service
        content: "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
    - systemd: {{ name: pgd-probe, state: started, enabled: yes, daemon_reload: yes }}
    - command: systemctl is-active pgd-probe
      changed_when: false
    - command: systemctl is-enabled pgd-probe
      changed_when: false
    - sysctl: {{ name: net.ipv4.tcp_keepalive_time, value: "300" }}
    - command: cat /proc/sys/net/ipv4/tcp_keepalive_time
      register: keepalive
      changed_when: false
    - postgresql_query:
        query: "SELECT current_setting('server_version_num')::int / 10000 AS major, %s AS word, current_setting('search_path') AS sp, current_setting('client_encoding') AS enc, current_user AS who"
        positional_args: ["it's"]
        search_path: [pg_catalog, public]
        encoding: LATIN1
        session_role: pg_monitor
      become: yes
      become_user: postgres
      register: pg
    - assert:
        that:
          - keepalive.stdout == '300'
          - pg.query_result[0].major == '15'
          - pg.query_result[0].word == "it's"
          - pg.query_result[0].sp == 'pg_catalog, public'
          - pg.query_result[0].enc == 'LATIN1'
          - pg.query_result[0].who == 'pg_monitor'
          - not pg.changed
"#,
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let b = format!("package_bundle={}", bundle.display());
    ok(pgdeploy(
        home,
        &["run", install.to_str().unwrap(), "-i", inv, "-e", &b],
    ));
    let again = ok(pgdeploy(
        home,
        &["run", install.to_str().unwrap(), "-i", inv, "-e", &b],
    ));
    assert!(
        again
            .lines()
            .any(|l| l.starts_with("pgnode01 ") && l.contains(" changed=0 ")),
        "{again}"
    );

    // A session killed with the lab up (its systemd-nspawn processes killed too) leaves the
    // containers running, adopted by PID 1: `lab down` still finds and stops them.
    assert_eq!(container_inits(d).len(), 4, "the lab's four hosts");
    Command::new("pkill")
        .args(["-KILL", "-f", "systemd-nspawn.*pgdlab0"])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(container_inits(d).len(), 4, "orphaned, still running");

    // Down leaves no bridge, no container, no mount.
    ok(lab(&["down"]));
    assert!(container_inits(d).is_empty(), "containers left behind");
    // Their veths are gone too: a `lab up` right after can make its own.
    for name in ["pgnode01", "pgnode02", "pgnode03", "pgbackup"] {
        let veth = format!("/sys/class/net/vb-{name}");
        assert!(!std::path::Path::new(&veth).exists(), "{veth} left behind");
    }
    assert!(
        !Command::new("ip")
            .args(["link", "show", "pgdlab0"])
            .output()
            .unwrap()
            .status
            .success(),
        "bridge left behind"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(d), "mounts left behind:\n{mounts}");
    let ps = Command::new("ps")
        .args(["-eo", "stat=,args="])
        .output()
        .unwrap();
    let running: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| {
            l.contains("systemd-nspawn")
                && l.contains("pgdlab0")
                && !l.trim_start().starts_with('Z')
        })
        .map(str::to_string)
        .collect();
    assert!(running.is_empty(), "containers left behind: {running:?}");
    assert!(!dir.join("nodes").exists());
}
