//! Conformance with Ansible: playbooks written the way Ansible's documentation writes them,
//! run unchanged against real OpenSSH servers on 127.0.1.x, asserting the hosts' state and,
//! where Ansible defines it, the `changed` result.

mod common;

use common::Lab;

/// Loops, `when`, `register` over a loop, a handler notified from a loop (runs once per
/// host), and the `changed` results of a first and a second run.
const LOOPS_AND_HANDLERS: &str = r#"
- name: Loops, conditions, register and handlers
  hosts: web
  gather_facts: false
  vars:
    app_dirs: [conf, data, logs]
  tasks:
    - name: Create the application directories
      ansible.builtin.file:
        path: "{{ base }}/{{ inventory_hostname }}/{{ item }}"
        state: directory
        mode: "0750"
      loop: "{{ app_dirs }}"
      register: dirs

    - name: Write the configuration
      ansible.builtin.copy:
        dest: "{{ base }}/{{ inventory_hostname }}/conf/app.conf"
        content: "workers={{ item.workers }}\n"
      loop:
        - { host: h1, workers: 2 }
        - { host: h2, workers: 4 }
      when: item.host == inventory_hostname
      notify: Restart app

    - name: Record what changed
      ansible.builtin.copy:
        dest: "{{ base }}/{{ inventory_hostname }}.run{{ run }}"
        content: |
          dirs_changed={{ dirs.changed }}
          items={{ dirs.results | map(attribute='item') | join(',') }}
          items_changed={{ dirs.results | selectattr('changed') | list | length }}

  handlers:
    - name: Restart app
      ansible.builtin.shell: echo restarted >> "{{ base }}/{{ inventory_hostname }}.handler"
"#;

#[test]
fn loops_when_register_handlers_and_changed() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = lab.write("loops.yml", LOOPS_AND_HANDLERS);
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &inv, &["-e", &base, "-e", "run=1"])
        .assert_code(0);
    lab.run(&pb, &inv, &["-e", &base, "-e", "run=2"])
        .assert_code(0);
    let read = |n: &str| std::fs::read_to_string(lab.path().join(n)).unwrap();
    assert_eq!(
        read("h1.run1"),
        "dirs_changed=True\nitems=conf,data,logs\nitems_changed=3\n"
    );
    assert_eq!(
        read("h1.run2"),
        "dirs_changed=False\nitems=conf,data,logs\nitems_changed=0\n"
    );
    assert_eq!(read("h1/conf/app.conf"), "workers=2\n");
    assert_eq!(read("h2/conf/app.conf"), "workers=4\n");
    // Notified by a changed item on the first run only; once per host.
    assert_eq!(read("h1.handler"), "restarted\n");
    assert_eq!(read("h2.handler"), "restarted\n");
    assert_eq!(common::mode_of(&lab.path().join("h2/logs")) & 0o777, 0o750);
    // The probes of the tasks read ahead in one batch per host (-v shows where answers came
    // from): the three directories, the configuration and the record, on each host. The
    // record's content comes from a register, not known when the batch is read; its probe
    // does not need it, and the task writes what the register holds when it runs.
    let r = lab.run(&pb, &inv, &["-e", &base, "-e", "run=3", "-v"]);
    r.assert_code(0);
    assert_eq!(
        r.all().matches("answered by the read-ahead").count(),
        10,
        "{}",
        r.all()
    );
    assert_eq!(
        read("h2.run3"),
        "dirs_changed=False\nitems=conf,data,logs\nitems_changed=0\n"
    );
}

/// Commands guarded by `creates:` in a loop: each runs exactly once on the first run (the
/// read-ahead only ever runs their guards), none on the second, whose guards take one round trip.
#[test]
fn guarded_commands_in_a_loop_run_once() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "guarded.yml",
        r#"
- hosts: h1
  gather_facts: false
  tasks:
    - shell: echo {{ item }} >> {{ base }}/ran.log && touch {{ base }}/done{{ item }}
      args:
        creates: "{{ base }}/done{{ item }}"
      loop: [1, 2, 3]
    - command: echo unguarded {{ item }}
      loop: [a, b]
      register: plain
    - assert:
        that: plain.results | map(attribute='stdout') | list == ['unguarded a', 'unguarded b']
"#,
    );
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &inv, &["-e", &base]).assert_code(0);
    let log = || std::fs::read_to_string(lab.path().join("ran.log")).unwrap();
    assert_eq!(log(), "1\n2\n3\n");
    let again = lab.run(&pb, &inv, &["-e", &base, "-v"]);
    again.assert_code(0);
    assert_eq!(log(), "1\n2\n3\n");
    assert_eq!(
        again.all().matches("answered by the read-ahead").count(),
        3,
        "{}",
        again.all()
    );
}

/// Items that depend on each other: the second edit matches the line the first one wrote. The
/// read-ahead must not answer the second item with what the file held before the first.
#[test]
fn dependent_loop_items_see_each_others_changes() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "edits.yml",
        r#"
- hosts: h1
  gather_facts: false
  tasks:
    - lineinfile:
        path: "{{ base }}/edits.conf"
        regexp: "{{ item.re }}"
        line: "{{ item.line }}"
        create: true
      loop:
        - { re: "^port", line: "port = 5432" }
        - { re: "^port = 5432$", line: "port = 6432" }
        - { re: "^mode", line: "mode = fast" }
"#,
    );
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &inv, &["-e", &base]).assert_code(0);
    let got = std::fs::read_to_string(lab.path().join("edits.conf")).unwrap();
    assert_eq!(got, "port = 6432\nmode = fast\n");
}

/// The filters and tests playbooks commonly use, rendered into a file.
const FILTERS: &str = r#"
- hosts: h1
  gather_facts: true
  vars:
    users:
      - { name: alice, admin: true, uid: 1001 }
      - { name: bob, admin: false, uid: 1002 }
      - { name: carol, admin: true, uid: 1003 }
    limits: { nofile: 65536, nproc: 4096 }
  tasks:
    - ansible.builtin.set_fact:
        node_names: "{{ range(1, 4) | map('string') | map('regex_replace', '^', 'node') | list }}"
    - ansible.builtin.copy:
        dest: "{{ base }}/filters.txt"
        content: |
          {{ "pgnode%02d" | format(7) }}
          {{ range(0, 10, 3) | list }}
          {{ node_names | join(' ') }}
          {% for i in limits | dict2items %}{{ i.key }}={{ i.value }} {% endfor %}

          {{ (users | items2dict(key_name='name', value_name='uid')).bob }}
          {{ users | selectattr('admin') | map(attribute='name') | join(',') }}
          {{ users | rejectattr('admin') | map(attribute='uid') | first }}
          {{ users | map(attribute='uid') | max }}
          {{ '15.3' is version('15', '>=') }} {{ '9.6' is version('10', 'lt') }} {{ ansible_distribution_version is version('1', '>') }}
          {{ [3, 1, 2] | sort | unique | list }} {{ {'a': 1} | combine({'b': 2}) | to_json }}
          {{ 'Hello' | lower | replace('l', 'L') }} {{ '  x ' | trim }} {{ 5 | default(3) }} {{ missing | default('fallback') }}
"#;

#[test]
fn common_filters_and_tests() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    let pb = lab.write("filters.yml", FILTERS);
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &inv, &["-e", &base]).assert_code(0);
    let got = std::fs::read_to_string(lab.path().join("filters.txt")).unwrap();
    assert_eq!(
        got,
        "pgnode07\n[0, 3, 6, 9]\nnode1 node2 node3\nnofile=65536 nproc=4096 \n1002\nalice,carol\n1002\n1003\nTrue True True\n[1, 2, 3] {\"a\": 1, \"b\": 2}\nheLLo x 5 fallback\n"
    );
}

#[test]
fn serial_batches_run_in_order() {
    let lab = Lab::start(3);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "serial.yml",
        r#"
- hosts: web
  gather_facts: false
  serial: 1
  tasks:
    - shell: echo "{{ inventory_hostname }} first {{ ansible_play_batch | join(',') }}" >> {{ base }}/serial.log
    - shell: echo "{{ inventory_hostname }} second" >> {{ base }}/serial.log
"#,
    );
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &inv, &["-e", &base]).assert_code(0);
    let log = std::fs::read_to_string(lab.path().join("serial.log")).unwrap();
    assert_eq!(
        log,
        "h1 first h1\nh1 second\nh2 first h2\nh2 second\nh3 first h3\nh3 second\n"
    );
    // A percentage: 67% of 3 hosts is batches of 2, then 1.
    std::fs::remove_file(lab.path().join("serial.log")).unwrap();
    let pct = lab.write(
        "pct.yml",
        &std::fs::read_to_string(&pb)
            .unwrap()
            .replace("serial: 1", "serial: \"67%\""),
    );
    lab.run(&pct, &inv, &["-e", &base]).assert_code(0);
    let log = std::fs::read_to_string(lab.path().join("serial.log")).unwrap();
    let firsts: Vec<&str> = log.lines().filter(|l| l.contains("first")).collect();
    assert!(
        firsts.contains(&"h1 first h1,h2") && firsts.contains(&"h3 first h3"),
        "{log}"
    );
}

#[test]
fn max_fail_percentage_stops_the_play() {
    let lab = Lab::start(3);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "mfp.yml",
        r#"
- hosts: web
  gather_facts: false
  max_fail_percentage: 30
  tasks:
    - command: /bin/false
      when: inventory_hostname == 'h1'
    - file: { path: "{{ base }}/{{ inventory_hostname }}.after", state: touch }
"#,
    );
    let base = format!("base={}", lab.path().display());
    let r = lab.run(&pb, &inv, &["-e", &base]);
    r.assert_code(2);
    assert!(
        r.all().contains("max_fail_percentage 30% exceeded"),
        "{}",
        r.all()
    );
    for h in ["h1", "h2", "h3"] {
        assert!(!lab.path().join(format!("{h}.after")).exists());
    }
    // 1 of 3 failed is 33%: with 40 the others go on.
    let ok = lab.write(
        "mfp40.yml",
        &std::fs::read_to_string(&pb)
            .unwrap()
            .replace("max_fail_percentage: 30", "max_fail_percentage: 40"),
    );
    lab.run(&ok, &inv, &["-e", &base]).assert_code(2);
    assert!(lab.path().join("h2.after").exists() && lab.path().join("h3.after").exists());
}

#[test]
fn delegate_to_and_run_once() {
    let lab = Lab::start(3);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "delegate.yml",
        r#"
- hosts: web
  gather_facts: false
  tasks:
    - name: once, on h3's connection, for the first host
      shell: echo "{{ inventory_hostname }} $SSH_CONNECTION" >> {{ base }}/delegated.log
      delegate_to: h3
      run_once: true
    - name: every host, each on h2's connection
      shell: echo "{{ inventory_hostname }} $SSH_CONNECTION" >> {{ base }}/each.log
      delegate_to: h2
"#,
    );
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &inv, &["-e", &base]).assert_code(0);
    let (h2, h3) = (&lab.hosts[1], &lab.hosts[2]);
    let once = std::fs::read_to_string(lab.path().join("delegated.log")).unwrap();
    let lines: Vec<&str> = once.lines().collect();
    assert_eq!(lines.len(), 1, "{once}");
    assert!(
        lines[0].starts_with("h1 ") && lines[0].ends_with(&format!(" {} {}", h3.ip, h3.port)),
        "{once}"
    );
    let each = std::fs::read_to_string(lab.path().join("each.log")).unwrap();
    assert_eq!(each.lines().count(), 3, "{each}");
    assert!(
        each.lines()
            .all(|l| l.ends_with(&format!(" {} {}", h2.ip, h2.port))),
        "{each}"
    );
}

#[test]
fn list_hosts_list_tasks_and_start_at_task() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "");
    let pb = lab.write(
        "steps.yml",
        r#"
- name: steps
  hosts: web
  gather_facts: false
  tasks:
    - name: one
      file: { path: "{{ base }}/{{ inventory_hostname }}.one", state: touch }
      tags: [early]
    - block:
        - name: two
          file: { path: "{{ base }}/{{ inventory_hostname }}.two", state: touch }
      tags: [late]
    - name: three
      file: { path: "{{ base }}/{{ inventory_hostname }}.three", state: touch }
"#,
    );
    let base = format!("base={}", lab.path().display());
    let hosts = lab.run(&pb, &inv, &["--list-hosts", "-l", "h2"]);
    hosts.assert_code(0);
    assert!(
        hosts
            .all()
            .contains("play #1 (web): steps\tHOST COUNT: 1\n    h2\n"),
        "{}",
        hosts.all()
    );
    let tasks = lab.run(&pb, &inv, &["--list-tasks", "--skip-tags", "early"]);
    tasks.assert_code(0);
    assert!(
        tasks
            .all()
            .contains("play #1 (web): steps\n    two\tTAGS: [late]\n    three\n"),
        "{}",
        tasks.all()
    );
    // Nothing ran.
    assert!(!lab.path().join("h1.one").exists());
    lab.run(&pb, &inv, &["-e", &base, "--start-at-task", "two"])
        .assert_code(0);
    let p = |n: &str| lab.path().join(n).exists();
    assert!(!p("h1.one") && p("h1.two") && p("h1.three") && p("h2.three"));
    let r = lab.run(&pb, &inv, &["-e", &base, "--start-at-task", "four"]);
    r.assert_code(4);
    assert!(r.all().contains("no task is named `four`"), "{}", r.all());

    // A templated host pattern sees the extra vars (and play vars), as Ansible's does.
    let picked = lab.write(
        "picked.yml",
        r#"
- name: picked
  hosts: "{{ target | default(fallback) }}"
  vars: { fallback: h1 }
  gather_facts: false
  tasks:
    - file: { path: "{{ base }}/{{ inventory_hostname }}.picked", state: touch }
"#,
    );
    lab.run(&picked, &inv, &["-e", &base, "-e", "target=h2"])
        .assert_code(0);
    assert!(p("h2.picked") && !p("h1.picked"));
    lab.run(&picked, &inv, &["-e", &base]).assert_code(0);
    assert!(p("h1.picked"));
    let none = lab.run(&picked, &inv, &["-e", &base, "-e", "target="]);
    none.assert_code(1);
    assert!(none.all().contains("names no host"), "{}", none.all());

    // A tasks file that includes itself stops with an error, not a stack overflow.
    lab.write("again.yml", "- include_tasks: again.yml\n");
    let looping = lab.write(
        "looping.yml",
        "- hosts: web\n  gather_facts: false\n  tasks:\n    - include_tasks: again.yml\n",
    );
    let r = lab.run(&looping, &inv, &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.all().contains("include_tasks nested more than 64 deep"),
        "{}",
        r.all()
    );
    // with_nested over lists whose product is a million items: refused before it is built.
    let nested = lab.write(
        "nested.yml",
        "- hosts: web\n  gather_facts: false\n  vars: { l: \"{{ range(100) | list }}\" }\n  tasks:\n    - debug: msg=x\n      with_nested: [\"{{ l }}\", \"{{ l }}\", \"{{ l }}\"]\n",
    );
    let r = lab.run(&nested, &inv, &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.all().contains("with_nested makes more than 100000 items"),
        "{}",
        r.all()
    );
}
