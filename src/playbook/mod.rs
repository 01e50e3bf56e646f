//! Playbooks: plays of tasks, read from YAML as Ansible writes them.
//!
//! Parsing checks every key: an unknown play or task keyword, or an unknown module, is an error
//! with `file:line` and the nearest valid name, before anything runs on a host.

mod keywords;
mod parse;
mod roles;

pub use roles::set_roles_path;

pub use parse::{
    load_playbook, load_tasks_file, resolve_tasks_path as parse_resolve, MODULE_PREFIXES,
};

use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::builtin::{builtin_source, BUILTIN_PLAYBOOKS, BUILTIN_ROOT};

/// Where something was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: PathBuf,
    pub plays: Vec<Play>,
}

impl Playbook {
    /// Whether some task (in any play, block or import) has this name.
    pub fn names_task(&self, name: &str) -> bool {
        fn any(tasks: &[Task], name: &str) -> bool {
            tasks.iter().any(|t| {
                t.display_name() == name
                    || matches!(&t.action, Action::Block { block, rescue, always }
                        if any(block, name) || any(rescue, name) || any(always, name))
            })
        }
        self.plays.iter().any(|p| {
            [&p.pre_tasks, &p.tasks, &p.post_tasks]
                .iter()
                .any(|l| any(l, name))
        })
    }
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: String,
    pub origin: Origin,
    pub vars: Map<String, Value>,
    pub vars_files: Vec<String>,
    pub gather_facts: bool,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    pub environment: Option<Value>,
    pub any_errors_fatal: bool,
    pub ignore_unreachable: bool,
    /// Play-wide task keywords, as Ansible applies them to every task of the play.
    pub no_log: bool,
    pub ignore_errors: bool,
    pub run_once: bool,
    pub check_mode: Option<bool>,
    pub diff: Option<bool>,
    pub timeout: Option<u64>,
    pub throttle: Option<u64>,
    /// Module name (canonical) -> its default parameters.
    pub module_defaults: Map<String, Value>,
    /// How the play orders its hosts (Ansible's `order`).
    pub order: Option<String>,
    /// Notified handlers run on hosts that failed later in the play too.
    pub force_handlers: bool,
    pub tags: Vec<String>,
    pub serial: Option<Value>,
    pub max_fail_percentage: Option<f64>,
    pub pre_tasks: Vec<Task>,
    pub tasks: Vec<Task>,
    pub post_tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    /// The directory of the playbook file (relative paths start here).
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// A module and its parameters (templated at run time).
    Module {
        name: String,
        params: Map<String, Value>,
    },
    Block {
        block: Vec<Task>,
        rescue: Vec<Task>,
        always: Vec<Task>,
    },
    /// `include_tasks`: the file is read when the task runs (its name may be a template);
    /// `apply` holds the block keywords its tasks take.
    Include {
        file: String,
        apply: Option<Box<Task>>,
    },
    /// `meta: flush_handlers` and friends.
    Meta(String),
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: Option<String>,
    pub action: Action,
    pub origin: Origin,
    pub when: Vec<String>,
    pub loop_items: Option<Value>,
    pub loop_var: String,
    pub index_var: Option<String>,
    pub label: Option<String>,
    /// loop_control `pause`: seconds between items.
    pub loop_pause: Option<f64>,
    /// loop_control `extended` (with `extended_allitems` not false): `ansible_loop.allitems`.
    pub loop_allitems: bool,
    pub register: Option<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    pub tags: Vec<String>,
    pub run_once: bool,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    pub environment: Option<Value>,
    pub no_log: bool,
    pub check_mode: Option<bool>,
    pub diff: Option<bool>,
    pub changed_when: Option<Vec<String>>,
    pub failed_when: Option<Vec<String>>,
    pub ignore_errors: bool,
    pub ignore_unreachable: Option<bool>,
    pub throttle: Option<u64>,
    pub module_defaults: Map<String, Value>,
    pub retries: Option<Value>,
    pub delay: Option<Value>,
    pub until: Option<Vec<String>>,
    pub vars: Map<String, Value>,
    pub delegate_to: Option<String>,
    pub timeout: Option<u64>,
    pub any_errors_fatal: Option<bool>,
    /// A role's block: its defaults (below the inventory's variables).
    pub role_defaults: Map<String, Value>,
    /// A role's block: its directory (templates/ and files/ are looked up there).
    pub role_path: Option<PathBuf>,
}

impl Task {
    /// A block with nothing but its name, origin and action (a role's).
    pub fn block(name: String, origin: Origin, action: Action) -> Task {
        Task {
            name: Some(name),
            action,
            origin,
            when: vec![],
            loop_items: None,
            loop_var: "item".into(),
            index_var: None,
            label: None,
            loop_pause: None,
            loop_allitems: false,
            register: None,
            notify: vec![],
            listen: vec![],
            tags: vec![],
            run_once: false,
            become_: None,
            become_user: None,
            environment: None,
            no_log: false,
            check_mode: None,
            diff: None,
            changed_when: None,
            failed_when: None,
            ignore_errors: false,
            ignore_unreachable: None,
            throttle: None,
            module_defaults: Map::new(),
            retries: None,
            delay: None,
            until: None,
            vars: Map::new(),
            delegate_to: None,
            timeout: None,
            any_errors_fatal: None,
            role_defaults: Map::new(),
            role_path: None,
        }
    }

    /// What the report calls this task.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.action {
            Action::Module { name, .. } => name.clone(),
            Action::Block { .. } => "block".into(),
            Action::Include { file, .. } => format!("include_tasks {file}"),
            Action::Meta(m) => format!("meta: {m}"),
        }
    }

    pub fn module_name(&self) -> Option<&str> {
        match &self.action {
            Action::Module { name, .. } => Some(name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every built-in playbook and tasks file reads without error (keywords, modules, params).
    #[test]
    fn every_builtin_file_parses() {
        let mut seen = 0;
        for (rel, text) in BUILTIN_PLAYBOOKS {
            if !rel.ends_with(".yml") {
                continue;
            }
            let path = std::path::Path::new(BUILTIN_ROOT).join(rel);
            let is_playbook = text
                .lines()
                .any(|l| l.starts_with("- hosts:") || l.starts_with("- import_playbook:"))
                || text.lines().any(|l| l.starts_with("  hosts:"));
            let result = if is_playbook {
                load_playbook(&path).map(|_| ())
            } else {
                load_tasks_file(&path).map(|_| ())
            };
            if let Err(e) = result {
                panic!("{rel}: {e:#}");
            }
            seen += 1;
        }
        assert!(seen > 20, "only {seen} built-in files");
    }
}
