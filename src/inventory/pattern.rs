//! Host patterns: `all`, groups, hosts, `*` wildcards, `~regex`, joined with `:` or `,`
//! (union), `:&` (intersection) and `:!` (exclusion), as Ansible reads them.

use super::Inventory;
use crate::glob::glob;
use anyhow::{bail, Result};
use indexmap::IndexSet;

/// The hosts a pattern selects, in inventory order.
pub fn select_hosts(inv: &Inventory, pattern: &str) -> Result<Vec<String>> {
    let mut union: IndexSet<String> = IndexSet::new();
    let mut intersect: Vec<IndexSet<String>> = Vec::new();
    let mut exclude: IndexSet<String> = IndexSet::new();
    let terms = split_terms(pattern);
    for term in &terms {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        if let Some(t) = term.strip_prefix('!') {
            exclude.extend(match_term(inv, t)?);
        } else if let Some(t) = term.strip_prefix('&') {
            intersect.push(match_term(inv, t)?.into_iter().collect());
        } else {
            match match_term(inv, term) {
                Ok(hosts) => union.extend(hosts),
                // As Ansible: a union's term that names nothing is ignored (an optional
                // group the inventory does not have); alone it is an error.
                Err(_) if terms.len() > 1 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(inv
        .hosts
        .keys()
        .filter(|h| union.contains(*h))
        .filter(|h| intersect.iter().all(|s| s.contains(*h)))
        .filter(|h| !exclude.contains(*h))
        .cloned()
        .collect())
}

/// Splits on `,` and on `:` (but not inside an IPv6 address or a regex).
fn split_terms(pattern: &str) -> Vec<String> {
    if pattern.contains(',') {
        return pattern.split(',').map(str::to_string).collect();
    }
    if pattern.starts_with('~') || pattern.parse::<std::net::Ipv6Addr>().is_ok() {
        return vec![pattern.to_string()];
    }
    pattern.split(':').map(str::to_string).collect()
}

fn match_term(inv: &Inventory, term: &str) -> Result<Vec<String>> {
    if term == "all" || term == "*" {
        return Ok(inv.hosts.keys().cloned().collect());
    }
    if let Some(re) = term.strip_prefix('~') {
        let re = regex::Regex::new(re)
            .map_err(|e| anyhow::anyhow!("host pattern `{term}`: bad regular expression: {e}"))?;
        let mut out: Vec<String> = inv
            .hosts
            .keys()
            .filter(|h| re.is_match(h))
            .cloned()
            .collect();
        for g in inv.groups.keys().filter(|g| re.is_match(g)) {
            out.extend(inv.group_hosts(g));
        }
        return Ok(out);
    }
    if term.contains('*') || term.contains('?') {
        let mut out: Vec<String> = inv
            .hosts
            .keys()
            .filter(|h| glob(term, h))
            .cloned()
            .collect();
        for g in inv.groups.keys().filter(|g| glob(term, g)) {
            out.extend(inv.group_hosts(g));
        }
        return Ok(out);
    }
    if inv.groups.contains_key(term) {
        return Ok(inv.group_hosts(term));
    }
    if inv.hosts.contains_key(term) {
        return Ok(vec![term.to_string()]);
    }
    let names: Vec<&str> = inv
        .groups
        .keys()
        .chain(inv.hosts.keys())
        .map(String::as_str)
        .collect();
    match crate::nearest(term, names.iter().copied()) {
        Some(n) => bail!("host pattern `{term}` matches no group or host; did you mean `{n}`?"),
        None => bail!("host pattern `{term}` matches no group or host in the inventory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        Inventory::from_ini(
            "[etcd]\nn1\nn2\nn3\n[master]\nn1\n[replica]\nn2\nn3\n[pg:children]\nmaster\nreplica\n[lb]\nb1\n",
            "inv",
        )
        .unwrap()
    }

    #[test]
    fn union_intersection_exclusion() {
        let i = inv();
        assert_eq!(select_hosts(&i, "all").unwrap(), ["n1", "n2", "n3", "b1"]);
        assert_eq!(select_hosts(&i, "master:lb").unwrap(), ["n1", "b1"]);
        assert_eq!(select_hosts(&i, "pg:!master").unwrap(), ["n2", "n3"]);
        assert_eq!(select_hosts(&i, "etcd:&replica").unwrap(), ["n2", "n3"]);
        assert_eq!(select_hosts(&i, "n*").unwrap(), ["n1", "n2", "n3"]);
        assert_eq!(select_hosts(&i, "~n[12]").unwrap(), ["n1", "n2"]);
        assert_eq!(select_hosts(&i, "n1,b1").unwrap(), ["n1", "b1"]);
        // Four terms are not an IPv6 address; a union's unknown term is ignored, as Ansible.
        assert_eq!(
            select_hosts(&i, "master:etcd:lb:backup").unwrap(),
            ["n1", "n2", "n3", "b1"]
        );
    }

    #[test]
    fn unknown_term_suggests() {
        let err = select_hosts(&inv(), "replicas").unwrap_err().to_string();
        assert!(err.contains("did you mean `replica`"), "{err}");
    }

    #[test]
    fn globbing() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
    }
}
