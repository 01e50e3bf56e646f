//! Secrets are masked by value in every output path.
//!
//! A value is secret when its variable is named like a password or key, when it belongs to a
//! `no_log` task, or when pgdeploy generated it. Every line, diff, JSON event and log goes
//! through [`Secrets::mask`], so a secret cannot be printed by forgetting to hide it.

use serde_json::Value;
use std::sync::{Arc, RwLock};

pub const MASK: &str = "********";
/// Shorter values are not masked: hiding every "1" or "on" would garble all output.
const MIN_SECRET_LEN: usize = 4;

/// Whether a variable name says its value is secret (`*password*`, `*_pass`, `*secret*`,
/// `*token*`, `*private_key*` ...), but not a file path to one.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with("_file") || n.ends_with("_path") || n.ends_with("_dir") || n.ends_with("_method")
    {
        return false;
    }
    [
        "password",
        "passwd",
        "_pass",
        "secret",
        "token",
        "private_key",
        "api_key",
        "passphrase",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n.ends_with("_key")
        || n == "pass"
}

/// Percent-encoding as urlencode filters do it (unreserved characters and `safe` kept).
fn url_encoded(v: &str, safe: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Clone, Default, Debug)]
pub struct Secrets {
    values: Arc<RwLock<Vec<String>>>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Registers a value to mask from now on, with the forms it takes on the way out: quoted
    /// for a shell (`-v` traces), escaped in JSON (`to_json` in a template, `--json`), and
    /// URL-encoded (a connection URL).
    pub fn add(&self, value: &str) {
        let v = value.trim();
        if v.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let json = serde_json::to_string(v).unwrap_or_default();
        let forms = [
            v.to_string(),
            crate::transport::quote(v),
            json[1..json.len().saturating_sub(1).max(1)].to_string(),
            url_encoded(v, ""),
            url_encoded(v, "/"),
        ];
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        for f in forms {
            if f.chars().count() >= MIN_SECRET_LEN && !values.contains(&f) {
                values.push(f);
            }
        }
        // Longest first, so that a secret containing another is masked whole.
        values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Registers a multi-line value (a private key) whole and line by line: a diff or a trace
    /// shows such a value one line at a time.
    pub fn add_lines(&self, value: &str) {
        self.add(value);
        for line in value.lines() {
            self.add(line);
        }
    }

    /// Registers every string inside a value (a dict of users with passwords, say).
    pub fn add_value(&self, value: &Value) {
        match value {
            Value::String(s) => self.add(s),
            Value::Array(a) => a.iter().for_each(|v| self.add_value(v)),
            Value::Object(m) => m.values().for_each(|v| self.add_value(v)),
            Value::Number(n) => self.add(&n.to_string()),
            _ => {}
        }
    }

    /// Registers the values of secret-named variables, and secret-named keys inside values.
    pub fn scan(&self, vars: &serde_json::Map<String, Value>) {
        for (k, v) in vars {
            if is_secret_name(k) && !crate::template::is_template(v.as_str().unwrap_or("")) {
                self.add_value(v);
            } else if let Value::Object(m) = v {
                self.scan(m);
            } else if let Value::Array(items) = v {
                for item in items {
                    if let Value::Object(m) = item {
                        self.scan(m);
                    }
                }
            }
        }
    }

    pub fn mask(&self, text: &str) -> String {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// A unified diff with its secrets masked, and with the removed lines that masked added
    /// lines replace masked as well: those hold the secret's old value (a rotated password or
    /// key), which nothing registered.
    pub fn mask_diff(&self, diff: &str) -> String {
        let removed = |l: &str| l.starts_with('-') && !l.starts_with("---");
        let added = |l: &str| l.starts_with('+') && !l.starts_with("+++");
        let lines: Vec<&str> = diff.lines().collect();
        let mut out = Vec::with_capacity(lines.len());
        let mut i = 0;
        while i < lines.len() {
            if !removed(lines[i]) {
                out.push(self.mask(lines[i]));
                i += 1;
                continue;
            }
            let start = i;
            while i < lines.len() && removed(lines[i]) {
                i += 1;
            }
            let gone = &lines[start..i];
            let start = i;
            while i < lines.len() && added(lines[i]) {
                i += 1;
            }
            let new: Vec<String> = lines[start..i].iter().map(|l| self.mask(l)).collect();
            let secret: Vec<bool> = lines[start..i]
                .iter()
                .zip(&new)
                .map(|(l, m)| l != m)
                .collect();
            let any = secret.contains(&true);
            for (k, l) in gone.iter().enumerate() {
                if secret.get(k).copied().unwrap_or(any) {
                    out.push(format!("-{MASK}"));
                } else {
                    out.push(self.mask(l));
                }
            }
            out.extend(new);
        }
        let mut text = out.join("\n");
        if diff.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Masks every string inside a JSON value (for `--json` events and registered results).
    pub fn mask_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.mask_value(v)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.mask_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for n in [
            "patroni_superuser_password",
            "ansible_ssh_pass",
            "ansible_become_password",
            "api_token",
            "tls_private_key",
            "replication_secret",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "ansible_ssh_private_key_file",
            "hostname",
            "patroni_cluster_name",
            "pgbouncer_auth_method",
            "passive",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn masks_values_everywhere() {
        let s = Secrets::new();
        s.scan(json!({"db_password": "s3cr3t!", "users": [{"name": "app", "password": "app-pass-1"}], "port": 5432}).as_object().unwrap());
        assert_eq!(
            s.mask("pw=s3cr3t! x app-pass-1 5432"),
            "pw=******** x ******** 5432"
        );
        assert_eq!(
            s.mask_value(&json!({"cmd": "psql -c \"ALTER ROLE x PASSWORD 's3cr3t!'\""})),
            json!({"cmd": "psql -c \"ALTER ROLE x PASSWORD ********\""})
        );
    }

    #[test]
    fn a_diff_hides_the_old_value_of_a_secret() {
        let s = Secrets::new();
        s.add("new-password-2");
        s.add_lines("KEYLINE-ONE-new\nKEYLINE-TWO-new");
        let diff = "--- a (before)\n+++ a (after)\n@@ -1,4 +1,4 @@\n port: 5432\n-password: old-password-1\n+password: new-password-2\n-max_connections: 100\n+max_connections: 200\n-OLDKEY-1\n-OLDKEY-2\n-OLDKEY-3\n+KEYLINE-ONE-new\n+KEYLINE-TWO-new\n";
        let masked = s.mask_diff(diff);
        assert!(!masked.contains("old-password-1"), "{masked}");
        assert!(!masked.contains("OLDKEY"), "{masked}");
        assert!(masked.contains("-max_connections: 100"), "{masked}");
        assert!(masked.contains("--- a (before)\n+++ a (after)"), "{masked}");
        assert!(masked.ends_with('\n'));
    }

    #[test]
    fn derived_forms_are_masked() {
        let s = Secrets::new();
        s.add(r#"it's "a" p@ss/w\rd"#);
        for shown in [
            r#"echo 'it'"'"'s "a" p@ss/w\rd'"#,
            r#"{"pw": "it's \"a\" p@ss/w\\rd"}"#,
            "postgresql://u:it%27s%20%22a%22%20p%40ss%2Fw%5Crd@h/db",
            "x=it%27s%20%22a%22%20p%40ss/w%5Crd",
        ] {
            let masked = s.mask(shown);
            assert!(masked.contains(MASK), "{shown} -> {masked}");
            for part in ["p@ss", "p%40ss", "w\\rd", "%5Crd"] {
                assert!(!masked.contains(part), "{shown} -> {masked}");
            }
        }
    }

    #[test]
    fn short_values_are_not_masked() {
        let s = Secrets::new();
        s.add("on");
        assert_eq!(s.mask("on"), "on");
    }
}
