//! file: directories, links, empty files, absence, owner and mode.

use super::files::{Attrs, Wanted};
use super::readahead::Fold;
use super::{args, probed, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::quote;
use crate::transport::Output;
use anyhow::{bail, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Args {
    #[serde(alias = "dest", alias = "name")]
    path: String,
    state: Option<String>,
    src: Option<String>,
    #[serde(default)]
    recurse: bool,
    #[serde(default)]
    force: bool,
}

/// One command: the path's kind, link target, owner, group and mode.
fn probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let path = p.parse::<Args>()?.path;
    Ok(Some(ProbeCmd {
        fold: Some(Fold::Path(path.clone())),
        ..ProbeCmd::plain(probe_script(&path))
    }))
}

/// The probe's script (a batch answers it with one `stat` for every path: `Fold::Path`).
pub fn probe_script(path: &str) -> String {
    let q = quote(path);
    format!(
        "if [ -L {q} ]; then echo link; readlink {q}; elif [ -d {q} ]; then echo directory; elif [ -e {q} ]; then echo file; else echo absent; fi; \
         [ -e {q} ] && stat -c '%U %G %a' {q} || echo"
    )
}

/// What makes the path the kind, owner, group and mode wanted.
async fn plan(p: &Params<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: Args = p.parse()?;
    let path = a.path;
    let wanted = Wanted::attrs_only(p.parse::<Attrs>()?);
    let q = quote(&path);
    let out = probed(answer)?;
    let text = out.stdout_str();
    let mut lines = text.lines();
    let kind = lines.next().unwrap_or("absent").to_string();
    let link_target = if kind == "link" {
        lines.next().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    let meta: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let current = super::files::RemoteFile {
        exists: kind != "absent",
        is_dir: kind == "directory",
        owner: meta.first().map(|s| s.to_string()).unwrap_or_default(),
        group: meta.get(1).map(|s| s.to_string()).unwrap_or_default(),
        mode: meta
            .get(2)
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0),
        ..Default::default()
    };
    let state = match a.state {
        Some(s) => s,
        None if a.src.is_some() => "link".into(),
        None if kind == "absent" => "file".into(),
        None => kind.clone(),
    };
    let attrs = attr_script(&wanted, &q, a.recurse && state == "directory");
    let (needed, script) = match state.as_str() {
        "absent" => (kind != "absent", format!("rm -rf {q}")),
        "directory" => {
            if kind != "absent" && kind != "directory" {
                bail!("file: {path} exists and is a {kind}, not a directory");
            }
            (
                kind == "absent" || !wanted.attrs_match(&current),
                format!("mkdir -p {q}; {attrs}"),
            )
        }
        "touch" => (true, format!("touch {q}; {attrs}")),
        "file" => {
            if kind == "absent" {
                return Ok(Plan::done(Outcome::failed(format!(
                    "file {path} is absent; use state=touch to create it"
                ))));
            }
            (!wanted.attrs_match(&current), attrs.clone())
        }
        "link" => {
            let Some(src) = a.src else {
                bail!("file: state=link needs `src` (what the link points to)");
            };
            if kind != "absent" && kind != "link" && !a.force {
                bail!("file: {path} exists and is a {kind}; refusing to replace it with a link without force: yes");
            }
            (
                link_target != src
                    || (kind == "link" && !wanted.attrs_match(&current) && wanted.owner.is_some()),
                format!(
                    "ln -sfn {} {q}; {}",
                    quote(&src),
                    attrs.replace("chown ", "chown -h ").replace("chmod ", ": ")
                ),
            )
        }
        other => bail!(
            "file: state `{other}` is not supported; use directory, file, link, touch or absent"
        ),
    };
    let outcome = Outcome {
        changed: needed,
        changes: crate::report::Changes::files(1),
        ..Default::default()
    }
    .with("path", path.clone())
    .with("state", state.clone());
    if !needed {
        return Ok(Plan::done(outcome));
    }
    Ok(Plan::change(
        outcome,
        Apply::script(format!("set -e; {script}"), format!("file {path}")),
    ))
}

fn attr_script(w: &Wanted, q: &str, recurse: bool) -> String {
    let mut s = w.chown(q, if recurse { "-R " } else { "" });
    if let Some(m) = w.mode {
        s.push_str(&format!("chmod {m:o} {q}; "));
    }
    s
}

/// The `file` module.
pub const FILE: Spec = Spec {
    params: || [args::fields::<Args>(), args::fields::<Attrs>()].concat(),
    refused: &[
        ("follow", "not supported: pgdeploy acts on the path given (links are followed as the command does)"),
        ("access_time", "not supported; use `command: touch -a -d ...`"),
        ("modification_time", "not supported; use `command: touch -m -d ...`"),
    ],
    ..Spec::host_state("file", probe, |p, _, answer| Box::pin(plan(p, answer)))
};
