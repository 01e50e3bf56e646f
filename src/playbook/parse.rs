//! From YAML nodes to plays and tasks, with `file:line` on every error.

use super::keywords::{self, BLOCK, PLAY, TASK};
use super::roles;
use super::{Action, Origin, Play, Playbook, Task};
use crate::yaml::{Node, NodeValue};
use anyhow::{anyhow, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Collection prefixes accepted in front of module names.
pub const MODULE_PREFIXES: &[&str] = &[
    "ansible.builtin.",
    "ansible.legacy.",
    "ansible.posix.",
    "community.general.",
    "community.postgresql.",
];

/// The file being read: named in errors, and its directory (relative names start there).
pub(super) struct Ctx {
    file: Arc<str>,
    dir: PathBuf,
}

thread_local! {
    /// The directory of the playbook being read: roles are looked up from there.
    static PLAY_DIR: std::cell::RefCell<PathBuf> = std::cell::RefCell::new(PathBuf::new());
}

impl Ctx {
    /// The context of reading `path`.
    pub(super) fn for_file(&self, path: &Path) -> Ctx {
        Ctx {
            file: Arc::from(path.display().to_string()),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    pub(super) fn at(&self, node: &Node) -> Origin {
        Origin {
            file: self.file.clone(),
            line: node.line,
        }
    }

    pub(super) fn err(&self, node: &Node, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}:{}: {msg}", self.file, node.line)
    }
}

/// Reads a playbook file.
pub fn load_playbook(path: &Path) -> Result<Playbook> {
    let root = crate::yaml::load_file(path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let ctx = Ctx {
        file: Arc::from(path.display().to_string()),
        dir: dir.clone(),
    };
    let outer = PLAY_DIR.with(|d| d.replace(dir.clone()));
    let result = load_plays(&ctx, &root, &dir);
    PLAY_DIR.with(|d| *d.borrow_mut() = outer);
    result.map(|plays| Playbook {
        path: path.to_path_buf(),
        plays,
    })
}

fn load_plays(ctx: &Ctx, root: &Node, dir: &Path) -> Result<Vec<Play>> {
    let Some(items) = root.as_seq() else {
        return Err(ctx.err(
            root,
            "a playbook must be a list of plays (each starting with `- hosts:`)",
        ));
    };
    let mut plays = Vec::new();
    for item in items {
        if let Some(file) = item.get("import_playbook") {
            let name = file
                .as_str()
                .ok_or_else(|| ctx.err(file, "import_playbook needs a file name"))?;
            plays.extend(load_playbook(&dir.join(name))?.plays);
            continue;
        }
        plays.push(parse_play(ctx, item)?);
    }
    Ok(plays)
}

/// How deep import_tasks may nest: a file that imports itself is an error, not a stack
/// overflow.
const MAX_IMPORT_DEPTH: usize = 64;

thread_local! {
    static IMPORT_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Reads a file of tasks (for `include_tasks` / `import_tasks`).
pub fn load_tasks_file(path: &Path) -> Result<Vec<Task>> {
    let depth = IMPORT_DEPTH.with(|d| d.get());
    if depth >= MAX_IMPORT_DEPTH {
        anyhow::bail!(
            "{}: import_tasks nested more than {MAX_IMPORT_DEPTH} deep (does a file import itself?)",
            path.display()
        );
    }
    IMPORT_DEPTH.with(|d| d.set(depth + 1));
    let result = load_tasks_file_at(path);
    IMPORT_DEPTH.with(|d| d.set(depth));
    result
}

fn load_tasks_file_at(path: &Path) -> Result<Vec<Task>> {
    let root = crate::yaml::load_file(path)?;
    let ctx = Ctx {
        file: Arc::from(path.display().to_string()),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    if root.is_null() {
        return Ok(vec![]);
    }
    parse_task_list(&ctx, &root, "a tasks file")
}

fn check_keys(ctx: &Ctx, node: &Node, allowed: &[&str], what: &str) -> Result<()> {
    for (k, _) in node.as_map().unwrap_or_default() {
        let key = k.key_string();
        if !allowed.contains(&key.as_str()) {
            return Err(match crate::nearest(&key, allowed.iter().copied()) {
                Some(n) => ctx.err(
                    k,
                    format!("unknown {what} keyword `{key}`; did you mean `{n}`?"),
                ),
                None => ctx.err(k, format!("unknown {what} keyword `{key}`")),
            });
        }
    }
    Ok(())
}

fn parse_play(ctx: &Ctx, node: &Node) -> Result<Play> {
    if node.as_map().is_none() {
        return Err(ctx.err(
            node,
            format!("a play must be a mapping, found {}", node.kind()),
        ));
    }
    keywords::check(ctx, node, PLAY, &[])?;
    let hosts = match node.get("hosts") {
        Some(h) => match &h.value {
            NodeValue::Str(s) => s.clone(),
            NodeValue::Seq(items) => items
                .iter()
                .map(|i| i.key_string())
                .collect::<Vec<_>>()
                .join(":"),
            _ => return Err(ctx.err(h, "`hosts` must be a pattern or a list of them")),
        },
        None => return Err(ctx.err(node, "a play needs `hosts:` (a group, host or pattern)")),
    };
    let tasks = |key: &str| -> Result<Vec<Task>> {
        match node.get(key) {
            Some(n) if !n.is_null() => parse_task_list(ctx, n, key),
            _ => Ok(vec![]),
        }
    };
    // Roles run after pre_tasks and before tasks; their handlers join the play's.
    roles::take_handlers();
    let pre_tasks = tasks("pre_tasks")?;
    let mut role_tasks = Vec::new();
    if let Some(list) = node.get("roles").filter(|n| !n.is_null()) {
        let Some(items) = list.as_seq() else {
            return Err(ctx.err(list, "`roles` must be a list of role names or mappings"));
        };
        let play_dir = PLAY_DIR.with(|d| d.borrow().clone());
        for item in items {
            let role = roles::role_ref(ctx, item)?;
            let mut block = roles::role_block(ctx, &role, item, &play_dir, 0)?;
            // The entry's own keywords (when, tags, become, ...) apply to the whole role.
            if item.as_map().is_some() {
                let mut own = parse_task_with(ctx, &role_keywords(item), Some(empty_block()))?;
                own.action = block.action;
                own.name = block.name.take();
                own.vars.extend(block.vars);
                own.role_defaults = block.role_defaults;
                own.role_path = block.role_path;
                block = own;
            }
            role_tasks.push(block);
        }
    }
    let mut play_tasks = role_tasks;
    play_tasks.extend(tasks("tasks")?);
    let post_tasks = tasks("post_tasks")?;
    let mut handlers = tasks("handlers")?;
    handlers.extend(roles::take_handlers());
    Ok(Play {
        name: opt_str(ctx, node, "name")?.unwrap_or_else(|| hosts.clone()),
        origin: ctx.at(node),
        vars: map_of(ctx, node, "vars")?,
        vars_files: str_list(ctx, node.get("vars_files"))?,
        gather_facts: opt_bool(ctx, node, "gather_facts")?.unwrap_or(true),
        become_: opt_bool(ctx, node, "become")?,
        become_user: opt_str(ctx, node, "become_user")?,
        environment: node.get("environment").map(Node::to_json),
        any_errors_fatal: opt_bool(ctx, node, "any_errors_fatal")?.unwrap_or(false),
        ignore_unreachable: opt_bool(ctx, node, "ignore_unreachable")?.unwrap_or(false),
        no_log: opt_bool(ctx, node, "no_log")?.unwrap_or(false),
        ignore_errors: opt_bool(ctx, node, "ignore_errors")?.unwrap_or(false),
        run_once: opt_bool(ctx, node, "run_once")?.unwrap_or(false),
        check_mode: opt_bool(ctx, node, "check_mode")?,
        diff: opt_bool(ctx, node, "diff")?,
        timeout: opt_u64(ctx, node, "timeout")?,
        throttle: opt_u64(ctx, node, "throttle")?,
        module_defaults: module_defaults(ctx, node)?,
        order: opt_str(ctx, node, "order")?,
        force_handlers: opt_bool(ctx, node, "force_handlers")?.unwrap_or(false),
        tags: str_list(ctx, node.get("tags"))?,
        serial: node.get("serial").map(Node::to_json),
        max_fail_percentage: node
            .get("max_fail_percentage")
            .and_then(|n| n.to_json().as_f64()),
        pre_tasks,
        tasks: play_tasks,
        post_tasks,
        handlers,
        hosts,
        dir: ctx.dir.to_path_buf(),
    })
}

fn parse_task_list(ctx: &Ctx, node: &Node, what: &str) -> Result<Vec<Task>> {
    let Some(items) = node.as_seq() else {
        return Err(ctx.err(
            node,
            format!("{what} must be a list of tasks, found {}", node.kind()),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        // import_tasks is static: its tasks are read now and inherit the import's keywords.
        if let Some(file) = item.get("import_tasks") {
            let name = file
                .as_str()
                .ok_or_else(|| ctx.err(file, "import_tasks needs a file name"))?;
            let path = resolve_tasks_path(&ctx.dir, name);
            let inner = load_tasks_file(&path)
                .map_err(|e| anyhow!("{}: in import_tasks {name}: {e:#}", ctx.at(item)))?;
            let mut task = parse_task_with(
                ctx,
                item,
                Some(Action::Block {
                    block: inner,
                    rescue: vec![],
                    always: vec![],
                }),
            )?;
            task.name
                .get_or_insert_with(|| format!("import_tasks {name}"));
            out.push(task);
            continue;
        }
        out.push(parse_task(ctx, item)?);
    }
    Ok(out)
}

/// Task files are looked up beside the including file, then in `tasks/` below it.
pub fn resolve_tasks_path(dir: &Path, name: &str) -> PathBuf {
    let direct = dir.join(name);
    if direct.exists() {
        return direct;
    }
    let nested = dir.join("tasks").join(name);
    if nested.exists() {
        return nested;
    }
    direct
}

fn parse_task(ctx: &Ctx, node: &Node) -> Result<Task> {
    parse_task_with(ctx, node, None)
}

fn parse_task_with(ctx: &Ctx, node: &Node, preset: Option<Action>) -> Result<Task> {
    let Some(pairs) = node.as_map() else {
        return Err(ctx.err(
            node,
            format!("a task must be a mapping, found {}", node.kind()),
        ));
    };
    let mut action = preset;
    let mut module_node: Option<(&Node, &Node)> = None;
    for (k, v) in pairs {
        let key = k.key_string();
        if keywords::is_keyword(&key) || key == "import_tasks" {
            continue;
        }
        if let Some(prev) = module_node {
            return Err(ctx.err(
                k,
                format!(
                    "a task runs one module, but this one names `{}` and `{key}`; split it in two, or check the spelling of the keyword",
                    prev.0.key_string()
                ),
            ));
        }
        module_node = Some((k, v));
    }
    let module_key = module_node.map(|(k, _)| k.key_string()).unwrap_or_default();
    // import_role / include_role: the role, read now, as a block with the task's keywords.
    let mut role = None;
    if matches!(strip_prefix(&module_key), "import_role" | "include_role") && action.is_none() {
        let (_, v) = module_node.expect("a module key");
        let r = roles::role_ref_of_module(ctx, v)?;
        let play_dir = PLAY_DIR.with(|d| d.borrow().clone());
        let block = roles::role_block(ctx, &r, node, &play_dir, 0)?;
        action = Some(block.action.clone());
        module_node = None;
        role = Some(block);
    }
    let is_block = node.get("block").is_some() || action.is_some();
    keywords::check(
        ctx,
        node,
        if is_block { BLOCK } else { TASK },
        &[&module_key, "import_tasks"],
    )?;
    if let Some(a) = node.get("action") {
        if let Some((k, _)) = module_node {
            return Err(ctx.err(
                k,
                format!(
                    "a task runs one module, but this one has `action:` and `{}`",
                    k.key_string()
                ),
            ));
        }
        action = Some(action_keyword(ctx, a, node.get("args"))?);
    }
    if action.is_none() {
        action = Some(if is_block {
            let list = |key: &str| -> Result<Vec<Task>> {
                match node.get(key) {
                    Some(n) if !n.is_null() => parse_task_list(ctx, n, key),
                    _ => Ok(vec![]),
                }
            };
            if let Some((k, _)) = module_node {
                return Err(ctx.err(
                    k,
                    format!("a block cannot also run module `{}`", k.key_string()),
                ));
            }
            Action::Block {
                block: list("block")?,
                rescue: list("rescue")?,
                always: list("always")?,
            }
        } else {
            let Some((k, v)) = module_node else {
                return Err(ctx.err(
                    node,
                    "this task names no module (e.g. `command:`, `copy:`, `template:`)",
                ));
            };
            module_action(ctx, k, v, node.get("args"))?
        });
    } else if let Some((k, _)) = module_node {
        return Err(ctx.err(k, format!("unknown task keyword `{}`", k.key_string())));
    }
    let LoopParts {
        items: loop_items,
        loop_var,
        index_var,
        label,
        pause: loop_pause,
        allitems: loop_allitems,
    } = parse_loop(ctx, node)?;

    let when = cond_list(ctx, node.get("when"))?;
    let mut task = Task {
        name: opt_str(ctx, node, "name")?,
        action: action.expect("set above"),
        origin: ctx.at(node),
        when,
        loop_items,
        loop_var,
        index_var,
        label,
        loop_pause,
        loop_allitems,
        register: opt_str(ctx, node, "register")?,
        notify: str_list(ctx, node.get("notify"))?,
        listen: str_list(ctx, node.get("listen"))?,
        tags: str_list(ctx, node.get("tags"))?,
        run_once: opt_bool(ctx, node, "run_once")?.unwrap_or(false),
        become_: opt_bool(ctx, node, "become")?,
        become_user: opt_str(ctx, node, "become_user")?,
        environment: node.get("environment").map(Node::to_json),
        no_log: opt_bool(ctx, node, "no_log")?.unwrap_or(false),
        check_mode: opt_bool(ctx, node, "check_mode")?,
        diff: opt_bool(ctx, node, "diff")?,
        changed_when: node
            .get("changed_when")
            .map(|n| cond_list(ctx, Some(n)))
            .transpose()?,
        failed_when: node
            .get("failed_when")
            .map(|n| cond_list(ctx, Some(n)))
            .transpose()?,
        ignore_errors: opt_bool(ctx, node, "ignore_errors")?.unwrap_or(false),
        ignore_unreachable: opt_bool(ctx, node, "ignore_unreachable")?,
        throttle: opt_u64(ctx, node, "throttle")?,
        module_defaults: module_defaults(ctx, node)?,
        retries: node.get("retries").map(Node::to_json),
        delay: node.get("delay").map(Node::to_json),
        until: node
            .get("until")
            .map(|n| cond_list(ctx, Some(n)))
            .transpose()?,
        vars: map_of(ctx, node, "vars")?,
        delegate_to: opt_str(ctx, node, "delegate_to")?,
        timeout: opt_u64(ctx, node, "timeout")?,
        any_errors_fatal: opt_bool(ctx, node, "any_errors_fatal")?,
        role_defaults: Map::new(),
        role_path: None,
    };
    if let Some(r) = role {
        // The role's vars under the task's own.
        let mut vars = r.vars;
        vars.extend(std::mem::take(&mut task.vars));
        task.vars = vars;
        task.role_defaults = r.role_defaults;
        task.role_path = r.role_path;
        task.name.get_or_insert(r.name.unwrap_or_default());
    }
    Ok(task)
}

fn module_action(ctx: &Ctx, key: &Node, value: &Node, args: Option<&Node>) -> Result<Action> {
    let raw = key.key_string();
    let name = strip_prefix(&raw);
    let name = crate::modules::canonical_name(name).ok_or_else(|| {
        let known = crate::modules::names();
        match crate::nearest(name, known.iter().copied()) {
            Some(n) => ctx.err(
                key,
                format!("unknown module or task keyword `{raw}`; did you mean `{n}`?"),
            ),
            None => ctx.err(
                key,
                format!(
                    "unknown module or task keyword `{raw}`; modules: {}",
                    known.join(", ")
                ),
            ),
        }
    })?;
    let mut params = Map::new();
    match &value.value {
        NodeValue::Map(_) => {
            if let Value::Object(m) = value.to_json() {
                params = m;
            }
        }
        NodeValue::Null => {}
        NodeValue::Str(s) => {
            if crate::modules::takes_free_form(name) {
                params.insert("_raw_params".into(), Value::String(s.clone()));
            } else {
                params = crate::vars::parse_module_args(s)
                    .map_err(|e| ctx.err(value, format!("{name}: {e}")))?;
            }
        }
        _ => params
            .insert("_raw_params".into(), value.to_json())
            .map(|_| ())
            .unwrap_or(()),
    }
    if let Some(a) = args {
        match a.to_json() {
            Value::Object(m) => params.extend(m),
            _ => return Err(ctx.err(a, "`args` must be a mapping")),
        }
    }
    match name {
        "include_tasks" => {
            crate::modules::check_params(name, &params).map_err(|e| ctx.err(value, e))?;
            let file = params
                .remove("_raw_params")
                .or_else(|| params.remove("file"))
                .and_then(|v| v.as_str().map(str::to_string))
                .ok_or_else(|| ctx.err(value, "include_tasks needs a file name"))?;
            // `apply`: block keywords the included tasks take, as if they were in a block.
            let apply = match value.get("apply") {
                Some(a) if a.as_map().is_some() => Some(Box::new(parse_task_with(
                    ctx,
                    a,
                    Some(Action::Block {
                        block: vec![],
                        rescue: vec![],
                        always: vec![],
                    }),
                )?)),
                Some(a) if !a.is_null() => {
                    return Err(ctx.err(a, "`apply` must be a mapping of block keywords"))
                }
                _ => None,
            };
            return Ok(Action::Include { file, apply });
        }
        "meta" => {
            let what = params
                .get("_raw_params")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !matches!(
                what.as_str(),
                "flush_handlers"
                    | "end_play"
                    | "end_host"
                    | "noop"
                    | "clear_facts"
                    | "refresh_inventory"
                    | "clear_host_errors"
            ) {
                return Err(ctx.err(value, format!("unknown meta action `{what}`; use flush_handlers, end_play, end_host or noop")));
            }
            return Ok(Action::Meta(what));
        }
        _ => {}
    }
    crate::modules::check_params(name, &params).map_err(|e| ctx.err(value, e))?;
    Ok(Action::Module {
        name: name.to_string(),
        params,
    })
}

struct LoopParts {
    items: Option<Value>,
    loop_var: String,
    index_var: Option<String>,
    label: Option<String>,
    pause: Option<f64>,
    allitems: bool,
}

fn parse_loop(ctx: &Ctx, node: &Node) -> Result<LoopParts> {
    let mut items = None;
    for key in [
        "loop",
        "with_items",
        "with_list",
        "with_dict",
        "with_indexed_items",
        "with_sequence",
        "with_nested",
    ] {
        if let Some(n) = node.get(key) {
            if items.is_some() {
                return Err(ctx.err(n, "a task has one loop; remove one of loop/with_*"));
            }
            let v = n.to_json();
            items = Some(match key {
                // Wrapped so the engine knows how to turn them into a list.
                "with_items" => serde_json::json!({"__with": "items", "v": v}),
                "with_dict" => serde_json::json!({"__with": "dict", "v": v}),
                "with_indexed_items" => serde_json::json!({"__with": "indexed", "v": v}),
                "with_sequence" => serde_json::json!({"__with": "sequence", "v": v}),
                "with_nested" => serde_json::json!({"__with": "nested", "v": v}),
                _ => v,
            });
        }
    }
    let mut loop_var = "item".to_string();
    let (mut index_var, mut label, mut pause, mut allitems) = (None, None, None, false);
    if let Some(lc) = node.get("loop_control") {
        check_keys(
            ctx,
            lc,
            &[
                "loop_var",
                "index_var",
                "label",
                "pause",
                "extended",
                "extended_allitems",
            ],
            "loop_control",
        )?;
        if let Some(v) = opt_str(ctx, lc, "loop_var")? {
            loop_var = v;
        }
        index_var = opt_str(ctx, lc, "index_var")?;
        label = opt_str(ctx, lc, "label")?;
        pause = lc
            .get("pause")
            .map(|n| match n.to_json().as_f64() {
                Some(s) if s >= 0.0 => Ok(s),
                _ => Err(ctx.err(n, "loop_control `pause` must be a number of seconds")),
            })
            .transpose()?;
        // ansible_loop.allitems: with `extended`, unless extended_allitems says no.
        allitems = opt_bool(ctx, lc, "extended")?.unwrap_or(false)
            && opt_bool(ctx, lc, "extended_allitems")?.unwrap_or(true);
    }
    Ok(LoopParts {
        items,
        loop_var,
        index_var,
        label,
        pause,
        allitems,
    })
}

fn opt_str(ctx: &Ctx, node: &Node, key: &str) -> Result<Option<String>> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => match &v.value {
            NodeValue::Str(s) => Ok(Some(s.clone())),
            NodeValue::Null => Ok(None),
            NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
                Ok(Some(v.key_string()))
            }
            _ => Err(ctx.err(v, format!("`{key}` must be a string, found {}", v.kind()))),
        },
    }
}

fn opt_bool(ctx: &Ctx, node: &Node, key: &str) -> Result<Option<bool>> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => match &v.value {
            NodeValue::Bool(b) => Ok(Some(*b)),
            NodeValue::Str(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" => Ok(Some(true)),
                "no" | "false" | "off" | "0" => Ok(Some(false)),
                _ if crate::template::is_template(s) => Err(ctx.err(
                    v,
                    format!("`{key}` must be a plain yes/no here, not a template"),
                )),
                _ => Err(ctx.err(v, format!("`{key}` must be yes or no, found `{s}`"))),
            },
            NodeValue::Int(i) => Ok(Some(*i != 0)),
            _ => Err(ctx.err(v, format!("`{key}` must be yes or no, found {}", v.kind()))),
        },
    }
}

fn opt_u64(ctx: &Ctx, node: &Node, key: &str) -> Result<Option<u64>> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => match v.to_json() {
            Value::Null => Ok(None),
            Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
            Value::String(s) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
            _ => Err(ctx.err(
                v,
                format!("`{key}` must be a whole number, found {}", v.kind()),
            )),
        },
    }
}

/// `module_defaults`: parameters per module, checked as the module's own.
fn module_defaults(ctx: &Ctx, node: &Node) -> Result<Map<String, Value>> {
    let Some(n) = node.get("module_defaults") else {
        return Ok(Map::new());
    };
    let Some(pairs) = n.as_map() else {
        return Err(ctx.err(n, "`module_defaults` must map module names to parameters"));
    };
    let mut out = Map::new();
    for (k, v) in pairs {
        let raw = k.key_string();
        if raw.starts_with("group/") {
            return Err(ctx.err(
                k,
                format!("`{raw}`: action groups are not supported; name each module"),
            ));
        }
        let name = crate::modules::canonical_name(strip_prefix(&raw))
            .ok_or_else(|| ctx.err(k, format!("module_defaults: unknown module `{raw}`")))?;
        let Value::Object(params) = v.to_json() else {
            return Err(ctx.err(v, format!("module_defaults: `{raw}` needs a mapping")));
        };
        crate::modules::check_params(name, &params).map_err(|e| ctx.err(v, e))?;
        out.insert(name.to_string(), Value::Object(params));
    }
    Ok(out)
}

fn strip_prefix(name: &str) -> &str {
    let mut name = name;
    for p in MODULE_PREFIXES {
        if let Some(rest) = name.strip_prefix(p) {
            name = rest;
        }
    }
    name
}

/// `action: copy src=a dest=b` or `action: {module: copy, src: a, dest: b}`.
fn action_keyword(ctx: &Ctx, node: &Node, args: Option<&Node>) -> Result<Action> {
    match &node.value {
        NodeValue::Str(s) => {
            let s = s.trim();
            let (module, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
            let key = Node {
                value: NodeValue::Str(module.to_string()),
                line: node.line,
            };
            let value = Node {
                value: if rest.trim().is_empty() {
                    NodeValue::Null
                } else {
                    NodeValue::Str(rest.trim().to_string())
                },
                line: node.line,
            };
            module_action(ctx, &key, &value, args)
        }
        NodeValue::Map(pairs) => {
            let module = node
                .get("module")
                .and_then(Node::as_str)
                .ok_or_else(|| ctx.err(node, "`action:` needs `module:` naming the module"))?;
            let key = Node {
                value: NodeValue::Str(module.to_string()),
                line: node.line,
            };
            let rest: Vec<(Node, Node)> = pairs
                .iter()
                .filter(|(k, _)| k.key_string() != "module")
                .cloned()
                .collect();
            let value = Node {
                value: NodeValue::Map(rest),
                line: node.line,
            };
            module_action(ctx, &key, &value, args)
        }
        _ => Err(ctx.err(node, "`action:` must be `module args` or a mapping")),
    }
}

fn map_of(ctx: &Ctx, node: &Node, key: &str) -> Result<Map<String, Value>> {
    match node.get(key) {
        None => Ok(Map::new()),
        Some(v) => match v.to_json() {
            Value::Object(m) => Ok(m),
            Value::Null => Ok(Map::new()),
            _ => Err(ctx.err(v, format!("`{key}` must be a mapping, found {}", v.kind()))),
        },
    }
}

fn str_list(ctx: &Ctx, node: Option<&Node>) -> Result<Vec<String>> {
    let Some(n) = node else { return Ok(vec![]) };
    match &n.value {
        NodeValue::Null => Ok(vec![]),
        NodeValue::Seq(items) => items
            .iter()
            .map(|i| match &i.value {
                NodeValue::Str(s) => Ok(s.clone()),
                NodeValue::Map(_) | NodeValue::Seq(_) => Err(ctx.err(i, "expected a string")),
                _ => Ok(i.key_string()),
            })
            .collect(),
        NodeValue::Str(s) => Ok(s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()),
        _ => Ok(vec![n.key_string()]),
    }
}

fn empty_block() -> Action {
    Action::Block {
        block: vec![],
        rescue: vec![],
        always: vec![],
    }
}

/// The block keywords of a `roles:` entry (its parameters are the role's, not keywords).
fn role_keywords(item: &Node) -> Node {
    let pairs = item
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| roles::ENTRY_KEYWORDS.contains(&k.key_string().as_str()))
        .cloned()
        .collect();
    Node {
        value: NodeValue::Map(pairs),
        line: item.line,
    }
}

/// `when:`-style conditions: a string or a list (all must hold); booleans become "True"/"False".
fn cond_list(ctx: &Ctx, node: Option<&Node>) -> Result<Vec<String>> {
    let Some(n) = node else { return Ok(vec![]) };
    let one = |i: &Node| -> Result<String> {
        match &i.value {
            NodeValue::Str(s) => Ok(s.clone()),
            NodeValue::Bool(b) => Ok(if *b { "True".into() } else { "False".into() }),
            NodeValue::Int(x) => Ok(x.to_string()),
            _ => Err(ctx.err(
                i,
                format!("a condition must be an expression, found {}", i.kind()),
            )),
        }
    };
    match &n.value {
        NodeValue::Null => Ok(vec![]),
        NodeValue::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(n)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Playbook> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.yml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(
            dir.path().join("more.yml"),
            "- name: inner\n  debug: msg=hi\n",
        )
        .unwrap();
        load_playbook(&path)
    }

    #[test]
    fn a_file_that_imports_itself_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("loop.yml"), "- import_tasks: loop.yml\n").unwrap();
        let path = dir.path().join("site.yml");
        std::fs::write(
            &path,
            "- hosts: all\n  tasks:\n    - import_tasks: loop.yml\n",
        )
        .unwrap();
        let err = format!("{:#}", load_playbook(&path).unwrap_err());
        assert!(err.contains("nested more than 64 deep"), "{err}");
        // Imports nested a few levels, then a normal file, still work afterwards.
        std::fs::write(dir.path().join("leaf.yml"), "- debug: msg=x\n").unwrap();
        std::fs::write(dir.path().join("mid.yml"), "- import_tasks: leaf.yml\n").unwrap();
        std::fs::write(
            &path,
            "- hosts: all\n  tasks:\n    - import_tasks: mid.yml\n",
        )
        .unwrap();
        load_playbook(&path).unwrap();
    }

    #[test]
    fn parses_a_play() {
        let pb = load(
            "- hosts: all\n  become: yes\n  vars: {a: 1}\n  tasks:\n    - name: t1\n      ansible.builtin.file:\n        path: /tmp/x\n        state: directory\n      when: a == 1\n      notify: h\n    - block:\n        - command: echo hi\n      rescue:\n        - debug: msg=oops\n    - import_tasks: more.yml\n  handlers:\n    - name: h\n      debug: msg=h\n",
        )
        .unwrap();
        let play = &pb.plays[0];
        assert_eq!(play.become_, Some(true));
        assert_eq!(play.tasks.len(), 3);
        assert_eq!(play.tasks[0].module_name(), Some("file"));
        assert_eq!(play.tasks[0].when, vec!["a == 1"]);
        assert_eq!(play.tasks[0].origin.line, 5);
        assert!(matches!(&play.tasks[1].action, Action::Block { rescue, .. } if rescue.len() == 1));
        assert!(
            matches!(&play.tasks[2].action, Action::Block { block, .. } if block[0].name.as_deref() == Some("inner"))
        );
        assert_eq!(play.handlers[0].name.as_deref(), Some("h"));
    }

    #[test]
    fn free_form_and_kv_args() {
        let pb = load("- hosts: all\n  tasks:\n    - shell: echo $HOME\n      args:\n        creates: /x\n    - file: path=/tmp/y state=touch mode=0644\n").unwrap();
        let Action::Module { params, .. } = &pb.plays[0].tasks[0].action else {
            panic!()
        };
        assert_eq!(params["_raw_params"], "echo $HOME");
        assert_eq!(params["creates"], "/x");
        let Action::Module { params, .. } = &pb.plays[0].tasks[1].action else {
            panic!()
        };
        assert_eq!(params["state"], "touch");
    }

    #[test]
    fn unknown_module_suggests_nearest() {
        let err = load("- hosts: all\n  tasks:\n    - name: x\n      tempalte:\n        src: a\n        dest: b\n").unwrap_err().to_string();
        assert!(err.contains("site.yml:4:"), "{err}");
        assert!(err.contains("did you mean `template`"), "{err}");
    }

    #[test]
    fn unknown_play_keyword_suggests_nearest() {
        let err = load("- hosts: all\n  gather_fact: no\n  tasks: []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("site.yml:2:"), "{err}");
        assert!(err.contains("did you mean `gather_facts`"), "{err}");
    }

    #[test]
    fn unknown_module_parameter_is_an_error() {
        let err =
            load("- hosts: all\n  tasks:\n    - copy:\n        dest: /x\n        contnet: y\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("site.yml:4:"), "{err}");
        assert!(
            err.contains("`contnet`") && err.contains("`content`"),
            "{err}"
        );
    }

    #[test]
    fn two_modules_in_one_task() {
        let err = load("- hosts: all\n  tasks:\n    - command: ls\n      shell: ls\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("site.yml:4:"), "{err}");
    }
}
