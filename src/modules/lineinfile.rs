//! lineinfile: make sure one line is (or is not) in a file. The new content is computed here
//! and written like any file, so check mode and diffs are exact.

use super::files::{file_probe, hash_hex, parse_probe, plan_write, NewContent, Wanted};
use super::{args, probed, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::quote;
use crate::transport::Output;
use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde::Deserialize;

/// lineinfile's own parameters (beside the file's `Attrs` and `Writing`).
#[derive(Deserialize)]
struct Args {
    #[serde(alias = "dest", alias = "name")]
    path: String,
    #[serde(alias = "value")]
    line: Option<String>,
    #[serde(alias = "regex")]
    regexp: Option<String>,
    search_string: Option<String>,
    state: Option<String>,
    insertafter: Option<String>,
    insertbefore: Option<String>,
    #[serde(default)]
    create: bool,
    #[serde(default)]
    backrefs: bool,
    #[serde(default)]
    firstmatch: bool,
}

/// The file with its content (the new content is computed from it).
fn probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    Ok(file_probe(&p.parse::<Args>()?.path, true))
}

/// The new content computed from the old, written like any file where it differs.
async fn plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: Args = p.parse()?;
    let path = a.path.clone();
    let state = a.state.clone().unwrap_or_else(|| "present".into());
    let regexp = match &a.regexp {
        Some(r) => {
            Some(regex::Regex::new(r).map_err(|e| anyhow!("lineinfile: bad regexp `{r}`: {e}"))?)
        }
        None => None,
    };
    let search = a.search_string.clone();
    let create = a.create;
    // The probe: attributes and (up to the diff limit) the content.
    let current = parse_probe(&probed(answer)?, &path)?;
    let old = if current.exists {
        match &current.content {
            Some(c) => c.clone(),
            None => {
                // Larger than the diff limit: read it whole.
                let out = ctx.sh(&format!("base64 -w0 < {}", quote(&path))).await?;
                if !out.ok() {
                    bail!(
                        "lineinfile: cannot read {path}: {}",
                        out.stderr_str().trim()
                    );
                }
                base64::engine::general_purpose::STANDARD.decode(out.stdout_str().trim())?
            }
        }
    } else if state == "present" && !create {
        return Ok(Plan::done(Outcome::failed(format!(
            "{path} does not exist; set create: yes to create it"
        ))));
    } else if state == "absent" {
        return Ok(Plan::done(Outcome::ok()));
    } else {
        Vec::new()
    };
    let old_text = String::from_utf8_lossy(&old).into_owned();
    let mut lines: Vec<String> = old_text.lines().map(str::to_string).collect();
    let matches = |l: &str| -> bool {
        if let Some(re) = &regexp {
            return re.is_match(l);
        }
        if let Some(s) = &search {
            return l.contains(s.as_str());
        }
        false
    };
    match state.as_str() {
        "absent" => {
            let line = a.line.clone();
            lines.retain(|l| !(matches(l) || line.as_deref() == Some(l.as_str())));
        }
        "present" => {
            let line = a
                .line
                .clone()
                .ok_or_else(|| anyhow!("lineinfile: `line` is required with state=present"))?;
            let backrefs = a.backrefs;
            let last = lines.iter().rposition(|l| matches(l));
            if let Some(i) = last {
                let new = match (&regexp, backrefs) {
                    (Some(re), true) => re
                        .replace(
                            &lines[i],
                            line.replace('$', "$$").replace("\\", "$").as_str(),
                        )
                        .into_owned(),
                    _ => line.clone(),
                };
                lines[i] = new;
            } else if backrefs {
                // With backrefs, no match means no change (as Ansible).
            } else if !lines.contains(&line) {
                let pos = insert_position(&a, &lines)?;
                lines.insert(pos, line);
            }
        }
        other => bail!("lineinfile: state `{other}` must be present or absent"),
    }
    let mut new_text = lines.join("\n");
    if !lines.is_empty() {
        new_text.push('\n');
    }
    let bytes = new_text.into_bytes();
    let wanted = Wanted::writing(p)?;
    let hash = hash_hex(&bytes);
    if bytes == old && current.exists && wanted.attrs_match(&current) {
        return Ok(Plan::done(Outcome::ok()));
    }
    Ok(plan_write(
        ctx,
        &current,
        &path,
        NewContent::bytes(&bytes, &hash),
        &wanted,
    ))
}

fn insert_position(a: &Args, lines: &[String]) -> Result<usize> {
    if let Some(before) = &a.insertbefore {
        if before == "BOF" {
            return Ok(0);
        }
        let re =
            regex::Regex::new(before).map_err(|e| anyhow!("lineinfile: bad insertbefore: {e}"))?;
        return Ok(matching(a, lines, &re).unwrap_or(lines.len()));
    }
    if let Some(after) = &a.insertafter {
        if after == "EOF" {
            return Ok(lines.len());
        }
        let re =
            regex::Regex::new(after).map_err(|e| anyhow!("lineinfile: bad insertafter: {e}"))?;
        return Ok(matching(a, lines, &re)
            .map(|i| i + 1)
            .unwrap_or(lines.len()));
    }
    Ok(lines.len())
}

/// The line insertbefore/insertafter matches: the last one, or the first with `firstmatch`.
fn matching(a: &Args, lines: &[String], re: &regex::Regex) -> Option<usize> {
    if a.firstmatch {
        lines.iter().position(|l| re.is_match(l))
    } else {
        lines.iter().rposition(|l| re.is_match(l))
    }
}

/// The `lineinfile` module.
pub const LINEINFILE: Spec = Spec {
    params: || [args::fields::<Args>(), Wanted::writing_fields()].concat(),
    refused: &[(
        "unsafe_writes",
        "pgdeploy always writes atomically (a temporary file renamed over the old one)",
    )],
    ..Spec::host_state("lineinfile", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};
