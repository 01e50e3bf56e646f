//! apt / dnf / package: packages present, absent or latest.
//!
//! The per-distribution commands are data ([`MANAGERS`]), so another family is a table entry.

use super::{args, probed, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::Output;
use crate::transport::{quote, quote_join};
use anyhow::{bail, Result};
use serde::Deserialize;

/// How one package manager is driven.
struct Manager {
    /// `ansible_os_family` values it serves.
    families: &'static [&'static str],
    module: &'static str,
    /// Prints `NAME installed` for each installed package of the list (`{names}` substituted).
    query: &'static str,
    /// Prints the names that have a newer candidate.
    outdated: &'static str,
    install: &'static str,
    remove: &'static str,
    purge: &'static str,
    update: &'static str,
    /// Path whose modification time says when the cache was last updated.
    cache_stamp: &'static str,
    no_recommends: &'static str,
}

const MANAGERS: &[Manager] = &[
    Manager {
        families: &["Debian"],
        module: "apt",
        query: "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' {names} 2>/dev/null | awk '$2 ~ /^ii/ {print $1\" installed\"}'",
        outdated: "for p in {names}; do i=$(dpkg-query -W -f='${Version}' \"$p\" 2>/dev/null); c=$(apt-cache policy \"$p\" | awk '/Candidate:/ {print $2}'); [ -n \"$i\" ] && [ \"$c\" != \"(none)\" ] && [ \"$i\" != \"$c\" ] && echo \"$p\"; done; true",
        install: "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {opts} {names}",
        remove: "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=600 {names}",
        purge: "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o DPkg::Lock::Timeout=600 {names}",
        update: "apt-get update -q -o DPkg::Lock::Timeout=600",
        cache_stamp: "/var/lib/apt/lists",
        no_recommends: "--no-install-recommends",
    },
    Manager {
        families: &["RedHat"],
        module: "dnf",
        query: "rpm -q --qf '%{NAME} installed\\n' {names} 2>/dev/null | grep ' installed$'",
        outdated: "dnf -q check-update {names} 2>/dev/null | awk 'NF==3 {split($1,a,\".\"); print a[1]}'; true",
        install: "dnf install -y -q {opts} {names}",
        remove: "dnf remove -y -q {names}",
        purge: "dnf remove -y -q {names}",
        update: "dnf makecache -q",
        cache_stamp: "/var/cache/dnf",
        no_recommends: "--setopt=install_weak_deps=False",
    },
];

fn manager_for(module: &str, family: &str) -> Result<&'static Manager> {
    let by_family = MANAGERS.iter().find(|m| m.families.contains(&family));
    let found = match module {
        "package" => by_family,
        m => MANAGERS.iter().find(|x| x.module == m),
    };
    found.ok_or_else(|| {
        anyhow::anyhow!("{module}: no package manager known for OS family `{family}`")
    })
}

/// The package name without a version pin (`postgresql-15=15.4-1` is `postgresql-15`).
fn base_name(spec: &str) -> &str {
    spec.split(['=', '>', '<']).next().unwrap_or(spec).trim()
}

/// apt's parameters (package and dnf take some of them).
#[derive(Deserialize)]
struct Args {
    #[serde(default, alias = "pkg", alias = "package")]
    name: Vec<String>,
    state: Option<String>,
    update_cache: Option<bool>,
    cache_valid_time: Option<i64>,
    install_recommends: Option<bool>,
    default_release: Option<String>,
    purge: Option<bool>,
}

/// The host's package manager (by its OS family).
fn host_manager(module: &str, ctx: &ModuleCtx<'_>) -> Result<&'static Manager> {
    let family = ctx
        .facts
        .get("ansible_os_family")
        .and_then(|v| v.as_str())
        .unwrap_or("Debian");
    manager_for(module, family)
}

/// How old the package cache is, in seconds.
fn cache_age(m: &Manager) -> String {
    format!(
        "echo $(( $(date +%s) - $(stat -c %Y {} 2>/dev/null || echo 0) ))",
        m.cache_stamp
    )
}

/// Which of the packages are installed: one command for every package of the task.
fn query(m: &Manager, bases: &[String]) -> String {
    m.query.replace("{names}", &quote_join(bases))
}

fn bases(names: &[String]) -> Vec<String> {
    names.iter().map(|n| base_name(n).to_string()).collect()
}

/// The cache's age when it is to be updated if older than cache_valid_time, else the
/// packages' state; none when the cache is updated whatever its age (that writes).
fn probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    let m = host_manager(p.module, ctx)?;
    Ok(
        match (a.update_cache.unwrap_or(false), a.cache_valid_time) {
            (true, Some(valid)) if valid > 0 => ProbeCmd::script(cache_age(m)),
            (true, _) => None,
            (false, _) if a.name.is_empty() => None,
            (false, _) => ProbeCmd::script(query(m, &bases(&a.name))),
        },
    )
}

/// The cache update (when asked for and older than cache_valid_time), then the packages to
/// install or remove. With `state: latest` the update runs while planning (never in check
/// mode): which packages are outdated is known only after it.
async fn plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let module = p.module;
    let a: Args = p.parse()?;
    let m = host_manager(module, ctx)?;
    let names = a.name;
    let state = a.state.unwrap_or_else(|| "present".into());
    let update_cache = a.update_cache.unwrap_or(false);
    let mut answer = answer;
    let update = update_cache
        && match a.cache_valid_time.unwrap_or(0) {
            valid if valid > 0 => {
                let age = probed(answer.take())?;
                age.stdout_str().trim().parse::<i64>().unwrap_or(i64::MAX) > valid
            }
            _ => true,
        };
    let mut steps: Vec<String> = Vec::new();
    if update {
        if state == "latest" && !ctx.check {
            ctx.sh_ok(m.update, "updating the package cache").await?;
        } else {
            steps.push(m.update.to_string());
        }
    }
    let changed = update;
    if names.is_empty() {
        return Ok(plan_of(steps, changed, 0, module));
    }
    // A name apt-get would read as an option (`-oAPT::Update::Pre-Invoke::=...` runs a
    // command as root) is refused.
    if let Some(n) = names.iter().find(|n| n.trim_start().starts_with('-')) {
        bail!("{module}: package name `{n}` begins with `-`: apt-get would read it as an option");
    }
    let bases = bases(&names);
    let quoted = quote_join(&bases);
    let out = match answer {
        Some(out) if !update_cache => out,
        _ => ctx.sh(&query(m, &bases)).await?,
    };
    let installed: Vec<String> = out
        .stdout_str()
        .lines()
        .filter_map(|l| l.strip_suffix(" installed").map(str::to_string))
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !installed.iter().any(|i| i == base_name(n)))
        .collect();
    let mut opts = String::new();
    if a.install_recommends == Some(false) {
        opts.push_str(m.no_recommends);
    }
    if let Some(rel) = a.default_release {
        opts.push_str(&format!(" -t {}", quote(&rel)));
    }
    let script = match state.as_str() {
        "present" | "installed" => (!missing.is_empty()).then(|| {
            (
                missing.len(),
                m.install
                    .replace("{opts}", &opts)
                    .replace("{names}", &quote_join(&missing)),
            )
        }),
        "latest" => {
            let out = ctx.sh(&m.outdated.replace("{names}", &quoted)).await?;
            let outdated: Vec<String> = out
                .stdout_str()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            let mut todo: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            todo.extend(outdated);
            (!todo.is_empty()).then(|| {
                (
                    todo.len(),
                    m.install
                        .replace("{opts}", &opts)
                        .replace("{names}", &quote_join(&todo)),
                )
            })
        }
        "absent" | "removed" => {
            let present: Vec<&String> = bases.iter().filter(|b| installed.contains(b)).collect();
            let cmd = if a.purge.unwrap_or(false) {
                m.purge
            } else {
                m.remove
            };
            (!present.is_empty())
                .then(|| (present.len(), cmd.replace("{names}", &quote_join(&present))))
        }
        other => bail!("{module}: state `{other}` must be present, latest or absent"),
    };
    let mut packages = 0;
    if let Some((count, script)) = script {
        packages = count as u32;
        steps.push(script);
    }
    let changed = changed || packages > 0;
    Ok(plan_of(steps, changed, packages, module).with_data("packages", names.join(" ")))
}

fn plan_of(steps: Vec<String>, changed: bool, packages: u32, module: &str) -> Plan {
    let outcome = Outcome {
        changed,
        changes: crate::report::Changes::packages(packages),
        ..Default::default()
    };
    if steps.is_empty() {
        return Plan::done(outcome);
    }
    Plan::change(
        outcome,
        Apply::script(steps.join(" && "), format!("{module} failed")),
    )
}

/// The `apt` module.
pub const APT: Spec = Spec {
    params: args::fields::<Args>,
    refused: &[
        ("autoremove", "run `apt-get autoremove -y` with `command:`"),
        ("force", "deprecated by Ansible; not supported"),
        (
            "allow_downgrade",
            "pin the version in `name` (pkg=1.2-3) and remove the newer one first",
        ),
        (
            "deb",
            "install a .deb file with `command: dpkg -i FILE` and `creates:`",
        ),
        (
            "lock_timeout",
            "pgdeploy waits for the package manager lock up to the task timeout (`timeout:`)",
        ),
        (
            "dpkg_options",
            "pgdeploy installs with dpkg's defaults (--force-confdef --force-confold)",
        ),
        ("only_upgrade", "not supported; use state: latest"),
        (
            "allow_unauthenticated",
            "packages must come from a signed repository or the offline bundle",
        ),
    ],
    ..Spec::host_state("apt", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};

/// The `package` module.
pub const PACKAGE: Spec = Spec {
    params: || vec!["name", "state"],
    refused: &[(
        "use",
        "the package manager follows the host's ansible_os_family",
    )],
    ..Spec::host_state("package", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};

/// The `dnf` module.
pub const DNF: Spec = Spec {
    aliases: &["yum"],
    params: || vec!["name", "state", "update_cache"],
    refused: &[
        (
            "enablerepo",
            "not supported by pgdeploy's dnf; configure the repository in /etc/yum.repos.d",
        ),
        (
            "disablerepo",
            "not supported by pgdeploy's dnf; configure the repository in /etc/yum.repos.d",
        ),
        (
            "disable_gpg_check",
            "packages must come from a signed repository",
        ),
        (
            "lock_timeout",
            "pgdeploy waits for the package manager lock up to the task timeout (`timeout:`)",
        ),
        ("install_weak_deps", "not supported by pgdeploy's dnf"),
    ],
    ..Spec::host_state("dnf", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};
