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

#[derive(Clone, Default, Debug)]
pub struct Secrets {
    values: Arc<RwLock<Vec<String>>>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Registers a value to mask from now on.
    pub fn add(&self, value: &str) {
        let v = value.trim();
        if v.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        if !values.iter().any(|s| s == v) {
            values.push(v.to_string());
            // Longest first, so that a secret containing another is masked whole.
            values.sort_by_key(|s| std::cmp::Reverse(s.len()));
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
            json!({"cmd": "psql -c \"ALTER ROLE x PASSWORD '********'\""})
        );
    }

    #[test]
    fn short_values_are_not_masked() {
        let s = Secrets::new();
        s.add("on");
        assert_eq!(s.mask("on"), "on");
    }
}
