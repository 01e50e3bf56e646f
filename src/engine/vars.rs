//! The variables a task sees on a host, merged in Ansible's order, and how a host is reached.

use super::{Engine, PlayCtx, RunOptions};
use crate::inventory::Inventory;
use crate::template::{LazyMap, Templates, Vars};
use crate::transport::{default_key_files, KnownHosts, Target};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Everything needed to build any host's variables at one point of the run (taken once per
/// task, before its hosts start, so that all hosts see the same state).
/// A host's gathered facts and its set_fact/register values.
type HostFacts = (Option<Arc<Map<String, Value>>>, Arc<Map<String, Value>>);

/// Variables shared by snapshots until the inventory changes: each host's inventory variables
/// and names (`inventory_hostname`, `group_names`), worked out once.
pub(super) type HostLayers = Arc<Mutex<HashMap<String, [Arc<Map<String, Value>>; 2]>>>;

pub(super) struct Snapshot {
    inv: Arc<Inventory>,
    inv_layers: HostLayers,
    templates: Templates,
    defaults: Arc<Map<String, Value>>,
    role_defaults: Option<Arc<Map<String, Value>>>,
    extra: Arc<Map<String, Value>>,
    play_vars: Arc<Map<String, Value>>,
    facts: HashMap<String, HostFacts>,
    magic: Arc<Map<String, Value>>,
    groups: minijinja::Value,
}

impl Snapshot {
    /// A host's variables without task-level ones (what `hostvars[host]` shows), as layers
    /// each overriding those before it: Ansible's order of precedence, nothing copied.
    fn base(
        &self,
        host: &str,
        task_vars: Option<&Map<String, Value>>,
    ) -> Vec<Arc<Map<String, Value>>> {
        let [inv_vars, names] = self.inv_layers(host);
        let mut layers = vec![self.defaults.clone()];
        layers.extend(self.role_defaults.clone());
        layers.push(inv_vars);
        let (facts, set_facts) = self.facts.get(host).cloned().unwrap_or_default();
        layers.extend(facts);
        layers.push(self.play_vars.clone());
        if let Some(t) = task_vars.filter(|t| !t.is_empty()) {
            layers.push(Arc::new(t.clone()));
        }
        layers.extend([set_facts, self.extra.clone(), self.magic.clone(), names]);
        layers
    }

    /// The host's inventory variables, and its names.
    fn inv_layers(&self, host: &str) -> [Arc<Map<String, Value>>; 2] {
        let mut cache = self.inv_layers.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(host.to_string())
            .or_insert_with(|| {
                let mut names = Map::new();
                names.insert("inventory_hostname".into(), Value::String(host.to_string()));
                names.insert(
                    "inventory_hostname_short".into(),
                    Value::String(host.split('.').next().unwrap_or(host).to_string()),
                );
                names.insert(
                    "group_names".into(),
                    json!(self
                        .inv
                        .host_groups(host)
                        .into_iter()
                        .filter(|g| g != "ungrouped")
                        .collect::<Vec<_>>()),
                );
                [Arc::new(self.inv.host_vars(host)), Arc::new(names)]
            })
            .clone()
    }

    /// The template context of a task on a host; `extra` (loop variables, a result under its
    /// register name) over the rest, each layer over those before it.
    pub(super) fn vars(
        self: &Arc<Self>,
        host: &str,
        task_vars: &Map<String, Value>,
        extra: &[Arc<Map<String, Value>>],
    ) -> minijinja::Value {
        let mut layers = self.base(host, Some(task_vars));
        layers.extend(extra.iter().filter(|e| !e.is_empty()).cloned());
        let me = self.clone();
        let hostvars = LazyMap {
            keys: self.inv.hosts.keys().cloned().collect(),
            lookup: Box::new(move |h| {
                if !me.inv.hosts.contains_key(h) {
                    return None;
                }
                Some(
                    Vars::layered(me.base(h, None), &me.templates)
                        .with("groups", me.groups.clone())
                        .into_value(),
                )
            }),
        };
        Vars::layered(layers, &self.templates)
            .with("groups", self.groups.clone())
            .with("hostvars", minijinja::Value::from_object(hostvars))
            .into_value()
    }
}

impl Engine {
    pub(super) fn snapshot(&self, ctx: &PlayCtx<'_>) -> Arc<Snapshot> {
        self.snapshot_with(ctx, &Map::new())
    }

    /// A snapshot for tasks inside roles: their defaults sit just above the built-in defaults,
    /// below the inventory's variables, as role defaults do in Ansible.
    pub(super) fn snapshot_with(
        &self,
        ctx: &PlayCtx<'_>,
        role_defaults: &Map<String, Value>,
    ) -> Arc<Snapshot> {
        let facts = self
            .hosts
            .iter()
            .map(|(h, s)| (h.clone(), (s.facts.clone(), s.set_facts.clone())))
            .collect();
        let play_hosts: Vec<Value> = self
            .active(&ctx.hosts)
            .into_iter()
            .map(Value::String)
            .collect();
        let batch: Vec<Value> = self
            .active(&ctx.batch)
            .into_iter()
            .map(Value::String)
            .collect();
        // Absolute, as Ansible gives them (a relative one would move with the working directory).
        let inv_path = self
            .inv
            .path
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .unwrap_or_default();
        let magic = json!({
            "play_hosts": play_hosts,
            "ansible_play_hosts": play_hosts,
            "ansible_play_batch": batch,
            "ansible_play_hosts_all": ctx.hosts,
            "ansible_check_mode": self.opts.check,
            "ansible_diff_mode": self.opts.diff,
            "ansible_run_tags": if self.opts.tags.is_empty() { vec!["all".to_string()] } else { self.opts.tags.clone() },
            "ansible_skip_tags": self.opts.skip_tags,
            "playbook_dir": ctx.play.dir.display().to_string(),
            "inventory_file": inv_path.display().to_string(),
            "inventory_dir": inv_path.parent().map(|p| p.display().to_string()).unwrap_or_default(),
            "ansible_version": {"full": "2.15.0", "major": 2, "minor": 15, "revision": 0, "string": "2.15.0 (pgdeploy)"},
            "pgdeploy_version": env!("CARGO_PKG_VERSION"),
        });
        Arc::new(Snapshot {
            inv: self.inv.clone(),
            inv_layers: self.inv_layers.clone(),
            templates: self.templates.clone(),
            defaults: self.defaults.clone(),
            role_defaults: (!role_defaults.is_empty()).then(|| Arc::new(role_defaults.clone())),
            extra: self.extra_vars.clone(),
            play_vars: ctx.vars.clone(),
            facts,
            magic: Arc::new(magic.as_object().cloned().unwrap_or_default()),
            groups: self.groups.clone(),
        })
    }
}

fn var_str(vars: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match vars.get(*n)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

pub fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(path),
    }
}

/// `-o Key=Value` options inside `ansible_ssh_common_args` / `ansible_ssh_extra_args`.
fn ssh_option(args: &str, key: &str) -> Option<String> {
    let owned = crate::transport::split_words(args, false)
        .unwrap_or_else(|_| args.split_whitespace().map(str::to_string).collect());
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    for (i, w) in words.iter().enumerate() {
        let opt = if *w == "-o" {
            words.get(i + 1).copied()
        } else {
            w.strip_prefix("-o")
        };
        if let Some(opt) = opt {
            let opt = opt.trim_matches(|c| c == '\'' || c == '"');
            if let Some((k, v)) = opt.split_once('=') {
                if k.eq_ignore_ascii_case(key) {
                    return Some(v.trim_matches(|c| c == '\'' || c == '"').to_string());
                }
            }
        }
    }
    None
}

/// How to reach a host, from its inventory variables (and `-e`), and which known_hosts files
/// vouch for it.
pub fn target_for(inv: &Inventory, host: &str, opts: &RunOptions) -> Result<(Target, KnownHosts)> {
    let mut vars = inv.host_vars(host);
    vars.extend(opts.extra_vars.clone());
    // Connection variables may be templates over other inventory variables.
    let templates = Templates::new(vec![], &[]);
    let ctx = Vars::new(vars.clone(), &templates).into_value();
    let get = |names: &[&str]| -> Result<Option<String>> {
        match var_str(&vars, names) {
            Some(v) if crate::template::is_template(&v) => Ok(Some(templates.render_str(
                &v,
                &ctx,
                &format!("{host}: {}", names[0]),
            )?)),
            other => Ok(other),
        }
    };
    // Inventory variables first, then ~/.ssh/config (matched on the name ssh would be given),
    // then ansible.cfg, then OpenSSH's defaults.
    let ssh_name = get(&["ansible_host", "ansible_ssh_host"])?.unwrap_or_else(|| host.to_string());
    let ssh_cfg = |key: &str| opts.ssh_config.get(&ssh_name, key);
    let address = match get(&["ansible_host", "ansible_ssh_host"])? {
        Some(a) => a,
        None => ssh_cfg("HostName").unwrap_or_else(|| host.to_string()),
    };
    let port_text = get(&["ansible_port", "ansible_ssh_port"])?.or_else(|| ssh_cfg("Port"));
    let port = match port_text {
        Some(p) => crate::inventory::port_number(&p)
            .ok_or_else(|| anyhow!("{host}: ansible_port `{p}` is not a port number"))?,
        None => 22,
    };
    let user = get(&["ansible_user", "ansible_ssh_user"])?
        .or_else(|| ssh_cfg("User"))
        .or_else(|| opts.default_user.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into());
    let key_files = match get(&["ansible_ssh_private_key_file", "ansible_private_key_file"])? {
        Some(k) => vec![expand_home(&k)],
        None => match ssh_cfg("IdentityFile")
            .map(|k| expand_home(&k))
            .or(opts.default_key.clone())
        {
            Some(k) => vec![k],
            None => default_key_files(),
        },
    };
    let args = [
        get(&["ansible_ssh_common_args"])?,
        get(&["ansible_ssh_extra_args"])?,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let mut known = opts.known_hosts.clone();
    if let Some(f) = ssh_option(&args, "UserKnownHostsFile") {
        for part in f.split_whitespace() {
            known.files.insert(0, expand_home(part));
        }
    }
    if let Some(f) = get(&["ansible_ssh_known_hosts_file"])? {
        known.files.insert(0, expand_home(&f));
    }
    if ssh_option(&args, "StrictHostKeyChecking").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
        eprintln!(
            "WARNING: {host}: StrictHostKeyChecking=no in the inventory is ignored; pgdeploy always verifies host keys \
             (use --accept-new-host-keys to record unknown ones)"
        );
    }
    let target = Target {
        name: host.to_string(),
        address,
        port,
        user,
        key_files,
        password: get(&["ansible_ssh_pass", "ansible_password"])?,
        become_password: get(&[
            "ansible_become_password",
            "ansible_become_pass",
            "ansible_sudo_pass",
        ])?,
        connect_timeout: opts.connect_timeout,
        jump: None,
    };
    let jump_spec = proxy_jump(&args).or_else(|| ssh_cfg("ProxyJump"));
    let target = match jump_spec.filter(|j| !j.eq_ignore_ascii_case("none")) {
        Some(spec) => with_jump(inv, opts, target, &spec, 0)?,
        None => target,
    };
    Ok((target, known))
}

/// The bastion named by `-o ProxyJump=`, `-J`, or Ansible's documented
/// `-o ProxyCommand="ssh -W %h:%p -q user@bastion"`.
fn proxy_jump(args: &str) -> Option<String> {
    if let Some(j) = ssh_option(args, "ProxyJump") {
        return Some(j);
    }
    let words = crate::transport::split_words(args, false).unwrap_or_default();
    if let Some(i) = words.iter().position(|w| w == "-J") {
        return words.get(i + 1).cloned();
    }
    let cmd = ssh_option(args, "ProxyCommand")?;
    let parts = crate::transport::split_words(&cmd, false).ok()?;
    if parts.first().map(String::as_str) != Some("ssh") || !parts.iter().any(|p| p == "-W") {
        return None;
    }
    // The destination is the word that is not an option or an option's value; -p and -l
    // give its port and user.
    let (mut dest, mut port, mut user) = (None, None, None);
    let mut i = 1;
    while i < parts.len() {
        let p = parts[i].as_str();
        let value = parts.get(i + 1).cloned();
        match p {
            "-p" => port = value,
            "-l" => user = value,
            "-W" | "-i" | "-o" | "-F" | "-J" => {}
            _ if p.starts_with('-') => {
                i += 1;
                continue;
            }
            _ => {
                dest = Some(p.to_string());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let mut dest = dest?;
    if let Some(u) = user.filter(|_| !dest.contains('@')) {
        dest = format!("{u}@{dest}");
    }
    if let Some(p) = port {
        dest = format!("{dest}:{p}");
    }
    Some(dest)
}

/// Puts `target` behind the bastions of `spec` (`[user@]host[:port]`, comma-separated hops).
/// A bastion that is an inventory host is reached with its own variables.
fn with_jump(
    inv: &Inventory,
    opts: &RunOptions,
    mut target: Target,
    spec: &str,
    depth: usize,
) -> Result<Target> {
    if depth > 4 {
        bail!("{}: ProxyJump chains deeper than 4 hops", target.name);
    }
    let hops: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let Some((last, before)) = hops.split_last() else {
        return Ok(target);
    };
    let (user, rest) = match last.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, *last),
    };
    let (name, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse::<u16>().ok()),
        _ => (rest, None),
    };
    let mut jump = if inv.hosts.contains_key(name) {
        let (mut t, _) = target_for(inv, name, opts)?;
        t.jump = None;
        t
    } else {
        Target {
            name: name.to_string(),
            address: opts
                .ssh_config
                .get(name, "HostName")
                .unwrap_or_else(|| name.to_string()),
            port: opts
                .ssh_config
                .get(name, "Port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(22),
            user: opts
                .ssh_config
                .get(name, "User")
                .unwrap_or_else(|| target.user.clone()),
            key_files: match opts.ssh_config.get(name, "IdentityFile") {
                Some(k) => vec![expand_home(&k)],
                None => target.key_files.clone(),
            },
            password: None,
            become_password: None,
            connect_timeout: target.connect_timeout,
            jump: None,
        }
    };
    if let Some(u) = user {
        jump.user = u;
    }
    if let Some(p) = port {
        jump.port = p;
    }
    if !before.is_empty() {
        jump = with_jump(inv, opts, jump, &before.join(","), depth + 1)?;
    }
    target.jump = Some(Box::new(jump));
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_options_are_read() {
        let a =
            "-o StrictHostKeyChecking=no -o 'UserKnownHostsFile=/lab/known_hosts' -oProxyJump=b";
        assert_eq!(
            ssh_option(a, "UserKnownHostsFile").as_deref(),
            Some("/lab/known_hosts")
        );
        assert_eq!(
            ssh_option(a, "stricthostkeychecking").as_deref(),
            Some("no")
        );
        assert_eq!(ssh_option(a, "ProxyJump").as_deref(), Some("b"));
        assert_eq!(proxy_jump(a).as_deref(), Some("b"));
        assert_eq!(
            proxy_jump(r#"-o ProxyCommand="ssh -W %h:%p -q admin@bastion.example""#).as_deref(),
            Some("admin@bastion.example")
        );
        assert_eq!(
            proxy_jump(r#"-o ProxyCommand="ssh -W %h:%p -p 2200 -l ops bastion""#).as_deref(),
            Some("ops@bastion:2200")
        );
        assert_eq!(
            proxy_jump("-J ops@jump:2200").as_deref(),
            Some("ops@jump:2200")
        );
        assert_eq!(proxy_jump("-o ServerAliveInterval=5"), None);
    }
}
