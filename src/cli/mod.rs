//! The commands behind `main.rs`: one function per command, and the exit codes.

mod ansible_cfg;

use crate::engine::{Engine, RunOptions};
use crate::inventory::Inventory;
use crate::report::Reporter;
use crate::template::Templates;
use crate::transport::{HostKeyPolicy, KnownHosts};
use crate::vars::Secrets;
use ansible_cfg::AnsibleCfg;
use anyhow::{anyhow, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Exit codes (documented in README).
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const HOST_FAILED: i32 = 2;
    pub const UNREACHABLE: i32 = 3;
    pub const BAD_INPUT: i32 = 4;
    pub const REFUSED: i32 = 5;
    pub const INTERRUPTED: i32 = 130;
}

/// Flags every command shares (Ansible's spelling where one exists).
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Inventory file (Ansible INI).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Extra variables: key=value, @file.yml or a YAML mapping (repeatable; highest precedence).
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Change nothing: report what would change.
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Show the changes to files as unified diffs (secrets masked).
    #[arg(short = 'D', long)]
    pub diff: bool,
    /// Only these hosts (a host pattern).
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Only tasks with these tags (comma-separated).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip tasks with these tags (comma-separated).
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Print each play's hosts and stop (nothing runs).
    #[arg(long = "list-hosts")]
    pub list_hosts: bool,
    /// Print each play's tasks and stop (nothing runs).
    #[arg(long = "list-tasks")]
    pub list_tasks: bool,
    /// Print each play's tags and its tasks' tags and stop (nothing runs).
    #[arg(long = "list-tags")]
    pub list_tags: bool,
    /// Skip the tasks before the first task with this name.
    #[arg(long = "start-at-task", value_name = "NAME")]
    pub start_at_task: Option<String>,
    /// Hosts worked on at once [default: ansible.cfg's forks, else 50].
    #[arg(short = 'f', long)]
    pub forks: Option<usize>,
    /// Show commands and their output (-vv for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Newline-delimited JSON events instead of text.
    #[arg(long)]
    pub json: bool,
    /// At the end, the time per play and the slowest tasks (as Ansible's profile_tasks).
    #[arg(long)]
    pub profile: bool,
    /// The Vault password: a file's first line, or what an executable file prints (repeatable).
    #[arg(long = "vault-password-file", value_name = "FILE")]
    pub vault_password_files: Vec<PathBuf>,
    /// Ask for the Vault password on the terminal.
    #[arg(long = "ask-vault-pass")]
    pub ask_vault_pass: bool,
    /// A Vault password for a vault id: `LABEL@FILE`, `LABEL@prompt`, or `FILE` (repeatable).
    #[arg(long = "vault-id", value_name = "[LABEL@]SOURCE")]
    pub vault_ids: Vec<String>,
    /// A known_hosts file to trust besides ~/.ssh/known_hosts (repeatable).
    #[arg(long = "known-hosts", value_name = "FILE")]
    pub known_hosts: Vec<PathBuf>,
    /// Record the keys of hosts not yet in known_hosts (a changed key is still refused).
    #[arg(long = "accept-new-host-keys")]
    pub accept_new_host_keys: bool,
    /// Seconds a single command may run before it is abandoned (default: no limit).
    #[arg(long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Seconds to wait for a host's SSH connection [default: ansible.cfg's timeout, else 10].
    #[arg(long = "connect-timeout", value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// A vars file below the inventory in precedence (defaults such as vars/main.yml; repeatable).
    #[arg(long = "vars-file", value_name = "FILE")]
    pub vars_files: Vec<PathBuf>,
    /// A directory of templates that override the built-in ones.
    #[arg(long = "templates", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// `check`: a host that cannot be reached is one of the problems its report lists, so the
    /// exit is 2 (3 only when no host answered and no report was made).
    #[arg(skip)]
    pub unreachable_is_finding: bool,
    /// The inventory and `-e` as read once per command (clones share them).
    #[arg(skip)]
    loaded: std::sync::Arc<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    /// The Vault passwords were read (once, before any file is).
    vault: std::sync::OnceLock<()>,
    inventory: std::sync::OnceLock<Inventory>,
    /// `-e` as given (a step may add its own) and what it reads to.
    extra_vars: std::sync::Mutex<Option<(Vec<String>, VarMap)>>,
}

type VarMap = serde_json::Map<String, serde_json::Value>;

/// An error in what the user gave us (inventory, playbook, vars): nothing ran.
#[derive(Debug)]
pub struct BadInput(pub anyhow::Error);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for BadInput {}

fn bad(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(BadInput(e))
}

impl Common {
    fn options(&self, defaults: serde_json::Map<String, serde_json::Value>) -> Result<RunOptions> {
        let extra_vars = self.extra_vars_map()?;
        let cfg = AnsibleCfg::find();
        if cfg.host_key_checking_off {
            eprintln!(
                "WARNING: {}: host_key_checking = False is ignored: pgdeploy always verifies host \
                 keys (pass --known-hosts FILE, or --accept-new-host-keys to record unknown ones)",
                cfg.path
                    .as_deref()
                    .unwrap_or(Path::new("ansible.cfg"))
                    .display()
            );
        }
        let mut files = self.known_hosts.clone();
        if let Some(home) = std::env::var_os("HOME") {
            files.push(PathBuf::from(home).join(".ssh/known_hosts"));
        }
        Ok(RunOptions {
            check: self.check,
            diff: self.diff,
            forks: self.forks.or(cfg.forks).unwrap_or(50).max(1),
            limit: self.limit.clone(),
            tags: self.tags.clone(),
            skip_tags: self.skip_tags.clone(),
            defaults,
            extra_vars,
            known_hosts: KnownHosts {
                files,
                policy: if self.accept_new_host_keys {
                    HostKeyPolicy::AcceptNew
                } else {
                    HostKeyPolicy::Strict
                },
            },
            connect_timeout: Duration::from_secs(
                self.connect_timeout.or(cfg.timeout).unwrap_or(10).max(1),
            ),
            task_timeout: self.timeout.map(Duration::from_secs),
            ssh_config: crate::transport::SshConfig::load_user(),
            start_at_task: self.start_at_task.clone(),
            default_user: cfg.remote_user.clone(),
            default_key: cfg.private_key_file.clone(),
        })
    }

    /// -i, else ansible.cfg's inventory.
    fn inventory_path(&self) -> Option<PathBuf> {
        self.inventory
            .clone()
            .or_else(|| AnsibleCfg::find().inventory)
    }

    /// Reads the Vault passwords the flags name (once), before any file that may hold Vault
    /// data is read. Also ANSIBLE_VAULT_PASSWORD_FILE, as Ansible.
    fn unlock_vault(&self) -> Result<()> {
        if self.loaded.vault.get().is_some() {
            return Ok(());
        }
        let mut passwords = Vec::new();
        let mut files: Vec<String> = self
            .vault_password_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if files.is_empty() && self.vault_ids.is_empty() && !self.ask_vault_pass {
            files.extend(std::env::var("ANSIBLE_VAULT_PASSWORD_FILE").ok());
        }
        for f in files {
            passwords.push((
                "default".to_string(),
                crate::vault::password_from(&f, "default").map_err(bad)?,
            ));
        }
        for id in &self.vault_ids {
            let (label, source) = id.split_once('@').unwrap_or(("default", id));
            passwords.push((
                label.to_string(),
                crate::vault::password_from(source, label).map_err(bad)?,
            ));
        }
        if self.ask_vault_pass {
            passwords.push((
                "default".to_string(),
                crate::vault::password_from("prompt", "default").map_err(bad)?,
            ));
        }
        crate::vault::set_passwords(passwords);
        let _ = self.loaded.vault.set(());
        Ok(())
    }

    /// The inventory, read once per command.
    fn load_inventory(&self) -> Result<Inventory> {
        self.unlock_vault()?;
        if let Some(inv) = self.loaded.inventory.get() {
            return Ok(inv.clone());
        }
        let path = self.inventory_path().ok_or_else(|| {
            bad(anyhow!(
                "no inventory: pass one with -i FILE (see inventory.example)"
            ))
        })?;
        let inv = Inventory::load(&path).map_err(bad)?;
        Ok(self.loaded.inventory.get_or_init(|| inv).clone())
    }

    /// The `-e` variables, read once (again only when a step changed the list).
    fn extra_vars_map(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        self.unlock_vault()?;
        let mut cached = self
            .loaded
            .extra_vars
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((args, map)) = cached.as_ref() {
            if *args == self.extra_vars {
                return Ok(map.clone());
            }
        }
        let map = crate::vars::parse_extra_vars(&self.extra_vars).map_err(bad)?;
        *cached = Some((self.extra_vars.clone(), map.clone()));
        Ok(map)
    }
}

/// The defaults pgdeploy ships (postgresql_cluster's variable names), in order.
const BUILTIN_VARS: &[(&str, &str)] = &[
    ("vars/main.yml", include_str!("../../vars/main.yml")),
    ("vars/system.yml", include_str!("../../vars/system.yml")),
];

/// Runs a playbook against the inventory; returns the exit code.
pub async fn run_playbook(common: &Common, playbook: &Path) -> Result<i32> {
    let mut defaults = serde_json::Map::new();
    for f in &common.vars_files {
        defaults.extend(crate::vars::load_vars_file(f).map_err(bad)?);
    }
    run_with_defaults(common, playbook, defaults).await
}

/// `pgdeploy cluster`: the built-in cluster playbook with the built-in defaults, and passwords
/// left empty generated once and kept beside the inventory.
pub async fn cluster(common: &Common) -> Result<i32> {
    builtin(common, "cluster.yml", true).await
}

/// `pgdeploy add-node`: the hosts marked `new_node=true` join the running cluster (built-in
/// add-node.yml). `--limit` picks which of the new hosts join: the cluster's other hosts take
/// part all the same (their pg_hba and HAProxy learn of the new ones).
pub async fn add_node(common: &Common) -> Result<i32> {
    let mut run = common.clone();
    if let Some(limit) = &common.limit {
        let inv = common.load_inventory()?;
        let picked = crate::inventory::select_hosts(&inv, limit).map_err(bad)?;
        let left_out = inv
            .hosts
            .keys()
            .filter(|h| {
                !picked.contains(h)
                    && inv
                        .host_vars(h)
                        .get("new_node")
                        .is_some_and(crate::template::ansible_bool)
            })
            .map(|h| format!(":!{h}"));
        run.limit = Some(std::iter::once("all".to_string()).chain(left_out).collect());
    }
    builtin(&run, "add-node.yml", true).await
}

/// `pgdeploy check`: the built-in read-only health report. It reads the kept passwords but
/// never writes the file. With `watch`, again every so many seconds until Ctrl-C.
pub async fn check(common: &Common, watch: Option<u64>) -> Result<i32> {
    let mut run = common.clone();
    run.unreachable_is_finding = true;
    loop {
        let code = builtin(&run, "check.yml", false).await?;
        let Some(seconds) = watch else {
            return Ok(code);
        };
        if code == exit::INTERRUPTED {
            return Ok(code);
        }
        println!("check: exit {code}; again in {seconds} s (Ctrl-C stops)\n",);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(seconds.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(code),
        }
    }
}

/// `pgdeploy restore --pitr TIME`: point-in-time recovery of the whole cluster (built-in
/// restore.yml). It replaces every member's data, so the cluster's name must be confirmed:
/// typed at the prompt, or given with --confirm. `--check` shows the plan and touches nothing.
pub async fn restore(
    common: &Common,
    pitr: &str,
    timeline: Option<u32>,
    confirm: Option<String>,
) -> Result<i32> {
    if pitr.trim().is_empty() {
        return Err(bad(anyhow!(
            "--pitr needs a time (\"2026-11-22 10:00:00+00\") or `latest`"
        )));
    }
    let name = cluster_name(common)?;
    let what = format!(
        "pgdeploy restore replaces the data of every member of `{name}` with its state at {pitr}\n\
         (the state it has now stays in the backup repository)."
    );
    if !common.check && !confirmed("restore", &name, confirm, &what)? {
        return Ok(exit::REFUSED);
    }
    let mut with_target = common.clone();
    let vars = serde_json::json!({
        "restore_target": pitr.trim(),
        "restore_timeline": timeline.map(|t| t.to_string()).unwrap_or_default(),
    });
    with_target.extra_vars.push(vars.to_string());
    builtin(&with_target, "restore.yml", false).await
}

/// `pgdeploy remove --unsafe`: removes the cluster from its hosts (built-in remove.yml). Without
/// --unsafe and the cluster's name confirmed it shows what it would remove (check mode),
/// changes nothing and exits 5.
pub async fn remove(
    common: &Common,
    unsafe_flag: bool,
    confirm: Option<String>,
    remove_backups: bool,
) -> Result<i32> {
    let mut run = common.clone();
    run.extra_vars
        .push(serde_json::json!({ "remove_backups": remove_backups }).to_string());
    if common.check {
        return builtin(&run, "remove.yml", false).await;
    }
    let name = cluster_name(common)?;
    let what = format!(
        "pgdeploy remove deletes `{name}`: its data directories, etcd's data and its configuration{}.",
        if remove_backups { ", and its backups" } else { "" }
    );
    let go = if unsafe_flag {
        confirmed("remove", &name, confirm, &what)?
    } else {
        eprintln!("pgdeploy remove: refused without --unsafe; what it would remove:");
        false
    };
    if go {
        return builtin(&run, "remove.yml", false).await;
    }
    run.check = true;
    builtin(&run, "remove.yml", false).await?;
    if !unsafe_flag {
        eprintln!(
            "pgdeploy remove: refused, nothing was changed: it needs --unsafe and the cluster's \
             name (--confirm {name}, or typed at the prompt)"
        );
    }
    Ok(exit::REFUSED)
}

/// `pgdeploy remove-node --node HOST`: HOST leaves the cluster (built-in remove-node.yml: the
/// leader refused unless --switchover, Patroni and the services stopped and disabled there,
/// its data directory deleted only with --unsafe), then the cluster flow runs as if HOST were
/// out of the inventory already, so pg_hba, HAProxy, keepalived and pgBackRest forget it.
pub async fn remove_node(
    common: &Common,
    node: &str,
    switchover: bool,
    unsafe_flag: bool,
) -> Result<i32> {
    let inv = common.load_inventory()?;
    if !inv.hosts.contains_key(node) {
        return Err(bad(anyhow!(
            "--node {node}: the inventory has no such host (its hosts: {})",
            inv.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut run = common.clone();
    run.extra_vars.push(
        serde_json::json!({
            "leaving_host": node,
            "leaving_switchover": switchover,
            "leaving_remove_data": unsafe_flag,
        })
        .to_string(),
    );
    // The cluster flow follows: passwords as `pgdeploy cluster` has them.
    let defaults = builtin_defaults(&run, true)?;
    let root = Path::new(crate::playbook::BUILTIN_ROOT);
    let steps = vec![
        (root.join("remove-node.yml"), None),
        (root.join("cluster.yml"), Some(inv.without(node))),
    ];
    let code = run_steps(&run, steps, defaults).await?;
    if code == exit::OK && !common.check {
        eprintln!(
            "pgdeploy remove-node: {node} left the cluster. Take it out of the inventory now: \
             `pgdeploy cluster` with it still there would bring it back."
        );
    }
    Ok(code)
}

/// Whether the user confirmed a destructive `command` on cluster `name`: with --confirm, or
/// by typing the name at a prompt on a terminal. Says why not when not.
fn confirmed(command: &str, name: &str, confirm: Option<String>, what: &str) -> Result<bool> {
    let typed = match confirm {
        Some(c) => c,
        None if std::io::stdin().is_terminal() => {
            eprint!("{what} Type the cluster's name to go on: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_string()
        }
        None => String::new(),
    };
    if typed == name {
        return Ok(true);
    }
    eprintln!(
        "pgdeploy {command}: refused, nothing was changed: confirm with the cluster's name \
         (--confirm {name}, or type it at the prompt){}",
        if typed.is_empty() {
            String::new()
        } else {
            format!("; `{typed}` is not it")
        }
    );
    Ok(false)
}

/// The cluster's name as the run will see it (-e, then the inventory's hosts, then the
/// built-in default).
fn cluster_name(common: &Common) -> Result<String> {
    let key = "patroni_cluster_name";
    common.unlock_vault()?;
    let extra = common.extra_vars_map()?;
    let inv = common.load_inventory()?;
    let from = |m: &serde_json::Map<String, serde_json::Value>| {
        m.get(key).and_then(|v| v.as_str()).map(str::to_string)
    };
    let mut files = serde_json::Map::new();
    for f in &common.vars_files {
        files.extend(crate::vars::load_vars_file(f).map_err(bad)?);
    }
    let builtin_default =
        BUILTIN_VARS.iter().find_map(|(name, text)| {
            match crate::yaml::parse_json(text, name).ok()? {
                serde_json::Value::Object(m) => from(&m),
                _ => None,
            }
        });
    from(&extra)
        .or_else(|| inv.hosts.keys().find_map(|h| from(&inv.host_vars(h))))
        .or_else(|| from(&files))
        .or(builtin_default)
        .ok_or_else(|| bad(anyhow!("{key} is not set")))
}

/// Runs a built-in playbook with the built-in defaults; `generate`: passwords left empty are
/// generated and kept (else only the kept ones are read).
async fn builtin(common: &Common, name: &str, generate: bool) -> Result<i32> {
    let defaults = builtin_defaults(common, generate)?;
    let playbook = Path::new(crate::playbook::BUILTIN_ROOT).join(name);
    run_with_defaults(common, &playbook, defaults).await
}

/// The built-in defaults, the vars files, and the kept (or, with `generate`, generated)
/// passwords.
fn builtin_defaults(
    common: &Common,
    generate: bool,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let inv_path = common.inventory_path().ok_or_else(|| {
        bad(anyhow!(
            "no inventory: pass one with -i FILE (see inventory.example, or `pgdeploy lab up`)"
        ))
    })?;
    common.unlock_vault()?;
    let mut defaults = serde_json::Map::new();
    for (name, text) in BUILTIN_VARS {
        if let serde_json::Value::Object(m) =
            crate::yaml::parse_json(text, &format!("{name} (built in)"))?
        {
            defaults.extend(m);
        }
    }
    for f in &common.vars_files {
        defaults.extend(crate::vars::load_vars_file(f).map_err(bad)?);
    }
    let inv = common.load_inventory()?;
    let extra = common.extra_vars_map()?;
    let names: Vec<String> = defaults
        .get("pgdeploy_generated_passwords")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // A password counts as given when -e, any host's inventory vars or a vars file set it.
    let given = |name: &str| -> Option<String> {
        let from = |m: &serde_json::Map<String, serde_json::Value>| {
            m.get(name)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        from(&extra)
            .or_else(|| inv.hosts.keys().find_map(|h| from(&inv.host_vars(h))))
            .or_else(|| from(&defaults))
    };
    let secrets = crate::vars::generated::secrets_path(&inv_path);
    if generate {
        // Check mode and listings change nothing, not even the secrets file.
        let write = !common.check && !common.list_hosts && !common.list_tasks && !common.list_tags;
        defaults.extend(crate::vars::generated::fill(
            &secrets, &names, given, write,
        )?);
    } else {
        defaults.extend(crate::vars::generated::load(&secrets).map_err(bad)?);
    }
    Ok(defaults)
}

async fn run_with_defaults(
    common: &Common,
    playbook: &Path,
    defaults: serde_json::Map<String, serde_json::Value>,
) -> Result<i32> {
    run_steps(common, vec![(playbook.to_path_buf(), None)], defaults).await
}

/// Runs playbooks one after the other over the same connections, each against its own
/// inventory (None: the one given); stops after a step that failed.
async fn run_steps(
    common: &Common,
    steps: Vec<(PathBuf, Option<Inventory>)>,
    defaults: serde_json::Map<String, serde_json::Value>,
) -> Result<i32> {
    common.unlock_vault()?;
    crate::playbook::set_roles_path(AnsibleCfg::find().roles_path);
    let mut books = Vec::new();
    for (path, inv) in steps {
        books.push((crate::playbook::load_playbook(&path).map_err(bad)?, inv));
    }
    let pb = &books[0].0;
    let playbook = pb.path.clone();
    let inv = common.load_inventory()?;
    let opts = common.options(defaults)?;
    let mut dirs = Vec::new();
    if let Some(d) = &common.templates {
        dirs.push(d.clone());
    }
    if let Some(d) = playbook.parent() {
        dirs.push(d.join("templates"));
    }
    let templates = Templates::new(dirs, crate::template::BUILTIN_TEMPLATES);
    let secrets = Secrets::new();
    for v in crate::vault::take_revealed() {
        secrets.add_lines(&v);
    }
    let mut report = Reporter::new(secrets, common.json, common.verbose);
    report.profile = common.profile;
    let report = Arc::new(report);
    if let Some(name) = &common.start_at_task {
        if !pb.names_task(name) {
            return Err(bad(anyhow!(
                "--start-at-task: no task is named `{name}` in {}",
                pb.path.display()
            )));
        }
    }
    let mut engine = Engine::new(inv, opts, templates, report.clone());
    if common.list_hosts || common.list_tasks || common.list_tags {
        if common.list_hosts {
            print!("{}", engine.list_hosts(pb).map_err(bad)?);
        }
        if common.list_tasks {
            print!("{}", engine.list_tasks(pb));
        }
        if common.list_tags {
            print!("{}", engine.list_tags(pb));
        }
        return Ok(exit::OK);
    }
    let run = async {
        let mut last = None;
        for (pb, inv) in books {
            if let Some(inv) = inv {
                engine.set_inventory(inv);
            }
            let summary = engine.run_playbook(&pb).await?;
            let failed = !summary.failed_hosts.is_empty() || !summary.unreachable_hosts.is_empty();
            last = Some(summary);
            if failed {
                break;
            }
        }
        Ok::<_, anyhow::Error>(last.expect("a run has at least one playbook"))
    };
    let result = tokio::select! {
        r = run => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    engine.count_commands().await;
    let Some(result) = result else {
        report.recap(true, common.check);
        return Ok(exit::INTERRUPTED);
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            report.recap(false, common.check);
            return Err(e);
        }
    };
    engine.close().await;
    report.recap(false, common.check);
    Ok(
        if common.unreachable_is_finding && !summary.failed_hosts.is_empty() {
            exit::HOST_FAILED
        } else if !summary.unreachable_hosts.is_empty() {
            exit::UNREACHABLE
        } else if !summary.failed_hosts.is_empty() {
            exit::HOST_FAILED
        } else {
            exit::OK
        },
    )
}

/// Maps an error to its exit code and prints it.
pub fn report_error(e: &anyhow::Error) -> i32 {
    eprintln!("error: {e:#}");
    if e.downcast_ref::<BadInput>().is_some() {
        exit::BAD_INPUT
    } else {
        exit::ERROR
    }
}

/// `pgdeploy lab ACTION [NODE]`.
pub fn lab(
    action: &str,
    node: Option<&str>,
    nodes: usize,
    backup_host: bool,
    balancer: bool,
    subnet: &str,
    dir: &Path,
) -> i32 {
    let needs_node = |n: Option<&str>| {
        n.map(str::to_string).ok_or_else(|| {
            bad(anyhow!(
                "`pgdeploy lab {action}` needs a host name, e.g. pgnode02"
            ))
        })
    };
    let result = match action {
        "up" => subnet
            .parse::<crate::lab::Subnet>()
            .map_err(bad)
            .and_then(|subnet| {
                crate::lab::up(&crate::lab::UpOptions {
                    nodes,
                    backup_host,
                    subnet,
                    dir: dir.to_path_buf(),
                })
            }),
        "add" => crate::lab::add(dir, balancer),
        "down" => crate::lab::down(dir),
        "status" => crate::lab::status(dir),
        "stop" => needs_node(node).and_then(|n| crate::lab::stop(dir, &n)),
        "start" => needs_node(node).and_then(|n| crate::lab::start(dir, &n)),
        "cut" => needs_node(node).and_then(|n| crate::lab::link(dir, &n, false)),
        "heal" => needs_node(node).and_then(|n| crate::lab::link(dir, &n, true)),
        other => Err(bad(anyhow!("unknown lab action `{other}`"))),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}
