//! Host key verification: strict by default, `accept-new` on request, never off.
//!
//! known_hosts files are read as OpenSSH reads them: plain, wildcard (`*`, `?`), negated (`!`),
//! `[host]:port` and hashed (`|1|salt|hash`) host patterns; `@revoked` keys are refused
//! wherever they appear; `@cert-authority` lines are not trust for a plain key; a line that
//! cannot be read is skipped, not the file. A host known with any other key (also of another
//! type) has a changed key. Learned keys are written hashed, as with `HashKnownHosts yes`.

use base64::Engine as _;
use russh::keys::ssh_key::PublicKey;
use russh::keys::HashAlg;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    Revoked {
        file: PathBuf,
        line: usize,
        fingerprint: String,
    },
}

#[derive(Debug, PartialEq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One readable line of a known_hosts file.
struct Entry {
    line: usize,
    marker: Marker,
    patterns: String,
    key: PublicKey,
}

/// The readable lines of a file; comments, blank and unreadable lines are left out.
fn entries(path: &Path) -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut fields = l.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            m if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = match fields.next() {
                Some(f) => f,
                None => continue,
            };
        }
        let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) else {
            continue;
        };
        out.push(Entry {
            line: i + 1,
            marker,
            patterns: first.to_string(),
            key,
        });
    }
    out
}

/// How OpenSSH names a host in known_hosts: `host`, or `[host]:port` off port 22.
fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// HMAC-SHA1 (RFC 2104), as hashed known_hosts entries use it.
fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha1::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `*` and `?` globbing, case-insensitive as host names are.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p.eq_ignore_ascii_case(n) => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether a line's host patterns name `name`: a hashed one by its HMAC, else any pattern
/// matches and no negated one does.
fn names_host(patterns: &str, name: &str) -> bool {
    if let Some(rest) = patterns.strip_prefix("|1|") {
        let b64 = base64::engine::general_purpose::STANDARD;
        let Some((salt, hash)) = rest.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let mut found = false;
    for p in patterns.split(',') {
        match p.strip_prefix('!') {
            Some(neg) if glob(neg.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => found |= glob(p.as_bytes(), name.as_bytes()),
        }
    }
    found
}

/// Appends `key` for `name` to `file`, hashed (`|1|salt|HMAC-SHA1(salt, name)`).
fn learn(file: &Path, name: &str, key: &PublicKey) -> std::io::Result<()> {
    let mut salt = [0u8; 20];
    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut openssh = key.clone();
    openssh.set_comment("");
    let line = format!(
        "|1|{}|{} {}\n",
        b64.encode(salt),
        b64.encode(hmac_sha1(&salt, name.as_bytes())),
        openssh.to_openssh().map_err(std::io::Error::other)?.trim()
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let needs_newline = std::fs::read(file)
        .map(|t| !t.is_empty() && !t.ends_with(b"\n"))
        .unwrap_or(false);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    if needs_newline {
        f.write_all(b"\n")?;
    }
    f.write_all(line.as_bytes())
}

impl KnownHosts {
    /// Checks `key` presented by `host:port`.
    pub fn verify(&self, host: &str, port: u16, key: &PublicKey) -> KeyVerdict {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let name = host_name(host, port);
        let (mut trusted, mut changed, mut revoked) = (false, None, None);
        for file in &self.files {
            for e in entries(file) {
                let same = e.key.key_data() == key.key_data();
                // A revoked key is refused whatever names it: OpenSSH's `@revoked *`.
                if e.marker == Marker::Revoked {
                    if same && revoked.is_none() {
                        revoked = Some((file.clone(), e.line));
                    }
                    continue;
                }
                if e.marker != Marker::None || !names_host(&e.patterns, &name) {
                    continue;
                }
                if same {
                    trusted = true;
                } else if changed.is_none() {
                    changed = Some((file.clone(), e.line));
                }
            }
        }
        if let Some((file, line)) = revoked {
            return KeyVerdict::Revoked {
                file,
                line,
                fingerprint,
            };
        }
        if trusted {
            return KeyVerdict::Trusted;
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
                if learn(file, &name, key).is_ok() {
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
            KeyVerdict::Revoked { file, line, fingerprint } => format!(
                "REVOKED HOST KEY for {host}:{port}: it presented {fingerprint}, which {}:{line} marks \
                 @revoked; pgdeploy will not connect with it (the host needs a new key)",
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
        key_of("ed25519")
    }

    fn key_of(kind: &str) -> PublicKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
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
        // Learned hashed, and OpenSSH finds it: `ssh-keygen -F '[h]:2222'`.
        assert!(
            text.lines().nth(line - 1).unwrap().starts_with("|1|"),
            "{text}"
        );
        assert!(!text.contains("[h]"), "{text}");
        let found = std::process::Command::new("ssh-keygen")
            .args(["-F", "[h]:2222", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "ssh-keygen -F finds the learned entry"
        );
        assert!(accept.refusal("h", 2222, &v).contains("HOST KEY CHANGED"));
    }

    fn line(key: &PublicKey) -> String {
        let mut k = key.clone();
        k.set_comment("");
        k.to_openssh().unwrap()
    }

    #[test]
    fn read_as_openssh_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let (a, b, c, rsa) = (key(), key(), key(), key_of("rsa"));
        // A malformed line does not hide the rest; wildcards and negation; a hashed entry
        // made by OpenSSH's own `ssh-keygen -H`.
        std::fs::write(&file, format!("hashed.example.com {}\n", line(&b))).unwrap();
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-H", "-f"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(st.success());
        let hashed = std::fs::read_to_string(&file).unwrap();
        assert!(hashed.starts_with("|1|"), "{hashed}");
        std::fs::write(
            &file,
            format!(
                "# comment\nbroken line\nx ssh-ed25519 AAAAnotbase64\n@bogus x {}\n\
                 db*.example.com,!db9.example.com {}\n{hashed}",
                line(&a),
                line(&a)
            ),
        )
        .unwrap();
        let strict = KnownHosts {
            files: vec![file.clone()],
            policy: HostKeyPolicy::Strict,
        };
        assert!(matches!(
            strict.verify("db1.example.com", 22, &a),
            KeyVerdict::Trusted
        ));
        assert!(matches!(
            strict.verify("DB2.Example.com", 22, &a),
            KeyVerdict::Trusted
        ));
        assert!(matches!(
            strict.verify("db9.example.com", 22, &a),
            KeyVerdict::Unknown { .. }
        ));
        assert!(matches!(
            strict.verify("db1.example.com", 2200, &a),
            KeyVerdict::Unknown { .. }
        ));
        assert!(matches!(
            strict.verify("hashed.example.com", 22, &b),
            KeyVerdict::Trusted
        ));
        // Another key, of another type too, is a changed key; accept-new does not learn it.
        let accept = KnownHosts {
            files: vec![file.clone()],
            policy: HostKeyPolicy::AcceptNew,
        };
        assert!(matches!(
            accept.verify("hashed.example.com", 22, &rsa),
            KeyVerdict::Changed { .. }
        ));
        assert!(matches!(
            accept.verify("db1.example.com", 22, &c),
            KeyVerdict::Changed { .. }
        ));
        // @revoked wins over a line that trusts the key; the message says so.
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&format!("@revoked * {}\n", line(&b)));
        std::fs::write(&file, text).unwrap();
        let v = accept.verify("hashed.example.com", 22, &b);
        assert!(matches!(v, KeyVerdict::Revoked { .. }), "{v:?}");
        assert!(accept
            .refusal("hashed.example.com", 22, &v)
            .contains("REVOKED HOST KEY"));
        assert!(matches!(
            accept.verify("new.example.com", 22, &b),
            KeyVerdict::Revoked { .. }
        ));
        // @cert-authority is no trust for a plain key.
        std::fs::write(&file, format!("@cert-authority * {}\n", line(&c))).unwrap();
        assert!(matches!(
            strict.verify("ca.example.com", 22, &c),
            KeyVerdict::Unknown { .. }
        ));
    }
}
