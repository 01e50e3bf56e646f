//! `~/.ssh/config`, as OpenSSH reads it for the settings pgdeploy uses: HostName, User, Port,
//! IdentityFile, ProxyJump. The first value obtained for a key wins; `Host` patterns take `*`,
//! `?` and `!negation`. `Match` blocks and `Include` are not read (said once on stderr).

use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
struct Block {
    patterns: Vec<String>,
    /// Keys lowercased, in file order.
    settings: Vec<(String, String)>,
}

impl SshConfig {
    /// `~/.ssh/config` when it exists, else an empty configuration.
    pub fn load_user() -> SshConfig {
        let Some(home) = std::env::var_os("HOME") else {
            return SshConfig::default();
        };
        let path = Path::new(&home).join(".ssh/config");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let cfg = SshConfig::parse(&text);
                if text.lines().any(|l| {
                    let l = l.trim_start().to_ascii_lowercase();
                    l.starts_with("match ") || l.starts_with("include ")
                }) {
                    eprintln!(
                        "note: {}: `Match` blocks and `Include` are not read by pgdeploy",
                        path.display()
                    );
                }
                cfg
            }
            Err(_) => SshConfig::default(),
        }
    }

    pub fn parse(text: &str) -> SshConfig {
        // Settings before any `Host` line apply to every host.
        let mut blocks = vec![Block {
            patterns: vec!["*".into()],
            settings: vec![],
        }];
        let mut skipping = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once(|c: char| c == '=' || c.is_whitespace()) {
                Some((k, v)) => (k.trim(), v.trim().trim_start_matches('=').trim()),
                None => continue,
            };
            let key = key.to_ascii_lowercase();
            match key.as_str() {
                "host" => {
                    skipping = false;
                    blocks.push(Block {
                        patterns: value.split_whitespace().map(str::to_string).collect(),
                        settings: vec![],
                    });
                }
                "match" => skipping = true,
                _ if skipping => {}
                _ => {
                    let value = value.trim_matches('"').to_string();
                    if let Some(b) = blocks.last_mut() {
                        b.settings.push((key, value));
                    }
                }
            }
        }
        SshConfig { blocks }
    }

    /// The first value of `key` (any case) among the blocks that match `host`.
    pub fn get(&self, host: &str, key: &str) -> Option<String> {
        let key = key.to_ascii_lowercase();
        self.blocks
            .iter()
            .filter(|b| matches(&b.patterns, host))
            .find_map(|b| {
                b.settings
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.replace("%h", host))
            })
    }
}

fn matches(patterns: &[String], host: &str) -> bool {
    let mut any = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if crate::glob::glob(neg, host) {
                return false;
            }
        } else if crate::glob::glob(p, host) {
            any = true;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_with_negation() {
        let c = SshConfig::parse(
            "User everyone-first\n\
             Host db-* !db-test\n  HostName %h.internal\n  User dba\n  Port 2222\n  IdentityFile ~/.ssh/db\n\
             Host *\n  User fallback\n  ProxyJump bastion\n\
             Match user x\n  User never\n",
        );
        assert_eq!(c.get("db-1", "user").as_deref(), Some("everyone-first"));
        assert_eq!(c.get("db-1", "HostName").as_deref(), Some("db-1.internal"));
        assert_eq!(c.get("db-1", "port").as_deref(), Some("2222"));
        assert_eq!(c.get("db-test", "port"), None);
        assert_eq!(c.get("web", "ProxyJump").as_deref(), Some("bastion"));
        let c = SshConfig::parse("Host=a\n  User=alice\n");
        assert_eq!(c.get("a", "user").as_deref(), Some("alice"));
    }
}
