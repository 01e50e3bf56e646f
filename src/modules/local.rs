//! Modules that run on the control machine: set_fact, assert, fail, debug, ping, pause.

use super::{ModuleCtx, Outcome, Params, Spec};
use anyhow::{bail, Result};
use serde_json::Value;
use std::time::Duration;

/// ping checks the connection, so it needs one.
pub async fn ping(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let out = ctx.sh("echo pong").await?;
    if out.stdout_str().trim() != "pong" {
        return Ok(Outcome::failed("ping: the host did not answer pong"));
    }
    Ok(Outcome::ok().with("ping", p.str("data")?.unwrap_or_else(|| "pong".into())))
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
    let that: Vec<String> = match p.get("that") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Some(Value::Bool(b)) => vec![if *b { "True".into() } else { "False".into() }],
        Some(v) => vec![v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())],
        None => bail!("assert: `that` is required"),
    };
    for cond in &that {
        if !ctx.templates.eval_bool(cond, ctx.vars, "assert")? {
            let msg = p
                .str("fail_msg")?
                .or(p.str("msg")?)
                .unwrap_or_else(|| format!("Assertion failed: {cond}"));
            return Ok(Outcome::failed(msg).with("assertion", cond.clone()));
        }
    }
    // quiet: no success message.
    if p.flag("quiet", false)? {
        return Ok(Outcome::ok());
    }
    Ok(Outcome::ok().with_msg(
        p.str("success_msg")?
            .unwrap_or_else(|| "All assertions passed".into()),
    ))
}

pub async fn fail(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Outcome> {
    Ok(Outcome::failed(
        p.str("msg")?
            .unwrap_or_else(|| "Failed as requested from task".into()),
    ))
}

pub async fn debug(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    // verbosity N: shown only with -v given N times or more, as in Ansible.
    let verbosity = p.int("verbosity")?.unwrap_or(0);
    if verbosity > i64::from(ctx.verbosity) {
        return Ok(Outcome::skipped(format!(
            "verbosity threshold not met (shown with -{})",
            "v".repeat(verbosity.clamp(1, 6) as usize)
        )));
    }
    if let Some(var) = p.str("var")? {
        let v = ctx.templates.eval(&var, ctx.vars, "debug var")?;
        let json = crate::template::to_json(&v).unwrap_or(Value::Null);
        return Ok(Outcome::ok()
            .with_msg(format!("{var}: {json}"))
            .with(&var, json));
    }
    let msg = match p.get("msg") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "Hello world!".into(),
    };
    Ok(Outcome::ok().with_msg(msg))
}

pub async fn pause(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Outcome> {
    let secs = p.int("seconds")?.unwrap_or(0) + 60 * p.int("minutes")?.unwrap_or(0);
    if p.get("prompt").is_some() && secs == 0 {
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
    params: &["that", "fail_msg", "msg", "success_msg", "quiet"],
    local: true,
    ..Spec::new("assert", |p, ctx| Box::pin(assert(p, ctx)))
};

/// The `fail` module.
pub const FAIL: Spec = Spec {
    params: &["msg"],
    local: true,
    ..Spec::new("fail", |p, ctx| Box::pin(fail(p, ctx)))
};

/// The `debug` module.
pub const DEBUG: Spec = Spec {
    params: &["msg", "var", "verbosity"],
    local: true,
    ..Spec::new("debug", |p, ctx| Box::pin(debug(p, ctx)))
};

/// The `ping` module.
pub const PING: Spec = Spec {
    params: &["data"],
    ..Spec::new("ping", |p, ctx| Box::pin(ping(p, ctx)))
};

/// The `pause` module.
pub const PAUSE: Spec = Spec {
    params: &["seconds", "minutes", "prompt"],
    refused: &[("echo", "interactive prompts are not supported")],
    local: true,
    ..Spec::new("pause", |p, ctx| Box::pin(pause(p, ctx)))
};
