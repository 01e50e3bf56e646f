//! Roles as Ansible lays them out, against real OpenSSH servers: play `roles:` (names and
//! entries with parameters and tags), `import_role` with `tasks_from`, meta dependencies,
//! defaults overridden by the inventory, role vars, a template and a handler in the role,
//! `role_path`; the re-run changes nothing.

mod common;

use common::Lab;

const FILES: &[(&str, &str)] = &[
    (
        "site.yml",
        r#"
- hosts: web
  gather_facts: no
  roles:
    - common
    - role: app
      app_port: 8081
      tags: [app]
  tasks:
    - import_role:
        name: app
        tasks_from: extra
"#,
    ),
    (
        "roles/common/tasks/main.yml",
        "- copy: { dest: \"{{ base }}/{{ inventory_hostname }}.greeting\", content: \"{{ common_greeting }}\\n\" }\n",
    ),
    ("roles/common/defaults/main.yml", "common_greeting: hello-default\n"),
    (
        "roles/dirs/tasks/main.yml",
        "- file: { path: \"{{ app_conf_dir }}\", state: directory }\n",
    ),
    ("roles/app/meta/main.yml", "dependencies:\n  - dirs\n"),
    (
        "roles/app/defaults/main.yml",
        "app_port: 8080\napp_name: demo\n",
    ),
    (
        "roles/app/vars/main.yml",
        "app_conf_dir: \"{{ base }}/{{ inventory_hostname }}/conf\"\n",
    ),
    (
        "roles/app/templates/app.conf.j2",
        "port={{ app_port }} name={{ app_name }} role={{ role_path | basename }}\n",
    ),
    (
        "roles/app/tasks/main.yml",
        "- template: { src: app.conf.j2, dest: \"{{ app_conf_dir }}/app.conf\" }\n  notify: restart app\n",
    ),
    (
        "roles/app/tasks/extra.yml",
        "- copy: { dest: \"{{ app_conf_dir }}/extra\", content: \"{{ app_name }} {{ app_port }}\\n\" }\n",
    ),
    (
        "roles/app/handlers/main.yml",
        "- name: restart app\n  shell: echo restarted >> {{ base }}/{{ inventory_hostname }}.handler\n",
    ),
];

#[test]
fn a_role_structured_playbook_converges() {
    let lab = Lab::start(2);
    let inv = lab.inventory("root", "[web:vars]\ncommon_greeting=hello-inventory\n");
    // The inventory overrides a role default for h1 only.
    let text = std::fs::read_to_string(&inv).unwrap().replacen(
        "h1 ansible_host",
        "h1 app_name=from-inventory ansible_host",
        1,
    );
    std::fs::write(&inv, text).unwrap();
    let project = lab.path().join("project");
    for (name, text) in FILES {
        let path = project.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let pb = project.join("site.yml");
    let b = format!("base={}", lab.path().display());
    let first = lab.run(&pb, &inv, &["-e", &b]);
    first.assert_code(0);
    let read = |n: &str| std::fs::read_to_string(lab.path().join(n)).unwrap_or_default();
    assert_eq!(
        read("h1/conf/app.conf"),
        "port=8081 name=from-inventory role=app\n"
    );
    assert_eq!(read("h2/conf/app.conf"), "port=8081 name=demo role=app\n");
    // import_role: the role's defaults again (no parameters this time).
    assert_eq!(read("h2/conf/extra"), "demo 8080\n");
    assert_eq!(read("h1.greeting"), "hello-inventory\n");
    assert_eq!(read("h1.handler"), "restarted\n");
    let again = lab.run(&pb, &inv, &["-e", &b]);
    again.assert_code(0);
    for h in ["h1", "h2"] {
        assert_eq!(
            again.recap(h).1,
            0,
            "re-run changes nothing:\n{}",
            again.stdout
        );
    }
    assert_eq!(read("h1.handler"), "restarted\n");
    // The role entry's tags select it.
    let tagged = lab.run(&pb, &inv, &["-e", &b, "--list-tasks", "--tags", "app"]);
    tagged.assert_code(0);
    assert!(
        tagged.stdout.contains("template") && !tagged.stdout.contains("copy\tTAGS"),
        "{}",
        tagged.stdout
    );
    // A role that is not there: an error naming the file and line, nothing runs.
    let bad = lab.write("bad.yml", "- hosts: web\n  roles:\n    - nosuchrole\n");
    let r = lab.run(&bad, &inv, &[]);
    r.assert_code(4);
    assert!(
        r.stderr.contains("bad.yml:3") && r.stderr.contains("role `nosuchrole` not found"),
        "{}",
        r.stderr
    );
}
