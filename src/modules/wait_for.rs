//! wait_for: a TCP port (checked through the host's SSH connection, as the host sees it) or a
//! path (checked on the host, in one command).

use super::{args, ModuleCtx, Outcome, Params, Spec};
use crate::transport::quote;
use anyhow::{bail, Result};
use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct Args {
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
    state: Option<String>,
    timeout: Option<i64>,
    delay: Option<i64>,
    sleep: Option<i64>,
    search_regex: Option<String>,
    msg: Option<String>,
}

pub async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let a: Args = p.parse()?;
    let timeout = a.timeout.unwrap_or(300).max(0) as u64;
    let delay = a.delay.unwrap_or(0).max(0) as u64;
    // In a check run whose earlier changes were not made, waiting would only time out.
    let (timeout, delay) = if ctx.no_wait {
        (0, 0)
    } else {
        (timeout, delay)
    };
    let sleep = a.sleep.unwrap_or(1).max(1) as u64;
    let state = a.state.unwrap_or_else(|| "started".into());
    if a.search_regex.is_some() && a.path.is_none() {
        bail!("wait_for: search_regex is supported with path only");
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_secs(delay)).await;
    }
    let start = Instant::now();
    if let Some(port) = a.port {
        let host = a.host.unwrap_or_else(|| "127.0.0.1".into());
        let want_open = match state.as_str() {
            "started" | "present" => true,
            "stopped" | "absent" | "drained" => false,
            other => bail!("wait_for: state `{other}` must be started or stopped for a port"),
        };
        loop {
            if ctx.conn()?.tcp_open(&host, port).await == want_open {
                return Ok(Outcome::ok()
                    .with("port", port)
                    .with("elapsed", start.elapsed().as_secs()));
            }
            if start.elapsed() >= Duration::from_secs(timeout) {
                let msg = a.msg.clone().unwrap_or_else(|| {
                    format!(
                        "port {host}:{port} was not {} {}",
                        if want_open { "open" } else { "closed" },
                        waited(timeout, ctx)
                    )
                });
                return Ok(Outcome::failed(msg).with("elapsed", timeout));
            }
            tokio::time::sleep(Duration::from_secs(sleep)).await;
        }
    }
    let Some(path) = a.path else {
        if timeout > 0 {
            tokio::time::sleep(Duration::from_secs(timeout)).await;
        }
        return Ok(Outcome::ok());
    };
    let q = quote(&path);
    let test = match (state.as_str(), a.search_regex) {
        ("present" | "started", Some(re)) => format!("grep -Eq {} {q} 2>/dev/null", quote(&re)),
        ("present" | "started", None) => format!("[ -e {q} ]"),
        ("absent" | "stopped", _) => format!("[ ! -e {q} ]"),
        (other, _) => bail!("wait_for: state `{other}` must be present or absent for a path"),
    };
    let script = format!(
        "end=$(( $(date +%s) + {timeout} )); until {test}; do [ $(date +%s) -ge $end ] && exit 1; sleep {sleep}; done"
    );
    let out = ctx.sh(&script).await?;
    if !out.ok() {
        let msg = a
            .msg
            .unwrap_or_else(|| format!("{path} was not {state} {}", waited(timeout, ctx)));
        return Ok(Outcome::failed(msg));
    }
    Ok(Outcome::ok()
        .with("path", path)
        .with("elapsed", start.elapsed().as_secs()))
}

fn waited(timeout: u64, ctx: &ModuleCtx<'_>) -> String {
    if ctx.no_wait {
        "(not waited for in check mode)".into()
    } else {
        format!("after {timeout}s")
    }
}

/// The `wait_for` module.
pub const WAIT_FOR: Spec = Spec {
    params: args::fields::<Args>,
    refused: &[
        (
            "connect_timeout",
            "not supported: each attempt is bounded by the task's `timeout`",
        ),
        (
            "active_connection_states",
            "state: drained is not supported",
        ),
        ("exclude_hosts", "state: drained is not supported"),
    ],
    ..Spec::new("wait_for", |p, ctx| Box::pin(run(p, ctx)))
};
