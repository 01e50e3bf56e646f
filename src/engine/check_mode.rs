//! What check mode cannot know, and how a check run goes on anyway.
//!
//! On bare hosts most of a plan depends on changes the run has not made: a service from a
//! package not installed yet, a command on a binary not there, a wait for a daemon never
//! started. Ansible fails there and the user never sees the rest of the plan. Here, once a
//! host has a change pending (a task on it reported "would change"), a later task that fails
//! on that host is reported as "would change, not checked" with the host's answer, and waits
//! are not waited for. Its registered result is then unknown, and so is anything a task
//! derives from it: a task whose variables cannot be evaluated because they come from an
//! unknown result is skipped with the name of the variable and the task that left it unknown.
//!
//! What stays a failure: template errors that do not come from an unknown result (an
//! undefined variable, a syntax error), `fail`/`assert` (pre-flight findings), unreachable
//! hosts, and any failure on a host with nothing pending.

use crate::playbook::{Action, Task};
use indexmap::IndexMap;
use serde_json::Value;

/// One host's check-mode knowledge.
#[derive(Debug, Default, Clone)]
pub(super) struct CheckState {
    /// A task would have changed something on the host.
    pub pending: bool,
    /// Variables whose value this run cannot know in check mode, with the task that left
    /// them unknown.
    pub unknown: IndexMap<String, String>,
}

impl CheckState {
    /// Notes a task's result on this host (check mode only). What a task sets from an
    /// unknown result is unknown too, even when it could be evaluated.
    pub fn note(
        &mut self,
        task: &Task,
        when: &[String],
        title: &str,
        changed: bool,
        unknown: bool,
    ) {
        self.pending |= changed;
        if !unknown && self.dependency(task, when).is_none() {
            return;
        }
        for name in produced_names(task) {
            self.unknown
                .entry(name)
                .or_insert_with(|| title.to_string());
        }
    }

    /// The unknown variable (and the task that left it unknown) that `task` reads, if any.
    pub fn dependency(&self, task: &Task, when: &[String]) -> Option<(&str, &str)> {
        if self.unknown.is_empty() {
            return None;
        }
        let text = task_text(task, when);
        self.unknown
            .iter()
            .find(|(name, _)| mentions(&text, name))
            .map(|(n, t)| (n.as_str(), t.as_str()))
    }
}

/// The message of a failure downgraded to "would change, not checked".
pub(super) fn not_checked(answer: &str) -> String {
    format!("would change; not checked, it needs changes this run has not made yet: {answer}")
}

/// The message of a task skipped because it reads an unknown result.
pub(super) fn skipped_unknown(name: &str, from: &str) -> String {
    format!("not checked: it reads `{name}`, which \"{from}\" cannot know in check mode")
}

/// The variables a task sets: its `register` and, for set_fact, the facts.
fn produced_names(task: &Task) -> Vec<String> {
    let mut names: Vec<String> = task.register.iter().cloned().collect();
    if let Action::Module { name, params } = &task.action {
        if matches!(name.as_str(), "set_fact" | "ansible.builtin.set_fact") {
            names.extend(params.keys().filter(|k| *k != "cacheable").cloned());
        }
    }
    names
}

/// Every expression of a task that is evaluated on a host, as text.
fn task_text(task: &Task, when: &[String]) -> String {
    let mut parts: Vec<String> = when.to_vec();
    if let Action::Module { params, .. } = &task.action {
        parts.push(Value::Object(params.clone()).to_string());
    }
    if let Action::Include { file, .. } = &task.action {
        parts.push(file.clone());
    }
    for list in [&task.until, &task.changed_when, &task.failed_when]
        .into_iter()
        .flatten()
    {
        parts.extend(list.iter().cloned());
    }
    if let Some(l) = &task.loop_items {
        parts.push(l.to_string());
    }
    if !task.vars.is_empty() {
        parts.push(Value::Object(task.vars.clone()).to_string());
    }
    parts.extend(task.label.iter().cloned());
    parts.join("\n")
}

/// Whether `text` names the variable `name` as a whole word.
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        assert!(mentions("{{ patroni_cluster.json }}", "patroni_cluster"));
        assert!(mentions("x is changed and installed.rc != 0", "installed"));
        assert!(!mentions("{{ patroni_cluster_name }}", "patroni_cluster"));
        assert!(!mentions("{{ my_installed }}", "installed"));
    }
}
