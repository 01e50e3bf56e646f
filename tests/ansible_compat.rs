//! What Ansible users bring with them, against real OpenSSH servers on 127.0.1.x: YAML
//! inventories with group_vars/ and host_vars/, ~/.ssh/config, ansible.cfg, and hosts reached
//! through a bastion (ProxyJump).

mod common;

use common::Lab;

const WRITE_GREETING: &str = r#"
- hosts: web
  gather_facts: no
  tasks:
    - copy:
        dest: "{{ base }}/{{ inventory_hostname }}.txt"
        content: "{{ greeting }} from {{ inventory_hostname }} as {{ ansible_user | default('?') }}\n"
"#;

#[test]
fn yaml_inventory_with_group_and_host_vars_directories() {
    let lab = Lab::start(2);
    let key = lab.path().join("id_ed25519");
    let mut inv = String::from("all:\n  children:\n    web:\n      hosts:\n");
    for h in &lab.hosts {
        inv.push_str(&format!(
            "        {}:\n          ansible_host: {}\n          ansible_port: {}\n",
            h.name, h.ip, h.port
        ));
    }
    inv.push_str(&format!(
        "  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n",
        key.display()
    ));
    let dir = lab.path().join("yamlinv");
    std::fs::create_dir_all(dir.join("group_vars")).unwrap();
    std::fs::create_dir_all(dir.join("host_vars")).unwrap();
    std::fs::write(dir.join("hosts.yml"), inv).unwrap();
    std::fs::write(dir.join("group_vars/web.yml"), "greeting: hello\n").unwrap();
    std::fs::write(dir.join("host_vars/h2.yml"), "greeting: bonjour\n").unwrap();
    let pb = lab.write("greet.yml", WRITE_GREETING);
    let base = format!("base={}", lab.path().display());
    lab.run(&pb, &dir.join("hosts.yml"), &["-e", &base])
        .assert_code(0);
    let read = |n: &str| std::fs::read_to_string(lab.path().join(n)).unwrap();
    assert_eq!(read("h1.txt"), "hello from h1 as root\n");
    assert_eq!(read("h2.txt"), "bonjour from h2 as root\n");
}

#[test]
fn ssh_config_and_ansible_cfg_reach_hosts_without_inventory_vars() {
    let lab = Lab::start(2);
    let key = lab.path().join("id_ed25519");
    // h1: everything from ~/.ssh/config. h2: its address and port from there, its user and
    // key from ansible.cfg.
    let (h1, h2) = (&lab.hosts[0], &lab.hosts[1]);
    let ssh = lab.path().join("home/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(
        ssh.join("config"),
        format!(
            "Host h1\n  HostName {}\n  Port {}\n  User root\n  IdentityFile {}\n\nHost h2\n  HostName {}\n  Port {}\n",
            h1.ip,
            h1.port,
            key.display(),
            h2.ip,
            h2.port
        ),
    )
    .unwrap();
    let cfg = lab.path().join("ansible.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\nremote_user = root\nprivate_key_file = {}\nforks = 1\nhost_key_checking = False\n",
            key.display()
        ),
    )
    .unwrap();
    let inv = lab.path().join("bare.ini");
    std::fs::write(&inv, "[web]\nh1\nh2\n").unwrap();
    let pb = lab.write("greet.yml", WRITE_GREETING);
    let base = format!("base={}", lab.path().display());
    let run = |greeting: &str| {
        lab.command(&[
            "run",
            pb.to_str().unwrap(),
            "-i",
            inv.to_str().unwrap(),
            "-e",
            &base,
            "-e",
            &format!("greeting={greeting}"),
        ])
        .env("ANSIBLE_CONFIG", &cfg)
        .output()
        .unwrap()
    };
    let out = run("hi");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("host_key_checking = False is ignored"),
        "ansible.cfg's host_key_checking is refused loudly:\n{all}"
    );
    let read = |n: &str| std::fs::read_to_string(lab.path().join(n)).unwrap();
    assert_eq!(read("h1.txt"), "hi from h1 as ?\n");
    assert_eq!(read("h2.txt"), "hi from h2 as ?\n");
    // A host key that is not known is still refused, whatever ansible.cfg says.
    std::fs::write(lab.path().join("known_hosts"), "").unwrap();
    let refused = run("x");
    assert_eq!(refused.status.code(), Some(3));
}

#[test]
fn proxy_jump_through_a_bastion() {
    let lab = Lab::start(3);
    let key = lab.path().join("id_ed25519");
    let (bastion, h2, h3) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    // h2 through an inventory ProxyJump, h3 through Ansible's documented ProxyCommand form.
    let inv = lab.path().join("jump.ini");
    std::fs::write(
        &inv,
        format!(
            "[web]\n\
             h2 ansible_host={} ansible_port={} ansible_ssh_common_args='-o ProxyJump=root@{}:{}'\n\
             h3 ansible_host={} ansible_port={} ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p -q -p {} root@{}\"'\n\
             [web:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n",
            h2.ip,
            h2.port,
            bastion.ip,
            bastion.port,
            h3.ip,
            h3.port,
            bastion.port,
            bastion.ip,
            key.display()
        ),
    )
    .unwrap();
    let pb = lab.write("greet.yml", WRITE_GREETING);
    let base = format!("base={}", lab.path().display());
    let r = lab.run(&pb, &inv, &["-e", &base, "-e", "greeting=via"]);
    r.assert_code(0);
    assert!(lab.path().join("h2.txt").exists() && lab.path().join("h3.txt").exists());
    // The play names only h2 and h3: the bastion's logins are the tunnels, one per host.
    assert_eq!(lab.logins("h1"), 2, "{}", r.all());
    assert_eq!(lab.logins("h2"), 1);
    assert_eq!(lab.logins("h3"), 1);
}
