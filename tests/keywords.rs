//! Play, block and task keywords against real OpenSSH servers: each keyword pgdeploy accepts
//! does what Ansible's does; each it does not implement is refused before anything runs,
//! naming the file and line.

mod common;

use common::Lab;

/// Keywords (and values) that are refused, with what the error must say.
const REFUSED: &[(&str, &str, usize)] = &[
    (
        "  remote_user: deploy\n",
        "`remote_user` is not supported",
        3,
    ),
    (
        "  become_method: su\n",
        "become_method `su` is not supported",
        3,
    ),
    (
        "  connection: local\n",
        "connection `local` is not supported",
        3,
    ),
    ("  strategy: free\n", "strategy `free` is not supported", 3),
    ("  order: random\n", "order `random` is not one of", 3),
    (
        "  collections: [acme.things]\n",
        "collection `acme.things`",
        3,
    ),
    ("  roles: [nosuchrole]\n", "role `nosuchrole` not found", 3),
    ("  vars_prompt: []\n", "`vars_prompt` is not supported", 3),
    (
        "  gather_subset: [min]\n",
        "`gather_subset` is not supported",
        3,
    ),
    (
        "  module_defaults:\n    copy: {mdoe: '0600'}\n",
        "did you mean `mode`",
        4,
    ),
    (
        "  module_defaults:\n    group/acme: {x: 1}\n",
        "action groups are not supported",
        4,
    ),
];

/// Task and block keywords that are refused, or out of place.
const REFUSED_IN_TASKS: &[(&str, &str, usize)] = &[
    (
        "    - command: 'true'\n      delegate_facts: true\n      delegate_to: h2\n",
        "`delegate_facts` is not supported",
        6,
    ),
    (
        "    - local_action: command true\n",
        "`local_action` is not supported",
        5,
    ),
    (
        "    - command: sleep 1\n      async: 10\n      poll: 0\n",
        "`async` is not supported",
        6,
    ),
    (
        "    - block:\n        - command: 'true'\n      register: r\n",
        "`register` is a task keyword; it does nothing on a block",
        7,
    ),
    (
        "    - block:\n        - command: 'true'\n      loop: [1, 2]\n",
        "`loop` is a task keyword; it does nothing on a block",
        7,
    ),
    (
        "    - command: 'true'\n      hosts: web\n",
        "`hosts` is a play keyword; it does nothing on a task",
        6,
    ),
    (
        "    - include_tasks:\n        file: x.yml\n        apply: {register: r}\n",
        "`register` is a task keyword; it does nothing on a block",
        7,
    ),
];

#[test]
fn refused_keywords_name_file_and_line_and_nothing_runs() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let marker = lab.path().join("ran");
    let first_task = format!("    - copy: {{ dest: {}, content: x }}\n", marker.display());
    let mut cases: Vec<(String, &str, usize)> = Vec::new();
    for (play_kw, expected, line) in REFUSED {
        let text = format!("- hosts: web\n  gather_facts: no\n{play_kw}  tasks:\n{first_task}");
        cases.push((text, expected, *line));
    }
    for (task, expected, line) in REFUSED_IN_TASKS {
        let text = format!("- hosts: web\n  gather_facts: no\n  tasks:\n{first_task}{task}");
        cases.push((text, expected, *line));
    }
    for (i, (text, expected, line)) in cases.iter().enumerate() {
        let pb = lab.write(&format!("refused{i}.yml"), text);
        let r = lab.run(&pb, &inv, &[]);
        r.assert_code(4);
        let at = format!("refused{i}.yml:{line}");
        assert!(
            r.stderr.contains(&at) && r.stderr.contains(expected),
            "{text}\nwanted `{at}` and `{expected}` in:\n{}",
            r.stderr
        );
        assert!(!marker.exists(), "{text}: a task ran before the refusal");
    }
}

/// The accepted keywords, each observed doing its work on the hosts.
#[test]
fn accepted_keywords_do_what_ansible_does() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let base = lab.path().display().to_string();
    lab.write(
        "inc.yml",
        "- shell: echo \"$WORD\" > {{ base }}/applied-{{ inventory_hostname }}\n",
    );
    let pb = lab.write(
        "keywords.yml",
        r#"
- hosts: web
  gather_facts: no
  order: reverse_sorted
  strategy: linear
  connection: ssh
  become_method: sudo
  collections: [community.postgresql]
  diff: true
  force_handlers: true
  module_defaults:
    ansible.builtin.copy: { mode: "0600" }
  tasks:
    # throttle 1: one host at a time, in the play's order (h2 before h1).
    - shell: "echo start-{{ inventory_hostname }} >> {{ base }}/order; sleep 0.3; echo end-{{ inventory_hostname }} >> {{ base }}/order"
      throttle: 1
    - name: module_defaults give the mode; the diff shows without --diff
      copy: { dest: "{{ base }}/default-{{ inventory_hostname }}", content: "shown-in-diff\n" }
    - name: a task's own parameter wins over module_defaults
      copy: { dest: "{{ base }}/own-{{ inventory_hostname }}", content: "x\n", mode: "0644" }
    - action: copy dest={{ base }}/action-{{ inventory_hostname }} content=by-action
    - include_tasks:
        file: inc.yml
        apply:
          environment: { WORD: applied }
    - shell: "date +%s.%N >> {{ base }}/pause-{{ inventory_hostname }}"
      loop: [1, 2]
      loop_control: { pause: 0.5 }
    - copy:
        dest: "{{ base }}/loop-{{ inventory_hostname }}-{{ item }}"
        content: "{{ ansible_loop.allitems | join(',') }} {{ ansible_loop.revindex }}"
      loop: [a, b]
      loop_control: { extended: true }
    - block:
        - copy: { dest: "{{ base }}/block-{{ inventory_hostname }}", content: "x" }
      notify: block handler
    - name: the task times out
      command: sleep 5
      timeout: 1
      ignore_errors: true
      when: inventory_hostname == 'h1'
    - name: h1 fails after notifying; force_handlers runs its handlers anyway
      command: "false"
      when: inventory_hostname == 'h1'
  handlers:
    - name: block handler
      shell: "echo ran > {{ base }}/handler-{{ inventory_hostname }}"
"#,
    );
    let b = format!("base={base}");
    let r = lab.run(&pb, &inv, &["-e", &b]);
    r.assert_code(2);
    let read = |n: &str| std::fs::read_to_string(lab.path().join(n)).unwrap_or_default();
    let mode = |n: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(lab.path().join(n))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(
        read("order"),
        "start-h2\nend-h2\nstart-h1\nend-h1\n",
        "{}",
        r.all()
    );
    assert_eq!(mode("default-h1"), 0o600);
    assert_eq!(mode("own-h1"), 0o644);
    assert!(r.stdout.contains("+shown-in-diff"), "{}", r.stdout);
    assert_eq!(read("action-h2"), "by-action");
    assert_eq!(read("applied-h1"), "applied\n");
    let times: Vec<f64> = read("pause-h2")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(
        times.len() == 2 && times[1] - times[0] >= 0.45,
        "loop_control pause: {times:?}"
    );
    assert_eq!(read("loop-h1-a"), "a,b 2");
    assert_eq!(read("handler-h2"), "ran\n");
    assert_eq!(read("handler-h1"), "ran\n", "force_handlers:\n{}", r.all());
    assert!(
        r.stdout.contains("timed out") || r.stdout.contains("timeout"),
        "{}",
        r.stdout
    );
    assert_eq!(r.recap("h1").3, 1, "h1 failed once");
}

#[test]
fn ignore_unreachable_keeps_the_host_in_the_play() {
    let lab = Lab::start(1);
    let inv = lab.inventory_with_dead_host();
    let pb = lab.write(
        "unreachable.yml",
        r#"
- hosts: all
  gather_facts: no
  tasks:
    - ping:
      ignore_unreachable: true
    - debug: { msg: "still here" }
    - ping:
"#,
    );
    let r = lab.run(&pb, &inv, &["--connect-timeout", "3"]);
    r.assert_code(3);
    let recap = r
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("dead ") && l.contains(" : ok="))
        .unwrap_or_default()
        .to_string();
    // Ignored, then the debug ran on it, then the last ping found it unreachable.
    assert!(
        recap.contains("ok=1 ") && recap.contains("unreachable=1 ") && recap.contains("ignored=1"),
        "{recap}\n{}",
        r.stdout
    );
}

#[test]
fn postgresql_query_is_skipped_in_check_mode_unless_the_task_says_check_mode_false() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "query.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - name: reload
      postgresql_query: { query: "SELECT pg_reload_conf()" }
      register: reload
    - name: read-only
      postgresql_query: { query: "SELECT 1 AS one", login_host: 127.0.0.1, login_port: 1 }
      check_mode: false
      register: readonly
      ignore_errors: true
    - assert:
        that:
          - reload is skipped
          - readonly is not skipped
"#,
    );
    let r = lab.run(&pb, &inv, &["--check"]);
    r.assert_code(0);
    assert!(r.stdout.contains("skipped in check mode"), "{}", r.stdout);
}

/// Module parameters that used to be accepted and ignored: each now works, or is refused
/// before anything runs, naming the file and line.
#[test]
fn module_parameters_work_or_are_refused() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    for (task, expected) in [
        (
            "copy: { dest: /tmp/x, content: y, decrypt: true }",
            "`decrypt` is not supported by pgdeploy: a Vault-encrypted `src`",
        ),
        (
            "user: { name: x, generate_ssh_key: true }",
            "`generate_ssh_key` is not supported by pgdeploy",
        ),
        (
            "template: { src: a.j2, dest: /tmp/a, trim_blocks: false }",
            "`trim_blocks` is not supported by pgdeploy",
        ),
        (
            "command: { cmd: 'true', warn: false }",
            "removed from Ansible in 2.14",
        ),
        (
            "user: { name: x, password: '$6$salt$hash' }",
            "`password` is not supported by pgdeploy: a crypt hash",
        ),
        (
            "stat: { path: /tmp, checksum_algoritm: md5 }",
            "did you mean `checksum_algorithm`",
        ),
    ] {
        let pb = lab.write(
            "param.yml",
            &format!("- hosts: web\n  gather_facts: no\n  tasks:\n    - {task}\n"),
        );
        let r = lab.run(&pb, &inv, &[]);
        r.assert_code(4);
        assert!(
            r.stderr.contains("param.yml:4") && r.stderr.contains(expected),
            "{task}: {}",
            r.stderr
        );
    }
    let base = lab.path().display().to_string();
    std::fs::write(lab.path().join("kept"), "mine\n").unwrap();
    std::fs::write(lab.path().join("lines"), "# a\nx=1\n# b\n").unwrap();
    let pb = lab.write(
        "params.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - copy: { dest: "{{ base }}/kept", content: "theirs\n", force: false }
      register: kept
    - lineinfile: { path: "{{ base }}/lines", line: "y=2", insertafter: "^#", firstmatch: true }
    - command: printf 'a\n\n\n'
      register: ends
    - command: { cmd: "printf 'a\n\n\n'", strip_empty_ends: false }
      register: kept_ends
    - stat: { path: "{{ base }}/kept", checksum_algorithm: sha256 }
      register: st
    - uri: { url: "http://127.0.0.1:1/", creates: "{{ base }}/kept" }
      register: call
    - assert:
        that:
          - not kept.changed
          - ends.stdout == 'a'
          - kept_ends.stdout == 'a\n\n\n'
          - st.stat.checksum | length == 64
          - call is not failed
        quiet: true
    - debug: { msg: "only with -vv", verbosity: 2 }
"#,
    );
    let b = format!("base={base}");
    let r = lab.run(&pb, &inv, &["-e", &b]);
    r.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(lab.path().join("kept")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(lab.path().join("lines")).unwrap(),
        "# a\ny=2\nx=1\n# b\n"
    );
    assert!(!r.stdout.contains("All assertions passed"), "{}", r.stdout);
    assert!(!r.stdout.contains("only with -vv"), "{}", r.stdout);
    let r = lab.run(&pb, &inv, &["-e", &b, "-vv"]);
    assert!(r.stdout.contains("only with -vv"), "{}", r.stdout);

    // copy's `checksum` (SHA-1 of what is copied): the right one writes, another fails the
    // task and writes nothing. A value of the wrong type names the parameter and the task.
    let pb = lab.write(
        "checksum.yml",
        r#"
- hosts: web
  gather_facts: no
  tasks:
    - copy: { dest: "{{ base }}/summed", content: "sum\n", checksum: 86ae2e08ddb4ed2a7c3f1f9f2a4c3a7b68b8a7a3 }
      register: wrong
      ignore_errors: true
    - stat: { path: "{{ base }}/summed" }
      register: after_wrong
    - assert: { that: [wrong is failed, not after_wrong.stat.exists] }
    - copy: { dest: "{{ base }}/summed", content: "sum\n", checksum: dc7acfe8ff6cbfc10b0692df508fcbe6418221ae }
    - copy: { dest: "{{ base }}/summed", content: "x", force: maybe }
"#,
    );
    let r = lab.run(&pb, &inv, &["-e", &b]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("not the `checksum` 86ae2e08"),
        "{}",
        r.stdout
    );
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("checksum.yml:12") && all.contains("`force` must be yes or no, found `maybe`"),
        "{all}"
    );
    assert_eq!(
        std::fs::read_to_string(lab.path().join("summed")).unwrap(),
        "sum\n"
    );
}
