//! systemd / service: started, stopped, restarted, reloaded; enabled; daemon-reload.

use super::{args, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::quote;
use crate::transport::Output;
use anyhow::{bail, Result};
use serde::Deserialize;

/// systemd's parameters (service takes four of them).
#[derive(Deserialize)]
struct Args {
    #[serde(alias = "service", alias = "unit")]
    name: Option<String>,
    state: Option<String>,
    enabled: Option<bool>,
    masked: Option<bool>,
    #[serde(default, alias = "daemon-reload")]
    daemon_reload: bool,
    #[serde(default, alias = "daemon-reexec")]
    daemon_reexec: bool,
    scope: Option<String>,
    #[serde(default)]
    no_block: bool,
}

/// The unit's state, in one command.
/// The unit's state (a batch asks for every unit's in one call: `Fold::Unit`).
pub fn show(name: &str) -> String {
    format!("{SHOW} {}", quote(name))
}

/// What the probe asks systemd.
pub const SHOW: &str = "systemctl show -p ActiveState -p UnitFileState -p LoadState";

/// The unit's state; none to run ahead when a daemon-reload (which writes) comes first.
fn probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    let reloads = (a.daemon_reload || a.daemon_reexec) && !ctx.check;
    Ok(match a.name {
        Some(name) if !reloads => Some(ProbeCmd {
            fold: Some(super::readahead::Fold::Unit(name.clone())),
            ..ProbeCmd::plain(show(&name))
        }),
        _ => None,
    })
}

/// The systemctl steps that bring the unit to the state wanted. A daemon-reload (or reexec)
/// comes first when asked for: it writes, so it is no probe; it runs here, before the unit's
/// state is read (never in check mode), and like Ansible it is not a change by itself.
async fn plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let Args {
        name,
        state,
        enabled,
        masked,
        daemon_reload,
        daemon_reexec,
        scope,
        no_block,
    } = p.parse()?;
    match scope.as_deref() {
        None | Some("system") => {}
        Some(other) => bail!(
            "{}: scope `{other}` is not supported: pgdeploy manages system units (scope: system)",
            p.module
        ),
    }
    // no_block: start/stop/restart/reload return without waiting for the job.
    let nb = if no_block { "--no-block " } else { "" };
    if name.is_none() && !daemon_reload && !daemon_reexec {
        bail!("{}: `name` is required", p.module);
    }
    let mut steps: Vec<String> = Vec::new();
    // daemon-reload makes systemd read unit files; like Ansible, it is not a change by itself.
    // It runs with the probe, so the probe sees the new unit files.
    let reload = match (daemon_reexec && !ctx.check, daemon_reload && !ctx.check) {
        (true, true) => "systemctl daemon-reexec && systemctl daemon-reload && ",
        (true, false) => "systemctl daemon-reexec && ",
        (false, true) => "systemctl daemon-reload && ",
        (false, false) => "",
    };
    let mut outcome = Outcome::ok();
    let Some(name) = &name else {
        if !reload.is_empty() {
            let script = reload.trim_end_matches(" && ");
            ctx.sh_ok(script, script).await?;
        }
        return Ok(Plan::done(outcome));
    };
    {
        let q = quote(name);
        let out = match answer {
            Some(out) => out,
            None => ctx.sh(&format!("{reload}{}", show(name))).await?,
        };
        let text = out.stdout_str();
        let prop = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
                .to_string()
        };
        let (active, file_state, load) = (
            prop("ActiveState"),
            prop("UnitFileState"),
            prop("LoadState"),
        );
        if load == "not-found" && state.as_deref() != Some("stopped") && enabled != Some(false) {
            return Ok(Plan::done(
                Outcome::failed(format!(
                    "unit {name} not found on the host (is its package installed?)"
                ))
                .counting(crate::report::Changes::services(1)),
            ));
        }
        let running = matches!(active.as_str(), "active" | "activating" | "reloading");
        if let Some(m) = masked {
            if m != (file_state == "masked") {
                steps.push(format!(
                    "systemctl {} {q}",
                    if m { "mask" } else { "unmask" }
                ));
            }
        }
        if let Some(e) = enabled {
            let is_enabled = matches!(
                file_state.as_str(),
                "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated"
            );
            if e != is_enabled && !(file_state == "static" || file_state == "generated") {
                steps.push(format!(
                    "systemctl {} {q}",
                    if e { "enable" } else { "disable" }
                ));
            }
        }
        match state.as_deref() {
            None => {}
            Some("started") if !running => steps.push(format!("systemctl {nb}start {q}")),
            Some("stopped") if running => steps.push(format!("systemctl {nb}stop {q}")),
            Some("restarted") => steps.push(format!("systemctl {nb}restart {q}")),
            Some("reloaded") => steps.push(format!(
                "if systemctl is-active --quiet {q}; then systemctl {nb}reload {q}; else systemctl {nb}start {q}; fi"
            )),
            Some("started") | Some("stopped") => {}
            Some(other) => bail!("{}: state `{other}` must be started, stopped, restarted or reloaded", p.module),
        }
        outcome = outcome
            .with("name", name.clone())
            .with("state", if running { "started" } else { "stopped" });
    }
    outcome.changed = !steps.is_empty();
    outcome.changes = crate::report::Changes::services(1);
    if steps.is_empty() {
        return Ok(Plan::done(outcome));
    }
    let script = steps.join(" && ");
    Ok(Plan::change(
        outcome,
        Apply {
            explain: Some((
                format!("journal of {name} (last lines)"),
                format!("journalctl -u {} -n 20 --no-pager 2>/dev/null", quote(name)),
            )),
            ..Apply::script(script.clone(), format!("{script} failed"))
        },
    ))
}

/// The `systemd` module.
pub const SYSTEMD: Spec = Spec {
    aliases: &["systemd_service"],
    params: args::fields::<Args>,
    refused: &[(
        "force",
        "not supported; remove the stale unit link with `file: state=absent`",
    )],
    ..Spec::host_state("systemd", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};

/// The `service` module.
pub const SERVICE: Spec = Spec {
    params: || vec!["name", "state", "enabled", "daemon_reload"],
    refused: &[
        ("sleep", "not supported; systemd restarts in one step"),
        ("pattern", "pgdeploy manages systemd units only"),
        ("runlevel", "pgdeploy manages systemd units only"),
        ("arguments", "pgdeploy manages systemd units only"),
        ("args", "pgdeploy manages systemd units only"),
        ("use", "pgdeploy manages systemd units only"),
    ],
    ..Spec::host_state("service", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};
