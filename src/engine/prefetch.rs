//! Probes read ahead across tasks: a no-op run costs a few round trips per host, however many
//! tasks it has.
//!
//! Before a task whose module declares a probe (`Spec::probe`), the engine records, for each
//! host, the probes of that task and of the module tasks after it in the same list (each
//! module's declared probe for the task's parameters, nothing run), runs them in one command per
//! (user, environment), and the tasks then take their answers from that batch. A probe the
//! batch does not hold (its parameters came out different when the task really ran, or it
//! was already answered) runs live. As soon as any host may have changed (a change, a
//! failure, a command of `command`/`shell`/`raw` not declared read-only with
//! `check_mode: false`), every batch is dropped: later tasks probe again, so a task never
//! acts on a stale answer.

use super::host_task::item_vars;
use super::vars::Snapshot;
use super::{Engine, Inherited, PlayCtx};
use crate::modules::readahead::{Probe, ReadAhead};
use crate::playbook::{Action, Task};
use crate::transport::{ExecOptions, Stdin};
use anyhow::Result;
use futures::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The most tasks one batch reads ahead for.
const WINDOW: usize = 64;

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

    /// Forgets every batch (a host changed).
    pub(super) fn drop_batches(&self) {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Reads ahead the probes of `tasks` (this task and the module tasks after it) on the
    /// hosts that hold no batch for this task.
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
        let mut window = Vec::new();
        self.window(tasks, inh, &mut window);
        window.retain(|(t, here)| {
            batchable(t)
                && here.delegate_to.is_none()
                && (here.ignore_tags || self.tags_select(&here.tags))
        });
        // A run_once task runs on the first host (as `run_module_task` picks it): read ahead
        // there; the other hosts never run it.
        let once_host = hosts[0].clone();
        let snap = self.snapshot_with(ctx, &inh.role_defaults);
        let forks = self.opts.forks.max(1);
        let built: Vec<(String, ReadAhead, HashSet<String>)> = stream::iter(need)
            .map(|h| {
                let (snap, window, once_host) = (snap.clone(), &window, &once_host);
                async move {
                    // A batch that cannot be made leaves every probe to run live.
                    let (answers, covers) = self
                        .read_host_ahead(&snap, window, &h, h == *once_host)
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

    /// The module tasks from the start of `tasks` on, with what each inherits: the tasks of a
    /// block are in it (its rescue and always are not: they run only after a failure, and a
    /// failure drops the batch), up to the first include or meta (what an include brings is
    /// read when it runs), at most `WINDOW`. False once the window is closed.
    fn window<'t>(
        &self,
        tasks: &'t [Task],
        inh: &Inherited,
        into: &mut Vec<(&'t Task, Inherited)>,
    ) -> bool {
        for t in tasks {
            if into.len() >= WINDOW {
                return false;
            }
            let here = self.inherit(inh, t);
            match &t.action {
                Action::Module { .. } => into.push((t, here)),
                Action::Block { block, .. } => {
                    if !self.window(block, &here, into) {
                        return false;
                    }
                }
                Action::Include { .. } | Action::Meta(_) => return false,
            }
        }
        true
    }

    /// Records the window's probes on one host and runs them: one command per (user,
    /// environment) the probes run as. Also which tasks the batch covers: those whose probes
    /// could all be worked out now. The others (their loop items, condition or parameters
    /// come from an earlier task's result) are not covered: reaching one reads ahead again,
    /// from it on, once what it needs is known.
    async fn read_host_ahead(
        &self,
        snap: &Arc<Snapshot>,
        window: &[(&Task, Inherited)],
        host: &str,
        runs_once_here: bool,
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
        for (task, here) in window {
            let origin = key(task);
            if covered.contains(&origin) {
                continue;
            }
            if here.run_once && !runs_once_here {
                covers.insert(origin);
                continue;
            }
            let vars = snap.vars(host, &here.vars, None);
            let items = match &task.loop_items {
                None => None,
                Some(spec) => match self.loop_items(spec, &vars, &origin) {
                    Ok(items) => Some(items),
                    Err(_) => continue,
                },
            };
            if self
                .record(snap, task, here, host, items.as_deref(), &recorder)
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
    /// holds now. False when one could not be worked out (a variable an earlier task sets):
    /// errors show when the task really runs.
    pub(super) async fn record(
        &self,
        snap: &Arc<Snapshot>,
        task: &Task,
        here: &Inherited,
        host: &str,
        items: Option<&[serde_json::Value]>,
        recorder: &ReadAhead,
    ) -> bool {
        let mut complete = true;
        let origin = key(task);
        let extras: Vec<Option<serde_json::Map<String, serde_json::Value>>> = match items {
            None => vec![None],
            Some(items) => (0..items.len())
                .map(|i| Some(item_vars(task, items, i)))
                .collect(),
        };
        for extra in extras {
            let vars = snap.vars(host, &here.vars, extra.as_ref());
            match self.when_holds(&here.when, &vars, &origin) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    complete = false;
                    continue;
                }
            }
            complete &= self
                .run_once_on_host(snap, task, here, host, extra.as_ref(), Some(recorder))
                .await
                .is_ok();
        }
        complete
    }

    /// Runs the probes a recorder noted on `host`: one command per (user, environment) they
    /// run as. None when there are fewer than two (not worth a batch: they run live).
    pub(super) async fn run_recorded(
        &self,
        host: &str,
        recorder: &ReadAhead,
    ) -> Result<Option<ReadAhead>> {
        let files = recorder.file_probes();
        let distinct = ReadAhead::distinct(recorder.recorded());
        if distinct.len() < 2 && distinct.iter().all(|(_, n)| *n < 2) {
            return Ok(None);
        }
        let mut groups: Vec<(RunsAs, Vec<(Probe, usize)>)> = Vec::new();
        for (p, n) in distinct {
            let k = (p.user.clone(), p.env.clone());
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, list)) => list.push((p, n)),
                None => groups.push((k, vec![(p, n)])),
            }
        }
        let conn = self.connection(host).await?;
        let answers = ReadAhead::empty();
        for ((user, env), probes) in groups {
            let opts = ExecOptions {
                become_user: user,
                env,
                timeout: self.opts.task_timeout,
            };
            let token = ReadAhead::token();
            let batch: Vec<Probe> = probes.iter().map(|(p, _)| p.clone()).collect();
            let out = conn
                .exec(
                    &ReadAhead::batch_script(&batch, &files, &token),
                    Stdin::None,
                    &opts,
                )
                .await?;
            // A batch that failed as a whole answers nothing: its probes run live.
            if out.ok() {
                answers.extend(ReadAhead::serve(probes, &out.stdout, &token));
            }
        }
        Ok(Some(answers))
    }
}

/// A task whose first command the engine may run ahead.
fn batchable(task: &Task) -> bool {
    task.module_name()
        .is_some_and(crate::modules::declares_probe)
}

/// Whom a probe runs as: the user it becomes and its environment.
type RunsAs = (Option<String>, Vec<(String, String)>);

/// Keeps `HashMap` in the signature of `Engine::batches` readable.
pub(super) type Batches = HashMap<String, HostBatch>;
