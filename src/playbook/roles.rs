//! Roles as Ansible lays them out: `tasks/`, `handlers/`, `defaults/`, `vars/`, `templates/`,
//! `files/` and `meta/` (dependencies) below the role's directory, found on the roles path.
//!
//! A role becomes a block of its tasks (after its dependencies'), with its vars as the block's
//! vars, its defaults below the inventory's variables, `role_path`/`role_name` set, and its
//! handlers added to the play's. Play `roles:`, `import_role` and `include_role` (with a name
//! known when the playbook is read) all come here.

use super::parse::{load_tasks_file, Ctx};
use super::{Action, Task};
use crate::yaml::Node;
use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `roles_path` from ansible.cfg (set by the CLI before playbooks are read).
static ROLES_PATH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

thread_local! {
    /// The handlers of the roles of the play being read.
    static HANDLERS: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
}

/// How deep role dependencies may nest (a role that depends on itself stops here).
const MAX_DEPTH: usize = 16;

pub fn set_roles_path(paths: Vec<PathBuf>) {
    *ROLES_PATH.lock().unwrap_or_else(|e| e.into_inner()) = paths;
}

/// The handlers the roles read so far brought (and forgets them).
pub(super) fn take_handlers() -> Vec<Task> {
    HANDLERS.with(|h| std::mem::take(&mut *h.borrow_mut()))
}

/// The keywords of a `roles:` entry that apply to the whole role (the other keys are its
/// parameters).
pub(super) const ENTRY_KEYWORDS: &[&str] = &[
    "when",
    "tags",
    "become",
    "become_user",
    "environment",
    "no_log",
];

/// One role as a play's `roles:` entry or `import_role`/`include_role` names it.
#[derive(Default)]
pub(super) struct RoleRef {
    pub name: String,
    /// Role parameters (`- role: x` with other keys): the role's vars, above its own.
    pub params: Map<String, Value>,
    pub tasks_from: Option<String>,
    pub vars_from: Option<String>,
    pub defaults_from: Option<String>,
    pub handlers_from: Option<String>,
}

/// Where Ansible looks for a role: `roles/` beside the playbook, `ANSIBLE_ROLES_PATH`,
/// ansible.cfg's `roles_path`, then the playbook's directory itself.
fn search_path(play_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![play_dir.join("roles")];
    if let Ok(env) = std::env::var("ANSIBLE_ROLES_PATH") {
        dirs.extend(env.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
    }
    dirs.extend(ROLES_PATH.lock().unwrap_or_else(|e| e.into_inner()).clone());
    dirs.push(play_dir.to_path_buf());
    dirs
}

fn find_role(name: &str, play_dir: &Path) -> Result<PathBuf> {
    if name.contains("{{") {
        bail!("role `{name}`: a templated role name is not supported; name the role");
    }
    let direct = Path::new(name);
    if direct.is_absolute() && direct.is_dir() {
        return Ok(direct.to_path_buf());
    }
    let dirs = search_path(play_dir);
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|d| d.is_dir()) {
        return Ok(found);
    }
    let hint = if name.split('.').count() >= 3 {
        " (a collection's role: install the collection and put its roles/ directory on the roles path)"
    } else {
        ""
    };
    bail!(
        "role `{name}` not found{hint}; looked in {}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `DIR/SUB/FILE.yml`, `.yaml` or without extension, as Ansible finds main files.
fn role_file(dir: &Path, sub: &str, file: &str) -> Option<PathBuf> {
    let base = dir.join(sub);
    [
        base.join(format!("{file}.yml")),
        base.join(format!("{file}.yaml")),
        base.join(file),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn mapping(dir: &Path, sub: &str, file: Option<&str>) -> Result<Map<String, Value>> {
    match role_file(dir, sub, file.unwrap_or("main")) {
        Some(p) => crate::yaml::load_mapping(&p),
        None if file.is_some() => bail!("{}: no {sub}/{}", dir.display(), file.unwrap_or("")),
        None => Ok(Map::new()),
    }
}

/// A role as a block task written at `at`.
pub(super) fn role_block(
    ctx: &Ctx,
    role: &RoleRef,
    at: &Node,
    play_dir: &Path,
    depth: usize,
) -> Result<Task> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: role dependencies nest more than {MAX_DEPTH} deep (does `{}` depend on itself?)",
            ctx.at(at),
            role.name
        );
    }
    let dir = find_role(&role.name, play_dir).map_err(|e| ctx.err(at, e))?;
    let mut block = Vec::new();
    // meta/main.yml dependencies run first.
    if let Some(meta) = role_file(&dir, "meta", "main") {
        let node = crate::yaml::load_file(&meta)?;
        let meta_ctx = ctx.for_file(&meta);
        if let Some(deps) = node.get("dependencies").and_then(Node::as_seq) {
            for dep in deps {
                let dep_ref = role_ref(&meta_ctx, dep)?;
                block.push(role_block(&meta_ctx, &dep_ref, dep, play_dir, depth + 1)?);
            }
        }
    }
    let tasks_file = role_file(&dir, "tasks", role.tasks_from.as_deref().unwrap_or("main"));
    match (&tasks_file, &role.tasks_from) {
        (Some(f), _) => block.extend(
            load_tasks_file(f).map_err(|e| anyhow!("{}: role {}: {e:#}", ctx.at(at), role.name))?,
        ),
        (None, Some(from)) => {
            return Err(ctx.err(at, format!("role {}: no tasks/{from}", role.name)))
        }
        (None, None) => {}
    }
    let handlers_from = role.handlers_from.as_deref().unwrap_or("main");
    if let Some(f) = role_file(&dir, "handlers", handlers_from) {
        let handlers = load_tasks_file(&f)?;
        HANDLERS.with(|h| h.borrow_mut().extend(handlers));
    }
    let defaults =
        mapping(&dir, "defaults", role.defaults_from.as_deref()).map_err(|e| ctx.err(at, e))?;
    let mut vars = mapping(&dir, "vars", role.vars_from.as_deref()).map_err(|e| ctx.err(at, e))?;
    vars.extend(role.params.clone());
    let absolute = std::path::absolute(&dir).unwrap_or(dir.clone());
    vars.insert(
        "role_path".into(),
        Value::String(absolute.display().to_string()),
    );
    vars.insert("role_name".into(), Value::String(role.name.clone()));
    let mut task = Task::block(
        format!("role {}", role.name),
        ctx.at(at),
        Action::Block {
            block,
            rescue: vec![],
            always: vec![],
        },
    );
    task.vars = vars;
    task.role_defaults = defaults;
    task.role_path = Some(absolute);
    Ok(task)
}

/// A role named by a string, or a mapping with `role:` (or `name:`) and its parameters.
pub(super) fn role_ref(ctx: &Ctx, node: &Node) -> Result<RoleRef> {
    if let Some(name) = node.as_str() {
        return Ok(RoleRef {
            name: name.to_string(),
            ..Default::default()
        });
    }
    let Value::Object(mut m) = node.to_json() else {
        return Err(ctx.err(node, "a role is a name or a mapping with `role:`"));
    };
    let name = m
        .remove("role")
        .or_else(|| m.remove("name"))
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| ctx.err(node, "a role entry needs `role:` (its name)"))?;
    // `vars:` holds parameters too; the keywords a block takes are the caller's to apply.
    let mut params = match m.remove("vars") {
        Some(Value::Object(v)) => v,
        _ => Map::new(),
    };
    for k in ENTRY_KEYWORDS {
        m.remove(*k);
    }
    params.extend(m);
    Ok(RoleRef {
        name,
        params,
        ..Default::default()
    })
}

/// `import_role`/`include_role` parameters: `name`, `tasks_from`, `vars_from`,
/// `defaults_from`, `handlers_from`; anything else is an error.
pub(super) fn role_ref_of_module(ctx: &Ctx, value: &Node) -> Result<RoleRef> {
    let Value::Object(m) = value.to_json() else {
        return Err(ctx.err(
            value,
            "import_role needs `name:` (and optionally tasks_from, ...)",
        ));
    };
    let mut r = RoleRef::default();
    for (k, v) in m {
        let s = v.as_str().map(str::to_string);
        match k.as_str() {
            "name" => r.name = s.unwrap_or_default(),
            "tasks_from" => r.tasks_from = s,
            "vars_from" => r.vars_from = s,
            "defaults_from" => r.defaults_from = s,
            "handlers_from" => r.handlers_from = s,
            other => {
                return Err(ctx.err(
                    value,
                    format!("import_role/include_role: `{other}` is not supported (name, tasks_from, vars_from, defaults_from, handlers_from are)"),
                ))
            }
        }
    }
    if r.name.is_empty() {
        return Err(ctx.err(value, "import_role/include_role needs `name:`"));
    }
    Ok(r)
}
