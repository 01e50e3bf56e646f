//! The engine against real OpenSSH sshd hosts on loopback addresses.
//!
//! The hosts share this machine's filesystem, so every playbook writes below
//! `{{ base }}/{{ inventory_hostname }}`.

mod common;

use common::{mode_of, Lab, SUDO_PASSWORD, SUDO_PW_USER, SUDO_USER};
use std::path::Path;

const SITE: &str = r#"
- hosts: web
  gather_facts: yes
  vars:
    root: "{{ base }}/{{ inventory_hostname }}"
  tasks:
    - name: directories
      file:
        path: "{{ root }}/{{ item }}"
        state: directory
        mode: "0750"
      loop: [conf, data]

    - name: config from a template
      template:
        src: app.conf.j2
        dest: "{{ root }}/conf/app.conf"
        mode: 0640
      notify: restart app

    - name: static content
      copy:
        content: "hello {{ inventory_hostname }}\n"
        dest: "{{ root }}/data/hello.txt"

    - name: a setting in a file
      lineinfile:
        path: "{{ root }}/conf/limits.conf"
        regexp: '^max_conn'
        line: "max_conn = {{ max_conn | default(100) }}"
        create: yes

    - name: one-time initialisation
      command: touch {{ root }}/data/initialised
      args:
        creates: "{{ root }}/data/initialised"

    - name: read something back
      command: cat {{ root }}/data/hello.txt
      register: hello
      changed_when: false
      failed_when: false
      check_mode: false

    - name: facts and registered output are usable
      when: not ansible_check_mode
      assert:
        that:
          - hello.stdout == 'hello ' ~ inventory_hostname
          - ansible_os_family == 'Debian'
          - ansible_default_ipv4.address | length > 0
          - "'web' in group_names"

  handlers:
    - name: restart app
      shell: echo restarted >> {{ root }}/data/handler.log
"#;

const APP_CONF: &str = "# managed by pgdeploy\nname = {{ inventory_hostname }}\n{% for peer in groups['web'] %}\npeer = {{ hostvars[peer]['ansible_host'] }}\n{% endfor %}\nport = {{ app_port | default(5432) }}\n";

fn site(lab: &Lab) -> std::path::PathBuf {
    lab.write("templates/app.conf.j2", APP_CONF);
    lab.write("site.yml", SITE)
}

fn base(lab: &Lab) -> String {
    lab.path().join("state").display().to_string()
}

/// pgdeploy opens the next command's session while one runs; a server that allows one
/// session at a time (MaxSessions 1) refuses it, and each command then opens its own.
#[test]
fn a_server_allowing_one_session_at_a_time_is_served() {
    let lab = Lab::start_with(1, "ed25519", "MaxSessions 1\n");
    let inv = lab.inventory("root", "");
    let pb = site(&lab);
    let b = format!("base={}", base(&lab));
    lab.run(&pb, &inv, &["-e", &b]).assert_code(0);
    let again = lab.run(&pb, &inv, &["-e", &b]);
    again.assert_code(0);
    assert_eq!(again.recap("h1").1, 0, "{}", again.stdout);
}

#[test]
fn converges_then_rerun_changes_nothing() {
    let lab = Lab::start(3);
    let inv = lab.inventory("root", "");
    let pb = site(&lab);
    let b = format!("base={}", base(&lab));
    let first = lab.run(&pb, &inv, &["-e", &b]);
    first.assert_code(0);
    for h in &lab.hosts {
        let root = Path::new(&base(&lab)).join(&h.name);
        let conf = std::fs::read_to_string(root.join("conf/app.conf")).unwrap();
        assert!(conf.contains(&format!("name = {}\n", h.name)), "{conf}");
        assert!(
            conf.contains("peer = 127.0.1.1\npeer = 127.0.1.2\npeer = 127.0.1.3\n"),
            "{conf}"
        );
        assert!(conf.ends_with("port = 5432\n"), "{conf}");
        let limits = std::fs::read_to_string(root.join("conf/limits.conf")).unwrap();
        assert_eq!(limits, "max_conn = 100\n");
        assert_eq!(mode_of(&root.join("conf/app.conf")), 0o640);
        assert_eq!(mode_of(&root.join("conf")), 0o750);
        assert_eq!(
            std::fs::read_to_string(root.join("data/hello.txt")).unwrap(),
            format!("hello {}\n", h.name)
        );
        // No mode given: a new file gets what the login's umask (022) gives.
        assert_eq!(mode_of(&root.join("data/hello.txt")), 0o644);
        assert!(root.join("data/initialised").exists());
        // The handler ran once, at the end of the play.
        assert_eq!(
            std::fs::read_to_string(root.join("data/handler.log")).unwrap(),
            "restarted\n"
        );
        // Facts, nine tasks, loops and a handler: one SSH connection per host for the run.
        assert_eq!(lab.logins(&h.name), 1, "one connection per host per run");
        let (_, changed, unreachable, failed, _) = first.recap(&h.name);
        assert!(changed >= 6, "first run changes things: {}", first.stdout);
        assert_eq!((unreachable, failed), (0, 0));
    }
    let second = lab.run(&pb, &inv, &["-e", &b]);
    second.assert_code(0);
    for h in &lab.hosts {
        assert_eq!(
            second.recap(&h.name).1,
            0,
            "re-run must report 0 changed:\n{}",
            second.stdout
        );
        let log = Path::new(&base(&lab))
            .join(&h.name)
            .join("data/handler.log");
        assert_eq!(
            std::fs::read_to_string(log).unwrap(),
            "restarted\n",
            "handler must not run again"
        );
    }
    // The --json recap counts each host's commands (SSH channels): the no-op run's few
    // round trips (facts, one probe per task, loops read ahead), fewer than the first run's.
    let third = lab.run(&pb, &inv, &["-e", &b, "--json"]);
    third.assert_code(0);
    let recap: serde_json::Value = third
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["event"] == "recap")
        .expect("a recap event");
    let tasks = std::fs::read_to_string(&pb)
        .unwrap()
        .matches("\n    - ")
        .count() as u64;
    for h in &lab.hosts {
        let n = recap["hosts"][&h.name]["commands"].as_u64().unwrap();
        let first_n = common::recap_commands(&first.stdout, &h.name);
        assert!(
            n > 0 && n <= tasks + 1 && n < first_n,
            "{}: {n} commands for a no-op run of {tasks} tasks (first run {first_n})",
            h.name
        );
    }
}

#[test]
fn check_mode_changes_nothing_and_diff_shows_the_change() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = site(&lab);
    let b = format!("base={}", base(&lab));
    let dry = lab.run(&pb, &inv, &["-e", &b, "--check", "--diff"]);
    dry.assert_code(0);
    assert!(
        !Path::new(&base(&lab)).exists(),
        "--check must not create anything"
    );
    assert!(
        dry.recap("h1").1 > 0,
        "--check reports what would change:\n{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("+hello h1"),
        "--diff shows new content:\n{}",
        dry.stdout
    );
    lab.run(&pb, &inv, &["-e", &b]).assert_code(0);
    // A changed variable shows as a diff of the file, and --check leaves the old file.
    let conf = Path::new(&base(&lab)).join("h1/conf/app.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    let dry = lab.run(
        &pb,
        &inv,
        &["-e", &b, "-e", "app_port=6543", "--check", "--diff"],
    );
    dry.assert_code(0);
    assert!(
        dry.stdout.contains("-port = 5432") && dry.stdout.contains("+port = 6543"),
        "{}",
        dry.stdout
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    assert_eq!(
        dry.recap("h1").1,
        1,
        "only the template would change:\n{}",
        dry.stdout
    );
}

#[test]
fn a_failing_host_leaves_the_others_going() {
    let lab = Lab::start(3);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "fail.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - name: break h2
      command: /bin/false
      when: inventory_hostname == 'h2'
    - name: later work
      file:
        path: "{{ base }}/{{ inventory_hostname }}.done"
        state: touch
"#,
    );
    let b = format!("base={}", lab.path().display());
    let r = lab.run(&pb, &inv, &["-e", &b]);
    r.assert_code(2);
    assert!(lab.path().join("h1.done").exists() && lab.path().join("h3.done").exists());
    assert!(
        !lab.path().join("h2.done").exists(),
        "a failed host drops out of the play"
    );
    assert_eq!(r.recap("h2").3, 1);
    assert!(r.stdout.contains("failed: [h2]"), "{}", r.stdout);
}

#[test]
fn an_unreachable_host_is_reported_and_the_rest_run() {
    let lab = Lab::start(2);
    let inv = lab.inventory_with_dead_host();
    let pb = lab.write(
        "ping.yml",
        r#"
- hosts: all
  gather_facts: no
  tasks:
    - ping:
      register: r
# A later play reads what the unreachable host registered, as in Ansible.
- hosts: all
  gather_facts: no
  tasks:
    - debug:
        msg: "dead: {{ 'unreachable' if hostvars['dead'].r.unreachable else '?' }}, {{ 'failed' if hostvars['dead'].r.failed | default(false) else 'not failed' }}"
      run_once: true
"#,
    );
    let r = lab.run(&pb, &inv, &["--connect-timeout", "3"]);
    r.assert_code(3);
    assert!(r.stdout.contains("unreachable: [dead]"), "{}", r.stdout);
    assert!(
        r.stdout.contains("dead: unreachable, not failed"),
        "{}",
        r.stdout
    );
    assert_eq!(r.recap("h1").0, 2, "ping and the debug ran on h1");
    assert_eq!(r.recap("dead").2, 1);
}

#[test]
fn host_keys_are_verified() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "ping.yml",
        "- hosts: web\n  gather_facts: no\n  tasks:\n    - ping:\n",
    );
    // h2's entry replaced by another key: a changed key is always refused.
    let known = std::fs::read_to_string(lab.path().join("known_hosts")).unwrap();
    let other = lab.path().join("other");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut lines: Vec<String> = known.lines().map(str::to_string).collect();
    let prefix = lines[1].split_whitespace().next().unwrap().to_string();
    lines[1] = format!(
        "{prefix} {}",
        other_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::fs::write(lab.path().join("known_hosts"), lines.join("\n") + "\n").unwrap();
    let r = lab.run(&pb, &inv, &["--accept-new-host-keys"]);
    r.assert_code(3);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{}", r.stdout);
    assert!(
        r.stdout.contains("known_hosts:2"),
        "names the known_hosts line: {}",
        r.stdout
    );
    assert_eq!(r.recap("h1").0, 1, "h1's key is right");
    // An unknown host is refused by default and recorded only on request.
    std::fs::write(lab.path().join("known_hosts"), format!("{}\n", lines[0])).unwrap();
    let r = lab.run(&pb, &inv, &[]);
    r.assert_code(3);
    assert!(r.stdout.contains("is not in"), "{}", r.stdout);
    let r = lab.run(&pb, &inv, &["--accept-new-host-keys"]);
    r.assert_code(0);
    // Recorded hashed, as OpenSSH's HashKnownHosts does; OpenSSH finds it, and so do we.
    let known_path = lab.path().join("known_hosts");
    let known = std::fs::read_to_string(&known_path).unwrap();
    assert!(
        known.lines().nth(1).is_some_and(|l| l.starts_with("|1|"))
            && !known.contains("[127.0.1.2]"),
        "{known}"
    );
    let found = std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.1.2]:{}", lab.hosts[1].port))
        .arg("-f")
        .arg(&known_path)
        .output()
        .unwrap();
    assert!(found.status.success(), "ssh-keygen -F finds it");
    lab.run(&pb, &inv, &[]).assert_code(0);
    // A key marked @revoked is refused even though a line trusts it.
    let h1_key = lines[0]
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&known_path, format!("{known}@revoked * {h1_key}\n")).unwrap();
    let r = lab.run(&pb, &inv, &[]);
    r.assert_code(3);
    assert!(
        r.stdout.contains("REVOKED HOST KEY for 127.0.1.1"),
        "{}",
        r.stdout
    );
}

/// A host that signs only with `ssh-rsa` (SHA-1) is not trusted on that signature; the same
/// RSA key signing with rsa-sha2 is.
#[test]
fn ssh_rsa_sha1_signatures_are_refused() {
    let pb_text = "- hosts: web\n  gather_facts: no\n  tasks:\n    - ping:\n";
    let sha1 = Lab::start_with(1, "rsa", "HostKeyAlgorithms ssh-rsa\n");
    let pb = sha1.write("ping.yml", pb_text);
    let r = sha1.run(&pb, &sha1.inventory("root", ""), &[]);
    r.assert_code(3);
    assert!(r.stdout.contains("unreachable: [h1]"), "{}", r.stdout);
    let sha2 = Lab::start_with(1, "rsa", "");
    let pb = sha2.write("ping.yml", pb_text);
    sha2.run(&pb, &sha2.inventory("root", ""), &[])
        .assert_code(0);
}

#[test]
fn become_through_sudo_as_a_non_root_user() {
    let lab = Lab::start(1);
    let pb = lab.write(
        "become.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - name: who am I
      command: id -un
      register: plain
      changed_when: false
    - name: root through sudo
      become: yes
      file:
        path: "{{ base }}/made-by-root-{{ ansible_user }}"
        state: touch
        owner: root
        mode: "0600"
    - name: another user
      become: yes
      become_user: nobody
      command: id -un
      register: other
      changed_when: false
    - assert:
        that:
          - plain.stdout == ansible_user
          - other.stdout == 'nobody'
"#,
    );
    let b = format!("base={}", lab.path().display());
    let inv = lab.inventory(SUDO_USER, "");
    lab.run(&pb, &inv, &["-e", &b]).assert_code(0);
    let made = lab.path().join(format!("made-by-root-{SUDO_USER}"));
    assert!(made.exists());
    assert_eq!(mode_of(&made), 0o600);
    // sudo that asks for a password gets it on stdin, and the password never shows.
    let inv = lab.inventory(
        SUDO_PW_USER,
        &format!("[web:vars]\nansible_become_password={SUDO_PASSWORD}\n"),
    );
    let r = lab.run(&pb, &inv, &["-e", &b, "-vv"]);
    r.assert_code(0);
    assert!(lab
        .path()
        .join(format!("made-by-root-{SUDO_PW_USER}"))
        .exists());
    assert!(!r.all().contains(SUDO_PASSWORD), "{}", r.all());
    // Without the password the error says what to set.
    let inv = lab.inventory(SUDO_PW_USER, "");
    let r = lab.run(&pb, &inv, &["-e", &b]);
    r.assert_code(2);
    assert!(r.stdout.contains("ansible_become_password"), "{}", r.stdout);
}

#[test]
fn secrets_never_appear_in_output_diffs_or_json() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "[web:vars]\ndb_password=Sup3r-Secret-Value\n");
    lab.write(
        "templates/secret.conf.j2",
        "user = app\npassword = {{ db_password }}\n",
    );
    let pb = lab.write(
        "secret.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - template:
        src: secret.conf.j2
        dest: "{{ base }}/secret.conf"
        mode: "0600"
    - name: a command that prints it
      shell: echo "connecting with {{ db_password }}"
      changed_when: false
    - name: a no_log task
      no_log: true
      command: echo {{ api_token_value }}
      changed_when: false
    - debug:
        msg: "password is {{ db_password }}"
"#,
    );
    let b = format!("base={}", lab.path().display());
    // --check first (the file does not exist yet, so its whole content is in the diff).
    for extra in [
        vec!["--check", "--diff"],
        vec!["--diff", "-vv"],
        vec!["--json", "--diff", "-v"],
    ] {
        let mut args = vec!["-e", &b, "-e", "api_token_value=Tok-998877"];
        args.extend(extra.iter());
        let r = lab.run(&pb, &inv, &args);
        r.assert_code(0);
        let all = r.all();
        assert!(
            !all.contains("Sup3r-Secret-Value"),
            "secret leaked with {extra:?}:\n{all}"
        );
        assert!(
            !all.contains("Tok-998877"),
            "no_log value leaked with {extra:?}:\n{all}"
        );
        assert!(
            all.contains("********"),
            "masked value is shown as ********:\n{all}"
        );
        if extra.contains(&"--json") {
            for line in r.stdout.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            }
        }
    }
    assert!(std::fs::read_to_string(lab.path().join("secret.conf"))
        .unwrap()
        .contains("Sup3r-Secret-Value"));
}

/// A secret is masked in the forms it takes on the way out (shell-quoted in a -vv trace,
/// JSON-escaped in a diff, URL-encoded), a secret-named fact made by set_fact is a secret, and
/// the old value of a rotated secret does not show in the diff of the file holding it; a
/// play's `no_log: true` hides what its tasks show.
#[test]
fn derived_forms_facts_and_old_values_of_secrets_are_masked() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "derived.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - set_fact:
        made_password: "{{ 'Made-' ~ (41 * 2) ~ '-Pass' }}"
    - copy:
        content: "{{ {'pw': quoted_password} | to_json }}\n"
        dest: "{{ base }}/j.json"
    - shell: test -n {{ quoted_password | quote }}
      changed_when: false
    - debug:
        msg: "postgresql://u:{{ quoted_password | urlencode }}@h/db and {{ made_password }}"
    - copy:
        content: "user = app\nsecret = {{ rotating_password }}\n"
        dest: "{{ base }}/rot.conf"
- hosts: web
  gather_facts: no
  no_log: true
  tasks:
    - command: echo {{ plain_value }}
      changed_when: false
"#,
    );
    let b = format!("base={}", lab.path().display());
    let quoted = r#"{"quoted_password": "it's \"Q\" p@ss/x"}"#;
    for (rotating, forbidden) in [
        ("rotating_password=Old-Rot-111", vec!["Old-Rot-111"]),
        (
            "rotating_password=New-Rot-222",
            vec!["Old-Rot-111", "New-Rot-222"],
        ),
    ] {
        let r = lab.run(
            &pb,
            &inv,
            &[
                "-e",
                &b,
                "-e",
                quoted,
                "-e",
                rotating,
                "-e",
                "plain_value=Hidden-By-Play-77",
                "--diff",
                "-vv",
            ],
        );
        r.assert_code(0);
        let all = r.all();
        for f in forbidden.iter().chain(&[
            "p@ss",
            "p%40ss",
            "\\\"Q\\\"",
            "Made-82-Pass",
            "Hidden-By-Play-77",
        ]) {
            assert!(!all.contains(f), "{f} shown:\n{all}");
        }
        if rotating.contains("New") {
            assert!(
                all.contains("\n-********"),
                "the old line is masked:\n{all}"
            );
        }
    }
}

#[test]
fn an_undefined_variable_leaves_the_file_as_it_was() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let target = lab.write("target.conf", "original\n");
    lab.write(
        "templates/broken.j2",
        "a = 1\nb = {{ not_defined_anywhere }}\n",
    );
    let pb = lab.write(
        "broken.yml",
        "- hosts: web\n  gather_facts: no\n  tasks:\n    - template:\n        src: broken.j2\n        dest: \"{{ dest }}\"\n",
    );
    let d = format!("dest={}", target.display());
    let r = lab.run(&pb, &inv, &["-e", &d]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("broken.j2:2"),
        "names the template and line:\n{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("`not_defined_anywhere`"),
        "names the variable:\n{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original\n");
}

/// Values that would reach a command line as something else are refused on the host, and
/// nothing they carry runs: an apt package named like an option (`-o...::Pre-Invoke` runs a
/// command as root), a sysctl name with shell or path tricks in it.
#[test]
fn module_values_cannot_become_options_or_commands() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let proof = lab.path().join("injected");
    let pb = lab.write(
        "inject.yml",
        &format!(
            r#"
- hosts: web
  gather_facts: no
  tasks:
    - apt:
        name: ["-oAPT::Update::Pre-Invoke::=touch {p}", "-oDPkg::Pre-Invoke::=touch {p}"]
        update_cache: no
      ignore_errors: true
    - sysctl:
        name: "x'; touch {p}; '"
        state: absent
        sysctl_file: {f}
      ignore_errors: true
    - sysctl:
        name: "net/../../../etc/shadow"
        value: "1"
        sysctl_file: {f}
        sysctl_set: no
      ignore_errors: true
"#,
            p = proof.display(),
            f = lab.path().join("sysctl.conf").display()
        ),
    );
    let r = lab.run(&pb, &inv, &[]);
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("begins with `-`: apt-get would read it as an option"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("is not a kernel parameter name").count(),
        2,
        "{}",
        r.stdout
    );
    assert!(!proof.exists(), "an injected command ran");
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "typo.yml",
        "- hosts: web\n  tasks:\n    - name: x\n      fiel:\n        path: /tmp/x\n",
    );
    let r = lab.run(&pb, &inv, &[]);
    r.assert_code(4);
    assert!(
        r.stderr.contains("typo.yml:4") && r.stderr.contains("did you mean `file`"),
        "{}",
        r.stderr
    );
    let bad_inv = lab.write("bad.ini", "[web]\nh1 ansible_port\n");
    let pb = lab.write("ok.yml", "- hosts: web\n  tasks: []\n");
    let r = lab.run(&pb, &bad_inv, &[]);
    r.assert_code(4);
    assert!(r.stderr.contains("bad.ini:2"), "{}", r.stderr);
}

#[test]
fn blocks_rescue_always_and_retries() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "blocks.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - block:
        - command: /bin/false
          when: inventory_hostname == 'h1'
        - file: { path: "{{ base }}/{{ inventory_hostname }}.block", state: touch }
      rescue:
        - file: { path: "{{ base }}/{{ inventory_hostname }}.rescued", state: touch }
        - name: the rescue knows what failed
          assert:
            that:
              - ansible_failed_task.name == '/bin/false' or ansible_failed_task.name is search('command')
              - ansible_failed_result.rc == 1
      always:
        - file: { path: "{{ base }}/{{ inventory_hostname }}.always", state: touch }
    - name: retry until a file appears
      shell: "n=$(cat {{ base }}/{{ inventory_hostname }}.n 2>/dev/null || echo 0); echo $((n+1)) > {{ base }}/{{ inventory_hostname }}.n; echo $((n+1))"
      register: attempt
      until: attempt.stdout | int >= 3
      retries: 5
      delay: 0
    - assert:
        that: attempt.attempts == 3
"#,
    );
    let b = format!("base={}", lab.path().display());
    let r = lab.run(&pb, &inv, &["-e", &b]);
    r.assert_code(0);
    let p = |n: &str| lab.path().join(n).exists();
    assert!(p("h1.rescued") && p("h1.always") && !p("h1.block"));
    assert!(p("h2.block") && p("h2.always") && !p("h2.rescued"));
}

#[test]
fn stat_wait_for_uri_user_and_group_against_a_real_host() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    // An HTTP server that the host reaches on its own loopback; uri goes through SSH to it.
    let www = lab.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("status.json"), r#"{"role": "primary", "lag": 0}"#).unwrap();
    let port = std::net::TcpListener::bind("127.0.1.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A port nothing listens on (bound, then let go).
    let closed = std::net::TcpListener::bind("127.0.1.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.1.1",
            "--directory",
        ])
        .arg(&www)
        .stdout(std::process::Stdio::null())
        // Its log: the requests it was asked.
        .stderr(std::fs::File::create(lab.path().join("www.log")).unwrap())
        .spawn()
        .expect("python3 is needed for this test: apt-get install python3");
    let user = format!("pgdit{}", std::process::id() % 100000);
    let pb = lab.write(
        "misc.yml",
        &format!(
            r#"
- hosts: web
  gather_facts: no
  tasks:
    - wait_for: {{ host: 127.0.1.1, port: {port}, timeout: 10 }}
    - wait_for: {{ path: "{{{{ base }}}}/www/status.json", timeout: 5 }}
    - uri: {{ url: "http://127.0.1.1:{port}/status.json" }}
      register: api
    - uri: {{ url: "http://127.0.1.1:{port}/missing", status_code: 404 }}
    - stat: {{ path: "{{{{ base }}}}/www/status.json" }}
      register: st
    - stat: {{ path: "{{{{ base }}}}/nope" }}
      register: nope
    - group: {{ name: {user} }}
    - user: {{ name: {user}, group: {user}, shell: /bin/sh, create_home: no }}
    - assert:
        that:
          - api.json.role == 'primary'
          - api.status == 200
          - st.stat.exists and st.stat.isreg and not st.stat.isdir
          - not nope.stat.exists
    - uri: {{ url: "http://127.0.1.1:{closed}/x", timeout: 3 }}
      ignore_errors: true
    # A request whose condition needs an earlier result is not made ahead (it may not run).
    - command: "true"
      register: done
      changed_when: false
    - uri: {{ url: "http://127.0.1.1:{port}/never-asked" }}
      when: done.rc == 1
    - uri: {{ url: "http://127.0.1.1:{port}/asked-in-turn", status_code: 404 }}
      when: done.rc == 0
"#
        ),
    );
    let b = format!("base={}", lab.path().display());
    let first = lab.run(&pb, &inv, &["-e", &b]);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let created = passwd
        .lines()
        .any(|l| l.starts_with(&format!("{user}:")) && l.ends_with(":/bin/sh"));
    let second = lab.run(&pb, &inv, &["-e", &b, "-v"]);
    let _ = std::process::Command::new("userdel").arg(&user).status();
    let _ = std::process::Command::new("groupdel")
        .arg(&user)
        .stderr(std::process::Stdio::null())
        .status();
    let _ = server.kill();
    let _ = server.wait();
    first.assert_code(0);
    let asked = std::fs::read_to_string(lab.path().join("www.log")).unwrap();
    assert!(!asked.contains("/never-asked"), "{asked}");
    assert!(asked.contains("/asked-in-turn"), "{asked}");
    assert!(created, "user {user} with /bin/sh in /etc/passwd");
    assert_eq!(
        first.recap("h1").1,
        2,
        "group and user created:\n{}",
        first.stdout
    );
    second.assert_code(0);
    assert_eq!(
        second.recap("h1").1,
        0,
        "user and group converge:\n{}",
        second.stdout
    );
    // Both GETs went out ahead, side by side, with the probes' batch; the tasks took their
    // responses (the 404 too: it is the status its task expects).
    // A request that got no answer ahead is answered with that, not made twice.
    for url in [
        format!("{port}/status.json"),
        format!("{port}/missing"),
        format!("{closed}/x"),
    ] {
        let made = format!("$ GET http://127.0.1.1:{url} (made ahead; request ");
        let at = second
            .stdout
            .find(&made)
            .unwrap_or_else(|| panic!("{made}... in:\n{}", second.stdout));
        assert!(
            second.stdout[at..]
                .lines()
                .nth(1)
                .is_some_and(|l| l.contains("(answered by the read-ahead)")),
            "{}",
            second.stdout
        );
    }
}

#[test]
fn ctrl_c_stops_at_once_and_reports_what_ran() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "slow.yml",
        "- hosts: web\n  gather_facts: no\n  tasks:\n    - ping:\n    - pause: { seconds: 120 }\n    - ping:\n",
    );
    let child = lab
        .command(&["run", pb.to_str().unwrap(), "-i", inv.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let start = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "Ctrl-C must stop at once"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("h1 ") && l.contains("ok=1 ")),
        "the recap shows what ran:\n{stdout}"
    );
}

#[test]
fn ssh_agent_keys_are_used() {
    let lab = Lab::start(1);
    let sock = lab.path().join("agent.sock");
    /// The agent goes with the test, whatever becomes of it.
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Agent(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The socket appears before the agent answers on it: ssh-add again until it does (on a
    // loaded machine that takes a moment).
    let start = std::time::Instant::now();
    let added = loop {
        let added = std::process::Command::new("ssh-add")
            .arg(lab.path().join("id_ed25519"))
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .unwrap();
        if added.status.success() || start.elapsed() > std::time::Duration::from_secs(10) {
            break added;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    // No key file anywhere: only the agent can log in.
    let h = &lab.hosts[0];
    let inv = lab.write(
        "agent.ini",
        &format!(
            "[web]\nh1 ansible_host={} ansible_port={} ansible_user=root\n",
            h.ip, h.port
        ),
    );
    let pb = lab.write(
        "ping.yml",
        "- hosts: web\n  gather_facts: no\n  tasks:\n    - ping:\n",
    );
    let run = |with_agent: bool| {
        let mut c = lab.command(&["run", pb.to_str().unwrap(), "-i", inv.to_str().unwrap()]);
        if with_agent {
            c.env("SSH_AUTH_SOCK", &sock);
        }
        c.output().unwrap()
    };
    let without = run(false);
    assert_eq!(
        without.status.code(),
        Some(3),
        "no key, no agent: unreachable"
    );
    let with = run(true);
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stdout)
    );
}

#[test]
fn a_large_file_is_streamed_and_compared_by_hash() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let big = lab.path().join("files/big.bin");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let mut data = Vec::with_capacity(8 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&big, &data).unwrap();
    let pb = lab.write(
        "big.yml",
        "- hosts: web\n  gather_facts: no\n  tasks:\n    - copy: { src: big.bin, dest: \"{{ base }}/copied.bin\", mode: \"0600\" }\n",
    );
    let b = format!("base={}", lab.path().display());
    let first = lab.run(&pb, &inv, &["-e", &b]);
    first.assert_code(0);
    assert_eq!(first.recap("h1").1, 1);
    assert!(
        std::fs::read(lab.path().join("copied.bin")).unwrap() == data,
        "copied bytes differ"
    );
    let second = lab.run(&pb, &inv, &["-e", &b]);
    second.assert_code(0);
    assert_eq!(second.recap("h1").1, 0, "same hash: nothing sent again");
}

#[test]
fn tags_set_fact_run_once_and_flush_handlers() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "misc2.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - name: chosen once for all hosts
      set_fact:
        leader: "{{ inventory_hostname }}"
        marker: "{{ base }}/{{ inventory_hostname }}"
      run_once: true
      tags: [always]
    - name: tagged config
      copy: { content: "x\n", dest: "{{ base }}/{{ inventory_hostname }}.conf" }
      notify: reload
      tags: [config]
    - meta: flush_handlers
    - name: the handler ran before this task
      command: test -e {{ base }}/{{ inventory_hostname }}.reloaded
      changed_when: false
      tags: [config]
    - name: untagged
      file: { path: "{{ base }}/{{ inventory_hostname }}.untagged", state: touch }
    - name: never, unless asked
      file: { path: "{{ base }}/{{ inventory_hostname }}.never", state: touch }
      tags: [never, debug]
    - assert:
        that:
          - leader == 'h1'
          - marker.endswith('/h1')
      tags: [always]
  handlers:
    - name: reload
      file: { path: "{{ base }}/{{ inventory_hostname }}.reloaded", state: touch }
"#,
    );
    let b = format!("base={}", lab.path().display());
    let r = lab.run(&pb, &inv, &["-e", &b, "--tags", "config", "-v"]);
    r.assert_code(0);
    let p = |n: &str| lab.path().join(n).exists();
    assert!(p("h1.conf") && p("h2.conf") && p("h1.reloaded") && p("h2.reloaded"));
    assert!(
        !p("h1.untagged") && !p("h1.never"),
        "--tags config selects only config (and always)"
    );
    assert!(
        r.stdout.contains("$ ") && r.stdout.contains("test -e"),
        "-v shows the commands:\n{}",
        r.stdout
    );
    let r = lab.run(&pb, &inv, &["-e", &b, "--skip-tags", "config"]);
    r.assert_code(0);
    assert!(p("h1.untagged") && !p("h1.never"));
    lab.run(&pb, &inv, &["-e", &b, "--tags", "debug"])
        .assert_code(0);
    assert!(
        p("h1.never") && p("h2.never"),
        "a `never` task runs when its tag is asked for"
    );
}

/// On a host where an earlier task would change something, check mode goes on: a task that
/// fails for want of that change "would change (not checked)", a wait is not waited for, and
/// what reads an unknowable result is skipped with the reason. Real problems still fail.
const CHECK_PLAN: &str = r##"
- hosts: web
  gather_facts: no
  vars:
    root: "{{ base }}/{{ inventory_hostname }}"
  tasks:
    - name: a tool that the run installs
      copy:
        dest: "{{ root }}/bin/tool"
        content: "#!/bin/sh\necho ready\n"
        mode: "0755"
    - name: a binary file
      copy:
        src: blob.bin
        dest: "{{ root }}/blob.bin"
    - name: its service
      systemd: { name: pgdeploy-no-such-unit, state: started }
    - name: the tool answers
      command: "{{ root }}/bin/tool"
      register: answer
      check_mode: false
      changed_when: false
    - name: what it said
      set_fact:
        said: "{{ answer.stdout }}"
    - name: a wait for it
      wait_for: { path: "{{ root }}/bin/tool.pid", timeout: 60 }
    - name: uses what it said
      debug: { msg: "{{ said | upper }}" }
    - name: an unrelated variable is still required
      debug: { msg: "{{ fails_when_undefined | default('ok') }}" }
"##;

#[test]
fn check_mode_plans_past_what_the_run_has_not_made() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let mut blob = vec![0u8, 1, 2, 255, 254];
    blob.extend(std::iter::repeat_n(7u8, 3_000_000));
    std::fs::create_dir_all(lab.path().join("files")).unwrap();
    std::fs::write(lab.path().join("files/blob.bin"), &blob).unwrap();
    let pb = lab.write("plan.yml", CHECK_PLAN);
    let b = format!("base={}", base(&lab));
    let start = std::time::Instant::now();
    let dry = lab.run(&pb, &inv, &["-e", &b, "--check", "--diff"]);
    dry.assert_code(0);
    let out = &dry.stdout;
    assert!(
        start.elapsed().as_secs() < 30,
        "the wait was not waited for"
    );
    assert!(
        !Path::new(&base(&lab)).exists(),
        "--check created something"
    );
    for shown in [
        "+echo ready",
        "/blob.bin: binary file, 3.0 MB, would be created",
        "bin/tool.pid was not started (not waited for in check mode)",
        "would change; not checked, it needs changes this run has not made yet: non-zero return code 127",
        "skipping: [h1] => not checked: it reads `said`, which \"what it said\" cannot know in check mode",
        "h1 : 2 files, 0 packages, 1 service, 2 other",
    ] {
        assert!(out.contains(shown), "{shown}:\n{out}");
    }
    assert!(!out.contains('\u{fffd}'), "binary bytes printed:\n{out}");
    // What check mode cannot excuse: an undefined variable of its own fails.
    let broken = CHECK_PLAN.replace(
        "fails_when_undefined | default('ok')",
        "fails_when_undefined",
    );
    let pb = lab.write("broken-plan.yml", &broken);
    let r = lab.run(&pb, &inv, &["-e", &b, "--check"]);
    r.assert_code(2);
    assert!(
        r.stdout
            .contains("undefined variable `fails_when_undefined`"),
        "{}",
        r.stdout
    );
    // With nothing pending, a failure is a failure.
    let pb = lab.write(
        "fails.yml",
        "- hosts: web\n  gather_facts: no\n  tasks:\n    - command: /nonexistent/tool\n      check_mode: false\n",
    );
    let r = lab.run(&pb, &inv, &["--check"]);
    r.assert_code(2);
    // The failure names the task's file:line.
    let at = format!(
        "failed: [h1] at {}:4 => non-zero return code 127",
        pb.display()
    );
    assert!(r.stdout.contains(&at), "{at}\n{}", r.stdout);
}

/// The engine reads the probes of the tasks ahead in one batch: a no-op run costs the same few
/// commands per host (facts, then one batch) whether the playbook has 10 tasks in one play or
/// 40 in four (one in a block, each with an include whose `when` is false), with `--diff` too.
/// Every module that declares a probe is among the tasks, so a probe that is not the command
/// its module really runs first would cost a command here.
#[test]
fn a_no_op_run_costs_the_same_commands_whatever_its_task_count() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let b = format!("base={}", base(&lab));
    lab.write("templates/t.j2", "host {{ inventory_hostname }}\n");
    let mut no_op = Vec::new();
    lab.write("nothing.yml", "- fail: { msg: included }\n");
    for n in [10, 40] {
        let mut pb = String::new();
        let mut play = String::new();
        for i in 0..n {
            let dir = format!("{{{{ base }}}}/{{{{ inventory_hostname }}}}/n{n}");
            play.push_str(&match i % 10 {
                5 => {
                    format!("    - template: {{ src: t.j2, dest: \"{dir}/t{i}\", mode: '0640' }}\n")
                }
                6 => "    - user: { name: root }\n".to_string(),
                7 => "    - group: { name: root }\n".to_string(),
                8 => "    - apt: { name: [openssh-server, sudo] }\n".to_string(),
                9 => format!(
                    "    - shell: rm {dir}/gone{i}\n      args: {{ removes: \"{dir}/gone{i}\" }}\n"
                ),
                _ => String::new(),
            });
            play.push_str(&match i % 5 {
                0 => format!("    - file: {{ path: \"{dir}/d{i}\", state: directory }}\n"),
                1 => format!("    - copy: {{ dest: \"{dir}/c{i}\", content: \"{i}\\n\" }}\n"),
                2 => format!(
                    "    - lineinfile: {{ path: \"{dir}/l\", line: \"k{i} = {i}\", create: true }}\n"
                ),
                3 => format!("    - stat: {{ path: \"{dir}/c{}\" }}\n      register: s{i}\n", i - 2),
                _ => format!(
                    "    - command: touch {dir}/t{i}\n      args: {{ creates: \"{dir}/t{i}\" }}\n"
                ),
            });
            if i % 10 == 9 {
                // Ten tasks a play; the second play's inside a block.
                if i / 10 == 1 {
                    play = format!("    - block:\n{}", play.replace("\n    ", "\n        "))
                        .replacen("    - block:\n    ", "    - block:\n        ", 1);
                }
                play.push_str("    - include_tasks: nothing.yml\n      when: false\n");
                pb.push_str(&format!("- hosts: web\n  tasks:\n{play}"));
                play.clear();
            }
        }
        let path = lab.write(&format!("many{n}.yml"), &pb);
        std::fs::create_dir_all(Path::new(&base(&lab)).join("h1").join(format!("n{n}"))).unwrap();
        std::fs::create_dir_all(Path::new(&base(&lab)).join("h2").join(format!("n{n}"))).unwrap();
        lab.run(&path, &inv, &["-e", &b]).assert_code(0);
        for diff in [false, true] {
            let mut args = vec!["-e", b.as_str()];
            if diff {
                args.push("--diff");
            }
            let again = lab.run(&path, &inv, &args);
            again.assert_code(0);
            assert_eq!(again.recap("h1").1, 0, "{}", again.stdout);
            no_op.push(common::recap_commands(&again.stdout, "h1"));
        }
    }
    assert!(
        no_op.iter().all(|n| *n <= 2),
        "no-op commands per host for 10 and 40 tasks, without and with --diff: {no_op:?} \
         (facts and one batch expected)"
    );
}

/// Runs a playbook twice on one host, the second time changing nothing: the first run, and
/// the commands the second ran on the host.
fn run_twice(name: &str, playbook: &str) -> (common::Run, u64) {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let b = format!("base={}", base(&lab));
    let pb = lab.write(name, playbook);
    std::fs::create_dir_all(base(&lab)).unwrap();
    let first = lab.run(&pb, &inv, &["-e", &b]);
    first.assert_code(0);
    let again = lab.run(&pb, &inv, &["-e", &b]);
    again.assert_code(0);
    assert_eq!(again.recap("h1").1, 0, "{}", again.stdout);
    let commands = common::recap_commands(&again.stdout, "h1");
    (first, commands)
}

/// Read ahead across plays, a change still drops the answers: the second play's `stat` of a
/// file the first play creates sees it, though its probe was read before the file was there.
#[test]
fn a_change_drops_what_was_read_ahead_for_later_plays() {
    let (first, commands) = run_twice(
        "plays.yml",
        r#"- hosts: web
  tasks:
    - file: { path: "{{ base }}", state: directory }
    - copy: { dest: "{{ base }}/made", content: "made\n" }
- hosts: web
  tasks:
    - stat: { path: "{{ base }}/made" }
      register: made
    - assert: { that: made.stat.exists }
"#,
    );
    assert_eq!(first.recap("h1").1, 1, "{}", first.stdout);
    assert_eq!(commands, 2, "facts and one batch for both plays");
}

/// A command its task declares read-only (`check_mode: false`, `changed_when: false`) keeps
/// the probes read ahead: the tasks after it take their answers from the same batch.
#[test]
fn a_read_only_command_keeps_the_batch() {
    let (_, commands) = run_twice(
        "ro.yml",
        r#"- hosts: web
  tasks:
    - file: { path: "{{ base }}/a", state: directory }
    - command: cat /etc/hostname
      check_mode: false
      changed_when: false
    - file: { path: "{{ base }}/b", state: directory }
    - stat: { path: "{{ base }}/a" }
    - copy: { dest: "{{ base }}/c", content: "c\n" }
"#,
    );
    assert_eq!(commands, 3, "facts, one batch and the command");
}

/// The read-ahead goes past an include that runs, works out what a set_fact will set, and
/// reads quick probes whose condition or content comes from an earlier task's result: the
/// no-op run is facts, one batch and the one command, and every probe is answered by the
/// batch (with what the tasks really had: the file holds the command's output).
#[test]
fn the_read_ahead_sees_past_includes_set_facts_and_results() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let b = format!("base={}", base(&lab));
    lab.write("inc.yml", "- debug: { msg: included }\n");
    let pb = lab.write(
        "past.yml",
        r#"- hosts: web
  tasks:
    - file: { path: "{{ base }}", state: directory }
    - set_fact: { dir: "{{ base }}/{{ inventory_hostname }}.d" }
    - command: echo yes
      register: answer
      check_mode: false
      changed_when: false
    - include_tasks: inc.yml
    - file: { path: "{{ dir }}", state: directory }
    - copy: { dest: "{{ dir }}/said", content: "{{ answer.stdout }}\n" }
    - file: { path: "{{ dir }}/said", mode: "0640" }
      when: answer.stdout == 'yes'
"#,
    );
    lab.run(&pb, &inv, &["-e", &b]).assert_code(0);
    let again = lab.run(&pb, &inv, &["-e", &b, "-v"]);
    again.assert_code(0);
    assert_eq!(again.recap("h1").1, 0, "{}", again.stdout);
    assert_eq!(
        common::recap_commands(&again.stdout, "h1"),
        3,
        "facts, one batch and the command:\n{}",
        again.stdout
    );
    assert_eq!(
        again.stdout.matches("(answered by the read-ahead)").count(),
        4,
        "{}",
        again.stdout
    );
    let said = std::path::Path::new(&base(&lab)).join("h1.d/said");
    assert_eq!(std::fs::read_to_string(&said).unwrap(), "yes\n");
    assert_eq!(common::mode_of(&said) & 0o777, 0o640);
}

/// Where the time goes: `--json` gives each result its duration, `--profile` prints the time
/// per play and the slowest tasks with where they are written.
#[test]
fn durations_and_the_profile() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "slow.yml",
        "- name: timed\n  hosts: web\n  gather_facts: no\n  tasks:\n    - name: quick\n      command: 'true'\n    - name: slow one\n      command: sleep 0.4\n",
    );
    let r = lab.run(&pb, &inv, &["--profile"]);
    r.assert_code(0);
    let profile = r.stdout.split("PROFILE").nth(1).expect("a profile section");
    let lines: Vec<&str> = profile.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains(" s  play  timed")),
        "{profile}"
    );
    let slowest = lines
        .iter()
        .skip_while(|l| !l.starts_with("slowest tasks"))
        .nth(1)
        .unwrap_or_else(|| panic!("{profile}"));
    let secs: f64 = slowest.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        slowest.contains("slow one") && slowest.contains("slow.yml:7") && secs >= 0.4,
        "{profile}"
    );
    let r = lab.run(&pb, &inv, &["--json"]);
    r.assert_code(0);
    let slow: Vec<f64> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "task_result" && v["task"] == "slow one")
        .map(|v| v["duration_s"].as_f64().unwrap())
        .collect();
    assert!(
        slow.len() == 2 && slow.iter().all(|d| *d >= 0.4),
        "{slow:?}"
    );
}
