//! command, shell and raw.
//!
//! `command` runs a program with its arguments (no shell features), `shell` runs a script with
//! /bin/sh. `creates`/`removes` are checked in the same round trip as the command itself.

use super::{args, ModuleCtx, Outcome, Params, ProbeCmd, Spec};
use crate::transport::{quote, quote_join, split_words, Stdin};
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::Value;

/// shell's parameters (command's, without `argv`; raw's are two of them).
#[derive(Deserialize)]
struct Args {
    #[serde(rename = "_raw_params")]
    raw: Option<String>,
    cmd: Option<String>,
    chdir: Option<String>,
    creates: Option<String>,
    removes: Option<String>,
    stdin: Option<String>,
    stdin_add_newline: Option<bool>,
    strip_empty_ends: Option<bool>,
    executable: Option<String>,
}

/// command's own: the program and its arguments as a list.
#[derive(Deserialize)]
struct Argv {
    argv: Option<Vec<String>>,
}

/// Marker printed when `creates`/`removes` decide that the command need not run.
const SKIP_MARK: &str = "__pgdeploy_skip__";

/// What runs before the command: `creates`/`removes` (which end the script when they say it
/// already ran) and `chdir`.
fn guard(a: &Args) -> String {
    let mut guard = String::new();
    if let Some(c) = &a.creates {
        guard.push_str(&format!(
            "if [ -e {} ]; then echo {SKIP_MARK}; exit 0; fi; ",
            quote(c)
        ));
    }
    if let Some(r) = &a.removes {
        guard.push_str(&format!(
            "if [ ! -e {} ]; then echo {SKIP_MARK}; exit 0; fi; ",
            quote(r)
        ));
    }
    if let Some(dir) = &a.chdir {
        guard.push_str(&format!("cd {} || exit 1; ", quote(dir)));
    }
    guard
}

/// The `creates`/`removes` guards alone (they only read); none without them. A read-only
/// check pgdeploy vouches for (`ModuleCtx::vouched_read_only`) is its own probe: the whole
/// command, read ahead.
fn probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    let guard = guard(&a);
    if ctx.vouched_read_only && ctx.settled && a.stdin.is_none() {
        return Ok(Some(vouched(format!("{guard}{}", script(p, &a)?))));
    }
    Ok(if guard.contains(SKIP_MARK) {
        ProbeCmd::script(format!("{guard}echo run"))
    } else {
        None
    })
}

/// A vouched-for check as its own probe: its answer is taken even when it failed (its failure
/// is the check's result; running it again in its turn would only wait for it twice).
fn vouched(script: String) -> ProbeCmd {
    ProbeCmd {
        keeps_failure: true,
        ..ProbeCmd::plain(script)
    }
}

/// What runs: the program and its arguments (command), or the script (shell, raw).
fn script(p: &Params<'_>, a: &Args) -> Result<String> {
    let name = p.module;
    let argv = match name {
        "command" => p.parse::<Argv>()?.argv,
        _ => None,
    };
    Ok(match (name, a.raw.clone().or(a.cmd.clone()), argv) {
        ("command", None, Some(words)) => format!("exec {}", quote_join(&words)),
        ("command", Some(cmd), _) => {
            let words = split_words(&cmd, false).map_err(|e| anyhow::anyhow!("command: {e}"))?;
            if words.is_empty() {
                bail!("command: nothing to run");
            }
            format!("exec {}", quote_join(&words))
        }
        (_, Some(cmd), _) => match &a.executable {
            Some(exe) => format!("exec {} -c {}", quote(exe), quote(&cmd)),
            None => cmd,
        },
        _ => bail!("{name}: give the command (free form, `cmd:` or `argv:`)"),
    })
}

pub async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let a: Args = p.parse()?;
    let script = script(p, &a)?;
    let guard = guard(&a);
    // The guards' answer, when they were read ahead (never the command itself).
    let guard_probe = format!("{guard}echo run");
    if guard.contains(SKIP_MARK) && ctx.has_answer(&guard_probe) {
        let out = ctx.sh(&guard_probe).await?;
        if out.stdout_str().contains(SKIP_MARK) {
            return Ok(Outcome::ok()
                .with_msg("skipped: creates/removes says it already ran")
                .with("rc", 0)
                .with("stdout", "")
                .with("stdout_lines", Value::Array(vec![])));
        }
    }
    if ctx.check && !ctx.force_run {
        if guard.contains(SKIP_MARK) {
            // Probe only the guards: they say whether the command would run.
            let out = ctx.sh(&guard_probe).await?;
            if out.stdout_str().contains(SKIP_MARK) {
                return Ok(Outcome::ok().with_msg("skipped: creates/removes says it already ran"));
            }
            return Ok(Outcome::changed().with_msg("would run in a real run"));
        }
        return Ok(Outcome::skipped("not run in check mode (a command cannot be probed; add creates:, or check_mode: false if it only reads)"));
    }
    let stdin = match a.stdin {
        Some(mut s) => {
            if a.stdin_add_newline.unwrap_or(true) {
                s.push('\n');
            }
            Stdin::Bytes(s.into_bytes())
        }
        None => Stdin::None,
    };
    let full = format!("{guard}{script}");
    let early = match &stdin {
        Stdin::None if ctx.vouched_read_only => ctx.answer_ahead(vouched(full.clone())),
        _ => None,
    };
    let out = match early {
        Some(out) => out,
        None => ctx.sh_in(&full, stdin).await?,
    };
    let stdout = out.stdout_str();
    if !guard.is_empty() && out.ok() && stdout.trim() == SKIP_MARK {
        return Ok(Outcome::ok()
            .with_msg("skipped: creates/removes says it already ran")
            .with("rc", 0)
            .with("stdout", "")
            .with("stdout_lines", Value::Array(vec![])));
    }
    // strip_empty_ends (default yes): no trailing empty lines, as Ansible returns them.
    let strip_ends = a.strip_empty_ends.unwrap_or(true);
    let strip = |s: String| {
        if strip_ends {
            s.trim_end_matches(['\n', '\r']).to_string()
        } else {
            s
        }
    };
    let (stdout, stderr) = (strip(stdout), strip(out.stderr_str()));
    let mut outcome = if out.ok() {
        Outcome::changed()
    } else {
        // What it said last (stderr, else stdout), as Ansible shows a failed command's output.
        let said = if stderr.trim().is_empty() {
            &stdout
        } else {
            &stderr
        };
        let tail: Vec<&str> = said.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        if tail.is_empty() {
            Outcome::failed(format!("non-zero return code {}", out.code))
        } else {
            Outcome::failed(format!(
                "non-zero return code {}:\n{}",
                out.code,
                tail.join("\n")
            ))
        }
    };
    let lines = |s: &str| Value::Array(s.lines().map(|l| Value::String(l.to_string())).collect());
    outcome = outcome
        .with("rc", out.code)
        .with("stdout_lines", lines(&stdout))
        .with("stderr_lines", lines(&stderr))
        .with("stdout", stdout)
        .with("stderr", stderr)
        .with("cmd", script);
    Ok(outcome)
}

/// The `command` module.
pub const COMMAND: Spec = Spec {
    params: || [args::fields::<Args>(), args::fields::<Argv>()].concat(),
    refused: &[
        ("warn", "removed from Ansible in 2.14; delete it"),
        (
            "expand_argument_vars",
            "arguments are passed as written; use `shell:` to expand $VARIABLES",
        ),
    ],
    free_form: true,
    probe: Some(probe),
    ..Spec::new("command", |p, ctx| Box::pin(run(p, ctx)))
};

/// The `shell` module.
pub const SHELL: Spec = Spec {
    params: args::fields::<Args>,
    refused: &[("warn", "removed from Ansible in 2.14; delete it")],
    free_form: true,
    probe: Some(probe),
    ..Spec::new("shell", |p, ctx| Box::pin(run(p, ctx)))
};

/// The `raw` module.
pub const RAW: Spec = Spec {
    params: || vec!["_raw_params", "executable"],
    free_form: true,
    ..Spec::new("raw", |p, ctx| Box::pin(run(p, ctx)))
};
