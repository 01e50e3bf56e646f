//! Ansible's INI inventory format.
//!
//! As in Ansible, a value on a host line is read as a literal when it looks like one (`22` is a
//! number, `True` a boolean, `'x'` a string) while a value in a `[group:vars]` section stays a
//! string; playbooks write `| bool` where they need a boolean.

use super::Inventory;
use anyhow::Result;
use serde_json::Value;

/// Hosts one range such as `node[1:100000]` may produce.
const MAX_RANGE_HOSTS: usize = 10_000;

enum Section {
    Hosts(String),
    Children(String),
    Vars(String),
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Inventory> {
    let mut inv = Inventory::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let at = |msg: String| anyhow::anyhow!("{origin}:{lineno}: {msg}");
        if line.starts_with('[') {
            let head = strip_comment(line);
            let Some(inner) = head.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
                return Err(at(format!(
                    "a section header must look like [group], [group:vars] or [group:children]; found `{line}`"
                )));
            };
            let (name, kind) = match inner.split_once(':') {
                Some((n, k)) => (n.trim(), Some(k.trim())),
                None => (inner.trim(), None),
            };
            check_group_name(name).map_err(&at)?;
            section = match kind {
                None => Section::Hosts(name.into()),
                Some("children") => Section::Children(name.into()),
                Some("vars") => Section::Vars(name.into()),
                Some(other) => {
                    return Err(at(format!(
                        "unknown section kind `:{other}`; use :vars or :children"
                    )))
                }
            };
            inv.group_mut(name);
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let tokens = crate::transport::split_words(line, true).map_err(&at)?;
                let Some((pattern, rest)) = tokens.split_first() else {
                    continue;
                };
                let mut vars = serde_json::Map::new();
                for tok in rest {
                    let Some((k, v)) = tok.split_once('=') else {
                        return Err(at(format!(
                            "expected key=value after the host name, found `{tok}`"
                        )));
                    };
                    check_var_name(k).map_err(&at)?;
                    let value = literal(v);
                    super::check_connection_var(k, &value).map_err(&at)?;
                    vars.insert(k.to_string(), value);
                }
                for name in expand_range(pattern).map_err(&at)? {
                    inv.add_host(&name, &vars, group);
                }
            }
            Section::Children(group) => {
                let child = strip_comment(line).trim().to_string();
                check_group_name(&child).map_err(&at)?;
                inv.group_mut(&child);
                inv.group_mut(group).children.insert(child);
            }
            Section::Vars(group) => {
                let body = strip_comment(line);
                let Some((k, v)) = body.split_once('=') else {
                    return Err(at(format!(
                        "expected key=value in [{group}:vars], found `{line}`"
                    )));
                };
                let k = k.trim();
                check_var_name(k).map_err(&at)?;
                let value = Value::String(unquote(v.trim()));
                super::check_connection_var(k, &value).map_err(&at)?;
                inv.group_mut(group).vars.insert(k.to_string(), value);
            }
        }
    }
    Ok(inv)
}

fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "invalid group name `{name}`: use letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}

fn check_var_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "invalid variable name `{name}`: use letters, digits and `_`, not starting with a digit"
        ));
    }
    Ok(())
}

/// Removes a trailing `# comment` (a `#` at the start or after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '#' | ';') if prev_space => return line[..i].trim_end(),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        return v[1..v.len() - 1].to_string();
    }
    v.to_string()
}

/// A host-line value as Python's `literal_eval` would read it, else the string itself.
fn literal(v: &str) -> Value {
    match v {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    if let Ok(i) = v.parse::<i64>() {
        if !(v.len() > 1 && v.starts_with('0')) {
            return Value::from(i);
        }
    }
    if v.contains('.') && v.chars().filter(|c| *c == '.').count() == 1 {
        if let Ok(f) = v.parse::<f64>() {
            return Value::from(f);
        }
    }
    Value::String(v.to_string())
}

pub(super) fn split_port(name: &str) -> (String, Option<u16>) {
    // `host:2222`, but not an IPv6 address.
    if name.matches(':').count() == 1 {
        if let Some((h, p)) = name.split_once(':') {
            if let Ok(port) = p.parse() {
                return (h.to_string(), Some(port));
            }
        }
    }
    (name.to_string(), None)
}

/// Expands `node[1:3]`, `db[01:10:2]` and `[a:c]` ranges.
pub(super) fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let (Some(open), Some(close)) = (pattern.find('['), pattern.find(']')) else {
        return Ok(vec![pattern.to_string()]);
    };
    if close < open {
        return Err(format!("malformed host range in `{pattern}`"));
    }
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "host range `[{body}]` must be [start:end] or [start:end:step]"
        ));
    }
    let step: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or(format!("host range step `{s}` must be a positive number"))?,
        None => 1,
    };
    let (start, end) = (parts[0], parts[1]);
    let mut items = Vec::new();
    if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b {
            return Err(format!("host range `[{body}]` runs backwards"));
        }
        if (b - a) as usize / step + 1 > MAX_RANGE_HOSTS {
            return Err(format!(
                "host range `[{body}]` makes more than {MAX_RANGE_HOSTS} hosts"
            ));
        }
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        for i in (a..=b).step_by(step) {
            items.push(format!("{i:0width$}"));
        }
    } else if start.len() == 1
        && end.len() == 1
        && start.chars().all(|c| c.is_ascii_alphabetic())
        && end.chars().all(|c| c.is_ascii_alphabetic())
    {
        let (a, b) = (start.as_bytes()[0], end.as_bytes()[0]);
        if a > b {
            return Err(format!("host range `[{body}]` runs backwards"));
        }
        for c in (a..=b).step_by(step) {
            items.push((c as char).to_string());
        }
    } else {
        return Err(format!(
            "host range `[{body}]` needs numbers or single letters"
        ));
    }
    let mut out = Vec::new();
    for item in items {
        for rest in expand_range(tail)? {
            out.push(format!("{head}{item}{rest}"));
        }
        if out.len() > MAX_RANGE_HOSTS {
            return Err(format!(
                "host range in `{pattern}` makes more than {MAX_RANGE_HOSTS} hosts"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_line_values() {
        let inv = parse(
            "[g]\nh1 a=1 b='x y' c=\"k=v,w\" d=True e=0644 f=x=y # comment\n",
            "inv",
        )
        .unwrap();
        let v = &inv.hosts["h1"].vars;
        assert_eq!(v["a"], 1);
        assert_eq!(v["b"], "x y");
        assert_eq!(v["c"], "k=v,w");
        assert_eq!(v["d"], true);
        assert_eq!(v["e"], "0644");
        assert_eq!(v["f"], "x=y");
        assert_eq!(v.len(), 6);
    }

    #[test]
    fn group_vars_stay_strings_and_unquote() {
        let inv = parse(
            "[g:vars]\nport=22\nname='a b' ; comment\nurl=http://x/#y\n",
            "inv",
        )
        .unwrap();
        let v = &inv.groups["g"].vars;
        assert_eq!(v["port"], "22");
        assert_eq!(v["name"], "a b");
        assert_eq!(v["url"], "http://x/#y");
    }

    #[test]
    fn ranges() {
        assert_eq!(
            expand_range("node[1:3]").unwrap(),
            ["node1", "node2", "node3"]
        );
        assert_eq!(
            expand_range("db[08:10]x").unwrap(),
            ["db08x", "db09x", "db10x"]
        );
        assert_eq!(expand_range("h[1:5:2]").unwrap(), ["h1", "h3", "h5"]);
        assert_eq!(expand_range("[a:c].l").unwrap(), ["a.l", "b.l", "c.l"]);
        assert_eq!(
            expand_range("r[1:2]-[a:b]").unwrap(),
            ["r1-a", "r1-b", "r2-a", "r2-b"]
        );
        assert!(expand_range("n[1:99999999]")
            .unwrap_err()
            .contains("more than"));
        assert!(expand_range("n[3:1]").unwrap_err().contains("backwards"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse("[g]\nh1\nh2 novalue\n", "hosts.ini")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("hosts.ini:3:"), "{err}");
        assert!(err.contains("key=value"), "{err}");
        let err = parse("[g:oops]\n", "hosts.ini").unwrap_err().to_string();
        assert!(err.starts_with("hosts.ini:1:"), "{err}");
        let err = parse("[g]\nh1 a='x\n", "hosts.ini")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unterminated"), "{err}");
    }

    #[test]
    fn a_port_that_is_not_one_is_named_with_its_line() {
        for (text, line) in [
            ("[g]\nh1 ansible_port=22\nh2 ansible_port=abc\n", "inv:3:"),
            ("[g]\nh1 ansible_port=70000\n", "inv:2:"),
            ("[g]\nh1\n[g:vars]\nansible_ssh_port=0\n", "inv:4:"),
        ] {
            let err = parse(text, "inv").unwrap_err().to_string();
            assert!(err.starts_with(line), "{err}");
            assert!(err.contains("is not a port number (1-65535)"), "{err}");
        }
        assert!(parse("[g]\nh1 ansible_port=\"{{ p }}\"\n", "inv").is_ok());
    }

    #[test]
    fn host_with_port() {
        let inv = parse("[g]\n127.0.0.1:2222\n", "inv").unwrap();
        assert_eq!(inv.hosts["127.0.0.1"].vars["ansible_port"], 2222);
    }
}
