//! `ansible.cfg`, found as Ansible finds it ($ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg,
//! /etc/ansible/ansible.cfg; the first that exists), for the settings that matter here:
//! `[defaults]` forks, remote_user, private_key_file, inventory, timeout, roles_path,
//! host_key_checking.
//! Command-line flags win over it; inventory variables win over remote_user/private_key_file.

use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct AnsibleCfg {
    pub path: Option<PathBuf>,
    pub forks: Option<usize>,
    pub remote_user: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub inventory: Option<PathBuf>,
    pub timeout: Option<u64>,
    /// Where roles are looked for (after `roles/` beside the playbook).
    pub roles_path: Vec<PathBuf>,
    /// `host_key_checking = False`: refused, with a warning (pgdeploy always verifies).
    pub host_key_checking_off: bool,
}

impl AnsibleCfg {
    pub fn find() -> AnsibleCfg {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("ANSIBLE_CONFIG") {
            candidates.push(PathBuf::from(p));
        }
        candidates.push(PathBuf::from("ansible.cfg"));
        if let Some(h) = std::env::var_os("HOME") {
            candidates.push(Path::new(&h).join(".ansible.cfg"));
        }
        candidates.push(PathBuf::from("/etc/ansible/ansible.cfg"));
        for c in candidates {
            if let Ok(text) = std::fs::read_to_string(&c) {
                let mut cfg = AnsibleCfg::parse(&text, c.parent().unwrap_or(Path::new(".")));
                cfg.path = Some(c);
                return cfg;
            }
        }
        AnsibleCfg::default()
    }

    /// Parses the text; relative paths are taken from `dir` (the file's directory).
    pub fn parse(text: &str, dir: &Path) -> AnsibleCfg {
        let mut cfg = AnsibleCfg::default();
        let mut section = String::new();
        let path = |v: &str| -> PathBuf {
            let v = crate::engine::expand_home(v);
            if v.is_absolute() {
                v
            } else {
                dir.join(v)
            }
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_ascii_lowercase();
                continue;
            }
            let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if section != "defaults" {
                continue;
            }
            match k.as_str() {
                "forks" => cfg.forks = v.parse().ok(),
                "remote_user" => cfg.remote_user = Some(v.to_string()),
                "private_key_file" => cfg.private_key_file = Some(path(v)),
                "inventory" | "hostfile" => {
                    cfg.inventory = v.split(',').next().map(|s| path(s.trim()))
                }
                "timeout" => cfg.timeout = v.parse().ok(),
                "roles_path" => {
                    cfg.roles_path = v
                        .split(':')
                        .filter(|p| !p.trim().is_empty())
                        .map(|p| path(p.trim()))
                        .collect()
                }
                "host_key_checking" => {
                    cfg.host_key_checking_off = matches!(
                        v.to_ascii_lowercase().as_str(),
                        "false" | "no" | "0" | "off"
                    )
                }
                _ => {}
            }
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_defaults_section() {
        let c = AnsibleCfg::parse(
            "[defaults]\nforks = 7\nremote_user=deploy\nprivate_key_file = keys/id\ninventory = ./hosts.yml,other\nhost_key_checking = False\n[ssh_connection]\nforks = 99\n",
            Path::new("/proj"),
        );
        assert_eq!(c.forks, Some(7));
        assert_eq!(c.remote_user.as_deref(), Some("deploy"));
        assert_eq!(c.private_key_file, Some(PathBuf::from("/proj/keys/id")));
        assert_eq!(c.inventory, Some(PathBuf::from("/proj/./hosts.yml")));
        assert!(c.host_key_checking_off);
    }
}
