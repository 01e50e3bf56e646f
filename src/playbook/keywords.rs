//! Play, block and task keywords: one table, checked by one function.
//!
//! Every keyword accepted here does what Ansible's does. Ansible keywords pgdeploy does not
//! implement are in the table too, refused with what to do instead, so a playbook never runs
//! with a keyword silently dropped.

use super::parse::Ctx;
use crate::yaml::Node;
use anyhow::Result;

/// Where a keyword may be written.
pub const PLAY: u8 = 1;
pub const BLOCK: u8 = 2;
pub const TASK: u8 = 4;
const ANY: u8 = PLAY | BLOCK | TASK;

pub struct Keyword {
    pub name: &'static str,
    pub scope: u8,
    /// Refused: why, and what to write instead.
    pub refused: Option<&'static str>,
}

const fn ok(name: &'static str, scope: u8) -> Keyword {
    Keyword {
        name,
        scope,
        refused: None,
    }
}

const fn no(name: &'static str, scope: u8, why: &'static str) -> Keyword {
    Keyword {
        name,
        scope,
        refused: Some(why),
    }
}

const ONE_CONNECTION: &str = "pgdeploy keeps one SSH connection per host for the whole run; set \
    `ansible_user`/`ansible_port` for the host in the inventory instead";

pub const KEYWORDS: &[Keyword] = &[
    ok("name", ANY),
    ok("hosts", PLAY),
    ok("vars", ANY),
    ok("vars_files", PLAY),
    ok("gather_facts", PLAY),
    ok("become", ANY),
    ok("become_user", ANY),
    // Checked by value: only sudo (runuser when the login user is root).
    ok("become_method", ANY),
    ok("environment", ANY),
    ok("any_errors_fatal", ANY),
    ok("ignore_unreachable", ANY),
    ok("ignore_errors", ANY),
    ok("no_log", ANY),
    ok("check_mode", ANY),
    ok("diff", ANY),
    ok("tags", ANY),
    ok("run_once", ANY),
    ok("timeout", ANY),
    ok("throttle", ANY),
    ok("module_defaults", ANY),
    // Checked by value: the collections whose modules pgdeploy implements.
    ok("collections", ANY),
    // Checked by value: ssh (and its Ansible spellings smart and paramiko).
    ok("connection", ANY),
    ok("serial", PLAY),
    ok("max_fail_percentage", PLAY),
    ok("order", PLAY),
    // Checked by value: linear.
    ok("strategy", PLAY),
    ok("force_handlers", PLAY),
    ok("pre_tasks", PLAY),
    ok("tasks", PLAY),
    ok("post_tasks", PLAY),
    ok("handlers", PLAY),
    ok("roles", PLAY),
    ok("when", BLOCK | TASK),
    ok("delegate_to", BLOCK | TASK),
    ok("notify", BLOCK | TASK),
    ok("block", BLOCK),
    ok("rescue", BLOCK),
    ok("always", BLOCK),
    ok("action", TASK),
    ok("args", TASK),
    ok("register", TASK),
    ok("loop", TASK),
    ok("with_items", TASK),
    ok("with_list", TASK),
    ok("with_dict", TASK),
    ok("with_indexed_items", TASK),
    ok("with_sequence", TASK),
    ok("with_nested", TASK),
    ok("loop_control", TASK),
    ok("listen", TASK),
    ok("changed_when", TASK),
    ok("failed_when", TASK),
    ok("retries", TASK),
    ok("delay", TASK),
    ok("until", TASK),
    no("remote_user", ANY, ONE_CONNECTION),
    no("port", ANY, ONE_CONNECTION),
    no(
        "become_exe",
        ANY,
        "pgdeploy becomes another user with sudo (runuser as root) as found on the host",
    ),
    no(
        "become_flags",
        ANY,
        "pgdeploy becomes another user with sudo (runuser as root) as found on the host",
    ),
    no(
        "debugger",
        ANY,
        "there is no interactive debugger; run with -v to see each command and its output",
    ),
    no(
        "delegate_facts",
        BLOCK | TASK,
        "facts stay with the host the task runs for; set them on the other host with a task \
         that runs there (`when: inventory_hostname == ...`)",
    ),
    no(
        "local_action",
        TASK,
        "pgdeploy runs modules over SSH on the hosts; set_fact, debug, assert, fail, pause and \
         tls_certificate run on the control machine by themselves",
    ),
    no(
        "async",
        TASK,
        "tasks run on all hosts in parallel already; give a long task a `timeout`",
    ),
    no(
        "poll",
        TASK,
        "tasks run on all hosts in parallel already; give a long task a `timeout`",
    ),
    no(
        "vars_prompt",
        PLAY,
        "runs are not interactive; pass the values with -e or a vars file",
    ),
    no(
        "gather_subset",
        PLAY,
        "pgdeploy gathers one fixed set of facts (README: Facts) in one command",
    ),
    no(
        "gather_timeout",
        PLAY,
        "pgdeploy gathers one fixed set of facts (README: Facts) in one command",
    ),
    no(
        "fact_path",
        PLAY,
        "local facts (facts.d) are not read; set the values as variables",
    ),
];

/// Whether `key` is a keyword (of any scope, refused ones too), not a module name.
pub fn is_keyword(key: &str) -> bool {
    KEYWORDS.iter().any(|k| k.name == key)
}

fn scope_name(scope: u8) -> &'static str {
    match scope {
        PLAY => "play",
        BLOCK => "block",
        _ => "task",
    }
}

/// Checks every key of a play, block or task against the table: unknown, refused, or out of
/// place (`register` on a block, `hosts` on a task) is an error at the key's line.
pub fn check(ctx: &Ctx, node: &Node, scope: u8, extra: &[&str]) -> Result<()> {
    let what = scope_name(scope);
    for (k, v) in node.as_map().unwrap_or_default() {
        let key = k.key_string();
        if extra.contains(&key.as_str()) {
            continue;
        }
        let Some(kw) = KEYWORDS.iter().find(|kw| kw.name == key) else {
            let names = KEYWORDS
                .iter()
                .filter(|kw| kw.scope & scope != 0 && kw.refused.is_none())
                .map(|kw| kw.name);
            return Err(match crate::nearest(&key, names) {
                Some(n) => ctx.err(
                    k,
                    format!("unknown {what} keyword `{key}`; did you mean `{n}`?"),
                ),
                None => ctx.err(k, format!("unknown {what} keyword `{key}`")),
            });
        };
        if let Some(why) = kw.refused {
            return Err(ctx.err(k, format!("`{key}` is not supported by pgdeploy: {why}")));
        }
        if kw.scope & scope == 0 {
            let wher = [PLAY, BLOCK, TASK]
                .into_iter()
                .filter(|s| kw.scope & s != 0)
                .map(scope_name)
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(ctx.err(
                k,
                format!("`{key}` is a {wher} keyword; it does nothing on a {what}"),
            ));
        }
        check_value(ctx, &key, v)?;
    }
    Ok(())
}

/// The keywords accepted for one value only: anything else is refused, not ignored.
fn check_value(ctx: &Ctx, key: &str, v: &Node) -> Result<()> {
    let text = || v.as_str().unwrap_or_default().to_string();
    let refuse = |msg: String| Err(ctx.err(v, msg));
    match key {
        "become_method" if text() != "sudo" => refuse(format!(
            "become_method `{}` is not supported: pgdeploy becomes another user with sudo \
             (runuser when it logs in as root); remove the keyword or write `sudo`",
            text()
        )),
        "connection" if !matches!(text().as_str(), "ssh" | "smart" | "paramiko") => {
            refuse(format!(
                "connection `{}` is not supported: pgdeploy reaches every host over SSH \
                 (`ssh`); modules such as set_fact, debug and tls_certificate run on the \
                 control machine by themselves",
                text()
            ))
        }
        "strategy" if text() != "linear" => refuse(format!(
            "strategy `{}` is not supported: each task runs on all hosts before the next \
             (`linear`)",
            text()
        )),
        "order" if !ORDERS.contains(&text().as_str()) => refuse(format!(
            "order `{}` is not one of {}",
            text(),
            ORDERS.join(", ")
        )),
        "collections" => {
            let names: Vec<String> = match v.to_json() {
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_string())
                    .collect(),
                _ => return refuse("`collections` must be a list of names".into()),
            };
            for n in names {
                let known = super::MODULE_PREFIXES
                    .iter()
                    .any(|p| p.trim_end_matches('.') == n);
                if !known {
                    return refuse(format!(
                        "collection `{n}` is not available: pgdeploy implements modules of {}",
                        super::MODULE_PREFIXES
                            .iter()
                            .map(|p| p.trim_end_matches('.'))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Ansible's `order` values: how a play sorts its hosts.
pub const ORDERS: &[&str] = &[
    "inventory",
    "reverse_inventory",
    "sorted",
    "reverse_sorted",
    "shuffle",
];
