//! Modules: what a task does on a host.
//!
//! Each module first probes (reads the host: "in state", or "needs change" with a diff) and
//! only then applies. Check mode stops after the probe. A plain command cannot be probed: in
//! check mode it is skipped unless `creates`/`removes` decide it, or the task says
//! `check_mode: false` (read-only), which makes it run.

mod apt;
mod command;
mod file;
mod files;
mod lineinfile;
mod local;
mod postgresql;
mod postgresql_role;
pub mod readahead;
mod scram;
mod service;
mod stat;
mod sysctl;
mod tls;
mod uri;
mod user;
mod wait_for;

pub use files::{hash_hex, FileDiff};

use crate::template::Templates;
use crate::transport::{Connection, ExecOptions, Output, Stdin};
use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Every module: its name, the parameters it takes, and whether it takes a free-form string.
const SPECS: &[(&str, &[&str], bool)] = &[
    (
        "command",
        &[
            "_raw_params",
            "cmd",
            "argv",
            "chdir",
            "creates",
            "removes",
            "stdin",
            "stdin_add_newline",
            "strip_empty_ends",
            "executable",
            "warn",
            "expand_argument_vars",
        ],
        true,
    ),
    (
        "shell",
        &[
            "_raw_params",
            "cmd",
            "chdir",
            "creates",
            "removes",
            "stdin",
            "stdin_add_newline",
            "strip_empty_ends",
            "executable",
            "warn",
        ],
        true,
    ),
    ("raw", &["_raw_params", "executable"], true),
    (
        "apt",
        &[
            "name",
            "pkg",
            "package",
            "state",
            "update_cache",
            "cache_valid_time",
            "install_recommends",
            "default_release",
            "purge",
            "autoremove",
            "force",
            "allow_downgrade",
            "deb",
            "lock_timeout",
            "dpkg_options",
            "only_upgrade",
            "allow_unauthenticated",
        ],
        false,
    ),
    ("package", &["name", "state", "use"], false),
    (
        "dnf",
        &[
            "name",
            "state",
            "update_cache",
            "enablerepo",
            "disablerepo",
            "disable_gpg_check",
            "lock_timeout",
            "install_weak_deps",
        ],
        false,
    ),
    (
        "yum",
        &[
            "name",
            "state",
            "update_cache",
            "enablerepo",
            "disablerepo",
            "disable_gpg_check",
            "lock_timeout",
        ],
        false,
    ),
    (
        "file",
        &[
            "path",
            "dest",
            "name",
            "state",
            "owner",
            "group",
            "mode",
            "src",
            "recurse",
            "force",
            "follow",
            "access_time",
            "modification_time",
        ],
        false,
    ),
    (
        "copy",
        &[
            "src",
            "content",
            "dest",
            "owner",
            "group",
            "mode",
            "backup",
            "validate",
            "force",
            "remote_src",
            "directory_mode",
            "follow",
            "unsafe_writes",
            "decrypt",
            "checksum",
        ],
        false,
    ),
    (
        "template",
        &[
            "src",
            "dest",
            "owner",
            "group",
            "mode",
            "backup",
            "validate",
            "force",
            "newline_sequence",
            "trim_blocks",
            "lstrip_blocks",
            "follow",
            "unsafe_writes",
            "output_encoding",
            "block_start_string",
            "block_end_string",
            "variable_start_string",
            "variable_end_string",
        ],
        false,
    ),
    (
        "lineinfile",
        &[
            "path",
            "dest",
            "name",
            "line",
            "value",
            "regexp",
            "regex",
            "search_string",
            "state",
            "insertafter",
            "insertbefore",
            "create",
            "backrefs",
            "owner",
            "group",
            "mode",
            "backup",
            "validate",
            "firstmatch",
            "unsafe_writes",
        ],
        false,
    ),
    (
        "systemd",
        &[
            "name",
            "state",
            "enabled",
            "daemon_reload",
            "daemon_reexec",
            "masked",
            "scope",
            "no_block",
            "force",
        ],
        false,
    ),
    (
        "systemd_service",
        &[
            "name",
            "state",
            "enabled",
            "daemon_reload",
            "daemon_reexec",
            "masked",
            "scope",
            "no_block",
            "force",
        ],
        false,
    ),
    (
        "service",
        &[
            "name",
            "state",
            "enabled",
            "daemon_reload",
            "sleep",
            "pattern",
            "runlevel",
            "arguments",
            "args",
            "use",
        ],
        false,
    ),
    (
        "sysctl",
        &[
            "name",
            "key",
            "value",
            "val",
            "state",
            "sysctl_file",
            "reload",
            "sysctl_set",
            "ignoreerrors",
        ],
        false,
    ),
    (
        "user",
        &[
            "name",
            "uid",
            "group",
            "groups",
            "append",
            "shell",
            "home",
            "system",
            "state",
            "create_home",
            "createhome",
            "comment",
            "password",
            "move_home",
            "remove",
            "force",
            "generate_ssh_key",
            "ssh_key_bits",
            "ssh_key_type",
            "ssh_key_file",
            "update_password",
            "expires",
            "non_unique",
        ],
        false,
    ),
    (
        "group",
        &["name", "gid", "state", "system", "non_unique"],
        false,
    ),
    (
        "stat",
        &[
            "path",
            "get_checksum",
            "checksum_algorithm",
            "get_mime",
            "get_attributes",
            "follow",
        ],
        false,
    ),
    (
        "wait_for",
        &[
            "host",
            "port",
            "path",
            "state",
            "timeout",
            "delay",
            "sleep",
            "search_regex",
            "connect_timeout",
            "msg",
            "active_connection_states",
            "exclude_hosts",
        ],
        false,
    ),
    (
        "tls_certificate",
        &[
            "ca_dir",
            "name",
            "subject_alt_names",
            "valid_days",
            "renew_days",
            "ca_valid_days",
            "ca_common_name",
        ],
        false,
    ),
    (
        "uri",
        &[
            "url",
            "method",
            "body",
            "body_format",
            "headers",
            "status_code",
            "return_content",
            "timeout",
            "user",
            "url_username",
            "password",
            "url_password",
            "force_basic_auth",
            "validate_certs",
            "ca_path",
            "client_cert",
            "client_key",
            "follow_redirects",
            "dest",
            "creates",
            "removes",
            "unix_socket",
        ],
        false,
    ),
    (
        "postgresql_user",
        &[
            "name",
            "user",
            "password",
            "role_attr_flags",
            "state",
            "encrypted",
            "db",
            "login_db",
            "login_user",
            "login_host",
            "login_port",
            "port",
            "login_unix_socket",
            "login_password",
        ],
        false,
    ),
    (
        "postgresql_db",
        &[
            "name",
            "db",
            "owner",
            "encoding",
            "lc_collate",
            "lc_ctype",
            "template",
            "state",
            "login_db",
            "login_user",
            "login_host",
            "login_port",
            "port",
            "login_unix_socket",
            "login_password",
        ],
        false,
    ),
    (
        "postgresql_query",
        &[
            "query",
            "db",
            "login_db",
            "login_user",
            "login_host",
            "login_port",
            "port",
            "login_unix_socket",
            "login_password",
            "autocommit",
            "positional_args",
            "named_args",
            "encoding",
            "search_path",
            "as_single_query",
            "session_role",
            "trust_input",
        ],
        false,
    ),
    ("set_fact", &[], false),
    (
        "assert",
        &["that", "fail_msg", "msg", "success_msg", "quiet"],
        false,
    ),
    ("fail", &["msg"], false),
    ("debug", &["msg", "var", "verbosity"], false),
    ("ping", &["data"], false),
    ("pause", &["seconds", "minutes", "prompt", "echo"], false),
    ("include_tasks", &["file", "apply", "_raw_params"], true),
    ("meta", &["_raw_params"], true),
];

/// Ansible's other names for our modules.
const ALIASES: &[(&str, &str)] = &[("systemd_service", "systemd"), ("yum", "dnf")];

pub fn names() -> Vec<&'static str> {
    SPECS.iter().map(|(n, _, _)| *n).collect()
}

/// The module a (prefix-stripped) name refers to.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    let found = SPECS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, _, _)| *n)?;
    Some(
        ALIASES
            .iter()
            .find(|(a, _)| *a == found)
            .map(|(_, t)| *t)
            .unwrap_or(found),
    )
}

pub fn takes_free_form(name: &str) -> bool {
    SPECS.iter().any(|(n, _, f)| *n == name && *f)
}

/// Rejects parameters a module does not take, naming the nearest valid one.
pub fn check_params(name: &str, params: &Map<String, Value>) -> Result<(), String> {
    let Some((_, allowed, _)) = SPECS.iter().find(|(n, _, _)| *n == name) else {
        return Ok(());
    };
    if allowed.is_empty() {
        return Ok(()); // set_fact takes any names
    }
    for key in params.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = crate::nearest(key, allowed.iter().copied())
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "; it takes {}",
                        allowed
                            .iter()
                            .filter(|a| !a.starts_with('_'))
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            return Err(format!("module `{name}` has no parameter `{key}`{hint}"));
        }
    }
    Ok(())
}

/// What a module needs to do its work on one host.
pub struct ModuleCtx<'a> {
    pub host: &'a str,
    pub conn: &'a Connection,
    pub become_user: Option<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub check: bool,
    pub diff: bool,
    /// `check_mode: false` on the task: a command may run even in check mode.
    pub force_run: bool,
    pub templates: &'a Templates,
    pub vars: &'a minijinja::Value,
    /// The directory of the playbook (relative `src` paths start here).
    pub dir: &'a Path,
    /// Commands and their output, for `-v`.
    pub trace: &'a Mutex<Vec<String>>,
    /// The facts of the host (os_family picks the package manager).
    pub facts: &'a Map<String, Value>,
    /// A loop's probes, recorded or answered in one round trip (see `readahead`).
    pub readahead: Option<&'a readahead::ReadAhead>,
    /// A check run with changes pending on the host: what a wait waits for will not come.
    pub no_wait: bool,
}

impl ModuleCtx<'_> {
    /// Runs a script on the host as the task's user.
    pub async fn sh(&self, script: &str) -> Result<Output> {
        self.sh_in(script, Stdin::None).await
    }

    pub async fn sh_in(&self, script: &str, stdin: Stdin) -> Result<Output> {
        self.sh_as(script, stdin, self.become_user.clone()).await
    }

    pub async fn sh_as(&self, script: &str, stdin: Stdin, user: Option<String>) -> Result<Output> {
        self.exec_as(script, stdin, user, true).await
    }

    /// As `sh_as`, but the output stays out of -v traces (it holds password verifiers).
    pub async fn sh_as_untraced(
        &self,
        script: &str,
        stdin: Stdin,
        user: Option<String>,
    ) -> Result<Output> {
        self.exec_as(script, stdin, user, false).await
    }

    async fn exec_as(
        &self,
        script: &str,
        stdin: Stdin,
        user: Option<String>,
        traced: bool,
    ) -> Result<Output> {
        if let Some(ra) = self.readahead {
            let probe = readahead::Probe {
                script: script.to_string(),
                user: user.clone(),
                env: self.env.clone(),
            };
            match (ra, &stdin) {
                (readahead::ReadAhead::Record(v, _), Stdin::None) => {
                    if let Ok(mut v) = v.lock() {
                        v.push(probe);
                    }
                    return Err(readahead::Recorded.into());
                }
                (readahead::ReadAhead::Record(..), _) => return Err(readahead::Recorded.into()),
                (readahead::ReadAhead::Serve(_), Stdin::None) => {
                    if let Some(out) = ra.answer(&probe) {
                        if let Ok(mut t) = self.trace.lock() {
                            t.push(format!(
                                "$ {}\n(answered by the loop's read-ahead)\n[rc={}]",
                                script.trim(),
                                out.code
                            ));
                        }
                        return Ok(out);
                    }
                }
                _ => {}
            }
        }
        let opts = ExecOptions {
            become_user: user,
            env: self.env.clone(),
            timeout: self.timeout,
        };
        let out = self.conn.exec(script, stdin, &opts).await?;
        if let Ok(mut t) = self.trace.lock() {
            let output = if traced {
                format!("{}{}", out.stdout_str(), out.stderr_str())
            } else {
                "(output not traced)\n".into()
            };
            t.push(format!("$ {}\n{output}[rc={}]", script.trim(), out.code));
        }
        Ok(out)
    }

    /// Whether the loop's read-ahead holds an answer to this script (as the task's user).
    pub fn has_answer(&self, script: &str) -> bool {
        self.readahead.is_some_and(|ra| {
            ra.has(&readahead::Probe {
                script: script.to_string(),
                user: self.become_user.clone(),
                env: self.env.clone(),
            })
        })
    }

    /// Runs a script that must succeed; the error carries its stderr.
    pub async fn sh_ok(&self, script: &str, what: &str) -> Result<Output> {
        let out = self.sh(script).await?;
        if !out.ok() {
            bail!("{what} failed (rc={}): {}", out.code, first_lines(&out));
        }
        Ok(out)
    }
}

fn first_lines(out: &Output) -> String {
    let text = if out.stderr.is_empty() {
        out.stdout_str()
    } else {
        out.stderr_str()
    };
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n")
}

/// The result of a task on a host.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    pub msg: Option<String>,
    pub diffs: Vec<FileDiff>,
    /// Fields returned to `register` (rc, stdout, stat, ...).
    pub data: Map<String, Value>,
    /// Facts to set on the host (set_fact).
    pub facts: Map<String, Value>,
    /// What a change touches (files, packages, services), for the recap; a change that
    /// counts none of these counts as one "other".
    pub changes: crate::report::Changes,
    /// A check run could not tell: the task "would change", its result is unknown.
    pub unknown: bool,
    /// Values in the result that are secret (a private key it made): masked from now on.
    pub secrets: Vec<String>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome::default()
    }
    pub fn changed() -> Outcome {
        Outcome {
            changed: true,
            ..Default::default()
        }
    }
    pub fn failed(msg: impl Into<String>) -> Outcome {
        Outcome {
            failed: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    pub fn skipped(msg: impl Into<String>) -> Outcome {
        Outcome {
            skipped: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    /// Check mode: it would change something, and what it would return is not known.
    pub fn not_run(msg: impl Into<String>) -> Outcome {
        Outcome {
            changed: true,
            unknown: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    pub fn with_msg(mut self, msg: impl Into<String>) -> Outcome {
        self.msg = Some(msg.into());
        self
    }
    /// Counts what this outcome changes (see `changes`).
    pub fn counting(mut self, changes: crate::report::Changes) -> Outcome {
        self.changes = changes;
        self
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Outcome {
        self.data.insert(key.to_string(), value.into());
        self
    }

    /// The registered result, as Ansible shapes it.
    pub fn to_result(&self) -> Map<String, Value> {
        let mut m = self.data.clone();
        m.insert("changed".into(), self.changed.into());
        m.insert("failed".into(), self.failed.into());
        if self.skipped {
            m.insert("skipped".into(), true.into());
        }
        if let Some(msg) = &self.msg {
            m.entry("msg").or_insert_with(|| msg.clone().into());
        }
        m
    }
}

/// Module parameters with Ansible's typing rules (`yes`/`no` strings are booleans, ...).
pub struct Params<'a> {
    pub module: &'a str,
    pub map: &'a Map<String, Value>,
}

impl<'a> Params<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => bail!("{}: `{key}` must be a string, found {other}", self.module),
        }
    }

    pub fn req(&self, key: &str) -> Result<String> {
        self.str(key)?
            .ok_or_else(|| anyhow!("{}: parameter `{key}` is required", self.module))
    }

    /// The first of several alias names that is set (`path`/`dest`/`name`).
    pub fn req_any(&self, keys: &[&str]) -> Result<String> {
        for k in keys {
            if let Some(v) = self.str(k)? {
                return Ok(v);
            }
        }
        bail!("{}: parameter `{}` is required", self.module, keys[0])
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" | "y" => Ok(Some(true)),
                "no" | "false" | "off" | "0" | "n" | "" => Ok(Some(false)),
                _ => bail!("{}: `{key}` must be yes or no, found `{s}`", self.module),
            },
            Some(other) => bail!("{}: `{key}` must be yes or no, found {other}", self.module),
        }
    }

    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.bool(key)?.unwrap_or(default))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| anyhow!("{}: `{key}` must be a number, found `{s}`", self.module)),
            Some(other) => bail!("{}: `{key}` must be a number, found {other}", self.module),
        }
    }

    /// A list given as a YAML list or a comma-separated string.
    pub fn list(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect()),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()),
            Some(other) => Ok(vec![other.to_string()]),
        }
    }

    /// A file mode: `'0644'`, `'644'`, or an integer written as YAML octal (`0644`).
    pub fn mode(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                // YAML 1.1 read 0644 as the integer 420 already; `mode: 644` (decimal) is a
                // classic mistake, which Ansible reads the same way, so we do too.
                let v = n
                    .as_u64()
                    .ok_or_else(|| anyhow!("{}: bad `{key}` {n}", self.module))?;
                Ok(Some(v as u32))
            }
            Some(Value::String(s)) => {
                let t = s.trim();
                if t == "preserve" {
                    return Ok(None);
                }
                u32::from_str_radix(t, 8).map(Some).map_err(|_| {
                    anyhow!(
                        "{}: `{key}` must be an octal mode such as '0644', found `{s}` (symbolic modes are not supported)",
                        self.module
                    )
                })
            }
            Some(other) => bail!(
                "{}: `{key}` must be an octal mode such as '0644', found {other}",
                self.module
            ),
        }
    }
}

/// Runs a module on a host.
pub async fn run(name: &str, params: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let p = Params {
        module: name,
        map: params,
    };
    match name {
        "command" | "shell" | "raw" => command::run(name, &p, ctx).await,
        "apt" | "package" | "dnf" => apt::run(name, &p, ctx).await,
        "file" => file::run(&p, ctx).await,
        "copy" => files::copy(&p, ctx).await,
        "template" => files::template(&p, ctx).await,
        "lineinfile" => lineinfile::run(&p, ctx).await,
        "systemd" | "service" => service::run(&p, ctx).await,
        "sysctl" => sysctl::run(&p, ctx).await,
        "user" => user::user(&p, ctx).await,
        "group" => user::group(&p, ctx).await,
        "stat" => stat::run(&p, ctx).await,
        "wait_for" => wait_for::run(&p, ctx).await,
        "uri" => uri::run(&p, ctx).await,
        "postgresql_query" => postgresql::query(&p, ctx).await,
        "postgresql_user" => postgresql_role::user(&p, ctx).await,
        "postgresql_db" => postgresql_role::db(&p, ctx).await,
        "ping" => local::ping(&p, ctx).await,
        "set_fact" | "assert" | "fail" | "debug" | "pause" => {
            local::run(name, &p, ctx.templates, ctx.vars).await
        }
        "tls_certificate" => tls::run(&p, ctx.check),
        other => bail!("module `{other}` is not implemented"),
    }
}

/// The modules that run on the control machine and need no connection.
pub fn is_local(name: &str) -> bool {
    matches!(
        name,
        "set_fact" | "assert" | "fail" | "debug" | "pause" | "tls_certificate"
    )
}

/// Runs a module that needs no host (set_fact, assert, fail, debug, pause, tls_certificate).
pub async fn run_local(
    name: &str,
    params: &Map<String, Value>,
    templates: &Templates,
    vars: &minijinja::Value,
    check: bool,
) -> Result<Outcome> {
    if name == "tls_certificate" {
        let p = Params {
            module: name,
            map: params,
        };
        return tls::run(&p, check);
    }
    local::run(
        name,
        &Params {
            module: name,
            map: params,
        },
        templates,
        vars,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_checked() {
        let m = json!({"dest": "/x", "contnet": "y"});
        let err = check_params("copy", m.as_object().unwrap()).unwrap_err();
        assert!(err.contains("did you mean `content`"), "{err}");
        assert!(check_params("set_fact", json!({"anything": 1}).as_object().unwrap()).is_ok());
    }

    #[test]
    fn modes() {
        let m = json!({"a": 420, "b": "0644", "c": "755", "d": "u+x"});
        let p = Params {
            module: "file",
            map: m.as_object().unwrap(),
        };
        assert_eq!(p.mode("a").unwrap(), Some(0o644));
        assert_eq!(p.mode("b").unwrap(), Some(0o644));
        assert_eq!(p.mode("c").unwrap(), Some(0o755));
        assert!(p.mode("d").is_err());
    }

    #[test]
    fn booleans_as_ansible() {
        let m = json!({"a": "yes", "b": "off", "c": true, "d": "maybe"});
        let p = Params {
            module: "x",
            map: m.as_object().unwrap(),
        };
        assert_eq!(p.bool("a").unwrap(), Some(true));
        assert_eq!(p.bool("b").unwrap(), Some(false));
        assert_eq!(p.bool("c").unwrap(), Some(true));
        assert!(p.bool("d").is_err());
    }
}
