//! user and group.

use super::{args, probed, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::quote;
use crate::transport::Output;
use anyhow::{bail, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct UserArgs {
    name: String,
    uid: Option<String>,
    group: Option<String>,
    /// Given (even empty) or not: an empty list removes every supplementary group.
    groups: Option<Vec<String>>,
    #[serde(default)]
    append: bool,
    shell: Option<String>,
    home: Option<String>,
    #[serde(default)]
    system: bool,
    state: Option<String>,
    #[serde(alias = "createhome")]
    create_home: Option<bool>,
    comment: Option<String>,
    #[serde(default)]
    remove: bool,
}

#[derive(Deserialize)]
struct GroupArgs {
    name: String,
    gid: Option<String>,
    state: Option<String>,
    #[serde(default)]
    system: bool,
}

/// One command: the passwd entry, the groups, the primary group.
fn user_probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let q = quote(&p.parse::<UserArgs>()?.name);
    Ok(ProbeCmd::script(format!("getent passwd {q} || true; echo '--'; id -Gn {q} 2>/dev/null || true; echo '--'; id -gn {q} 2>/dev/null || true")))
}

/// The group entry.
fn group_probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let q = quote(&p.parse::<GroupArgs>()?.name);
    Ok(ProbeCmd::script(format!("getent group {q} || true")))
}

/// useradd, usermod or userdel where the account differs.
async fn user_plan(p: &Params<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: UserArgs = p.parse()?;
    let name = a.name;
    let q = quote(&name);
    let state = a.state.unwrap_or_else(|| "present".into());
    let out = probed(answer)?;
    let text = out.stdout_str();
    let parts: Vec<&str> = text.split("--\n").collect();
    let entry = parts.first().copied().unwrap_or_default().trim();
    let groups: Vec<&str> = parts
        .get(1)
        .copied()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let primary = parts.get(2).copied().unwrap_or_default().trim();
    let exists = !entry.is_empty();
    let fields: Vec<&str> = entry.split(':').collect();
    let mut script = None;
    match state.as_str() {
        "absent" => {
            if exists {
                script = Some(format!("userdel {}{q}", if a.remove { "-r " } else { "" }));
            }
        }
        "present" => {
            let mut opts = Vec::new();
            let want_groups = a.groups.clone().unwrap_or_default();
            let append = a.append;
            if let Some(uid) = a.uid {
                if fields.get(2) != Some(&uid.as_str()) {
                    opts.push(format!("-u {}", quote(&uid)));
                }
            }
            if let Some(g) = a.group {
                if primary != g {
                    opts.push(format!("-g {}", quote(&g)));
                }
            }
            if let Some(sh) = a.shell {
                if fields.get(6) != Some(&sh.as_str()) {
                    opts.push(format!("-s {}", quote(&sh)));
                }
            }
            if let Some(home) = a.home {
                if fields.get(5) != Some(&home.as_str()) {
                    opts.push(format!("-d {}", quote(&home)));
                }
            }
            if let Some(c) = a.comment {
                if fields.get(4) != Some(&c.as_str()) {
                    opts.push(format!("-c {}", quote(&c)));
                }
            }
            let missing: Vec<&String> = want_groups
                .iter()
                .filter(|g| !groups.contains(&g.as_str()))
                .collect();
            let extra = !append
                && groups
                    .iter()
                    .any(|g| *g != primary && !want_groups.iter().any(|w| w == g));
            if a.groups.is_some() && (!missing.is_empty() || (extra && exists)) {
                opts.push(format!(
                    "-G {}{}",
                    quote(&want_groups.join(",")),
                    if append { " -a" } else { "" }
                ));
            }
            if !exists {
                let mut create = opts
                    .iter()
                    .map(|o| o.replace(" -a", ""))
                    .collect::<Vec<_>>();
                if a.system {
                    create.push("-r".into());
                }
                if a.create_home.unwrap_or(true) {
                    create.push("-m".into());
                }
                script = Some(format!("useradd {} {q}", create.join(" ")));
            } else if !opts.is_empty() {
                script = Some(format!("usermod {} {q}", opts.join(" ")));
            }
        }
        other => bail!("user: state `{other}` must be present or absent"),
    }
    Ok(plan_of(script, &name))
}

/// groupadd, groupmod or groupdel where the group differs.
async fn group_plan(p: &Params<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: GroupArgs = p.parse()?;
    let name = a.name;
    let q = quote(&name);
    let state = a.state.unwrap_or_else(|| "present".into());
    let out = probed(answer)?;
    let entry = out.stdout_str();
    let gid = entry.trim().split(':').nth(2).map(str::to_string);
    let script = match (state.as_str(), &gid) {
        ("absent", Some(_)) => Some(format!("groupdel {q}")),
        ("absent", None) => None,
        ("present", None) => {
            let mut o = String::new();
            if let Some(g) = &a.gid {
                o.push_str(&format!("-g {} ", quote(g)));
            }
            if a.system {
                o.push_str("-r ");
            }
            Some(format!("groupadd {o}{q}"))
        }
        ("present", Some(cur)) => match &a.gid {
            Some(g) if g != cur => Some(format!("groupmod -g {} {q}", quote(g))),
            _ => None,
        },
        (other, _) => bail!("group: state `{other}` must be present or absent"),
    };
    Ok(plan_of(script, &name))
}

fn plan_of(script: Option<String>, name: &str) -> Plan {
    match script {
        None => Plan::done(Outcome::ok().with("name", name)),
        Some(script) => {
            let failure = script.clone();
            Plan::change(
                Outcome::changed().with("name", name),
                Apply::script(script, failure),
            )
        }
    }
}

/// The `user` module.
pub const USER: Spec = Spec {
    params: args::fields::<UserArgs>,
    refused: &[
        (
            "move_home",
            "not supported; move the directory with `command:`",
        ),
        ("force", "not supported"),
        (
            "generate_ssh_key",
            "not supported; make keys with `command: ssh-keygen ...` and `creates:`",
        ),
        (
            "ssh_key_bits",
            "not supported; make keys with `command: ssh-keygen ...` and `creates:`",
        ),
        (
            "ssh_key_type",
            "not supported; make keys with `command: ssh-keygen ...` and `creates:`",
        ),
        (
            "ssh_key_file",
            "not supported; make keys with `command: ssh-keygen ...` and `creates:`",
        ),
        (
            "password",
            "a crypt hash is not supported; manage logins with SSH keys",
        ),
        (
            "update_password",
            "not supported: pgdeploy sets no local passwords",
        ),
        ("expires", "not supported; use `command: chage -E ...`"),
        ("non_unique", "not supported: ids are unique"),
    ],
    ..Spec::host_state("user", user_probe, |p, _, answer| {
        Box::pin(user_plan(p, answer))
    })
};

/// The `group` module.
pub const GROUP: Spec = Spec {
    params: args::fields::<GroupArgs>,
    refused: &[("non_unique", "not supported: ids are unique")],
    ..Spec::host_state("group", group_probe, |p, _, answer| {
        Box::pin(group_plan(p, answer))
    })
};
