//! pgdeploy: deploy and operate highly available PostgreSQL clusters over SSH.
//!
//! The engine (inventory, vars, templates, playbooks, modules, transport) is generic; what it
//! knows about PostgreSQL lives in `playbooks/`, `templates/` and `vars/`.

pub mod builtin;
pub mod bundle;
pub mod cli;
pub mod engine;
pub mod facts;
pub mod glob;
pub mod inventory;
pub mod lab;
pub mod modules;
pub mod playbook;
pub mod report;
pub mod template;
pub mod transport;
pub mod vars;
pub mod vault;
pub mod yaml;

/// The candidate closest to `name` by edit distance, if one is close enough to be a typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
