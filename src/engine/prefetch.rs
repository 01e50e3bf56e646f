//! Probes read ahead across tasks: a no-op run costs a few round trips per host, however many
//! tasks it has.
//!
//! Before a task whose module declares a probe (`Spec::probe`), the engine records, for each
//! host, the probes of that task and of the module tasks that run after it — the rest of its
//! list, of the lists around it, of the play, then of the later plays of the playbook, past
//! includes (each module's declared probe for the task's parameters, nothing run; the facts
//! the set_fact tasks on the way set are worked out) — runs them in one command per (user,
//! environment), and the tasks then take their answers from that batch. A probe the batch
//! does not hold (its parameters came out different when the task really ran, or it was
//! already answered) runs live. As soon as any host may have changed (a change, a
//! failure, a command of `command`/`shell`/`raw` not declared read-only with
//! `check_mode: false`), every batch is dropped: later tasks probe again, so a task never
//! acts on a stale answer.

use super::host_task::item_vars;
use super::vars::Snapshot;
use super::{Engine, Inherited, PlayCtx};
use crate::modules::readahead::{Fold, Probe, ReadAhead};
use crate::playbook::{Action, Play, Task};
use crate::transport::{Connection, ExecOptions, Stdin};
use anyhow::Result;
use futures::stream::{self, StreamExt};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The most steps one batch reads ahead for.
pub(super) const WINDOW: usize = 512;

/// After a change the read-ahead starts again from this many steps, doubling with each batch
/// read without a change in between: a run that changes most tasks (a first deploy) does not
/// probe the whole rest of the playbook after each one.
const AFTER_CHANGE: usize = 8;

/// One host's probes read ahead, and the tasks they were recorded for.
pub(super) struct HostBatch {
    answers: Arc<ReadAhead>,
    covers: HashSet<String>,
}

fn key(task: &Task) -> String {
    task.origin.to_string()
}

impl Engine {
    /// The batch holding this task's probes on `host`, if one was read ahead for it.
    pub(super) fn batch_for(&self, host: &str, task: &Task) -> Option<Arc<ReadAhead>> {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let b = batches.get(host)?;
        b.covers.contains(&key(task)).then(|| b.answers.clone())
    }

    /// Forgets every batch (a host changed); the next read-ahead starts small again.
    pub(super) fn drop_batches(&self) {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.window.store(AFTER_CHANGE, Ordering::Relaxed);
        self.settled.store(false, Ordering::Relaxed);
    }

    /// Forgets every batch, the next read-ahead reading as far as it may (a new playbook).
    pub(super) fn reset_read_ahead(&self) {
        self.drop_batches();
        self.window.store(WINDOW, Ordering::Relaxed);
        self.settled.store(true, Ordering::Relaxed);
    }

    /// Reads ahead the probes of `tasks` (this task and the module tasks after it, then what
    /// runs after them: the enclosing lists' rest, the play's later lists, the later plays) on
    /// the hosts that hold no batch for this task.
    pub(super) async fn prefetch(
        &self,
        ctx: &PlayCtx<'_>,
        tasks: &[Task],
        inh: &Inherited,
        hosts: &[String],
    ) -> Result<()> {
        let Some(first) = tasks.first() else {
            return Ok(());
        };
        if !self.started || !batchable(first) {
            return Ok(());
        }
        let need: Vec<String> = hosts
            .iter()
            .filter(|h| self.batch_for(h, first).is_none())
            .cloned()
            .collect();
        if need.is_empty() {
            return Ok(());
        }
        // Where each step runs: this play (its running hosts), then each later play read into.
        let mut scopes = vec![Scope {
            ctx: ctx.clone(),
            hosts: hosts.iter().cloned().collect(),
            // A run_once task runs on the first host (as `run_module_task` picks it).
            once_host: hosts[0].clone(),
        }];
        let limit = self.window.load(Ordering::Relaxed);
        self.window
            .store((limit * 2).min(WINDOW), Ordering::Relaxed);
        let mut steps = Vec::new();
        let mut open = self.window(tasks, inh, 0, limit, &mut steps);
        let mut after = ctx.after;
        while let (true, Some(a)) = (open, after) {
            for list in &a.lists {
                open = open && self.window(list, a.inh, 0, limit, &mut steps);
            }
            after = a.up;
        }
        let bases: Vec<Inherited> = ctx.later.iter().map(Engine::play_base).collect();
        for (play, base) in ctx.later.iter().zip(&bases) {
            if !open {
                break;
            }
            // A play that loads files or runs in batches is left to read ahead when it runs;
            // one with no host here is passed over.
            let scope = match self.later_scope(play, ctx.later) {
                Later::Runs(scope) => scope,
                Later::NoHost => continue,
                Later::Unknown => break,
            };
            scopes.push(scope);
            let k = scopes.len() - 1;
            for list in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
                open = open && self.window(list, base, k, limit, &mut steps);
            }
        }
        steps.retain(|Step { task, here, .. }| {
            (batchable(task) || sets_facts(task))
                && here.delegate_to.is_none()
                && (here.ignore_tags || self.tags_select(&here.tags))
        });
        let forks = self.opts.forks.max(1);
        let built: Vec<(String, ReadAhead, HashSet<String>)> = stream::iter(need)
            .map(|h| {
                let (steps, scopes) = (&steps, &scopes);
                async move {
                    // A batch that cannot be made leaves every probe to run live.
                    let (answers, covers) = self
                        .read_host_ahead(steps, scopes, &h)
                        .await
                        .unwrap_or_else(|_| (ReadAhead::empty(), HashSet::new()));
                    (h, answers, covers)
                }
            })
            .buffer_unordered(forks)
            .collect()
            .await;
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        for (h, answers, covers) in built {
            match batches.get_mut(&h) {
                // Nothing changed since the host's batch was read: its answers left stay good.
                Some(b) => {
                    b.answers.extend(answers);
                    b.covers.extend(covers);
                }
                None => {
                    batches.insert(
                        h,
                        HostBatch {
                            answers: Arc::new(answers),
                            covers,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// A later play as the read-ahead sees it.
    fn later_scope<'a>(&self, play: &'a Play, later: &'a [Play]) -> Later<'a> {
        if !play.vars_files.is_empty() || play.serial.is_some() {
            return Later::Unknown;
        }
        let Ok(hosts) = self.play_hosts(play) else {
            return Later::Unknown;
        };
        let hosts = self.active(&hosts);
        let Some(once_host) = hosts.first().cloned() else {
            return Later::NoHost;
        };
        Later::Runs(Scope {
            ctx: PlayCtx {
                play,
                vars: Arc::new(play.vars.clone()),
                hosts: hosts.clone(),
                batch: hosts.clone(),
                after: None,
                later,
            },
            hosts: hosts.into_iter().collect(),
            once_host,
        })
    }

    /// The module tasks from the start of `tasks` on, with what each inherits: the tasks of a
    /// block are in it (its rescue and always are not: they run only after a failure, and a
    /// failure drops the batch), includes passed over, at most `limit`. False once the
    /// window is closed.
    fn window<'t>(
        &self,
        tasks: &'t [Task],
        inh: &Inherited,
        scope: usize,
        limit: usize,
        into: &mut Vec<Step<'t>>,
    ) -> bool {
        for t in tasks {
            if into.len() >= limit {
                return false;
            }
            let here = self.inherit(inh, t);
            match &t.action {
                Action::Module { .. } => into.push(Step {
                    task: t,
                    here,
                    scope,
                }),
                Action::Block { block, .. } => {
                    if !self.window(block, &here, scope, limit, into) {
                        return false;
                    }
                }
                // What an include brings is read when it runs. The tasks after it are read
                // now: what it runs either changes nothing (their answers stay good) or
                // changes something (every batch is dropped); a variable it sets that a
                // later probe uses makes that probe differ from the one read, so it runs live.
                Action::Include { .. } => {}
                // Handlers run only after a change, which drops the batches anyway.
                Action::Meta(_) => {}
            }
        }
        true
    }

    /// Records the window's probes on one host and runs them: one command per (user,
    /// environment) the probes run as. Also which tasks the batch covers: those whose probes
    /// could all be worked out now. The others (their loop items, condition or parameters
    /// come from an earlier task's result) are not covered: reaching one reads ahead again,
    /// from it on, once what it needs is known. A parameter or condition from an earlier
    /// task's result does not stop a quick probe (`Spec::quick_probe`) that does not need it.
    async fn read_host_ahead(
        &self,
        steps: &[Step<'_>],
        scopes: &[Scope<'_>],
        host: &str,
    ) -> Result<(ReadAhead, HashSet<String>)> {
        let recorder = ReadAhead::recorder();
        let mut covers = HashSet::new();
        let covered = self
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .map(|b| b.covers.clone())
            .unwrap_or_default();
        let mut snaps: HashMap<(usize, Option<PathBuf>), Arc<Snapshot>> = HashMap::new();
        // The facts the set_fact tasks on the way will set, for the probes of the tasks after
        // them (a set_fact this cannot work out leaves those probes to differ and run live).
        let mut facts = Arc::new(Map::new());
        for step in steps {
            let Step { task, here, scope } = step;
            let sc = &scopes[*scope];
            if !sc.hosts.contains(host) {
                continue;
            }
            let snap = snaps
                .entry((*scope, here.role_path.clone()))
                .or_insert_with(|| self.snapshot_with(&sc.ctx, &here.role_defaults))
                .clone();
            let origin = key(task);
            if sets_facts(task) {
                if !here.run_once && task.loop_items.is_none() {
                    self.foresee_facts(&snap, task, here, host, &mut facts);
                }
                continue;
            }
            if covered.contains(&origin) {
                continue;
            }
            if here.run_once && sc.once_host != host {
                covers.insert(origin);
                continue;
            }
            let vars = snap.vars(host, &here.vars, std::slice::from_ref(&facts));
            let items = match &task.loop_items {
                None => None,
                Some(spec) => match self
                    .templates
                    .quietly(|| self.loop_items(spec, &vars, &origin))
                {
                    Ok(items) => Some(items),
                    Err(_) => continue,
                },
            };
            if self
                .record(&snap, task, here, host, items.as_deref(), &facts, &recorder)
                .await
            {
                covers.insert(origin);
            }
        }
        let answers = self
            .run_recorded(host, &recorder)
            .await?
            .unwrap_or_else(ReadAhead::empty);
        Ok((answers, covers))
    }

    /// Notes the probes `task` would make on `host` (each item's, for a loop) whose `when`
    /// holds now, with `facts` the set_facts before it will set. False when one could not be
    /// worked out (a variable an earlier task sets): errors show when the task really runs.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
        items: Option<&[Value]>,
        facts: &Arc<Map<String, Value>>,
        recorder: &ReadAhead,
    ) -> bool {
        let mut complete = true;
        let origin = key(task);
        // The facts foreseen, each item's variables over them.
        let extras: Vec<Vec<Arc<Map<String, Value>>>> = match items {
            None => vec![vec![facts.clone()]],
            Some(items) => (0..items.len())
                .map(|i| vec![facts.clone(), Arc::new(item_vars(task, items, i))])
                .collect(),
        };
        let quick = task.module_name().is_some_and(crate::modules::quick_probe);
        for extra in extras {
            let vars = snap.vars(host, &here.vars, &extra);
            let holds = self
                .templates
                .quietly(|| self.when_holds(&here.when, &vars, &origin));
            match holds {
                Ok(true) => {}
                Ok(false) => continue,
                // A condition on an earlier task's result: a quick probe is read anyway (the
                // task takes its answer if it runs), but no request is made for a task that
                // may not run; any other is left to the task.
                Err(_) if quick => {
                    let probes = ReadAhead::recorder();
                    complete &= self
                        .run_once_on_host(snap, task, here, host, &extra, Some(&probes))
                        .await
                        .is_ok();
                    recorder.absorb_probes(probes);
                    continue;
                }
                Err(_) => {
                    complete = false;
                    continue;
                }
            }
            complete &= self
                .run_once_on_host(snap, task, here, host, &extra, Some(recorder))
                .await
                .is_ok();
        }
        complete
    }

    /// Runs the probes a recorder noted on `host`: one command per (user, environment) they
    /// run as, side by side. None when there are fewer than two (not worth a batch: they run live).
    pub(super) async fn run_recorded(
        &self,
        host: &str,
        recorder: &ReadAhead,
    ) -> Result<Option<ReadAhead>> {
        let folds = recorder.folds();
        let distinct = ReadAhead::distinct(recorder.recorded());
        let exchanges = recorder.take_exchanges();
        if distinct.len() + exchanges.len() < 2 && distinct.iter().all(|(_, n)| *n < 2) {
            return Ok(None);
        }
        // The files the requests need are read by a command of their own, so the requests
        // go out as soon as it answers, beside the rest of the batch.
        let needed: HashSet<&Probe> = exchanges
            .iter()
            .filter_map(|(x, _)| x.needs.as_ref())
            .collect();
        let mut groups: Vec<Group> = Vec::new();
        for (p, n) in distinct {
            let k = (p.user.clone(), p.env.clone());
            let first = needed.contains(&p);
            match groups.iter_mut().find(|(g, f, _)| *g == k && *f == first) {
                Some((_, _, list)) => list.push((p, n)),
                None => groups.push((k, first, vec![(p, n)])),
            }
        }
        let conn = self.connection(host).await?;
        let (first, rest): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(_, f, _)| *f);
        // Each group its own command, all at once (channels of the one connection).
        let run_groups = |groups: Vec<Group>| {
            let (conn, folds) = (&conn, &folds);
            futures::future::join_all(
                groups
                    .into_iter()
                    .map(move |(runs_as, _, probes)| self.run_group(conn, folds, runs_as, probes)),
            )
        };
        let requests = async {
            let needed = ReadAhead::empty();
            for served in run_groups(first).await {
                if let Some(served) = served? {
                    needed.extend(served);
                }
            }
            // Then the requests, side by side, each from the answer it needs.
            let requests = exchanges.into_iter().map(|(x, uses)| {
                let needs = x.needs.as_ref().map(|n| needed.peek(n));
                let conn = conn.clone();
                async move {
                    let response = match needs {
                        // What it needs was not read: the module makes the request in its turn.
                        Some(None) => None,
                        Some(files) => Some((x.run)(conn, files).await),
                        None => Some((x.run)(conn, None).await),
                    };
                    (
                        x.key,
                        uses,
                        response.map(|r| r.map_err(|e| format!("{e:#}"))),
                    )
                }
            });
            for (key, uses, response) in futures::future::join_all(requests).await {
                if let Some(r) = response {
                    needed.keep(key, r, uses);
                }
            }
            Ok::<_, anyhow::Error>(needed)
        };
        let (requested, probed) = tokio::join!(requests, run_groups(rest));
        let answers = requested?;
        for served in probed {
            if let Some(served) = served? {
                answers.extend(served);
            }
        }
        Ok(Some(answers))
    }
}

impl Engine {
    /// Runs one group of probes (one user and environment) as one command.
    async fn run_group(
        &self,
        conn: &Connection,
        folds: &HashMap<String, Fold>,
        (user, env): RunsAs,
        probes: Vec<(Probe, usize)>,
    ) -> Result<Option<ReadAhead>> {
        let opts = ExecOptions {
            become_user: user,
            env,
            timeout: self.opts.task_timeout,
        };
        let token = ReadAhead::token();
        let batch: Vec<Probe> = probes.iter().map(|(p, _)| p.clone()).collect();
        let out = conn
            .exec(
                &ReadAhead::batch_script(&batch, folds, &token),
                Stdin::None,
                &opts,
            )
            .await?;
        // A batch that failed as a whole answers nothing: its probes run live.
        Ok(out.ok().then(|| ReadAhead::serve(probes, &out, &token)))
    }
}

/// A set_fact task: the read-ahead works out what it sets (`Engine::foresee_facts`).
fn sets_facts(task: &Task) -> bool {
    task.module_name()
        .is_some_and(|m| crate::modules::canonical_name(m) == Some("set_fact"))
}

impl Engine {
    /// What a set_fact task will set on `host`, from the variables as the read-ahead sees
    /// them (a set_fact only renders its parameters). One whose condition or values cannot be
    /// worked out now sets nothing here: the probes that use it come out different when their
    /// tasks run, and run live.
    fn foresee_facts(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
        facts: &mut Arc<Map<String, Value>>,
    ) {
        let Action::Module { params, .. } = &task.action else {
            return;
        };
        let origin = key(task);
        let vars = snap.vars(host, &here.vars, std::slice::from_ref(facts));
        let set = self
            .templates
            .quietly(|| match self.when_holds(&here.when, &vars, &origin) {
                Ok(true) => self
                    .templates
                    .render_value(&Value::Object(params.clone()), &vars, &origin)
                    .ok(),
                _ => None,
            });
        if let Some(Value::Object(set)) = set {
            Arc::make_mut(facts).extend(set.into_iter().filter(|(k, _)| k != "cacheable"));
        }
    }
}

/// A task whose first command the engine may run ahead.
fn batchable(task: &Task) -> bool {
    task.module_name()
        .is_some_and(crate::modules::declares_probe)
}

/// One module task of the read-ahead's window, with what it inherits and the scope it runs in.
struct Step<'t> {
    task: &'t Task,
    here: Inherited,
    scope: usize,
}

/// What the read-ahead makes of a later play.
enum Later<'a> {
    Runs(Scope<'a>),
    /// It runs on no host: nothing to read, the plays after it may still be read.
    NoHost,
    /// What it runs cannot be known before it starts (its vars_files, its serial batches, a
    /// hosts pattern that does not resolve): the read-ahead stops before it.
    Unknown,
}

/// A play the read-ahead reads into: its context, its hosts, and the host its run_once tasks
/// run on.
struct Scope<'a> {
    ctx: PlayCtx<'a>,
    hosts: HashSet<String>,
    once_host: String,
}

/// Task lists that run after the current one ends, with what their tasks inherit; `up` is
/// what runs after those.
pub(super) struct After<'a> {
    pub lists: Vec<&'a [Task]>,
    pub inh: &'a Inherited,
    pub up: Option<&'a After<'a>>,
}

/// Whom a probe runs as: the user it becomes and its environment.
type RunsAs = (Option<String>, Vec<(String, String)>);

/// Probes run as one command: whom they run as, whether requests wait for them (the TLS
/// files of `uri`'s requests made ahead), and each with how many tasks take its answer.
type Group = (RunsAs, bool, Vec<(Probe, usize)>);

/// Keeps `HashMap` in the signature of `Engine::batches` readable.
pub(super) type Batches = HashMap<String, HostBatch>;
