//! The offline bundle: every component's .deb files, with the dependencies a minimal Debian 12
//! server lacks, and a repository index, for hosts without internet.
//!
//! Dependencies are resolved against the lab's minimal root filesystem (apt runs in a chroot of
//! a throwaway overlay of it), not against this machine, which may have some installed already.

use crate::lab::rootfs;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The package list (PostgreSQL knowledge, kept as data in vars/packages.yml).
const PACKAGES_YML: &str = include_str!("../../vars/packages.yml");

pub fn packages() -> Result<Vec<String>> {
    let v = crate::yaml::parse_json(PACKAGES_YML, "vars/packages.yml")?;
    let list = v["bundle_packages"]
        .as_array()
        .ok_or_else(|| anyhow!("vars/packages.yml: bundle_packages must be a list"))?;
    Ok(list
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect())
}

fn run(cmd: &mut Command) -> Result<String> {
    crate::lab::run(cmd)
}

/// `pgdeploy bundle --out DIR`.
pub fn build(out: &Path) -> Result<()> {
    crate::lab::check_prerequisites()?;
    let start = Instant::now();
    let pkgs = packages()?;
    let cache = rootfs::ensure()?;
    let work = cache.with_file_name("bundle-work");
    rootfs::unmount_under(&work)?;
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    rootfs::mount_overlay(&cache, &work)?;
    let result = download(&work.join("root"), &pkgs, out);
    rootfs::unmount_under(&work)?;
    let _ = std::fs::remove_dir_all(&work);
    let (count, bytes) = result?;
    println!(
        "bundle: {count} packages ({:.0} MB) for {} in {} in {:.1}s\n  use it with: -e package_bundle={}",
        bytes as f64 / 1e6,
        pkgs.join(", "),
        out.display(),
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn download(root: &Path, pkgs: &[String], out: &Path) -> Result<(usize, u64)> {
    let mirror = std::env::var("PGDEPLOY_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let security = mirror.replace("/debian", "/debian-security");
    std::fs::write(
        root.join("etc/apt/sources.list"),
        format!("deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\ndeb {security} bookworm-security main\n"),
    )?;
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .context("cannot copy /etc/resolv.conf into the chroot")?;
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg(root)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    chroot(&["apt-get", "update", "-q"])
        .context("apt-get update in the bundle chroot failed (is the Debian mirror reachable?)")?;
    let mut args = vec!["apt-get", "install", "-q", "-y", "--download-only"];
    args.extend(pkgs.iter().map(String::as_str));
    chroot(&args)?;
    std::fs::create_dir_all(out)?;
    let archives = root.join("var/cache/apt/archives");
    let mut debs: Vec<_> = std::fs::read_dir(&archives)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    if debs.is_empty() {
        bail!("apt downloaded nothing into {}", archives.display());
    }
    // Old files of an earlier bundle would be served by the index: start clean.
    for e in std::fs::read_dir(out)?.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "deb")
            || ["Packages", "Release"].iter().any(|n| p.ends_with(n))
        {
            std::fs::remove_file(p)?;
        }
    }
    let mut index = String::new();
    let mut bytes = 0u64;
    for deb in &debs {
        let name = deb
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let data = std::fs::read(deb)?;
        bytes += data.len() as u64;
        std::fs::write(out.join(&name), &data)?;
        let control = run(Command::new("dpkg-deb").arg("-f").arg(deb))?;
        index.push_str(control.trim_end());
        index.push_str(&format!(
            "\nFilename: ./{name}\nSize: {}\nSHA256: {}\n\n",
            data.len(),
            hex::encode(Sha256::digest(&data))
        ));
    }
    std::fs::write(out.join("Packages"), &index)?;
    // An unsigned Release (the source is marked trusted=yes): apt wants one for a flat repository.
    std::fs::write(
        out.join("Release"),
        format!(
            "Origin: pgdeploy\nLabel: pgdeploy bundle\nSuite: pgdeploy\nCodename: pgdeploy\nArchitectures: amd64 arm64 all\nDescription: pgdeploy offline bundle\nSHA256:\n {} {} Packages\n",
            hex::encode(Sha256::digest(index.as_bytes())),
            index.len()
        ),
    )?;
    Ok((debs.len(), bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_list_is_read_from_vars() {
        let p = super::packages().unwrap();
        for must in [
            "postgresql-15",
            "patroni",
            "python3-etcd",
            "etcd-server",
            "vip-manager",
            "pgbackrest",
        ] {
            assert!(
                p.iter().any(|x| x == must),
                "{must} missing from vars/packages.yml"
            );
        }
    }
}
