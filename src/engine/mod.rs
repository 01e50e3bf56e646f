//! The engine: runs plays with the linear strategy.
//!
//! Each task runs on all its hosts at once (at most `forks` at a time), then the next task
//! starts: a barrier per task, as in Ansible and pyinfra. Results are applied to host state only
//! after the barrier, so hosts never see each other half-way through a task.

mod check_mode;
mod host_task;
mod prefetch;
mod vars;

use crate::inventory::{select_hosts, Inventory};
use crate::playbook::{Action, Play, Playbook, Task};
use crate::report::{Line, Reporter, Status};
use crate::template::Templates;
use crate::transport::{Connection, KnownHosts, Target};
use anyhow::{anyhow, bail, Result};
use futures::stream::{self, StreamExt};
use indexmap::{IndexMap, IndexSet};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex as AsyncMutex;

pub use vars::{expand_home, target_for};

/// How a run behaves (from the command line).
#[derive(Clone)]
pub struct RunOptions {
    pub check: bool,
    pub diff: bool,
    pub forks: usize,
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    /// The layer below the inventory (pgdeploy's vars files).
    pub defaults: Map<String, Value>,
    pub extra_vars: Map<String, Value>,
    pub known_hosts: KnownHosts,
    pub connect_timeout: Duration,
    pub task_timeout: Option<Duration>,
    /// ~/.ssh/config, for hosts whose inventory variables do not say.
    pub ssh_config: crate::transport::SshConfig,
    /// `--start-at-task`: tasks before the first one with this name are skipped.
    pub start_at_task: Option<String>,
    /// ansible.cfg's remote_user and private_key_file.
    pub default_user: Option<String>,
    pub default_key: Option<std::path::PathBuf>,
}

/// How a host stands in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostStatus {
    Active,
    Failed,
    Unreachable,
}

#[derive(Default)]
struct HostState {
    /// Shared with the snapshots that read them (a task's variables copy no map).
    facts: Option<Arc<Map<String, Value>>>,
    /// set_fact and register results (they outlive the play, as in Ansible).
    set_facts: Arc<Map<String, Value>>,
    notified: IndexSet<String>,
    /// In a check run: what this host would change first, and what cannot be known.
    check: check_mode::CheckState,
}

/// The outcome of a run, for the exit code.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub failed_hosts: Vec<String>,
    pub unreachable_hosts: Vec<String>,
    pub changed: u32,
}

/// Keywords a block passes down to its tasks.
#[derive(Clone, Default)]
struct Inherited {
    /// How many include_tasks this task is inside (a file that includes itself stops).
    include_depth: usize,
    when: Vec<String>,
    tags: Vec<String>,
    vars: Map<String, Value>,
    become_: Option<bool>,
    become_user: Option<String>,
    environment: Option<Value>,
    no_log: bool,
    check_mode: Option<bool>,
    ignore_errors: bool,
    ignore_unreachable: bool,
    diff: Option<bool>,
    timeout: Option<u64>,
    /// At most this many hosts run a task at once.
    throttle: Option<u64>,
    /// Module name -> default parameters (a task's own win).
    module_defaults: Map<String, Value>,
    /// Handlers a block's tasks notify when they change something.
    notify: Vec<String>,
    /// Inside roles: their defaults, and the innermost role's directory.
    role_defaults: Map<String, Value>,
    role_path: Option<PathBuf>,
    any_errors_fatal: bool,
    /// Inside a block with a rescue section: a failure there is the rescue's to handle, so
    /// any_errors_fatal waits for it.
    rescuable: bool,
    run_once: bool,
    delegate_to: Option<String>,
    /// Handlers: notification selects them, so --tags/--skip-tags do not.
    ignore_tags: bool,
}

pub struct Engine {
    inv: Arc<Inventory>,
    opts: RunOptions,
    templates: Templates,
    report: Arc<Reporter>,
    conns: AsyncMutex<HashMap<String, Arc<Connection>>>,
    hosts: HashMap<String, HostState>,
    status: IndexMap<String, HostStatus>,
    groups: minijinja::Value,
    /// False until the --start-at-task task is reached.
    started: bool,
    /// Probes read ahead per host, across tasks (see `prefetch`).
    batches: std::sync::Mutex<prefetch::Batches>,
    /// How many steps the next read-ahead may cover (see `prefetch`).
    window: std::sync::atomic::AtomicUsize,
    /// Nothing has changed in this playbook's run yet (see `ModuleCtx::settled`).
    settled: std::sync::atomic::AtomicBool,
    /// `opts`' defaults and extra vars, shared with every snapshot.
    defaults: Arc<Map<String, Value>>,
    extra_vars: Arc<Map<String, Value>>,
    /// Each host's inventory variables, worked out once per inventory.
    inv_layers: vars::HostLayers,
}

impl Engine {
    pub fn new(
        inv: Inventory,
        opts: RunOptions,
        templates: Templates,
        report: Arc<Reporter>,
    ) -> Engine {
        let groups = minijinja::Value::from_serialize(inv.groups_value());
        let secrets = &report.secrets;
        secrets.scan(&opts.defaults);
        secrets.scan(&opts.extra_vars);
        for h in inv.hosts.keys() {
            secrets.scan(&inv.host_vars(h));
        }
        Engine {
            inv: Arc::new(inv),
            templates,
            report,
            conns: AsyncMutex::new(HashMap::new()),
            hosts: HashMap::new(),
            status: IndexMap::new(),
            groups,
            started: true,
            batches: Default::default(),
            window: prefetch::WINDOW.into(),
            settled: true.into(),
            defaults: Arc::new(opts.defaults.clone()),
            extra_vars: Arc::new(opts.extra_vars.clone()),
            inv_layers: Default::default(),
            opts,
        }
    }

    /// The inventory later playbooks of this run see (a host taken out of the cluster, say);
    /// connections and what hosts learnt stay.
    pub fn set_inventory(&mut self, inv: Inventory) {
        for h in inv.hosts.keys() {
            self.report.secrets.scan(&inv.host_vars(h));
        }
        self.groups = minijinja::Value::from_serialize(inv.groups_value());
        self.inv = Arc::new(inv);
        self.inv_layers = Default::default();
    }

    pub fn report(&self) -> &Arc<Reporter> {
        &self.report
    }

    /// Runs every play of a playbook.
    /// `--list-hosts`: each play and the hosts it would run on (after --limit).
    pub fn list_hosts(&self, pb: &Playbook) -> Result<String> {
        let mut out = String::new();
        for (i, play) in pb.plays.iter().enumerate() {
            let hosts = self.play_hosts(play)?;
            out.push_str(&format!(
                "play #{} ({}): {}\tHOST COUNT: {}\n",
                i + 1,
                play.hosts,
                play.name,
                hosts.len()
            ));
            for h in hosts {
                out.push_str(&format!("    {h}\n"));
            }
        }
        Ok(out)
    }

    /// `--list-tasks`: each play's tasks as they would run (blocks opened, imports read,
    /// tags filtered; an include_tasks is listed as itself: its file is read when it runs).
    pub fn list_tasks(&self, pb: &Playbook) -> String {
        fn walk(e: &Engine, tasks: &[Task], inherited: &[String], out: &mut String, depth: usize) {
            for t in tasks {
                let mut tags = inherited.to_vec();
                tags.extend(t.tags.iter().cloned());
                match &t.action {
                    Action::Block {
                        block,
                        rescue,
                        always,
                    } => {
                        for list in [block, rescue, always] {
                            walk(e, list, &tags, out, depth);
                        }
                    }
                    _ => {
                        if !e.tags_select(&tags) {
                            continue;
                        }
                        let shown = if tags.is_empty() {
                            String::new()
                        } else {
                            format!("\tTAGS: [{}]", tags.join(", "))
                        };
                        out.push_str(&format!(
                            "{}{}{shown}\n",
                            "    ".repeat(depth),
                            t.display_name()
                        ));
                    }
                }
            }
        }
        let mut out = String::new();
        for (i, play) in pb.plays.iter().enumerate() {
            out.push_str(&format!(
                "play #{} ({}): {}\n",
                i + 1,
                play.hosts,
                play.name
            ));
            for list in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
                walk(self, list, &play.tags, &mut out, 1);
            }
        }
        out
    }

    /// `--list-tags`: each play's tags and the tags of its tasks (blocks opened, imports read).
    pub fn list_tags(&self, pb: &Playbook) -> String {
        fn walk(tasks: &[Task], into: &mut std::collections::BTreeSet<String>) {
            for t in tasks {
                into.extend(t.tags.iter().cloned());
                if let Action::Block {
                    block,
                    rescue,
                    always,
                } = &t.action
                {
                    for list in [block, rescue, always] {
                        walk(list, into);
                    }
                }
            }
        }
        let mut out = String::new();
        for (i, play) in pb.plays.iter().enumerate() {
            let mut tags = std::collections::BTreeSet::new();
            for list in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
                walk(list, &mut tags);
            }
            out.push_str(&format!(
                "play #{} ({}): {}\tTAGS: [{}]\n      TASK TAGS: [{}]\n",
                i + 1,
                play.hosts,
                play.name,
                play.tags.join(", "),
                tags.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        out
    }

    pub async fn run_playbook(&mut self, pb: &Playbook) -> Result<RunSummary> {
        if let Some(name) = &self.opts.start_at_task {
            if !pb.names_task(name) {
                bail!(
                    "--start-at-task: no task is named `{name}` in {}",
                    pb.path.display()
                );
            }
            self.started = false;
        }
        // Answers read ahead for another playbook are not this one's.
        self.reset_read_ahead();
        for (i, play) in pb.plays.iter().enumerate() {
            let proceed = self.run_play(play, &pb.plays[i + 1..]).await?;
            if !proceed {
                break;
            }
        }
        Ok(self.summary())
    }

    pub fn summary(&self) -> RunSummary {
        let stats = self.report.stats();
        RunSummary {
            failed_hosts: self
                .status
                .iter()
                .filter(|(_, s)| **s == HostStatus::Failed)
                .map(|(h, _)| h.clone())
                .collect(),
            unreachable_hosts: self
                .status
                .iter()
                .filter(|(_, s)| **s == HostStatus::Unreachable)
                .map(|(h, _)| h.clone())
                .collect(),
            changed: stats.values().map(|s| s.changed).sum(),
        }
    }

    /// Puts each host's command count into the report (for the recap).
    pub async fn count_commands(&self) {
        for (h, c) in self.conns.lock().await.iter() {
            self.report.set_commands(h, c.commands());
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for c in self.conns.lock().await.values() {
            c.close().await;
        }
    }

    fn play_hosts(&self, play: &Play) -> Result<Vec<String>> {
        let pattern = self.play_pattern(play)?;
        let mut hosts = select_hosts(&self.inv, &pattern)
            .map_err(|e| anyhow!("{}: play `{}`: {e}", play.origin, play.name))?;
        if let Some(limit) = &self.opts.limit {
            let allowed = select_hosts(&self.inv, limit).map_err(|e| anyhow!("--limit: {e}"))?;
            hosts.retain(|h| allowed.contains(h));
        }
        // Failed and unreachable hosts stay out of later plays.
        hosts.retain(|h| self.status.get(h).is_none_or(|s| *s == HostStatus::Active));
        order_hosts(&mut hosts, play.order.as_deref());
        Ok(hosts)
    }

    /// The play's host pattern; a templated one (`hosts: "{{ target }}"`) sees what Ansible's
    /// does before any host is picked: the defaults, the play's vars, the extra vars, `groups`.
    fn play_pattern(&self, play: &Play) -> Result<String> {
        if !play.hosts.contains("{{") && !play.hosts.contains("{%") {
            return Ok(play.hosts.clone());
        }
        let origin = format!("{}: play `{}`: hosts", play.origin, play.name);
        let pattern = self
            .templates
            .render_str(&play.hosts, &self.play_context(play), &origin)?;
        if pattern.trim().is_empty() {
            bail!("{origin}: `{}` names no host", play.hosts);
        }
        Ok(pattern.trim().to_string())
    }

    /// What a play's `hosts` and `vars_files` see before any host is picked: the defaults,
    /// the play's vars, the extra vars and `groups`, as in Ansible.
    fn play_context(&self, play: &Play) -> minijinja::Value {
        let mut vars = self.opts.defaults.clone();
        vars.extend(play.vars.clone());
        vars.extend(self.opts.extra_vars.clone());
        let mut ctx: std::collections::BTreeMap<String, minijinja::Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v)))
            .collect();
        ctx.insert("groups".into(), self.groups.clone());
        minijinja::Value::from_serialize(&ctx)
    }

    /// Runs one play, timed; false when the run must stop (any_errors_fatal).
    async fn run_play(&mut self, play: &Play, later: &[Play]) -> Result<bool> {
        let started = std::time::Instant::now();
        let hosts = self.play_hosts(play).unwrap_or_default();
        let before = self.commands_so_far().await;
        let go_on = self.run_play_untimed(play, later).await;
        let after = self.commands_so_far().await;
        // Commands per host in this play: what its hosts' connections ran meanwhile.
        let count = |m: &HashMap<String, u64>, h: &String| m.get(h).copied().unwrap_or(0);
        let ran: u64 = hosts
            .iter()
            .map(|h| count(&after, h) - count(&before, h))
            .sum();
        let per_host = if hosts.is_empty() {
            0.0
        } else {
            ran as f64 / hosts.len() as f64
        };
        self.report
            .play_time(&play.name, started.elapsed(), per_host);
        go_on
    }

    /// Each connected host's commands so far.
    async fn commands_so_far(&self) -> HashMap<String, u64> {
        self.conns
            .lock()
            .await
            .iter()
            .map(|(h, c)| (h.clone(), c.commands()))
            .collect()
    }

    async fn run_play_untimed(&mut self, play: &Play, later: &[Play]) -> Result<bool> {
        let hosts = self.play_hosts(play)?;
        self.report.play(&play.name, &hosts);
        if hosts.is_empty() {
            self.report.note("skipping: no hosts matched");
            return Ok(true);
        }
        for h in &hosts {
            self.status.entry(h.clone()).or_insert(HostStatus::Active);
            self.hosts.entry(h.clone()).or_default().notified.clear();
        }
        let mut play_vars = play.vars.clone();
        for f in &play.vars_files {
            let f = if crate::template::is_template(f) {
                let origin = format!("{}: play `{}`: vars_files", play.origin, play.name);
                self.templates
                    .render_str(f, &self.play_context(play), &origin)?
            } else {
                f.clone()
            };
            let path = play.dir.join(f);
            play_vars.extend(crate::vars::load_vars_file(&path)?);
        }
        self.report.secrets.scan(&play_vars);
        for v in crate::vault::take_revealed() {
            self.report.secrets.add_lines(&v);
        }
        let play_vars = Arc::new(play_vars);
        let batches = serial_batches(play.serial.as_ref(), &hosts)?;
        let base = Self::play_base(play);
        for (n, batch) in batches.iter().enumerate() {
            if batches.len() > 1 {
                self.report.note(&format!(
                    "serial batch {} of {}: {}",
                    n + 1,
                    batches.len(),
                    batch.join(", ")
                ));
            }
            let ctx = PlayCtx {
                play,
                vars: play_vars.clone(),
                hosts: hosts.clone(),
                batch: batch.clone(),
                after: None,
                // The next batch of a serial play runs before them.
                later: if n + 1 < batches.len() { &[] } else { later },
            };
            if play.gather_facts {
                self.gather_facts(batch).await;
            }
            self.register_templated_secrets(&ctx, batch);
            let lists = [&play.pre_tasks, &play.tasks, &play.post_tasks];
            for (k, list) in lists.iter().enumerate() {
                // Read ahead into the lists after this one, then the later plays.
                let tail = prefetch::After {
                    lists: lists[k + 1..].iter().map(|l| l.as_slice()).collect(),
                    inh: &base,
                    up: None,
                };
                let ctx = PlayCtx {
                    after: Some(&tail),
                    ..ctx.clone()
                };
                if !self.run_list(&ctx, list, &base, batch).await? {
                    return Ok(false);
                }
                self.flush_handlers(&ctx, &base, batch).await?;
            }
            // As in Ansible: when every host of a batch failed, the play (and the run) ends.
            if self.active(batch).is_empty() {
                self.report
                    .note("every host of the batch failed: no more hosts left");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What every task of a play inherits from it.
    fn play_base(play: &Play) -> Inherited {
        Inherited {
            become_: play.become_,
            become_user: play.become_user.clone(),
            environment: play.environment.clone(),
            check_mode: play.check_mode,
            any_errors_fatal: play.any_errors_fatal,
            tags: play.tags.clone(),
            no_log: play.no_log,
            ignore_errors: play.ignore_errors,
            ignore_unreachable: play.ignore_unreachable,
            diff: play.diff,
            timeout: play.timeout,
            throttle: play.throttle,
            module_defaults: play.module_defaults.clone(),
            run_once: play.run_once,
            ..Default::default()
        }
    }

    /// max_fail_percentage: more of the batch's hosts failed than the play allows.
    fn too_many_failed(&self, ctx: &PlayCtx<'_>) -> bool {
        let Some(max) = ctx.play.max_fail_percentage else {
            return false;
        };
        let failed = ctx.batch.len() - self.active(&ctx.batch).len();
        failed > 0 && (failed as f64) * 100.0 / (ctx.batch.len() as f64) > max
    }

    fn active(&self, hosts: &[String]) -> Vec<String> {
        hosts
            .iter()
            .filter(|h| self.status.get(*h) == Some(&HostStatus::Active))
            .cloned()
            .collect()
    }

    /// Runs tasks in order; false when the play must end.
    async fn run_list(
        &mut self,
        ctx: &PlayCtx<'_>,
        tasks: &[Task],
        inh: &Inherited,
        hosts: &[String],
    ) -> Result<bool> {
        for (i, task) in tasks.iter().enumerate() {
            let active = self.active(hosts);
            if active.is_empty() {
                return Ok(true);
            }
            self.prefetch(ctx, &tasks[i..], inh, &active).await?;
            // Inside this task (a block, an include), the rest of this list runs next.
            let rest = prefetch::After {
                lists: vec![&tasks[i + 1..]],
                inh,
                up: ctx.after,
            };
            let inner = PlayCtx {
                after: Some(&rest),
                ..ctx.clone()
            };
            if !Box::pin(self.run_task(&inner, task, inh, &active)).await? {
                return Ok(false);
            }
            if self.too_many_failed(ctx) {
                self.fail_all_active(&ctx.batch);
                self.report.note(&format!(
                    "max_fail_percentage {}% exceeded: the play stops",
                    ctx.play.max_fail_percentage.unwrap_or_default()
                ));
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn inherit(&self, inh: &Inherited, task: &Task) -> Inherited {
        let mut next = inh.clone();
        next.when.extend(task.when.iter().cloned());
        next.tags.extend(task.tags.iter().cloned());
        next.vars.extend(task.vars.clone());
        next.become_ = task.become_.or(inh.become_);
        next.become_user = task.become_user.clone().or(inh.become_user.clone());
        next.environment = task.environment.clone().or(inh.environment.clone());
        next.no_log |= task.no_log;
        next.check_mode = task.check_mode.or(inh.check_mode);
        next.ignore_errors |= task.ignore_errors;
        next.ignore_unreachable = task.ignore_unreachable.unwrap_or(inh.ignore_unreachable);
        next.diff = task.diff.or(inh.diff);
        next.timeout = task.timeout.or(inh.timeout);
        next.throttle = task.throttle.or(inh.throttle);
        for (module, defaults) in &task.module_defaults {
            next.module_defaults
                .insert(module.clone(), defaults.clone());
        }
        if matches!(task.action, Action::Block { .. }) {
            next.notify.extend(task.notify.iter().cloned());
        }
        for (k, v) in &task.role_defaults {
            next.role_defaults.insert(k.clone(), v.clone());
        }
        next.role_path = task.role_path.clone().or(inh.role_path.clone());
        next.any_errors_fatal = task.any_errors_fatal.unwrap_or(inh.any_errors_fatal);
        next.run_once |= task.run_once;
        next.delegate_to = task.delegate_to.clone().or(inh.delegate_to.clone());
        next
    }

    /// Whether `--tags`/`--skip-tags` select a task with these tags.
    fn tags_select(&self, tags: &[String]) -> bool {
        let has = |t: &str| tags.iter().any(|x| x == t);
        if self.opts.skip_tags.iter().any(|s| has(s) || (s == "all")) {
            return false;
        }
        if has("never") && !self.opts.tags.iter().any(|t| has(t)) {
            return false;
        }
        if self.opts.tags.is_empty() || has("always") {
            return true;
        }
        self.opts.tags.iter().any(|t| {
            has(t)
                || t == "all"
                || (t == "tagged" && !tags.is_empty())
                || (t == "untagged" && tags.is_empty())
        })
    }

    async fn run_task(
        &mut self,
        ctx: &PlayCtx<'_>,
        task: &Task,
        inh: &Inherited,
        hosts: &[String],
    ) -> Result<bool> {
        let here = self.inherit(inh, task);
        match &task.action {
            Action::Block {
                block,
                rescue,
                always,
            } => {
                let entered = hosts.to_vec();
                let in_block = Inherited {
                    rescuable: here.rescuable || !rescue.is_empty(),
                    ..here.clone()
                };
                let mut go_on = self.run_list(ctx, block, &in_block, &entered).await?;
                let failed: Vec<String> = entered
                    .iter()
                    .filter(|h| self.status.get(*h) == Some(&HostStatus::Failed))
                    .cloned()
                    .collect();
                if !rescue.is_empty() && !failed.is_empty() {
                    for h in &failed {
                        self.status.insert(h.clone(), HostStatus::Active);
                        let name = task.display_name();
                        self.report.result(Line::new(h, &name, Status::Rescued));
                    }
                    go_on = self.run_list(ctx, rescue, &here, &failed).await? && go_on;
                    let unrescued = failed
                        .iter()
                        .any(|h| self.status.get(h) == Some(&HostStatus::Failed));
                    if unrescued && here.any_errors_fatal && !here.rescuable && go_on {
                        self.fail_all_active(hosts);
                        go_on = false;
                    }
                }
                if !always.is_empty() {
                    let still_failed: Vec<String> = entered
                        .iter()
                        .filter(|h| self.status.get(*h) == Some(&HostStatus::Failed))
                        .cloned()
                        .collect();
                    for h in &still_failed {
                        self.status.insert(h.clone(), HostStatus::Active);
                    }
                    go_on = self.run_list(ctx, always, &here, &entered).await? && go_on;
                    for h in &still_failed {
                        if self.status.get(h) == Some(&HostStatus::Active) {
                            self.status.insert(h.clone(), HostStatus::Failed);
                        }
                    }
                }
                Ok(go_on)
            }
            Action::Meta(what) => {
                match what.as_str() {
                    "flush_handlers" => self.flush_handlers(ctx, inh, hosts).await?,
                    "end_play" => return Ok(false),
                    "end_host" => {
                        for h in hosts {
                            self.status.insert(h.clone(), HostStatus::Failed);
                        }
                    }
                    _ => {}
                }
                Ok(true)
            }
            Action::Include { file, apply } => {
                // As in Ansible, the include itself is selected by its tags (and those it
                // inherits); what it includes is filtered again, task by task.
                if !here.ignore_tags && !self.tags_select(&here.tags) {
                    return Ok(true);
                }
                self.run_include(ctx, task, &here, hosts, file, apply.as_deref())
                    .await
            }
            Action::Module { .. } => {
                if !here.ignore_tags && !self.tags_select(&here.tags) {
                    return Ok(true);
                }
                if !self.started {
                    if self.opts.start_at_task.as_deref() != Some(task.display_name().as_str()) {
                        return Ok(true);
                    }
                    self.started = true;
                }
                self.run_module_task(ctx, task, &here, hosts).await
            }
        }
    }

    async fn run_include(
        &mut self,
        ctx: &PlayCtx<'_>,
        task: &Task,
        here: &Inherited,
        hosts: &[String],
        file: &str,
        apply: Option<&Task>,
    ) -> Result<bool> {
        // The file name may be a template: hosts that name the same file run it together.
        let mut by_file: IndexMap<PathBuf, Vec<String>> = IndexMap::new();
        let base_dir = PathBuf::from(&*task.origin.file)
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let snap = self.snapshot_with(ctx, &here.role_defaults);
        for h in hosts {
            let vars = snap.vars(h, &here.vars, &[]);
            let origin = task.origin.to_string();
            let name = match self
                .when_holds(&here.when, &vars, &origin)
                .and_then(|holds| {
                    holds
                        .then(|| self.templates.render_str(file, &vars, &origin))
                        .transpose()
                }) {
                Ok(Some(name)) => name,
                Ok(None) => continue,
                Err(e) => match self
                    .reads_unknown(task, here, h)
                    .filter(|_| host_task::is_template_error(&e))
                {
                    Some((var, from)) => {
                        let msg = check_mode::skipped_unknown(&var, &from);
                        let title = task.display_name();
                        self.report.result(Line {
                            msg: Some(&msg),
                            ..Line::new(h, &title, Status::Skipped)
                        });
                        continue;
                    }
                    None => return Err(e),
                },
            };
            let path = crate::playbook::parse_resolve(&base_dir, &name);
            by_file.entry(path).or_default().push(h.clone());
        }
        let mut inner_inh = here.clone();
        inner_inh.when.clear();
        inner_inh.include_depth += 1;
        if inner_inh.include_depth > 64 {
            bail!(
                "{}: include_tasks nested more than 64 deep (does a file include itself?)",
                task.origin
            );
        }
        if let Some(apply) = apply {
            inner_inh = self.inherit(&inner_inh, apply);
        }
        for (path, group) in by_file {
            let tasks = crate::playbook::load_tasks_file(&path)
                .map_err(|e| anyhow!("{}: include_tasks: {e:#}", task.origin))?;
            if !self.run_list(ctx, &tasks, &inner_inh, &group).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn flush_handlers(
        &mut self,
        ctx: &PlayCtx<'_>,
        inh: &Inherited,
        hosts: &[String],
    ) -> Result<()> {
        for handler in &ctx.play.handlers {
            let mut names: Vec<String> = handler.listen.clone();
            if let Some(n) = &handler.name {
                names.push(n.clone());
            }
            // force_handlers: a host that failed after the notification still runs them.
            let candidates: Vec<String> = if ctx.play.force_handlers {
                hosts
                    .iter()
                    .filter(|h| self.status.get(*h) != Some(&HostStatus::Unreachable))
                    .cloned()
                    .collect()
            } else {
                self.active(hosts)
            };
            let targets: Vec<String> = candidates
                .into_iter()
                .filter(|h| {
                    self.hosts
                        .get(h)
                        .is_some_and(|s| names.iter().any(|n| s.notified.contains(n)))
                })
                .collect();
            if targets.is_empty() {
                continue;
            }
            let here = Inherited {
                become_: inh.become_,
                become_user: inh.become_user.clone(),
                environment: inh.environment.clone(),
                check_mode: inh.check_mode,
                ignore_tags: true,
                ..Default::default()
            };
            Box::pin(self.run_task(ctx, handler, &here, &targets)).await?;
            for h in &targets {
                if let Some(s) = self.hosts.get_mut(h) {
                    for n in &names {
                        s.notified.shift_remove(n);
                    }
                }
            }
        }
        Ok(())
    }

    /// Connects to a host once per run; later calls share the connection.
    async fn connection(&self, host: &str) -> Result<Arc<Connection>> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(host) {
            return Ok(c.clone());
        }
        drop(conns);
        let (target, known): (Target, KnownHosts) = target_for(&self.inv, host, &self.opts)?;
        if let Some(pw) = &target.password {
            self.report.secrets.add(pw);
        }
        if let Some(pw) = &target.become_password {
            self.report.secrets.add(pw);
        }
        let conn = Arc::new(Connection::connect(&target, &known).await?);
        conns = self.conns.lock().await;
        Ok(conns.entry(host.to_string()).or_insert(conn).clone())
    }

    async fn gather_facts(&mut self, hosts: &[String]) {
        let todo: Vec<String> = hosts
            .iter()
            .filter(|h| self.hosts.get(*h).is_none_or(|s| s.facts.is_none()))
            .cloned()
            .collect();
        if todo.is_empty() {
            return;
        }
        self.report.task("Gathering Facts", &todo);
        let started = std::time::Instant::now();
        let forks = self.opts.forks.max(1);
        let this = &*self;
        let results: Vec<(String, Result<Map<String, Value>>)> = stream::iter(todo)
            .map(|h| async move {
                let r = async {
                    let conn = this.connection(&h).await?;
                    let out = conn
                        .exec(
                            crate::facts::SCRIPT,
                            crate::transport::Stdin::None,
                            &Default::default(),
                        )
                        .await?;
                    Ok(crate::facts::parse(&out.stdout_str()))
                }
                .await;
                (h, r)
            })
            .buffer_unordered(forks)
            .collect()
            .await;
        self.report
            .task_time("Gathering Facts", "", started.elapsed());
        for (h, r) in results {
            match r {
                Ok(f) => {
                    self.report
                        .result(Line::new(&h, "Gathering Facts", Status::Ok));
                    self.hosts.entry(h).or_default().facts = Some(Arc::new(f));
                }
                Err(e) => self.mark_unreachable(&h, &e),
            }
        }
    }

    fn mark_unreachable(&mut self, host: &str, e: &anyhow::Error) {
        let msg = format!("{e:#}");
        self.report.result(Line {
            msg: Some(&msg),
            ..Line::new(host, "", Status::Unreachable)
        });
        self.status
            .insert(host.to_string(), HostStatus::Unreachable);
    }

    /// Renders secret-named variables that are templates, so their values are masked too.
    fn register_templated_secrets(&self, ctx: &PlayCtx<'_>, hosts: &[String]) {
        let snap = self.snapshot(ctx);
        let no_task_vars = Map::new();
        for h in hosts {
            let vars = snap.vars(h, &no_task_vars, &[]);
            for (k, v) in self
                .inv
                .host_vars(h)
                .iter()
                .chain(self.opts.defaults.iter())
                .chain(ctx.vars.iter())
            {
                if crate::vars::is_secret_name(k)
                    && v.as_str().is_some_and(crate::template::is_template)
                {
                    if let Ok(s) =
                        self.templates
                            .render_str(v.as_str().unwrap_or_default(), &vars, k)
                    {
                        self.report.secrets.add(&s);
                    }
                }
            }
        }
    }

    fn when_holds(&self, conds: &[String], vars: &minijinja::Value, origin: &str) -> Result<bool> {
        for c in conds {
            if !self.templates.eval_bool(c, vars, origin)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// any_errors_fatal: every host still running fails too, and the play stops.
    fn fail_all_active(&mut self, hosts: &[String]) {
        for h in hosts {
            if self.status.get(h) == Some(&HostStatus::Active) {
                self.status.insert(h.clone(), HostStatus::Failed);
            }
        }
        self.report
            .note("any_errors_fatal: a host failed, so the play stops on every host");
    }

    /// Applies a host's task result: register, set_fact, notify, status, report.
    fn apply_result(
        &mut self,
        task: &Task,
        inh: &Inherited,
        host: &str,
        res: host_task::HostResult,
    ) {
        let state = self.hosts.entry(host.to_string()).or_default();
        if self.opts.check {
            state.check.note(
                task,
                &inh.when,
                &task.display_name(),
                res.changed,
                res.unknown,
            );
        }
        if let Some(reg) = &task.register {
            if let Some(r) = &res.registered {
                let v = if inh.no_log {
                    self.report.secrets.mask_value(r)
                } else {
                    r.clone()
                };
                Arc::make_mut(&mut state.set_facts).insert(reg.clone(), v);
            }
        }
        for (k, v) in &res.facts {
            Arc::make_mut(&mut state.set_facts).insert(k.clone(), v.clone());
        }
        if res.changed && !res.failed {
            for n in task.notify.iter().chain(&inh.notify) {
                state.notified.insert(n.clone());
            }
        }
        if res.unreachable && inh.ignore_unreachable {
            // The host stays in the play; its later tasks try to reach it again.
        } else if res.unreachable {
            self.status
                .insert(host.to_string(), HostStatus::Unreachable);
        } else if res.failed && !res.ignored {
            // What a rescue section reads, as in Ansible.
            Arc::make_mut(&mut state.set_facts).insert(
                "ansible_failed_task".into(),
                serde_json::json!({ "name": task.display_name() }),
            );
            if let Some(r) = &res.registered {
                Arc::make_mut(&mut state.set_facts)
                    .insert("ansible_failed_result".into(), r.clone());
            }
            self.status.insert(host.to_string(), HostStatus::Failed);
        }
    }
}

/// What every task of a play needs.
#[derive(Clone)]
struct PlayCtx<'a> {
    play: &'a Play,
    vars: Arc<Map<String, Value>>,
    /// Every host of the play.
    hosts: Vec<String>,
    /// The hosts of the current `serial` batch (all of them without `serial`).
    batch: Vec<String>,
    /// What runs once the current task list ends (for the read-ahead).
    after: Option<&'a prefetch::After<'a>>,
    /// The plays after this one in its playbook (for the read-ahead).
    later: &'a [Play],
}

/// Splits the play's hosts into `serial` batches: a number, a percentage of the play's hosts
/// (rounded down, at least 1), or a list of those, whose last entry repeats.
fn serial_batches(serial: Option<&Value>, hosts: &[String]) -> Result<Vec<Vec<String>>> {
    let Some(serial) = serial else {
        return Ok(vec![hosts.to_vec()]);
    };
    let size = |v: &Value| -> Result<usize> {
        let n =
            match v {
                Value::Number(n) => n.as_f64().unwrap_or(0.0) as usize,
                Value::String(s) if s.trim().ends_with('%') => {
                    let pct: f64 =
                        s.trim().trim_end_matches('%').trim().parse().map_err(|_| {
                            anyhow!("serial: `{s}` is not a number or a percentage")
                        })?;
                    (hosts.len() as f64 * pct / 100.0).floor() as usize
                }
                Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("serial: `{s}` is not a number or a percentage"))?,
                other => bail!("serial: {other} is not a number or a percentage"),
            };
        Ok(n.max(1))
    };
    let sizes: Vec<usize> = match serial {
        Value::Array(items) => items.iter().map(size).collect::<Result<_>>()?,
        one => vec![size(one)?],
    };
    if sizes.is_empty() {
        return Ok(vec![hosts.to_vec()]);
    }
    let mut batches = Vec::new();
    let mut rest = hosts;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i.min(sizes.len() - 1)].min(rest.len());
        batches.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    Ok(batches)
}

/// Ansible's play `order`: inventory (as written), reverse_inventory, sorted, reverse_sorted,
/// shuffle.
fn order_hosts(hosts: &mut [String], order: Option<&str>) {
    match order {
        Some("reverse_inventory") => hosts.reverse(),
        Some("sorted") => hosts.sort(),
        Some("reverse_sorted") => {
            hosts.sort();
            hosts.reverse();
        }
        Some("shuffle") => {
            // Fisher-Yates with the OS's randomness.
            for i in (1..hosts.len()).rev() {
                let mut b = [0u8; 8];
                let _ = getrandom::fill(&mut b);
                let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
                hosts.swap(i, j);
            }
        }
        _ => {}
    }
}
