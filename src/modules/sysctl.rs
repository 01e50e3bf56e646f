//! sysctl: a kernel parameter in a sysctl file and (by default) live.

use super::{ModuleCtx, Outcome, Params};
use crate::transport::quote;
use anyhow::{bail, Result};

pub async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let name = p.req_any(&["name", "key"])?;
    let state = p.str("state")?.unwrap_or_else(|| "present".into());
    let file = p
        .str("sysctl_file")?
        .unwrap_or_else(|| "/etc/sysctl.d/99-pgdeploy.conf".into());
    let set_live = p.flag("sysctl_set", true)? && p.flag("reload", true)?;
    let value = match state.as_str() {
        "present" => Some(p.req_any(&["value", "val"])?),
        "absent" => None,
        other => bail!("sysctl: state `{other}` must be present or absent"),
    };
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let (qf, qp) = (quote(&file), quote(&path));
    let out = ctx
        .sh(&format!(
            "grep -E '^[[:space:]]*{}[[:space:]]*=' {qf} 2>/dev/null | tail -n1 | cut -d= -f2-; echo '--'; cat {qp} 2>/dev/null",
            regex::escape(&name).replace('\'', "")
        ))
        .await?;
    let text = out.stdout_str();
    let (in_file, live) = text.split_once("--\n").unwrap_or((&text, ""));
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (in_file, live) = (norm(in_file), norm(live));
    let mut script = Vec::new();
    match &value {
        Some(v) => {
            let v = norm(v);
            if in_file != v {
                script.push(format!(
                    "touch {qf}; sed -i '/^[[:space:]]*{}[[:space:]]*=/d' {qf}; printf '%s = %s\\n' {} {} >> {qf}",
                    regex::escape(&name).replace('/', "\\/").replace('\'', ""),
                    quote(&name),
                    quote(&v)
                ));
            }
            if set_live && live != v {
                script.push(format!("sysctl -q -w {}={}", quote(&name), quote(&v)));
            }
        }
        None => {
            if !in_file.is_empty() {
                script.push(format!(
                    "sed -i '/^[[:space:]]*{}[[:space:]]*=/d' {qf}",
                    regex::escape(&name).replace('\'', "")
                ));
            }
        }
    }
    let outcome = Outcome {
        changed: !script.is_empty(),
        ..Default::default()
    };
    if script.is_empty() || ctx.check {
        return Ok(outcome);
    }
    let out = ctx.sh(&script.join(" && ")).await?;
    if !out.ok() {
        return Ok(Outcome::failed(format!(
            "sysctl {name}: {}",
            out.stderr_str().trim()
        )));
    }
    Ok(outcome)
}
