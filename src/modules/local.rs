//! Modules that run on the control machine: set_fact, assert, fail, debug, ping, pause.

use super::{ModuleCtx, Outcome, Params};
use crate::template::Templates;
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

/// set_fact, assert, fail, debug and pause run on the control machine.
pub async fn run(
    name: &str,
    p: &Params<'_>,
    templates: &Templates,
    vars: &minijinja::Value,
) -> Result<Outcome> {
    match name {
        "set_fact" => {
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
        "assert" => {
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
                if !templates.eval_bool(cond, vars, "assert")? {
                    let msg = p
                        .str("fail_msg")?
                        .or(p.str("msg")?)
                        .unwrap_or_else(|| format!("Assertion failed: {cond}"));
                    return Ok(Outcome::failed(msg).with("assertion", cond.clone()));
                }
            }
            Ok(Outcome::ok().with_msg(
                p.str("success_msg")?
                    .unwrap_or_else(|| "All assertions passed".into()),
            ))
        }
        "fail" => Ok(Outcome::failed(
            p.str("msg")?
                .unwrap_or_else(|| "Failed as requested from task".into()),
        )),
        "debug" => {
            if let Some(var) = p.str("var")? {
                let v = templates.eval(&var, vars, "debug var")?;
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
        "pause" => {
            let secs = p.int("seconds")?.unwrap_or(0) + 60 * p.int("minutes")?.unwrap_or(0);
            if p.get("prompt").is_some() && secs == 0 {
                bail!("pause: interactive prompts are not supported; give seconds or minutes");
            }
            tokio::time::sleep(Duration::from_secs(secs.max(0) as u64)).await;
            Ok(Outcome::ok())
        }
        other => bail!("unknown local module {other}"),
    }
}
