//! Ansible Vault against real OpenSSH servers: files and inline values encrypted by real
//! `ansible-vault` (tests/fixtures/vault/README.md) decrypt with a password file, a password
//! script or a vault id; the values never show in the output; a wrong or missing password is
//! a clear error and nothing runs.

mod common;

use common::Lab;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vault")
        .join(name)
        .display()
        .to_string()
}

const PLAYBOOK: &str = r#"
- hosts: web
  gather_facts: no
  vars_files:
    - "{{ fixtures }}/secrets.yml"
    - "{{ fixtures }}/inline.yml"
  tasks:
    - copy:
        dest: "{{ base }}/{{ inventory_hostname }}.out"
        content: "{{ db_pass }} {{ whole_word }} {{ app_token }} {{ plain_inline }} {{ from_group_vars }}\n"
    - debug:
        msg: "the password is {{ db_pass }} and the token {{ app_token }}"
"#;

#[test]
fn vault_files_and_values_decrypt_and_stay_secret() {
    let lab = Lab::start(1);
    let inv = lab.inventory("root", "");
    // group_vars beside the inventory, a whole file in Vault.
    let gv = lab.path().join("group_vars");
    std::fs::create_dir_all(&gv).unwrap();
    let text = std::fs::read_to_string(fixture("secrets.yml")).unwrap();
    std::fs::write(gv.join("web.yml"), &text).unwrap();
    std::fs::write(gv.join("all.yml"), "from_group_vars: '{{ db_pass }}'\n").unwrap();
    let pb = lab.write("vault.yml", PLAYBOOK);
    let vars = [
        "-e".to_string(),
        format!("fixtures={}", fixture("")),
        "-e".to_string(),
        format!("base={}", lab.path().display()),
    ];
    let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
    let out = lab.path().join("h1.out");
    let secrets = [
        "S3cret-Whole-File",
        "hello-from-vault",
        "Inline-T0ken-Value",
        "default-id-inline",
    ];

    // No password: a clear error naming the file, nothing runs.
    let r = lab.run(&pb, &inv, &vars);
    assert_ne!(r.code, 0);
    assert!(
        r.all().contains("is encrypted with Ansible Vault")
            && r.all().contains("--vault-password-file"),
        "{}",
        r.all()
    );
    assert!(!out.exists());

    // A wrong password: refused, nothing runs.
    let wrong = lab.write("wrong.txt", "not-it\n");
    let mut args = vars.clone();
    let w = wrong.display().to_string();
    args.extend(["--vault-password-file", &w]);
    let r = lab.run(&pb, &inv, &args);
    assert_ne!(r.code, 0);
    assert!(
        r.all()
            .contains("none of the Vault passwords given decrypts it"),
        "{}",
        r.all()
    );
    assert!(!out.exists());

    // The password file for the default id, and --vault-id for `prod`; then a password script.
    for default in [fixture("password.txt"), fixture("password-script.sh")] {
        let prod = format!("prod@{}", fixture("prod-password.txt"));
        let mut args = vars.clone();
        args.extend(["--vault-password-file", &default, "--vault-id", &prod]);
        let r = lab.run(&pb, &inv, &args);
        r.assert_code(0);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "S3cret-Whole-File hello-from-vault Inline-T0ken-Value default-id-inline S3cret-Whole-File\n"
        );
        for s in secrets {
            assert!(!r.all().contains(s), "{s} shown:\n{}", r.all());
        }
        assert!(
            r.stdout.contains("the password is ********"),
            "{}",
            r.stdout
        );
        let mut json = args.clone();
        json.push("--json");
        let r = lab.run(&pb, &inv, &json);
        r.assert_code(0);
        for s in secrets {
            assert!(!r.all().contains(s), "{s} shown in --json:\n{}", r.all());
        }
        std::fs::remove_file(&out).unwrap();
    }
}
