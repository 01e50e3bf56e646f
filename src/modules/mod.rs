//! Modules: what a task does on a host.
//!
//! Each module first probes (reads the host: "in state", or "needs change" with a diff) and
//! only then applies. Check mode stops after the probe. A plain command cannot be probed: in
//! check mode it is skipped unless `creates`/`removes` decide it, or the task says
//! `check_mode: false` (read-only), which makes it run.

mod apt;
pub mod args;
mod command;
mod file;
mod files;
mod lineinfile;
mod local;
mod postgresql;
mod postgresql_ext;
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
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// How a module runs: from its parameters and the host's context to an outcome.
pub type RunFn = for<'a> fn(&'a Params<'a>, &'a ModuleCtx<'a>) -> BoxFuture<'a, Result<Outcome>>;

/// A module's probe for its parameters (see `Spec::probe`): None when its first command
/// would not only read (apt's cache update, systemd's daemon-reload) or there is nothing to read.
pub type ProbeFn = for<'a> fn(&'a Params<'a>, &'a ModuleCtx<'a>) -> Result<Option<ProbeCmd>>;

/// A request a module may make ahead (see `readahead::Exchange`): the name its answer is kept
/// under, the probe whose answer it needs, and the request.
pub struct RequestAhead {
    pub key: String,
    pub needs: Option<ProbeCmd>,
    pub run: readahead::ExchangeRun,
}

pub type AheadFn = fn(&Params<'_>, &ModuleCtx<'_>) -> Result<Option<RequestAhead>>;

/// A read-only command whose answer describes the host's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCmd {
    pub script: String,
    /// What it reads: SQL for psql, never a secret (a probe that would send a password on
    /// stdin is not declared; it runs live).
    pub stdin: Option<Vec<u8>>,
    /// A probe a batch answers together with the others of its kind (see `Fold`).
    pub fold: Option<readahead::Fold>,
    /// The user it runs as, when not the task's (psql runs as postgres by default).
    pub user: Option<String>,
    /// Its output stays out of -v traces (password verifiers).
    pub untraced: bool,
    /// An answer that says it failed is taken too: a check whose failure is its result
    /// (else a failed answer is not taken, and the probe runs again in its turn).
    pub keeps_failure: bool,
}

impl ProbeCmd {
    /// A probe that is a script, as a module's probe declares it.
    pub fn script(script: String) -> Option<ProbeCmd> {
        Some(ProbeCmd::plain(script))
    }

    pub fn plain(script: String) -> ProbeCmd {
        ProbeCmd {
            script,
            stdin: None,
            fold: None,
            user: None,
            untraced: false,
            keeps_failure: false,
        }
    }
}

/// A module's plan (see `Spec::plan`): from its parameters and its probe's answer (None when
/// it declares no probe for these parameters), what the task does.
pub type PlanFn =
    for<'a> fn(&'a Params<'a>, &'a ModuleCtx<'a>, Option<Output>) -> BoxFuture<'a, Result<Plan>>;

/// What a task will do on its host: nothing, or the change `apply` makes. `outcome` is what it
/// reports (changed, the diffs, the data registered); check mode stops here and reports it.
pub struct Plan {
    pub outcome: Outcome,
    pub apply: Option<Apply>,
}

impl Plan {
    /// Nothing to do: the host is as the task wants it (or a failure found by the probe).
    pub fn done(outcome: Outcome) -> Plan {
        Plan {
            outcome,
            apply: None,
        }
    }

    /// Adds a field to the result registered.
    pub fn with_data(mut self, key: &str, value: impl Into<Value>) -> Plan {
        self.outcome = self.outcome.with(key, value);
        self
    }

    /// A change, reported as `outcome` once `apply` succeeded.
    pub fn change(outcome: Outcome, apply: Apply) -> Plan {
        Plan {
            outcome,
            apply: Some(apply),
        }
    }
}

/// The command that makes a planned change.
pub struct Apply {
    pub script: String,
    pub stdin: Stdin,
    /// The user it runs as, when not the task's.
    pub user: Option<String>,
    /// A failure reads `{failure}: {stderr}`.
    pub failure: String,
    /// Run after a failure, its output shown under the error (a unit's journal).
    pub explain: Option<(String, String)>,
}

impl Apply {
    pub fn script(script: String, failure: impl Into<String>) -> Apply {
        Apply {
            script,
            stdin: Stdin::None,
            user: None,
            failure: failure.into(),
            explain: None,
        }
    }

    /// Makes the change; the planned outcome on success, a failed one naming what failed.
    async fn run(self, ctx: &ModuleCtx<'_>, planned: Outcome) -> Result<Outcome> {
        let user = self.user.or_else(|| ctx.become_user.clone());
        let out = ctx.sh_as(&self.script, self.stdin, user).await?;
        if out.ok() {
            return Ok(planned);
        }
        let mut msg = format!("{}: {}", self.failure, first_lines(&out));
        if let Some((title, script)) = self.explain {
            let said = ctx
                .sh(&script)
                .await
                .map(|o| o.stdout_str())
                .unwrap_or_default();
            msg.push_str(&format!("\n--- {title} ---\n{}", said.trim_end()));
        }
        Ok(Outcome {
            changes: planned.changes,
            ..Outcome::failed(msg)
        })
    }
}

/// The answer of a probe the module always declares.
pub fn probed(answer: Option<Output>) -> Result<Output> {
    answer.ok_or_else(|| anyhow!("the module's probe gave no answer"))
}

/// How a module that plans runs: its probe (answered from a batch when read ahead), its plan,
/// then, unless there is nothing to do or the run is a check, the apply step.
fn planned<'a>(p: &'a Params<'a>, ctx: &'a ModuleCtx<'a>) -> BoxFuture<'a, Result<Outcome>> {
    Box::pin(async move {
        let spec = spec(p.module).ok_or_else(|| anyhow!("module `{}` unknown", p.module))?;
        let plan = spec
            .plan
            .ok_or_else(|| anyhow!("{}: declares no plan", p.module))?;
        let answer = match spec.probe.map(|probe| probe(p, ctx)).transpose()?.flatten() {
            Some(cmd) => Some(ctx.run_probe(cmd).await?),
            None => None,
        };
        let plan = plan(p, ctx, answer).await?;
        match plan.apply {
            Some(apply) if !ctx.check => apply.run(ctx, plan.outcome).await,
            _ => Ok(plan.outcome),
        }
    })
}

/// A module, declared in its own file: names, parameters, where it runs, and its code.
pub struct Spec {
    pub name: &'static str,
    /// Ansible's other names for it (`systemd_service`, `yum`).
    pub aliases: &'static [&'static str],
    /// The parameters it implements: its struct's fields (`args::fields`); set_fact: any name.
    pub params: fn() -> Vec<&'static str>,
    /// Ansible's parameters it does not implement, each refused with what to do instead.
    pub refused: &'static [(&'static str, &'static str)],
    /// Takes a free-form string (`command: ls -l`).
    pub free_form: bool,
    /// Its probe: the read-only command it runs first, as it will run it (same script, same
    /// stdin). The engine runs the probes of consecutive tasks ahead, in one command per host,
    /// and the module's first command takes its answer from that batch.
    pub probe: Option<ProbeFn>,
    /// Its probe reads the host's own state (files, systemd, the package database) and never
    /// waits: the read-ahead runs it even for a task whose `when` it cannot work out yet (an
    /// answer the task does not take costs nothing but its share of the batch).
    pub quick_probe: bool,
    /// A request it may make ahead, after the batch (uri's GET): see `readahead::Exchange`.
    pub ahead: Option<AheadFn>,
    /// Its plan, for a module that probes then plans then applies (`Spec::planned`); the
    /// others (commands, HTTP calls, waits, the control machine's) only `run`.
    pub plan: Option<PlanFn>,
    /// Runs on the control machine, without a connection.
    pub local: bool,
    pub run: RunFn,
}

impl Spec {
    /// A module named `name` that runs `run` on its host, with no parameters, not free form,
    /// not probing first: each module's `Spec` states what differs (`..Spec::new(...)`).
    pub const fn new(name: &'static str, run: RunFn) -> Spec {
        Spec {
            name,
            aliases: &[],
            params: Vec::new,
            refused: &[],
            free_form: false,
            probe: None,
            quick_probe: false,
            ahead: None,
            plan: None,
            local: false,
            run,
        }
    }

    /// A `planned` module whose probe reads the host's own state and never waits
    /// (`quick_probe`): files, units, packages, users.
    pub const fn host_state(name: &'static str, probe: ProbeFn, plan: PlanFn) -> Spec {
        Spec {
            quick_probe: true,
            ..Spec::planned(name, probe, plan)
        }
    }

    /// A module that probes (`probe`), plans from the answer (`plan`), and applies the plan
    /// unless in check mode; each module's `Spec` states what else differs.
    pub const fn planned(name: &'static str, probe: ProbeFn, plan: PlanFn) -> Spec {
        Spec {
            probe: Some(probe),
            plan: Some(plan),
            ..Spec::new(name, planned)
        }
    }
}

/// Every module. Adding one: its file with its `Spec`, and a line here.
const MODULES: &[&Spec] = &[
    &command::COMMAND,
    &command::SHELL,
    &command::RAW,
    &apt::APT,
    &apt::PACKAGE,
    &apt::DNF,
    &file::FILE,
    &files::COPY,
    &files::TEMPLATE,
    &lineinfile::LINEINFILE,
    &service::SYSTEMD,
    &service::SERVICE,
    &sysctl::SYSCTL,
    &user::USER,
    &user::GROUP,
    &stat::STAT,
    &wait_for::WAIT_FOR,
    &tls::TLS_CERTIFICATE,
    &uri::URI,
    &postgresql_role::POSTGRESQL_USER,
    &postgresql_role::POSTGRESQL_DB,
    &postgresql_ext::POSTGRESQL_EXT,
    &postgresql::POSTGRESQL_QUERY,
    &local::SET_FACT,
    &local::ASSERT,
    &local::FAIL,
    &local::DEBUG,
    &local::PING,
    &local::PAUSE,
    &INCLUDE_TASKS,
    &META,
];

/// `include_tasks` and `meta` are the engine's; declared here for their parameters.
const INCLUDE_TASKS: Spec = Spec {
    params: || vec!["file", "apply", "_raw_params"],
    free_form: true,
    local: true,
    ..Spec::new("include_tasks", run_by_the_engine)
};

const META: Spec = Spec {
    params: || vec!["_raw_params"],
    free_form: true,
    local: true,
    ..Spec::new("meta", run_by_the_engine)
};

/// `include_tasks` and `meta` never reach a host: the engine runs them itself.
fn run_by_the_engine<'a>(
    p: &'a Params<'a>,
    _: &'a ModuleCtx<'a>,
) -> BoxFuture<'a, Result<Outcome>> {
    Box::pin(async move { bail!("{} is run by the engine", p.module) })
}

/// The module a (prefix-stripped) name or alias refers to.
pub fn spec(name: &str) -> Option<&'static Spec> {
    MODULES
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
        .copied()
}

/// Every module name and alias.
pub fn names() -> Vec<&'static str> {
    MODULES
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
        .collect()
}

/// The module a (prefix-stripped) name refers to.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    spec(name).map(|s| s.name)
}

pub fn takes_free_form(name: &str) -> bool {
    spec(name).is_some_and(|s| s.free_form)
}

/// Rejects parameters a module does not take: Ansible's that it does not implement with
/// what to do instead, others with the nearest valid name.
pub fn check_params(name: &str, params: &Map<String, Value>) -> Result<(), String> {
    let Some(spec) = spec(name) else {
        return Ok(());
    };
    if spec.name == "set_fact" {
        return Ok(()); // any names
    }
    let allowed = (spec.params)();
    for key in params.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        if let Some((_, why)) = spec.refused.iter().find(|(k, _)| k == key) {
            return Err(format!(
                "module `{name}`: parameter `{key}` is not supported by pgdeploy: {why}"
            ));
        }
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
    Ok(())
}

/// What a module needs to do its work on one host.
pub struct ModuleCtx<'a> {
    pub host: &'a str,
    /// None for a module that runs on the control machine.
    pub conn: Option<&'a Connection>,
    /// How many -v the run was given (debug's `verbosity`).
    pub verbosity: u8,
    pub become_user: Option<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub check: bool,
    pub diff: bool,
    /// `check_mode: false` on the task: a command may run even in check mode.
    pub force_run: bool,
    /// A read-only check of pgdeploy's own playbooks (`check_mode: false` and
    /// `changed_when: false`): its command may run ahead, with the other tasks' probes.
    pub vouched_read_only: bool,
    /// Nothing has changed on any host in this run yet. Reads that may wait — a check, an
    /// HTTP request — are made ahead only then: after a change, a check is mostly there to
    /// wait for it to take effect (etcd's health right after its install), and made ahead it
    /// would wait for nothing, in every batch until its turn.
    pub settled: bool,
    pub templates: &'a Templates,
    pub vars: &'a minijinja::Value,
    /// The directory of the playbook (relative `src` paths start here).
    pub dir: &'a Path,
    /// Inside a role: its directory (its templates/ and files/ come first).
    pub role_path: Option<&'a Path>,
    /// Commands and their output, for `-v`.
    pub trace: &'a Mutex<Vec<String>>,
    /// The facts of the host (os_family picks the package manager).
    pub facts: &'a Map<String, Value>,
    /// A loop's probes, recorded or answered in one round trip (see `readahead`).
    pub readahead: Option<&'a readahead::ReadAhead>,
    /// A check run with changes pending on the host: what a wait waits for will not come.
    pub no_wait: bool,
    /// Commands run on the host (not answered from a read-ahead).
    pub live: std::sync::atomic::AtomicUsize,
}

impl ModuleCtx<'_> {
    /// The host's connection (a module that runs on the control machine has none).
    pub fn conn(&self) -> Result<&Connection> {
        self.conn
            .ok_or_else(|| anyhow!("{}: this module runs on the control machine", self.host))
    }

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
        let probe_stdin = match &stdin {
            Stdin::None => Some(None),
            Stdin::Bytes(b) => Some(Some(b.clone())),
            _ => None,
        };
        if let Some(probe_stdin) = probe_stdin {
            let probe = readahead::Probe {
                script: script.to_string(),
                user: user.clone(),
                env: self.env.clone(),
                stdin: probe_stdin,
                keeps_failure: false,
            };
            if let Some(out) = self.answered(&probe) {
                return Ok(out);
            }
        }
        let opts = ExecOptions {
            become_user: user,
            env: self.env.clone(),
            timeout: self.timeout,
        };
        self.live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.conn()?.exec(script, stdin, &opts).await?;
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

    /// Runs a declared probe (its answer taken from the read-ahead when it holds one).
    pub async fn run_probe(&self, cmd: ProbeCmd) -> Result<Output> {
        let stdin = cmd.stdin.map_or(Stdin::None, Stdin::Bytes);
        let user = cmd.user.or_else(|| self.become_user.clone());
        self.exec_as(&cmd.script, stdin, user, !cmd.untraced).await
    }

    /// A probe's answer from the read-ahead, if it holds one (nothing runs).
    pub fn answer_ahead(&self, cmd: ProbeCmd) -> Option<Output> {
        self.answered(&self.probe_of(cmd))
    }

    /// The response to a request made ahead under `key` (`Spec::ahead`), or why there was
    /// none, if it was made.
    pub fn response_ahead(&self, key: &str) -> Option<Result<Vec<u8>, String>> {
        let out = self.answer_ahead(ProbeCmd {
            keeps_failure: true,
            ..ProbeCmd::plain(key.to_string())
        })?;
        Some(match out.ok() {
            true => Ok(out.stdout),
            false => Err(out.stderr_str()),
        })
    }

    /// A probe as this task runs it: as its user (unless the probe says whom), with its
    /// environment.
    pub fn probe_of(&self, cmd: ProbeCmd) -> readahead::Probe {
        readahead::Probe {
            script: cmd.script,
            user: cmd.user.or_else(|| self.become_user.clone()),
            env: self.env.clone(),
            stdin: cmd.stdin,
            keeps_failure: cmd.keeps_failure,
        }
    }

    /// The read-ahead's answer to `probe`, noted in the -v trace.
    fn answered(&self, probe: &readahead::Probe) -> Option<Output> {
        let out = self.readahead?.answer(probe)?;
        if let Ok(mut t) = self.trace.lock() {
            t.push(format!(
                "$ {}\n(answered by the read-ahead)\n[rc={}]",
                probe.script.trim(),
                out.code
            ));
        }
        Some(out)
    }

    /// Whether the loop's read-ahead holds an answer to this script (as the task's user).
    pub fn has_answer(&self, script: &str) -> bool {
        self.readahead.is_some_and(|ra| {
            ra.has(&readahead::Probe {
                script: script.to_string(),
                user: self.become_user.clone(),
                env: self.env.clone(),
                stdin: None,
                keeps_failure: false,
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
    /// The parameters read into the module's struct (see `args`).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        args::from_map(self.module, self.map)
    }
}

/// Runs a module (on its host, or on the control machine when its spec says `local`).
pub async fn run(name: &str, params: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let spec = spec(name).ok_or_else(|| anyhow!("module `{name}` is not implemented"))?;
    let p = Params {
        module: spec.name,
        map: params,
    };
    (spec.run)(&p, ctx).await
}

/// Whether a module's probe is quick (see `Spec::quick_probe`).
pub fn quick_probe(name: &str) -> bool {
    spec(name).is_some_and(|s| s.quick_probe)
}

/// Whether a module declares a probe the engine may run ahead (see `Spec::probe`).
pub fn declares_probe(name: &str) -> bool {
    spec(name).is_some_and(|s| s.probe.is_some())
}

/// Notes a task's probe in a recorder (as the task's user, with its environment); false when
/// it declares none for these parameters. A probe that cannot be worked out now is an error:
/// the task is left to probe in its turn. A request is made ahead only with every parameter
/// worked out (`whole`).
pub fn record_probe(
    name: &str,
    params: &Map<String, Value>,
    whole: bool,
    ctx: &ModuleCtx<'_>,
    recorder: &readahead::ReadAhead,
) -> Result<bool> {
    let Some(probe) = spec(name).and_then(|s| s.probe) else {
        return Ok(false);
    };
    let p = Params {
        module: spec(name).map_or(name, |s| s.name),
        map: params,
    };
    let cmd = probe(&p, ctx)?;
    let noted = cmd.is_some();
    if let Some(cmd) = cmd {
        let fold = cmd.fold.clone();
        recorder.note(ctx.probe_of(cmd), fold);
    }
    let ahead = spec(name)
        .and_then(|s| s.ahead)
        .filter(|_| ctx.settled && whole);
    if let Some(Ok(Some(r))) = ahead.map(|a| a(&p, ctx)) {
        recorder.note_exchange(readahead::Exchange {
            key: ctx.probe_of(ProbeCmd {
                keeps_failure: true,
                ..ProbeCmd::plain(r.key)
            }),
            needs: r.needs.map(|n| ctx.probe_of(n)),
            run: r.run,
        });
    }
    Ok(noted)
}

/// The modules that run on the control machine and need no connection.
pub fn is_local(name: &str) -> bool {
    spec(name).is_some_and(|s| s.local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refused_parameters_say_why() {
        let m = json!({"dest": "/x", "content": "y", "decrypt": true});
        let err = check_params("copy", m.as_object().unwrap()).unwrap_err();
        assert!(
            err.contains("`decrypt` is not supported by pgdeploy: a Vault-encrypted `src`"),
            "{err}"
        );
        assert_eq!(canonical_name("yum"), Some("dnf"));
        assert_eq!(canonical_name("systemd_service"), Some("systemd"));
    }

    #[test]
    fn params_are_checked() {
        let m = json!({"dest": "/x", "contnet": "y"});
        let err = check_params("copy", m.as_object().unwrap()).unwrap_err();
        assert!(err.contains("did you mean `content`"), "{err}");
        assert!(check_params("set_fact", json!({"anything": 1}).as_object().unwrap()).is_ok());
    }

    /// Each module's parameters come from its struct (aliases included), none twice, none
    /// both taken and refused. (That each is read is the compiler's dead-code check.)
    #[test]
    fn every_module_declares_its_parameters_once() {
        for spec in MODULES {
            let params = (spec.params)();
            if !["set_fact", "meta"].contains(&spec.name) {
                assert!(!params.is_empty(), "{} declares no parameters", spec.name);
            }
            let mut seen = std::collections::HashSet::new();
            for p in &params {
                assert!(seen.insert(p), "{}: `{p}` twice", spec.name);
                assert!(
                    !spec.refused.iter().any(|(r, _)| r == p),
                    "{}: `{p}` taken and refused",
                    spec.name
                );
            }
        }
        let copy = (spec("copy").unwrap().params)();
        for p in [
            "src", "content", "dest", "owner", "mode", "backup", "validate", "checksum",
        ] {
            assert!(copy.contains(&p), "copy takes {p}: {copy:?}");
        }
        let query = (spec("postgresql_query").unwrap().params)();
        for p in [
            "query",
            "db",
            "login_db",
            "login_port",
            "port",
            "login_password",
        ] {
            assert!(query.contains(&p), "postgresql_query takes {p}: {query:?}");
        }
    }
}
