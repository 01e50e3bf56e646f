//! One module task on its hosts: loops, conditions, retries, register, and the report.

use super::check_mode;
use super::vars::Snapshot;
use super::{Engine, Inherited, PlayCtx};
use crate::modules::readahead::ReadAhead;
use crate::modules::{self, ModuleCtx, Outcome};
use crate::playbook::{Action, Task};
use crate::report::{Changes, Line, Status};
use crate::template::{TemplateError, OMIT};
use crate::transport::Unreachable;
use anyhow::{anyhow, bail, Result};
use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NO_LOG_MSG: &str = "the output has been hidden due to 'no_log: true'";

/// A task's result on one host, applied to the host's state after the task's barrier.
#[derive(Debug, Default)]
pub(super) struct HostResult {
    pub changed: bool,
    pub failed: bool,
    pub unreachable: bool,
    pub skipped: bool,
    pub ignored: bool,
    /// Check mode could not know the result (see `check_mode`).
    pub unknown: bool,
    pub registered: Option<Value>,
    pub facts: Map<String, Value>,
    msg: Option<String>,
    diffs: Vec<String>,
    trace: Vec<String>,
    items: Vec<(String, Status, Option<String>, Vec<String>)>,
    changes: Changes,
    /// The host may have changed (see `Engine::batches`): probes read ahead are stale.
    pub touched: bool,
    /// How long the task took on the host.
    pub duration: std::time::Duration,
}

impl HostResult {
    fn status(&self) -> Status {
        if self.unreachable && self.ignored {
            Status::Ignored
        } else if self.unreachable {
            Status::Unreachable
        } else if self.failed && self.ignored {
            Status::Ignored
        } else if self.failed {
            Status::Failed
        } else if self.skipped {
            Status::Skipped
        } else if self.changed {
            Status::Changed
        } else {
            Status::Ok
        }
    }
}

impl Engine {
    pub(super) async fn run_module_task(
        &mut self,
        ctx: &PlayCtx<'_>,
        task: &Task,
        here: &Inherited,
        hosts: &[String],
    ) -> Result<bool> {
        let snap = self.snapshot_with(ctx, &here.role_defaults);
        let first_vars = snap.vars(&hosts[0], &here.vars, &[]);
        let title = self
            .templates
            .render_str(&task.display_name(), &first_vars, &task.origin.to_string())
            .unwrap_or_else(|_| task.display_name());
        self.report.task(&title, hosts);
        let run_hosts: Vec<String> = if here.run_once {
            vec![hosts[0].clone()]
        } else {
            hosts.to_vec()
        };
        let forks = match here.throttle {
            Some(t) => self.opts.forks.min(t as usize),
            None => self.opts.forks,
        }
        .max(1);
        let this = &*self;
        let started = std::time::Instant::now();
        let mut results: Vec<(String, HostResult)> = stream::iter(run_hosts)
            .map(|h| {
                let snap = snap.clone();
                async move {
                    let t = std::time::Instant::now();
                    let mut r = this.run_on_host(&snap, task, here, &h).await;
                    r.duration = t.elapsed();
                    (h, r)
                }
            })
            .buffer_unordered(forks)
            .collect()
            .await;
        results.sort_by_key(|(h, _)| hosts.iter().position(|x| x == h));
        // Let go of the hosts' variables before recording the results: while a snapshot
        // shares a host's set_fact map, adding a value to it copies the whole map.
        drop((first_vars, snap));
        self.report
            .task_time(&title, &task.origin.to_string(), started.elapsed());
        if results.iter().any(|(_, r)| r.touched) {
            // A host changed (or may have): every probe read ahead is stale, on every host
            // (a change on one host can reach others: Patroni rewrites its members' files).
            self.drop_batches();
        }
        let mut any_failed = false;
        let origin = task.origin.to_string();
        for (host, res) in results {
            for (label, st, msg, diffs) in &res.items {
                self.report.result(Line {
                    item: Some(label),
                    msg: msg.as_deref(),
                    diffs,
                    origin: Some(&origin),
                    ..Line::new(&host, &title, *st)
                });
            }
            self.report.result(Line {
                msg: res.msg.as_deref(),
                diffs: &res.diffs,
                trace: &res.trace,
                changes: res.changes,
                origin: Some(&origin),
                duration: Some(res.duration),
                ..Line::new(&host, &title, res.status())
            });
            any_failed |= (res.failed || res.unreachable) && !res.ignored;
            if here.run_once {
                // A run_once result (register, set_fact) belongs to every host of the play.
                for other in hosts.iter().filter(|o| **o != host) {
                    let copy = HostResult {
                        registered: res.registered.clone(),
                        facts: res.facts.clone(),
                        changed: res.changed,
                        unknown: res.unknown,
                        ..Default::default()
                    };
                    self.apply_result(task, here, other, copy);
                }
            }
            self.apply_result(task, here, &host, res);
        }
        if any_failed && here.any_errors_fatal && !here.rescuable {
            self.fail_all_active(hosts);
            return Ok(false);
        }
        Ok(true)
    }

    async fn run_on_host(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
    ) -> HostResult {
        match self.try_run_on_host(snap, task, here, host).await {
            Ok(r) => r,
            Err(e) => {
                let unreachable = e.chain().any(|c| c.downcast_ref::<Unreachable>().is_some());
                if let Some(skip) = self.unknown_dependency(task, here, host, &e) {
                    return skip;
                }
                HostResult {
                    failed: !unreachable,
                    unreachable,
                    touched: true,
                    ignored: if unreachable {
                        here.ignore_unreachable
                    } else {
                        here.ignore_errors
                    },
                    msg: Some(if here.no_log {
                        NO_LOG_MSG.into()
                    } else {
                        format!("{e:#}")
                    }),
                    // As Ansible registers it: an unreachable host's result says so, and a
                    // later play can tell it from a failed one.
                    registered: Some(if unreachable {
                        json!({"unreachable": true, "changed": false, "msg": format!("{e:#}")})
                    } else {
                        json!({"failed": true, "changed": false, "msg": format!("{e:#}")})
                    }),
                    ..Default::default()
                }
            }
        }
    }

    async fn try_run_on_host(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
    ) -> Result<HostResult> {
        let origin = task.origin.to_string();
        let vars = snap.vars(host, &here.vars, &[]);
        let Some(items_spec) = &task.loop_items else {
            if !self.when_holds(&here.when, &vars, &origin)? {
                return Ok(skipped());
            }
            let batch = self.batch_for(host, task);
            let one = self
                .run_once_on_host(snap, task, here, host, &[], batch.as_deref())
                .await?;
            return Ok(one);
        };
        let items = self.loop_items(items_spec, &vars, &origin)?;
        let mut ahead = match self.batch_for(host, task) {
            Some(b) => Some(b),
            None => self
                .read_ahead(snap, task, here, host, &items)
                .await?
                .map(Arc::new),
        };
        let mut total = HostResult::default();
        let mut results = Vec::new();
        let mut all_skipped = true;
        for (i, item) in items.iter().enumerate() {
            if let Some(pause) = task.loop_pause.filter(|_| i > 0) {
                tokio::time::sleep(Duration::from_secs_f64(pause)).await;
            }
            let extra = [Arc::new(item_vars(task, &items, i))];
            let item_vars = snap.vars(host, &here.vars, &extra);
            let label = match &task.label {
                Some(l) => self.templates.render_str(l, &item_vars, &origin)?,
                None => match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            };
            let label = if here.no_log {
                "(censored due to no_log)".into()
            } else {
                label
            };
            if !self.when_holds(&here.when, &item_vars, &origin)? {
                total.items.push((label, Status::Skipped, None, vec![]));
                results.push(json!({"skipped": true, "changed": false, "item": item, task.loop_var.clone(): item}));
                continue;
            }
            all_skipped = false;
            let r = self
                .run_once_on_host(snap, task, here, host, &extra, ahead.as_deref())
                .await?;
            if r.changed || r.failed {
                // What this item did may change what later items' probes would read.
                ahead = None;
            }
            total.changed |= r.changed;
            total.touched |= r.touched;
            total.failed |= r.failed;
            total.unknown |= r.unknown;
            total.changes.add(r.changes);
            total.unreachable |= r.unreachable;
            total.facts.extend(r.facts.clone());
            total.trace.extend(r.trace.clone());
            let mut reg = r.registered.clone().unwrap_or(json!({}));
            if let Value::Object(m) = &mut reg {
                m.insert("item".into(), item.clone());
                m.insert(
                    "ansible_loop_var".into(),
                    Value::String(task.loop_var.clone()),
                );
                m.insert(task.loop_var.clone(), item.clone());
            }
            results.push(reg);
            let st = r.status();
            total.items.push((
                label,
                st,
                r.msg.clone().filter(|_| {
                    r.failed || st == Status::Ok && task.module_name() == Some("debug")
                }),
                r.diffs.clone(),
            ));
            if r.unreachable {
                break;
            }
        }
        total.skipped = all_skipped;
        total.ignored = here.ignore_errors && total.failed;
        if total.failed {
            total.msg = Some("one or more items failed".into());
        }
        total.registered = Some(json!({
            "results": results, "changed": total.changed, "failed": total.failed, "skipped": all_skipped,
            "msg": if total.failed { "One or more items failed" } else { "All items completed" },
        }));
        Ok(total)
    }

    /// The probes of every item of a looped task, run in one command on the host (see
    /// `modules::readahead`). None when the module or the task does not allow it.
    async fn read_ahead(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
        items: &[Value],
    ) -> Result<Option<ReadAhead>> {
        let eligible = items.len() > 1
            && here.delegate_to.is_none()
            && task.module_name().is_some_and(modules::declares_probe);
        if !eligible {
            return Ok(None);
        }
        let recorder = ReadAhead::recorder();
        self.record(
            snap,
            task,
            here,
            host,
            Some(items),
            &Arc::new(Map::new()),
            &recorder,
        )
        .await;
        self.run_recorded(host, &recorder).await
    }

    /// Turns `loop:` / `with_*:` into the list of items.
    pub(super) fn loop_items(
        &self,
        spec: &Value,
        vars: &minijinja::Value,
        origin: &str,
    ) -> Result<Vec<Value>> {
        let (kind, raw) = match spec {
            Value::Object(m) if m.contains_key("__with") => (
                m["__with"].as_str().unwrap_or(""),
                m.get("v").cloned().unwrap_or(Value::Null),
            ),
            other => ("loop", other.clone()),
        };
        let v = self.templates.render_value(&raw, vars, origin)?;
        Ok(match (kind, v) {
            ("dict", Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect(),
            ("indexed", Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| json!([i, v]))
                .collect(),
            ("items", Value::Array(a)) => a
                .into_iter()
                .flat_map(|v| match v {
                    Value::Array(inner) => inner,
                    other => vec![other],
                })
                .collect(),
            ("nested", Value::Array(lists)) => {
                // Counted before it is built: a few long lists multiply past any memory.
                let total = lists.iter().try_fold(1u128, |n, l| {
                    n.checked_mul(l.as_array().map_or(0, |a| a.len()) as u128)
                });
                if total.is_none_or(|n| n > MAX_LOOP_ITEMS as u128) {
                    bail!("{origin}: with_nested makes more than {MAX_LOOP_ITEMS} items");
                }
                let mut acc: Vec<Vec<Value>> = vec![vec![]];
                for l in lists {
                    let l = l.as_array().cloned().unwrap_or_default();
                    acc = acc
                        .into_iter()
                        .flat_map(|p| {
                            l.iter().map(move |x| {
                                let mut q = p.clone();
                                q.push(x.clone());
                                q
                            })
                        })
                        .collect();
                }
                acc.into_iter().map(Value::Array).collect()
            }
            ("sequence", v) => sequence(&v)?,
            (_, Value::Array(a)) => a,
            (_, Value::Null) => vec![],
            (_, other) => bail!("{origin}: loop needs a list, got {other}"),
        })
    }

    /// Runs the module once (one item) with retries, changed_when and failed_when.
    pub(super) async fn run_once_on_host(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
        extra: &[Arc<Map<String, Value>>],
        ahead: Option<&ReadAhead>,
    ) -> Result<HostResult> {
        let Action::Module { name, params } = &task.action else {
            bail!("not a module task");
        };
        let origin = task.origin.to_string();
        let vars = snap.vars(host, &here.vars, extra);
        // module_defaults first, the task's own parameters over them.
        let mut given = match here.module_defaults.get(name) {
            Some(Value::Object(d)) => d.clone(),
            _ => Map::new(),
        };
        given.extend(params.clone());
        let given_count = given.len();
        let recording = matches!(ahead, Some(ReadAhead::Record(..)));
        let lenient = recording && modules::quick_probe(name);
        let mut rendered = if lenient {
            // Read ahead, a parameter of a quick probe's module that cannot be worked out yet
            // (from an earlier task's result) is left out: a probe that does not use it is the
            // task's own; one that does comes out different from the task's, which then
            // probes live. (Another module's probe, psql's say, could connect elsewhere.)
            self.templates.quietly(|| {
                given
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let v = self.templates.render_value(&v, &vars, &origin).ok()?;
                        Some((k, v))
                    })
                    .collect()
            })
        } else if recording {
            // Read ahead, a parameter not known yet leaves the task to probe live.
            match self.templates.quietly(|| {
                self.templates
                    .render_value(&Value::Object(given), &vars, &origin)
            })? {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        } else {
            match self
                .templates
                .render_value(&Value::Object(given), &vars, &origin)?
            {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        };
        // Every parameter worked out (read ahead, one may be left out: see above).
        let whole = rendered.len() == given_count;
        rendered.retain(|_, v| v.as_str() != Some(OMIT));
        if here.no_log {
            self.report
                .secrets
                .add_value(&Value::Object(rendered.clone()));
        }
        let become_user = if here.become_.unwrap_or(false) {
            Some(match &here.become_user {
                Some(u) => self.templates.render_str(u, &vars, &origin)?,
                None => "root".to_string(),
            })
        } else {
            None
        };
        let env = match &here.environment {
            Some(e) => match self.templates.render_value(e, &vars, &origin)? {
                Value::Object(m) => m
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect(),
                Value::Null => vec![],
                _ => bail!("{origin}: `environment` must be a mapping"),
            },
            None => vec![],
        };
        for (k, _) in &env {
            if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("{origin}: environment variable name `{k}` is not valid");
            }
        }
        let conn_host = match &here.delegate_to {
            Some(d) => self.templates.render_str(d, &vars, &origin)?,
            None => host.to_string(),
        };
        let local = modules::is_local(name);
        let conn = if local {
            None
        } else {
            Some(self.connection(&conn_host).await?)
        };
        let facts = self
            .hosts
            .get(host)
            .and_then(|s| s.facts.clone())
            .unwrap_or_default();
        let facts = &*facts;
        let check =
            (self.opts.check || here.check_mode == Some(true)) && here.check_mode != Some(false);
        // A check run with changes pending here: a failure may only mean "not made yet".
        let pending = self.opts.check && !local && self.check_pending(&[host, &conn_host]);
        let trace = Mutex::new(Vec::new());
        // `-e` gives strings: "2" counts as 2.
        let number = |v: serde_json::Value| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok());
        let retries = match &task.retries {
            Some(v) => number(self.templates.render_value(v, &vars, &origin)?).unwrap_or(3),
            None if task.until.is_some() => 3,
            None => 0,
        };
        let delay = match &task.delay {
            Some(v) => number(self.templates.render_value(v, &vars, &origin)?).unwrap_or(5),
            None => 5,
        };
        let mut attempt = 0;
        let mut touched = false;
        let outcome = loop {
            attempt += 1;
            // set_fact, debug, assert, fail, pause and tls_certificate have no connection.
            let mctx = ModuleCtx {
                host,
                conn: conn.as_deref(),
                verbosity: self.report.verbose(),
                become_user: become_user.clone(),
                env: env.clone(),
                timeout: here
                    .timeout
                    .map(Duration::from_secs)
                    .or(self.opts.task_timeout),
                check,
                diff: here.diff.unwrap_or(self.opts.diff),
                force_run: here.check_mode == Some(false),
                vouched_read_only: vouched_read_only(task, here),
                settled: self.settled.load(std::sync::atomic::Ordering::Relaxed),
                templates: &self.templates,
                vars: &vars,
                dir: &snap_dir(task),
                role_path: here.role_path.as_deref(),
                trace: &trace,
                facts,
                readahead: ahead,
                no_wait: pending,
                live: Default::default(),
            };
            if let Some(recorder @ ReadAhead::Record(..)) = ahead {
                // Recording: the module's declared probe is noted; nothing runs.
                let noted = modules::record_probe(name, &rendered, whole, &mctx, recorder)?;
                // No probe for what is left of the parameters: the task's own may need one.
                if !noted && !whole {
                    bail!("{origin}: a parameter cannot be worked out yet");
                }
                return Ok(HostResult::default());
            }
            let outcome = modules::run(name, &rendered, &mctx).await;
            // What may have changed the host since the probes were read ahead: any command of
            // a module that runs arbitrary ones, unless the task declares it read-only
            // (`check_mode: false`: it runs in check mode too), an error part-way, and (below,
            // once changed_when has spoken) a change or a failure.
            let ran_live = mctx.live.load(std::sync::atomic::Ordering::Relaxed) > 0;
            let read_only = here.check_mode == Some(false);
            let arbitrary = matches!(name.as_str(), "command" | "shell" | "raw");
            touched |= arbitrary && ran_live && !read_only || outcome.is_err() && !check;
            let mut template_error = false;
            let mut outcome = match outcome {
                Ok(o) => {
                    for s in &o.secrets {
                        self.report.secrets.add_lines(s);
                    }
                    // set_fact of a secret-named variable: its value is a secret too.
                    for (k, v) in &o.facts {
                        if crate::vars::is_secret_name(k) {
                            self.report.secrets.add_value(v);
                        }
                    }
                    o
                }
                Err(e) if e.chain().any(|c| c.downcast_ref::<Unreachable>().is_some()) => {
                    return Err(e)
                }
                Err(e) => {
                    template_error = is_template_error(&e);
                    if template_error && self.reads_unknown(task, here, host).is_some() {
                        return Err(e);
                    }
                    Outcome::failed(format!("{e:#}"))
                }
            };
            // changed_when / failed_when / until see the result under its register name.
            let mut reg_extra = extra.to_vec();
            if let Some(r) = &task.register {
                let mut reg = Map::new();
                reg.insert(r.clone(), Value::Object(outcome.to_result()));
                reg_extra.push(Arc::new(reg));
            }
            let rvars = snap.vars(host, &here.vars, &reg_extra);
            if outcome.skipped || outcome.unknown {
                // Not run (check mode): there is nothing for changed_when and the rest to read.
                break outcome;
            }
            if let Some(conds) = &task.changed_when {
                outcome.changed = self.when_holds(conds, &rvars, &origin)? && !conds.is_empty();
            }
            if let Some(conds) = &task.failed_when {
                let failed = !conds.is_empty() && self.when_holds(conds, &rvars, &origin)?;
                if !failed {
                    outcome.failed = false;
                } else if !outcome.failed {
                    outcome.failed = true;
                    outcome
                        .msg
                        .get_or_insert_with(|| format!("failed_when: {}", conds.join(" and ")));
                }
            }
            touched |= !check && (outcome.changed || outcome.failed && !read_only);
            let done = match &task.until {
                Some(conds) => self.when_holds(conds, &rvars, &origin)?,
                None => !outcome.failed,
            };
            if pending && !done && !template_error {
                // Not retried: what it waits for or needs is what this run has not made.
                let answer = outcome.msg.take().unwrap_or_else(|| match &task.until {
                    Some(c) => format!("until: {} does not hold yet", c.join(" and ")),
                    None => "failed".into(),
                });
                outcome.failed = false;
                outcome.changed = true;
                outcome.unknown = true;
                // What it answered is not what it would answer after the run: no data.
                outcome.data.clear();
                outcome.msg = Some(check_mode::not_checked(&answer));
                break outcome;
            }
            if done || attempt > retries {
                if task.until.is_some() && !done {
                    outcome.failed = true;
                    outcome.msg = Some(format!(
                        "gave up after {attempt} attempts: {}",
                        outcome.msg.clone().unwrap_or_default()
                    ));
                }
                outcome.data.insert("attempts".into(), json!(attempt));
                break outcome;
            }
            tokio::time::sleep(Duration::from_secs(delay)).await;
        };
        // A task that had to wait (retried until, waited for a port or a path, paused) waited
        // for the host to change by itself: what was read ahead before it may be stale.
        let waited = attempt > 1
            || name == "pause"
            || name == "wait_for" && outcome.data.get("elapsed").and_then(Value::as_u64) > Some(0);
        touched |= waited;
        let show_msg = outcome.failed
            || name == "debug"
            || self.report.verbose() > 0
            || outcome.skipped
            || outcome.unknown;
        let changed = outcome.changed && !outcome.failed;
        let changes = match outcome.changes {
            _ if !changed => Changes::default(),
            c if c.is_empty() => Changes { other: 1, ..c },
            c => c,
        };
        let mut res = HostResult {
            changed,
            changes,
            // A command check mode did not run: its result is not known either.
            unknown: outcome.unknown || outcome.skipped && check,
            failed: outcome.failed,
            skipped: outcome.skipped,
            ignored: outcome.failed && here.ignore_errors,
            facts: outcome.facts.clone(),
            registered: Some(Value::Object(outcome.to_result())),
            msg: if show_msg { outcome.msg.clone() } else { None },
            diffs: outcome.diffs.iter().map(|d| d.unified()).collect(),
            trace: trace.into_inner().unwrap_or_default(),
            touched,
            ..Default::default()
        };
        if here.no_log {
            res.msg = res.msg.map(|_| NO_LOG_MSG.into());
            res.diffs.clear();
            res.trace.clear();
            if let Some(Value::Object(m)) = &mut res.registered {
                m.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "changed" | "failed" | "skipped" | "rc" | "attempts"
                    )
                });
                m.insert("censored".into(), Value::String(NO_LOG_MSG.into()));
            }
        }
        Ok(res)
    }
}

impl Engine {
    /// In a check run, whether a task would have changed one of `hosts`.
    fn check_pending(&self, hosts: &[&str]) -> bool {
        hosts
            .iter()
            .any(|h| self.hosts.get(*h).is_some_and(|s| s.check.pending))
    }

    /// The unknown result `task` reads on `host`, with the task that left it unknown.
    pub(super) fn reads_unknown(
        &self,
        task: &Task,
        here: &Inherited,
        host: &str,
    ) -> Option<(String, String)> {
        if !self.opts.check {
            return None;
        }
        let state = self.hosts.get(host)?;
        let (name, from) = state.check.dependency(task, &here.when)?;
        Some((name.to_string(), from.to_string()))
    }

    /// A task whose expressions fail on a result check mode could not know is skipped with
    /// the reason (and what it would set is unknown too), instead of failing.
    fn unknown_dependency(
        &self,
        task: &Task,
        here: &Inherited,
        host: &str,
        err: &anyhow::Error,
    ) -> Option<HostResult> {
        if !is_template_error(err) {
            return None;
        }
        let (name, from) = self.reads_unknown(task, here, host)?;
        let msg = check_mode::skipped_unknown(&name, &from);
        Some(HostResult {
            skipped: true,
            unknown: true,
            registered: Some(json!({"skipped": true, "changed": false, "skip_reason": msg})),
            msg: Some(msg),
            ..Default::default()
        })
    }
}

pub(super) fn is_template_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<TemplateError>().is_some())
}

fn skipped() -> HostResult {
    HostResult {
        skipped: true,
        registered: Some(
            json!({"skipped": true, "changed": false, "skip_reason": "Conditional result was False"}),
        ),
        ..Default::default()
    }
}

fn snap_dir(task: &Task) -> std::path::PathBuf {
    std::path::PathBuf::from(&*task.origin.file)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// The most items a generated loop (with_sequence, with_nested) may have.
const MAX_LOOP_ITEMS: usize = 100_000;

/// `with_sequence: start=1 end=5 format=node%02d` (or `count=`).
fn sequence(v: &Value) -> Result<Vec<Value>> {
    let text = v
        .as_str()
        .ok_or_else(|| anyhow!("with_sequence needs `start=.. end=..`"))?;
    let args = crate::vars::parse_module_args(text)?;
    let num = |k: &str| {
        args.get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<i64>().ok())
    };
    let start = num("start").unwrap_or(1);
    let end = match (num("end"), num("count")) {
        (Some(e), _) => e,
        (None, Some(c)) => start
            .checked_add(c)
            .and_then(|e| e.checked_sub(1))
            .ok_or_else(|| anyhow!("with_sequence: start + count is out of range"))?,
        _ => bail!("with_sequence needs end= or count="),
    };
    let stride = num("stride").unwrap_or(1).max(1) as usize;
    let format = args
        .get("format")
        .and_then(|v| v.as_str())
        .unwrap_or("%d")
        .to_string();
    // In i128: `end - start` at the i64 limits does not overflow.
    if end as i128 - start as i128 >= MAX_LOOP_ITEMS as i128 {
        bail!("with_sequence: too many items (at most {MAX_LOOP_ITEMS})");
    }
    if let Some(w) = regex::Regex::new(r"%0?(\d+)")
        .expect("valid regex")
        .captures(&format)
        .and_then(|c| c[1].parse::<u64>().ok())
    {
        if w > 64 {
            bail!("with_sequence: format width {w} is more than 64");
        }
    }
    Ok((start..=end)
        .step_by(stride)
        .map(|i| Value::String(printf_int(&format, i)))
        .collect())
}

/// `%d`, `%02d`, `%x` with one integer (what with_sequence formats need).
fn printf_int(format: &str, i: i64) -> String {
    let re = regex::Regex::new(r"%(0?)(\d*)([dxo])").expect("valid regex");
    re.replace(format, |c: &regex::Captures| {
        let width: usize = c[2].parse::<usize>().unwrap_or(0).min(64);
        let s = match &c[3] {
            "x" => format!("{i:x}"),
            "o" => format!("{i:o}"),
            _ => i.to_string(),
        };
        if &c[1] == "0" {
            format!("{s:0>width$}")
        } else {
            format!("{s:>width$}")
        }
    })
    .into_owned()
}

/// The variables a loop gives its item `i`: the loop variable, `ansible_loop` and the index.
pub(super) fn item_vars(task: &Task, items: &[Value], i: usize) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(task.loop_var.clone(), items[i].clone());
    extra.insert(
        "ansible_loop_var".into(),
        Value::String(task.loop_var.clone()),
    );
    if let Some(iv) = &task.index_var {
        extra.insert(iv.clone(), json!(i));
    }
    let n = items.len();
    let mut ansible_loop = json!({
        "index": i + 1, "index0": i, "revindex": n - i, "revindex0": n - i - 1,
        "first": i == 0, "last": i + 1 == n, "length": n,
        "previtem": i.checked_sub(1).map(|p| &items[p]), "nextitem": items.get(i + 1),
    });
    if task.loop_allitems {
        ansible_loop["allitems"] = Value::Array(items.to_vec());
    }
    extra.insert("ansible_loop".into(), ansible_loop);
    extra
}

/// A command of pgdeploy's own playbooks that says it only reads (`check_mode: false`, so it
/// runs in check mode too, and `changed_when: false`): pgdeploy vouches for these, so their
/// commands may run ahead of their turn. A user's playbook gets no such trust: nothing can
/// tell a command that reads from one that writes.
fn vouched_read_only(task: &Task, here: &Inherited) -> bool {
    here.check_mode == Some(false)
        && task.origin.file.starts_with(crate::builtin::BUILTIN_ROOT)
        && matches!(task.changed_when.as_deref(), Some([c]) if c.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_at_the_limits_are_errors_not_panics() {
        for bad in [
            format!("start={} end={}", i64::MIN, i64::MAX),
            format!("start={} count=2", i64::MAX),
            format!("start={} count={}", i64::MIN, i64::MIN),
            "start=1 end=3 format=%0999999999d".to_string(),
        ] {
            assert!(sequence(&json!(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            sequence(&json!(format!("start={} end={}", i64::MAX - 1, i64::MAX))).unwrap(),
            vec![
                json!((i64::MAX - 1).to_string()),
                json!(i64::MAX.to_string())
            ]
        );
    }

    /// Only pgdeploy's own read-only checks run ahead: not a user's, not one that may change.
    #[test]
    fn only_pgdeploy_s_own_read_only_checks_are_vouched_for() {
        let task = |file: &str, changed_when: Option<&str>| Task {
            changed_when: changed_when.map(|c| vec![c.to_string()]),
            ..Task::block(
                "t".into(),
                crate::playbook::Origin {
                    file: file.into(),
                    line: 1,
                },
                Action::Meta("noop".into()),
            )
        };
        let read_only = Inherited {
            check_mode: Some(false),
            ..Default::default()
        };
        let ours = "pgdeploy:playbooks/roles/etcd/main.yml";
        assert!(vouched_read_only(&task(ours, Some("False")), &read_only));
        assert!(!vouched_read_only(
            &task("/home/dba/playbooks/site.yml", Some("False")),
            &read_only
        ));
        assert!(!vouched_read_only(&task(ours, Some("rc == 2")), &read_only));
        assert!(!vouched_read_only(&task(ours, None), &read_only));
        assert!(!vouched_read_only(
            &task(ours, Some("False")),
            &Inherited::default()
        ));
    }

    #[test]
    fn sequences() {
        assert_eq!(
            sequence(&json!("start=1 end=3 format=node%02d")).unwrap(),
            vec![json!("node01"), json!("node02"), json!("node03")]
        );
        assert_eq!(
            sequence(&json!("count=2")).unwrap(),
            vec![json!("1"), json!("2")]
        );
    }
}
