//! Host key verification: strict by default, `accept-new` on request, never off.
//!
//! russh matches exact, `[host]:port` and hashed entries; the policy (which files, what to do
//! with an unknown or a changed key) is ours.

use russh::keys::known_hosts::{known_host_keys_path, learn_known_hosts_path};
use russh::keys::ssh_key::PublicKey;
use russh::keys::HashAlg;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown keys are refused.
    Strict,
    /// Unknown keys are recorded in the first known_hosts file; changed keys are refused.
    AcceptNew,
}

#[derive(Debug, Clone)]
pub struct KnownHosts {
    pub files: Vec<PathBuf>,
    pub policy: HostKeyPolicy,
}

/// Why a host key was refused; the message says what to do.
#[derive(Debug, Clone)]
pub enum KeyVerdict {
    Trusted,
    Learned(PathBuf),
    Unknown {
        fingerprint: String,
    },
    Changed {
        file: PathBuf,
        line: usize,
        fingerprint: String,
    },
}

impl KnownHosts {
    /// Checks `key` presented by `host:port`.
    pub fn verify(&self, host: &str, port: u16, key: &PublicKey) -> KeyVerdict {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let mut changed = None;
        for file in &self.files {
            if !file.exists() {
                continue;
            }
            let Ok(entries) = known_host_keys_path(host, port, file) else {
                continue;
            };
            for (line, known) in entries {
                if known.key_data() == key.key_data() {
                    return KeyVerdict::Trusted;
                }
                if known.algorithm() == key.algorithm() && changed.is_none() {
                    changed = Some((file.clone(), line));
                }
            }
        }
        if let Some((file, line)) = changed {
            return KeyVerdict::Changed {
                file,
                line,
                fingerprint,
            };
        }
        if self.policy == HostKeyPolicy::AcceptNew {
            if let Some(file) = self.files.first() {
                if learn_known_hosts_path(host, port, key, file).is_ok() {
                    return KeyVerdict::Learned(file.clone());
                }
            }
        }
        KeyVerdict::Unknown { fingerprint }
    }

    /// The message for a refused key.
    pub fn refusal(&self, host: &str, port: u16, verdict: &KeyVerdict) -> String {
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        match verdict {
            KeyVerdict::Changed { file, line, fingerprint } => format!(
                "HOST KEY CHANGED for {host}:{port}: it presented {fingerprint}, which does not match {}:{line}. \
                 This may be an attack or a reinstalled host; if you know the host was rebuilt, remove that line \
                 (ssh-keygen -R {host} -f {}) and connect again",
                file.display(),
                file.display()
            ),
            KeyVerdict::Unknown { fingerprint } => format!(
                "host key of {host}:{port} ({fingerprint}) is not in {}; add it (ssh-keyscan -p {port} {host} >> {}) \
                 after checking its fingerprint, or run with --accept-new-host-keys to record it",
                files.join(", "),
                files.first().cloned().unwrap_or_else(|| "~/.ssh/known_hosts".into())
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh ed25519 public key, made by OpenSSH's ssh-keygen.
    fn key() -> PublicKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (openssh-client) must be installed");
        assert!(st.success());
        let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        PublicKey::from_openssh(text.trim()).unwrap()
    }

    #[test]
    fn strict_refuses_unknown_and_changed_accept_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let (k1, k2) = (key(), key());
        let strict = KnownHosts {
            files: vec![file.clone()],
            policy: HostKeyPolicy::Strict,
        };
        assert!(matches!(
            strict.verify("h", 22, &k1),
            KeyVerdict::Unknown { .. }
        ));
        assert!(!file.exists(), "strict mode must not write known_hosts");
        let accept = KnownHosts {
            files: vec![file.clone()],
            policy: HostKeyPolicy::AcceptNew,
        };
        assert!(matches!(
            accept.verify("h", 2222, &k1),
            KeyVerdict::Learned(_)
        ));
        assert!(matches!(strict.verify("h", 2222, &k1), KeyVerdict::Trusted));
        let v = accept.verify("h", 2222, &k2);
        let KeyVerdict::Changed { line, .. } = v.clone() else {
            panic!("{v:?}")
        };
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.lines().nth(line - 1).unwrap().starts_with("[h]:2222 "),
            "{text}"
        );
        assert!(accept.refusal("h", 2222, &v).contains("HOST KEY CHANGED"));
    }
}
