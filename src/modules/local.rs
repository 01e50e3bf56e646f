//! Modules that run on the control machine: set_fact, assert, fail, debug, ping, pause.

use super::{args, ModuleCtx, Outcome, Params, Spec};
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Deserialize)]
struct PingArgs {
    data: Option<String>,
}

#[derive(Deserialize)]
struct AssertArgs {
    that: Value,
    #[serde(alias = "msg")]
    fail_msg: Option<String>,
    success_msg: Option<String>,
    #[serde(default)]
    quiet: bool,
}

#[derive(Deserialize)]
struct FailArgs {
    msg: Option<String>,
}

#[derive(Deserialize)]
struct DebugArgs {
    msg: Option<Value>,
    var: Option<String>,
    verbosity: Option<i64>,
}

#[derive(Deserialize)]
struct PauseArgs {
    seconds: Option<i64>,
    minutes: Option<i64>,
    prompt: Option<String>,
}

/// ping checks the connection, so it needs one.
pub async fn ping(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let out = ctx.sh("echo pong").await?;
    if out.stdout_str().trim() != "pong" {
        return Ok(Outcome::failed("ping: the host did not answer pong"));
    }
    let a: PingArgs = p.parse()?;
    Ok(Outcome::ok().with("ping", a.data.unwrap_or_else(|| "pong".into())))
}

pub async fn set_fact(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Outcome> {
    let mut o = Outcome::ok();
    for (k, v) in p.map {
        if k != "cacheable" {
            o.facts.insert(k.clone(), v.clone());
        }
    }
    o.data
        .insert("ansible_facts".into(), Value::Object(o.facts.clone()));
    Ok(o)
}

pub async fn assert(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let a: AssertArgs = p.parse()?;
    let that: Vec<String> = match &a.that {
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Value::Bool(b) => vec![if *b { "True".into() } else { "False".into() }],
        v => vec![v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())],
    };
    for cond in &that {
        if !ctx.templates.eval_bool(cond, ctx.vars, "assert")? {
            let msg = a
                .fail_msg
                .clone()
                .unwrap_or_else(|| format!("Assertion failed: {cond}"));
            return Ok(Outcome::failed(msg).with("assertion", cond.clone()));
        }
    }
    // quiet: no success message.
    if a.quiet {
        return Ok(Outcome::ok());
    }
    Ok(Outcome::ok().with_msg(
        a.success_msg
            .unwrap_or_else(|| "All assertions passed".into()),
    ))
}

pub async fn fail(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Outcome> {
    let a: FailArgs = p.parse()?;
    Ok(Outcome::failed(
        a.msg
            .unwrap_or_else(|| "Failed as requested from task".into()),
    ))
}

pub async fn debug(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    // verbosity N: shown only with -v given N times or more, as in Ansible.
    let a: DebugArgs = p.parse()?;
    let verbosity = a.verbosity.unwrap_or(0);
    if verbosity > i64::from(ctx.verbosity) {
        return Ok(Outcome::skipped(format!(
            "verbosity threshold not met (shown with -{})",
            "v".repeat(verbosity.clamp(1, 6) as usize)
        )));
    }
    if let Some(var) = a.var {
        let v = ctx.templates.eval(&var, ctx.vars, "debug var")?;
        let json = crate::template::to_json(&v).unwrap_or(Value::Null);
        return Ok(Outcome::ok()
            .with_msg(format!("{var}: {json}"))
            .with(&var, json));
    }
    let msg = match a.msg {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => "Hello world!".into(),
    };
    Ok(Outcome::ok().with_msg(msg))
}

pub async fn pause(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Outcome> {
    let a: PauseArgs = p.parse()?;
    let secs = a.seconds.unwrap_or(0) + 60 * a.minutes.unwrap_or(0);
    if a.prompt.is_some() && secs == 0 {
        bail!("pause: interactive prompts are not supported; give seconds or minutes");
    }
    tokio::time::sleep(Duration::from_secs(secs.max(0) as u64)).await;
    Ok(Outcome::ok())
}

/// The `set_fact` module.
pub const SET_FACT: Spec = Spec {
    local: true,
    ..Spec::new("set_fact", |p, ctx| Box::pin(set_fact(p, ctx)))
};

/// The `assert` module.
pub const ASSERT: Spec = Spec {
    params: args::fields::<AssertArgs>,
    local: true,
    ..Spec::new("assert", |p, ctx| Box::pin(assert(p, ctx)))
};

/// The `fail` module.
pub const FAIL: Spec = Spec {
    params: args::fields::<FailArgs>,
    local: true,
    ..Spec::new("fail", |p, ctx| Box::pin(fail(p, ctx)))
};

/// The `debug` module.
pub const DEBUG: Spec = Spec {
    params: args::fields::<DebugArgs>,
    local: true,
    ..Spec::new("debug", |p, ctx| Box::pin(debug(p, ctx)))
};

/// The `ping` module.
pub const PING: Spec = Spec {
    params: args::fields::<PingArgs>,
    ..Spec::new("ping", |p, ctx| Box::pin(ping(p, ctx)))
};

/// The `pause` module.
pub const PAUSE: Spec = Spec {
    params: args::fields::<PauseArgs>,
    refused: &[("echo", "interactive prompts are not supported")],
    local: true,
    ..Spec::new("pause", |p, ctx| Box::pin(pause(p, ctx)))
};
