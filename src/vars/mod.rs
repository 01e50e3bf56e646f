//! Variables from outside the inventory: vars files and `-e/--extra-vars`.
//!
//! Precedence, low to high: built-in defaults < vars files < inventory group vars (parents
//! before children) < inventory host vars < facts < play vars < set_fact/register < `-e`.
//! The engine merges the layers; this module reads the ones that come from files and flags.

pub mod generated;
mod secrets;

pub use secrets::{is_secret_name, Secrets};

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Reads a YAML vars file that must hold a mapping.
pub fn load_vars_file(path: &Path) -> Result<Map<String, Value>> {
    crate::yaml::load_mapping(path)
}

/// Parses the `-e` arguments in order: `@file.yml`, a JSON/YAML mapping, or `k=v k2=v2`.
pub fn parse_extra_vars(args: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (n, arg) in args.iter().enumerate() {
        let arg = arg.trim();
        // An error names the argument by position, never echoes it: it may hold a password.
        let which = format!("-e number {}", n + 1);
        let layer = if let Some(file) = arg.strip_prefix('@') {
            load_vars_file(Path::new(file)).map_err(|e| anyhow!("-e @{file}: {e:#}"))?
        } else if arg.starts_with('{') {
            match crate::yaml::parse_json(arg, &which)? {
                Value::Object(m) => m,
                _ => bail!("{which}: expected a mapping"),
            }
        } else {
            parse_key_values(arg).map_err(|e| anyhow!("{which}: {e}"))?
        };
        out.extend(layer);
    }
    Ok(out)
}

/// `k=v k2='quoted value'`: values stay strings, as with Ansible's `-e k=v`.
fn parse_key_values(text: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            bail!("expected key=value, @file.yml or a YAML mapping");
        };
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("expected key=value, found `{}`", &rest[..eq]);
        }
        rest = &rest[eq + 1..];
        let (value, after) = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let end = rest[1..]
                    .find(q)
                    .ok_or_else(|| anyhow!("unterminated quote in the value of `{key}`"))?;
                (rest[1..1 + end].to_string(), &rest[end + 2..])
            }
            _ => {
                let end = unquoted_end(rest);
                (rest[..end].to_string(), &rest[end..])
            }
        };
        out.insert(key.to_string(), Value::String(value));
        rest = after.trim_start();
    }
    Ok(out)
}

/// Where an unquoted value ends: at whitespace outside `{{ }}`, `{% %}` and `{# #}`, which
/// Ansible keeps together (`dest={{ base }}/x`).
fn unquoted_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut close: Option<&[u8]> = None;
    let mut i = 0;
    while i < bytes.len() {
        match close {
            Some(end) if bytes[i..].starts_with(end) => {
                i += end.len();
                close = None;
                continue;
            }
            Some(_) => {}
            None if bytes[i..].starts_with(b"{{") => close = Some(b"}}"),
            None if bytes[i..].starts_with(b"{%") => close = Some(b"%}"),
            None if bytes[i..].starts_with(b"{#") => close = Some(b"#}"),
            None if bytes[i].is_ascii_whitespace() => return i,
            None => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Key=value arguments of a module's free form (`file: path=/x state=directory`).
pub fn parse_module_args(text: &str) -> Result<Map<String, Value>> {
    parse_key_values(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_extra_var_is_not_echoed() {
        for a in [
            r#"{"db_password": "Sekr1t-Val"#,
            "db_password='Sekr1t-Val",
            "x=1 Sekr1t-Val",
        ] {
            let e = super::parse_extra_vars(&["a=1".to_string(), a.to_string()]).unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains("-e number 2"), "{e}");
            assert!(!e.contains("Sekr1t"), "{e}");
        }
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn module_args_keep_templates_together() {
        let v = parse_module_args("dest={{ base }}/x-{{ h | default('a b') }} content=y").unwrap();
        assert_eq!(
            Value::Object(v),
            json!({"dest": "{{ base }}/x-{{ h | default('a b') }}", "content": "y"})
        );
    }

    #[test]
    fn extra_vars_forms_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.yml");
        std::fs::write(&file, "a: 1\nb: yes\n").unwrap();
        let v = parse_extra_vars(&[
            "c=3 d='two words'".into(),
            format!("@{}", file.display()),
            "{\"e\": [1]}".into(),
            "a=override".into(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(v),
            json!({"c": "3", "d": "two words", "b": true, "e": [1], "a": "override"})
        );
    }

    #[test]
    fn bad_extra_vars_say_what_is_expected() {
        let err = parse_extra_vars(&["novalue".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key=value"), "{err}");
        let err = parse_extra_vars(&["@/nonexistent.yml".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent.yml"), "{err}");
    }

    #[test]
    fn vars_file_must_be_a_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.yml");
        std::fs::write(&file, "- a\n").unwrap();
        let err = load_vars_file(&file).unwrap_err().to_string();
        assert!(err.contains("x.yml:1"), "{err}");
    }
}
