//! Ansible's YAML inventory format:
//!
//! ```yaml
//! all:
//!   vars: { ansible_user: admin }
//!   children:
//!     etcd_cluster:
//!       hosts:
//!         pgnode01: { ansible_host: 10.0.0.11 }
//!         pgnode[02:03]:
//! ```
//!
//! Groups may also sit at the top level (they become children of `all`). A host named in several
//! groups is one host; its variables from every place are merged.

use super::ini::expand_range;
use super::Inventory;
use crate::yaml::Node;
use anyhow::{anyhow, bail, Result};
use serde_json::Value;

const GROUP_KEYS: &[&str] = &["hosts", "vars", "children"];

pub(super) fn parse(text: &str, origin: &str) -> Result<Inventory> {
    let root = crate::yaml::parse(text, origin)?;
    let mut inv = Inventory::default();
    if root.is_null() {
        return Ok(inv);
    }
    let Some(groups) = root.as_map() else {
        bail!(
            "{origin}:{}: a YAML inventory is a mapping of groups (`all:` with `hosts:`, `vars:`, `children:`)",
            root.line
        );
    };
    for (key, body) in groups {
        let name = key.key_string();
        group(&mut inv, &name, body, origin, 0)?;
    }
    Ok(inv)
}

fn group(inv: &mut Inventory, name: &str, body: &Node, origin: &str, depth: usize) -> Result<()> {
    let at = |n: &Node, msg: String| anyhow!("{origin}:{}: {msg}", n.line);
    if depth > 64 {
        return Err(at(body, "groups nest more than 64 deep".into()));
    }
    inv.group_mut(name);
    if body.is_null() {
        return Ok(());
    }
    let Some(entries) = body.as_map() else {
        return Err(at(
            body,
            format!("group `{name}` must be a mapping with hosts, vars or children"),
        ));
    };
    for (k, v) in entries {
        let key = k.key_string();
        match key.as_str() {
            "hosts" => hosts(inv, name, v, origin)?,
            "vars" => match v.to_json() {
                Value::Object(m) => {
                    check_connection_vars(v, origin)?;
                    inv.groups[name].vars.extend(m)
                }
                Value::Null => {}
                _ => return Err(at(v, format!("`vars` of group `{name}` must be a mapping"))),
            },
            "children" => {
                if v.is_null() {
                    continue;
                }
                let Some(children) = v.as_map() else {
                    return Err(at(
                        v,
                        format!("`children` of group `{name}` must be a mapping of groups"),
                    ));
                };
                for (ck, cv) in children {
                    let child = ck.key_string();
                    group(inv, &child, cv, origin, depth + 1)?;
                    inv.groups[name].children.insert(child);
                }
            }
            other => {
                let hint = crate::nearest(other, GROUP_KEYS.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Err(at(
                    k,
                    format!("group `{name}` has an unknown key `{other}` (it takes hosts, vars and children){hint}"),
                ));
            }
        }
    }
    Ok(())
}

fn hosts(inv: &mut Inventory, group: &str, node: &Node, origin: &str) -> Result<()> {
    if node.is_null() {
        return Ok(());
    }
    let Some(entries) = node.as_map() else {
        bail!(
            "{origin}:{}: `hosts` of group `{group}` must be a mapping of host names (to their vars or nothing)",
            node.line
        );
    };
    for (k, v) in entries {
        let pattern = k.key_string();
        let vars = match v.to_json() {
            Value::Object(m) => m,
            Value::Null => Default::default(),
            _ => bail!(
                "{origin}:{}: host `{pattern}` must map to its variables (or nothing)",
                v.line
            ),
        };
        check_connection_vars(v, origin)?;
        let names = expand_range(&pattern).map_err(|e| anyhow!("{origin}:{}: {e}", k.line))?;
        for name in names {
            inv.add_host(&name, &vars, group);
        }
    }
    Ok(())
}

/// Connection variables of a vars mapping that cannot work, named with their line.
fn check_connection_vars(vars: &Node, origin: &str) -> Result<()> {
    for (k, v) in vars.as_map().into_iter().flatten() {
        super::check_connection_var(&k.key_string(), &v.to_json())
            .map_err(|e| anyhow!("{origin}:{}: {e}", k.line))?;
    }
    Ok(())
}

/// Whether a file holds a YAML inventory rather than an INI one.
pub(super) fn looks_like_yaml(path: &std::path::Path, text: &str) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "yml" | "yaml" | "json") {
        return true;
    }
    let first = text
        .lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    matches!(first, Some(l) if l.ends_with(':') && !l.starts_with('[') && !l.starts_with(' ') || l == "---")
}
