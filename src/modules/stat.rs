//! stat: facts about a path, for `register` and `when`.

use super::{args, probed, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::quote;
use crate::transport::Output;
use anyhow::Result;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Args {
    #[serde(alias = "dest", alias = "name")]
    path: String,
    get_checksum: Option<bool>,
    #[serde(alias = "checksum", alias = "checksum_algo")]
    checksum_algorithm: Option<String>,
    #[serde(default)]
    follow: bool,
}

/// One command: the path's kind, owners, mode, size, time, link target and checksum.
fn probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    let q = quote(&a.path);
    let follow = if a.follow { "-L " } else { "" };
    let algorithm = a.checksum_algorithm.unwrap_or_else(|| "sha1".into());
    if !matches!(
        algorithm.as_str(),
        "md5" | "sha1" | "sha224" | "sha256" | "sha384" | "sha512"
    ) {
        anyhow::bail!(
            "stat: checksum_algorithm `{algorithm}` must be md5, sha1, sha224, sha256, sha384 or sha512"
        );
    }
    let checksum = if a.get_checksum.unwrap_or(true) {
        format!("[ -f {q} ] && [ -r {q} ] && {algorithm}sum < {q} | {{ read -r h _; echo \"$h\"; }} || echo")
    } else {
        "echo".into()
    };
    Ok(ProbeCmd::script(format!(
        "if [ -e {q} ] || [ -L {q} ]; then stat {follow}-c '%F|%U|%G|%u|%g|%a|%s|%Y|%N' {q}; {checksum}; else echo ABSENT; fi"
    )))
}

/// Only reads: the plan is the answer, in Ansible's `stat` shape.
async fn plan(p: &Params<'_>, answer: Option<Output>) -> Result<Plan> {
    let path = p.parse::<Args>()?.path;
    let out = probed(answer)?;
    let text = out.stdout_str();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("ABSENT");
    if first == "ABSENT" || !out.ok() {
        return Ok(Plan::done(
            Outcome::ok().with("stat", json!({"exists": false})),
        ));
    }
    let f: Vec<&str> = first.splitn(9, '|').collect();
    let kind = f.first().copied().unwrap_or_default();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let mut stat = json!({
        "exists": true,
        "path": path,
        "isdir": kind == "directory",
        "isreg": kind.starts_with("regular"),
        "islnk": kind == "symbolic link",
        "pw_name": f.get(1).copied().unwrap_or_default(),
        "gr_name": f.get(2).copied().unwrap_or_default(),
        "uid": num(3),
        "gid": num(4),
        "mode": format!("{:0>4}", f.get(5).copied().unwrap_or_default()),
        "size": num(6),
        "mtime": num(7),
    });
    if let Some(sum) = lines.next().map(str::trim).filter(|s| !s.is_empty()) {
        stat["checksum"] = Value::String(sum.to_string());
    }
    if kind == "symbolic link" {
        let target = f
            .get(8)
            .and_then(|n| n.split(" -> ").nth(1))
            .unwrap_or_default();
        stat["lnk_source"] =
            Value::String(target.trim_matches(|c| c == '\'' || c == '"').to_string());
    }
    Ok(Plan::done(Outcome::ok().with("stat", stat)))
}

/// The `stat` module.
pub const STAT: Spec = Spec {
    params: args::fields::<Args>,
    refused: &[
        ("get_mime", "not supported"),
        ("get_attributes", "not supported"),
    ],
    ..Spec::planned("stat", probe, |p, _, answer| Box::pin(plan(p, answer)))
};
