//! The lab's root filesystem: a minimal Debian 12 server built once with debootstrap and
//! cached, shared by the nodes through overlayfs; and what makes each node itself (hostname,
//! machine-id, SSH host key, address, authorized key).

use super::net::Subnet;
use super::{run, SUDO_USER};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const CACHE: &str = "/var/cache/pgdeploy/rootfs-bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// A minimal server: no PostgreSQL components (installing those is pgdeploy's job).
const PACKAGES: &str = "systemd,systemd-sysv,dbus,udev,openssh-server,sudo,iproute2,iputils-ping,ca-certificates,locales";
const COMPLETE: &str = ".pgdeploy-complete";

/// The cached root filesystem, built on first use.
pub(crate) fn ensure() -> Result<PathBuf> {
    let cache = PathBuf::from(CACHE);
    if cache.join(COMPLETE).exists() {
        return Ok(cache);
    }
    let tmp = cache.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(tmp.parent().unwrap_or(Path::new("/")))?;
    eprintln!("lab: building the Debian 12 root filesystem (once; cached in {CACHE})...");
    let mirror = std::env::var("PGDEPLOY_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.into());
    run(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), "bookworm"])
        .arg(&tmp)
        .arg(&mirror))
    .context("debootstrap failed (is the Debian mirror reachable? set PGDEPLOY_DEBIAN_MIRROR to use another)")?;
    let chroot = |script: &str| {
        run(Command::new("chroot")
            .arg(&tmp)
            .args(["/bin/sh", "-c", script]))
    };
    chroot(&format!(
        "set -e; systemctl enable systemd-networkd ssh; \
         sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen; locale-gen >/dev/null; \
         useradd -m -s /bin/bash {SUDO_USER}; echo '{SUDO_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SUDO_USER}; \
         chmod 0440 /etc/sudoers.d/{SUDO_USER}; passwd -l root >/dev/null; \
         rm -f /etc/ssh/ssh_host_*; : > /etc/machine-id; \
         rm -f /etc/apt/sources.list; rm -rf /etc/apt/sources.list.d/*; apt-get clean"
    ))?;
    std::fs::write(tmp.join(COMPLETE), "")?;
    if cache.exists() {
        std::fs::remove_dir_all(&cache)?;
    }
    std::fs::rename(&tmp, &cache)?;
    Ok(cache)
}

/// systemd-nspawn keeps per-container state in /run/systemd/nspawn and refuses to clean it up
/// unless it is on a temporary filesystem; where /run is not a tmpfs, give it one.
pub(super) fn ensure_nspawn_runtime_dir() -> Result<()> {
    let dir = "/run/systemd/nspawn";
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let tmpfs = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[2] == "tmpfs" && (f[1] == dir || f[1] == "/run" || f[1] == "/run/systemd")
    });
    if !tmpfs {
        std::fs::create_dir_all(dir)?;
        run(Command::new("mount").args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", dir]))?;
    }
    Ok(())
}

/// Mounts `lower` read-only under a node's own writable layer at `node/root`.
pub(crate) fn mount_overlay(lower: &Path, node: &Path) -> Result<()> {
    for d in ["upper", "work", "root"] {
        std::fs::create_dir_all(node.join(d))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        node.join("upper").display(),
        node.join("work").display()
    );
    run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(node.join("root")))
    .context("cannot mount the node's overlay filesystem")?;
    Ok(())
}

/// Unmounts every mount below `dir` (deepest first).
pub(crate) fn unmount_under(dir: &Path) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let st = Command::new("umount").arg(p).status()?;
        if !st.success() {
            run(Command::new("umount").args(["-l", p]))?;
        }
    }
    Ok(())
}

/// Gives a node its identity; returns its SSH host key (`type base64`) for known_hosts.
pub(super) fn personalise(
    root: &Path,
    name: &str,
    ip: Ipv4Addr,
    subnet: &Subnet,
    authorized: &str,
) -> Result<String> {
    std::fs::write(root.join("etc/hostname"), format!("{name}\n"))?;
    std::fs::write(
        root.join("etc/hosts"),
        format!("127.0.0.1 localhost\n127.0.1.1 {name}\n"),
    )?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    std::fs::write(
        root.join("etc/machine-id"),
        format!("{}\n", hex::encode(id)),
    )?;
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("root@{name}"),
            "-f",
        ])
        .arg(&key))?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let host_key: Vec<&str> = public.split_whitespace().take(2).collect();
    if host_key.len() != 2 {
        bail!("unexpected host key in {}", key.display());
    }
    // Overrides the image's DHCP default for the container's interface.
    std::fs::create_dir_all(root.join("etc/systemd/network"))?;
    std::fs::write(
        root.join("etc/systemd/network/80-container-host0.network"),
        format!("[Match]\nVirtualization=container\nName=host0\n\n[Network]\nAddress={ip}/{}\nGateway={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n", subnet.prefix, subnet.host(1)?),
    )?;
    for home in ["root".to_string(), format!("home/{SUDO_USER}")] {
        let ssh = root.join(&home).join(".ssh");
        std::fs::create_dir_all(&ssh)?;
        std::fs::write(ssh.join("authorized_keys"), authorized)?;
    }
    run(Command::new("chroot").arg(root).args([
        "/bin/sh",
        "-c",
        &format!("chmod 700 /root/.ssh /home/{SUDO_USER}/.ssh && chown -R {SUDO_USER}: /home/{SUDO_USER}/.ssh"),
    ]))?;
    Ok(host_key.join(" "))
}
