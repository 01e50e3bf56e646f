//! The lab: test hosts on this machine, as systemd-nspawn containers booted with systemd on a
//! private bridge, each with its own IP, host keys and machine-id, reachable over SSH exactly as
//! real hosts are.
//!
//! This machine's PID 1 may not be systemd, so containers run with `--register=no` and the lab
//! supervises them itself: their PIDs are kept in `state.json` in the lab directory. A cached
//! Debian 12 root filesystem (debootstrap, once) is shared read-only through overlayfs; each
//! node writes to its own upper layer, which survives a power-off (`lab stop`) as a disk would.

mod net;
pub(crate) mod rootfs;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use net::Subnet;

/// The bridge the lab's hosts share.
pub const BRIDGE: &str = "pgdlab0";
/// The backup host's name (the `pgbackrest` group, at the subnet's .20).
pub const BACKUP_HOST: &str = "pgbackup";
/// The non-root user with sudo in every host (for testing `become`).
pub const SUDO_USER: &str = "pgdtest";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Node {
    pub name: String,
    pub ip: Ipv4Addr,
    /// PID of the systemd-nspawn process (0 when powered off).
    pub pid: u32,
    /// Added by `lab add` to a running lab: a new replica (new_node=true) for `add-node`.
    #[serde(default)]
    pub added: bool,
    /// Added by `lab add --balancer`: a new balancer only (HAProxy + keepalived).
    #[serde(default)]
    pub balancer: bool,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct State {
    pub subnet: String,
    pub nodes: Vec<Node>,
}

/// Options of `lab up`.
pub struct UpOptions {
    pub nodes: usize,
    /// A backup host besides the database hosts (`pgbackup`, the `pgbackrest` group).
    pub backup_host: bool,
    pub subnet: Subnet,
    pub dir: PathBuf,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

pub fn load_state(dir: &Path) -> Result<State> {
    let text = std::fs::read_to_string(state_path(dir)).map_err(|e| {
        anyhow!(
            "no lab in {} ({e}); create one with `pgdeploy lab up --dir {}`",
            dir.display(),
            dir.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

fn save_state(dir: &Path, state: &State) -> Result<()> {
    std::fs::write(state_path(dir), serde_json::to_string_pretty(state)?)?;
    Ok(())
}

/// Runs a command that must succeed; the error shows its output.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Root, systemd-nspawn and debootstrap are needed; says exactly what to install.
pub fn check_prerequisites() -> Result<()> {
    let uid = run(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        bail!("the lab needs root (it creates a bridge, mounts and containers); run it with sudo");
    }
    let missing: Vec<&str> = [
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("ip", "iproute2"),
        ("ssh-keygen", "openssh-client"),
    ]
    .iter()
    .filter(|(bin, _)| {
        !Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {bin}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(|(_, pkg)| *pkg)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // On Debian and Ubuntu the lab installs what it needs (the quick start is one command).
    let has_apt = Command::new("sh")
        .args(["-c", "command -v apt-get"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_apt {
        eprintln!(
            "lab up: installing what the lab needs: {}",
            missing.join(" ")
        );
        let installed = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends {} >/dev/null",
                missing.join(" ")
            ))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if installed {
            return Ok(());
        }
    }
    bail!(
        "the lab needs packages that are missing; install them with:\n  apt-get install -y {}",
        missing.join(" ")
    )
}

fn node_root(dir: &Path, name: &str) -> PathBuf {
    dir.join("nodes").join(name).join("root")
}

/// `lab up`: cleans a stale lab, builds (or reuses) the root filesystem, boots the nodes and
/// returns when every one answers SSH.
pub fn up(opts: &UpOptions) -> Result<()> {
    check_prerequisites()?;
    let start = Instant::now();
    if opts.nodes == 0 || opts.nodes > 9 {
        bail!("--nodes must be between 1 and 9");
    }
    std::fs::create_dir_all(&opts.dir)?;
    let dir = opts.dir.canonicalize()?;
    down_quiet(&dir)?;
    let cache = rootfs::ensure()?;
    rootfs::ensure_nspawn_runtime_dir()?;
    net::create_bridge(&opts.subnet)?;
    // One key pair for the control machine, generated for this lab.
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgdeploy-lab", "-f"])
        .arg(&key))?;
    let pubkey = std::fs::read_to_string(key.with_extension("pub"))?;
    let mut nodes = Vec::new();
    let mut known = String::new();
    let mut hosts: Vec<(String, Ipv4Addr)> = (0..opts.nodes)
        .map(|i| {
            Ok((
                format!("pgnode{:02}", i + 1),
                opts.subnet.host(11 + i as u32)?,
            ))
        })
        .collect::<Result<_>>()?;
    if opts.backup_host {
        hosts.push((BACKUP_HOST.to_string(), opts.subnet.host(20)?));
    }
    for (name, ip) in hosts {
        let root = node_root(&dir, &name);
        rootfs::mount_overlay(&cache, &dir.join("nodes").join(&name))?;
        let host_key = rootfs::personalise(&root, &name, ip, &opts.subnet, &pubkey)?;
        known.push_str(&format!("{ip} {host_key}\n"));
        let pid = boot(&dir, &name)?;
        nodes.push(Node {
            name,
            ip,
            pid,
            added: false,
            balancer: false,
        });
    }
    std::fs::write(dir.join("known_hosts"), known)?;
    let state = State {
        subnet: opts.subnet.to_string(),
        nodes,
    };
    save_state(&dir, &state)?;
    std::fs::write(
        dir.join("inventory"),
        inventory(&dir, &state, &opts.subnet)?,
    )?;
    for n in &state.nodes {
        wait_ssh(n.ip, Duration::from_secs(120)).with_context(|| {
            format!(
                "{} did not come up; see {}",
                n.name,
                log_path(&dir, &n.name).display()
            )
        })?;
    }
    for n in &state.nodes {
        settle_boot(&dir, n.ip)?;
    }
    println!(
        "lab up: {} hosts on {} in {:.1}s\n  inventory:   {}\n  known_hosts: {}\n  try: pgdeploy run playbooks/examples/hello.yml -i {}",
        state.nodes.len(),
        opts.subnet,
        start.elapsed().as_secs_f64(),
        dir.join("inventory").display(),
        dir.join("known_hosts").display(),
        dir.join("inventory").display()
    );
    Ok(())
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("nodes").join(name).join("console.log")
}

/// Boots a node's container; it keeps running after pgdeploy exits.
fn boot(dir: &Path, name: &str) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(log_path(dir, name))?;
    let child = Command::new("systemd-nspawn")
        .args([
            "--quiet",
            // No machined or system bus here: no registration, no scope unit.
            "--register=no",
            "--keep-unit",
            "--boot",
            "--console=passive",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
        ])
        .arg(format!("--directory={}", node_root(dir, name).display()))
        .arg(format!("--machine={name}"))
        .arg(format!("--network-bridge={BRIDGE}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at pgdeploy's terminal does not power the lab off.
        .process_group(0)
        .spawn()
        .context("cannot start systemd-nspawn")?;
    Ok(child.id())
}

/// Waits until the node has booted, then starts again the units that failed at boot (and what
/// they held back). In a container a unit sometimes fails to start with 219/CGROUP while systemd
/// sets up its cgroups; when systemd-user-sessions does not run, /run/nologin stays and refuses
/// every login but root's (pgBackRest's SSH as postgres). A booted bare-metal host has neither
/// problem.
fn settle_boot(dir: &Path, ip: Ipv4Addr) -> Result<()> {
    // A unit whose dependency failed is not "failed" itself, only not started: starting the
    // default target again starts what boot skipped (systemd-user-sessions removes nologin).
    let script = "systemctl is-system-running --wait >/dev/null 2>&1; \
        for u in $(systemctl --failed --no-legend --plain | awk '{print $1}'); do \
          systemctl reset-failed \"$u\"; systemctl start \"$u\" || echo \"$u fails\" >&2; \
        done; \
        systemctl start default.target >/dev/null 2>&1; \
        [ -e /run/nologin ] && systemctl start systemd-user-sessions.service >/dev/null 2>&1; \
        [ -e /run/nologin ] && [ \"$PGDEPLOY_LAB_LATE\" = 1 ] && rm -f /run/nologin; \
        if [ -e /run/nologin ]; then echo 'boot left /run/nologin' >&2; \
          systemctl --failed --no-legend >&2; \
          systemctl status systemd-user-sessions --no-pager -n 5 >&2; exit 1; fi";
    let start = Instant::now();
    loop {
        // Half a minute on, a /run/nologin that systemd-user-sessions never removed goes (a
        // test host: nothing else depends on it).
        let late = if start.elapsed() > Duration::from_secs(30) {
            "PGDEPLOY_LAB_LATE=1; "
        } else {
            ""
        };
        let out = Command::new("ssh")
            .arg("-i")
            .arg(dir.join("id_ed25519"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                dir.join("known_hosts").display()
            ))
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"])
            .arg(format!("root@{ip}"))
            .arg(format!("{late}{script}"))
            .output()
            .context("cannot run ssh (apt-get install openssh-client)")?;
        if out.status.success() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!(
                "{ip} did not finish booting: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn wait_ssh(ip: Ipv4Addr, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&(ip, 22).into(), Duration::from_secs(1)) {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            bail!("no SSH answer from {ip} within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn inventory(dir: &Path, state: &State, subnet: &Subnet) -> Result<String> {
    let (backup, db): (Vec<&Node>, Vec<&Node>) =
        state.nodes.iter().partition(|n| n.name == BACKUP_HOST);
    // Hosts added to a running lab are new replicas, or new balancers.
    let (added, db): (Vec<&Node>, Vec<&Node>) = db.into_iter().partition(|n| n.added);
    let (added_balancers, added): (Vec<&Node>, Vec<&Node>) =
        added.into_iter().partition(|n| n.balancer);
    let names: Vec<&str> = db.iter().map(|n| n.name.as_str()).collect();
    let mut s = String::from(
        "# Written by `pgdeploy lab up`: postgresql_cluster's groups over the lab's hosts.\n\n",
    );
    s.push_str("[etcd_cluster]\n");
    for n in &db {
        s.push_str(&format!(
            "{} ansible_host={} hostname={}\n",
            n.name, n.ip, n.name
        ));
    }
    s.push_str(&format!("\n[master]\n{}\n\n[replica]\n", names[0]));
    for n in &names[1..] {
        s.push_str(&format!("{n}\n"));
    }
    for n in &added {
        s.push_str(&added_line(n));
    }
    s.push_str("\n[postgres_cluster:children]\nmaster\nreplica\n\n[balancers]\n");
    for n in &names {
        s.push_str(&format!("{n}\n"));
    }
    for n in &added_balancers {
        s.push_str(&added_line(n));
    }
    s.push_str("\n# The pgBackRest repository host.\n[pgbackrest]\n");
    for n in &backup {
        s.push_str(&format!(
            "{} ansible_host={} hostname={}\n",
            n.name, n.ip, n.name
        ));
    }
    s.push_str(&format!(
        "\n[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_ssh_common_args='-o UserKnownHostsFile={}'\n\
         cluster_vip={}\nvip_interface=host0\n\
         # Inside a container /proc/meminfo shows the whole machine: PostgreSQL is sized here\n\
         # for three nodes sharing one machine, not from the host's memory.\n\
         postgresql_memory_mb=512\nshared_buffers=128MB\neffective_cache_size=384MB\n\
         maintenance_work_mem=64MB\nwork_mem=4MB\n",
        dir.join("id_ed25519").display(),
        dir.join("known_hosts").display(),
        subnet.host(100)?,
    ));
    Ok(s)
}

/// Whether a systemd-nspawn process runs. When pgdeploy has exited, an ended nspawn may stay a
/// zombie (this machine's PID 1 need not reap it), so a zombie counts as ended.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "PID (comm) STATE ...": comm may hold spaces, so split after the last ')'.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    pid != 0 && head.ends_with("(systemd-nspawn") && !rest.trim_start().starts_with('Z')
}

/// The container's PID 1 (the child of systemd-nspawn).
fn container_init(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Powers a node off at once: SIGKILL to its PID 1 ends its whole PID namespace, as pulling
/// the plug would; systemd-nspawn then exits.
fn power_off(node: &Node) {
    if !is_alive(node.pid) {
        return;
    }
    if let Some(init) = container_init(node.pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &init.to_string()])
            .status();
    }
    let start = Instant::now();
    while is_alive(node.pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_alive(node.pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &node.pid.to_string()])
            .status();
    }
}

fn find<'a>(state: &'a mut State, name: &str) -> Result<&'a mut Node> {
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    state
        .nodes
        .iter_mut()
        .find(|n| n.name == name || n.ip.to_string() == name)
        .ok_or_else(|| anyhow!("no lab host `{name}`; the lab has {}", names.join(", ")))
}

/// `lab stop NODE`: power off (a kill, not a clean shutdown).
pub fn stop(dir: &Path, name: &str) -> Result<()> {
    let mut state = load_state(dir)?;
    let node = find(&mut state, name)?;
    power_off(node);
    node.pid = 0;
    println!("{}: powered off", node.name);
    save_state(dir, &state)
}

/// An added host's inventory line: new_node=true, for `pgdeploy add-node`.
fn added_line(n: &Node) -> String {
    format!(
        "{} ansible_host={} hostname={} new_node=true\n",
        n.name, n.ip, n.name
    )
}

/// The inventory text with `line` added at the end of group `group`'s section (edits made to
/// the file since `lab up` stay).
fn add_to_group(text: &str, group: &str, line: &str) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("[{group}]");
    let start = lines
        .iter()
        .position(|l| l.trim() == header)
        .ok_or_else(|| anyhow!("the lab's inventory has no {header} section"))?;
    let mut end = start + 1;
    while end < lines.len() && !lines[end].trim().is_empty() && !lines[end].starts_with('[') {
        end += 1;
    }
    let mut out: Vec<&str> = lines[..end].to_vec();
    out.push(line.trim_end());
    out.extend_from_slice(&lines[end..]);
    Ok(out.join("\n") + "\n")
}

/// `lab add`: one more host in a running lab, the others untouched: a database host
/// (pgnodeNN, in [replica]) or, with `balancer`, a balancer (pgbalNN, in [balancers]), with
/// new_node=true for `pgdeploy add-node`.
pub fn add(dir: &Path, balancer: bool) -> Result<()> {
    check_prerequisites()?;
    let start = Instant::now();
    let dir = dir.canonicalize()?;
    let mut state = load_state(&dir)?;
    let subnet: Subnet = state.subnet.parse()?;
    let count = state.nodes.iter().filter(|n| n.name != BACKUP_HOST).count();
    if count >= 9 {
        bail!("the lab holds at most 9 database hosts");
    }
    let name = format!(
        "{}{:02}",
        if balancer { "pgbal" } else { "pgnode" },
        count + 1
    );
    let ip = subnet.host(11 + count as u32)?;
    let cache = rootfs::ensure()?;
    rootfs::ensure_nspawn_runtime_dir()?;
    rootfs::mount_overlay(&cache, &dir.join("nodes").join(&name))?;
    let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub"))?;
    let host_key = rootfs::personalise(&node_root(&dir, &name), &name, ip, &subnet, &pubkey)?;
    let pid = boot(&dir, &name)?;
    let mut known = std::fs::read_to_string(dir.join("known_hosts"))?;
    known.push_str(&format!("{ip} {host_key}\n"));
    std::fs::write(dir.join("known_hosts"), known)?;
    let node = Node {
        name: name.clone(),
        ip,
        pid,
        added: true,
        balancer,
    };
    let group = if balancer { "balancers" } else { "replica" };
    let inv_path = dir.join("inventory");
    let text = add_to_group(
        &std::fs::read_to_string(&inv_path)?,
        group,
        &added_line(&node),
    )?;
    state.nodes.push(node);
    save_state(&dir, &state)?;
    std::fs::write(&inv_path, text)?;
    wait_ssh(ip, Duration::from_secs(120)).with_context(|| {
        format!(
            "{name} did not come up; see {}",
            log_path(&dir, &name).display()
        )
    })?;
    settle_boot(&dir, ip)?;
    println!(
        "lab add: {name} at {ip} in {:.1}s, in the inventory's [{group}] with new_node=true",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `lab start NODE`: boot a powered-off node again, with its disk as it was.
pub fn start(dir: &Path, name: &str) -> Result<()> {
    let mut state = load_state(dir)?;
    let node = find(&mut state, name)?;
    if is_alive(node.pid) {
        println!("{}: already running", node.name);
        return Ok(());
    }
    let (nm, ip) = (node.name.clone(), node.ip);
    rootfs::ensure_nspawn_runtime_dir()?;
    node.pid = boot(dir, &nm)?;
    save_state(dir, &state)?;
    wait_ssh(ip, Duration::from_secs(120))?;
    settle_boot(dir, ip)?;
    println!("{nm}: running");
    Ok(())
}

/// `lab cut NODE` / `lab heal NODE`: take its network link down or up.
pub fn link(dir: &Path, name: &str, up: bool) -> Result<()> {
    let mut state = load_state(dir)?;
    let node = find(&mut state, name)?;
    net::set_link(&node.name, up)?;
    println!(
        "{}: network {}",
        node.name,
        if up { "healed" } else { "cut" }
    );
    Ok(())
}

/// `lab status`: hosts, addresses and state.
pub fn status(dir: &Path) -> Result<()> {
    let state = load_state(dir)?;
    println!("{:<10} {:<15} {:<10} SSH", "HOST", "IP", "POWER");
    for n in &state.nodes {
        let power = if is_alive(n.pid) { "running" } else { "off" };
        let ssh =
            TcpStream::connect_timeout(&(n.ip, 22).into(), Duration::from_millis(500)).is_ok();
        let link = net::link_is_up(&n.name)
            .map(|u| if u { "" } else { " (network cut)" })
            .unwrap_or("");
        println!(
            "{:<10} {:<15} {:<10} {}{link}",
            n.name,
            n.ip.to_string(),
            power,
            if ssh { "answers" } else { "no answer" }
        );
    }
    Ok(())
}

/// `lab down`: stops every node and removes mounts, bridge and lab state.
pub fn down(dir: &Path) -> Result<()> {
    check_prerequisites()?;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    down_quiet(&dir)?;
    println!("lab down: nothing left of the lab in {}", dir.display());
    Ok(())
}

fn down_quiet(dir: &Path) -> Result<()> {
    if let Ok(state) = load_state(dir) {
        for n in &state.nodes {
            power_off(n);
        }
    }
    // Containers of a lab whose state was lost (a killed session) still use the bridge: by
    // their systemd-nspawn, or, when that was killed too, by their own init (orphaned).
    let orphans = orphaned_inits_on_bridge();
    let veths: Vec<String> = orphans
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/root/etc/hostname")).ok())
        .map(|h| format!("/sys/class/net/vb-{}", h.trim()))
        .collect();
    for init in &orphans {
        let _ = Command::new("kill")
            .args(["-KILL", &init.to_string()])
            .status();
    }
    // Their network namespaces, and the veths in them, go a moment after: a `lab up` that
    // followed at once could not make its own.
    let start = Instant::now();
    while (orphans.iter().any(|p| is_alive(*p)) || veths.iter().any(|v| Path::new(v).exists()))
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in nspawn_pids_on_bridge() {
        power_off(&Node {
            name: String::new(),
            ip: Ipv4Addr::UNSPECIFIED,
            pid,
            added: false,
            balancer: false,
        });
    }
    rootfs::unmount_under(dir)?;
    net::delete_bridge()?;
    for name in [
        "nodes",
        "state.json",
        "inventory",
        "known_hosts",
        "id_ed25519",
        "id_ed25519.pub",
    ] {
        let p = dir.join(name);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove {}", p.display()))?;
        } else if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Every process id, for the scans below.
fn processes() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Lab containers whose systemd-nspawn is gone: their init, adopted by PID 1, runs on a root
/// made from pgdeploy's lab image (the lab is one at a time: its bridge and addresses are fixed).
fn orphaned_inits_on_bridge() -> Vec<u32> {
    let orphan_init = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        field("PPid:") == ["1"] && field("NSpid:").last() == Some(&"1")
    };
    let lab_root = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
            m.lines().any(|l| {
                l.split(' ').nth(4) == Some("/")
                    && l.contains(&format!("lowerdir={},", rootfs::CACHE))
            })
        })
    };
    processes()
        .into_iter()
        .filter(|&pid| orphan_init(pid) && lab_root(pid))
        .collect()
}

fn nspawn_pids_on_bridge() -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.starts_with("systemd-nspawn") && c.contains(&format!("--network-bridge={BRIDGE}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::add_to_group;

    #[test]
    fn an_added_host_goes_to_the_end_of_its_group_and_edits_stay() {
        let inv =
            "[replica]\npgnode02\n# edited by hand\n\n[balancers]\npgnode01\n[pgbackrest]\nb\n";
        assert_eq!(
            add_to_group(inv, "replica", "pgnode05 new_node=true\n").unwrap(),
            "[replica]\npgnode02\n# edited by hand\npgnode05 new_node=true\n\n[balancers]\npgnode01\n[pgbackrest]\nb\n"
        );
        assert_eq!(
            add_to_group(inv, "balancers", "pgbal05").unwrap(),
            "[replica]\npgnode02\n# edited by hand\n\n[balancers]\npgnode01\npgbal05\n[pgbackrest]\nb\n"
        );
        assert!(add_to_group(inv, "master", "x").is_err());
    }
}
