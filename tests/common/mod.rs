//! Real OpenSSH sshd processes on loopback addresses, for integration tests.
//!
//! Each host gets its own sshd with its own generated host key; a known_hosts file lists their
//! real keys, so pgdeploy verifies them as it would in production. sshd must run as root (it
//! switches to the login user), so these tests need root; they fail, never skip, without it.

#![allow(dead_code)]

pub mod client;
pub mod lab;
pub mod tls;
pub mod writer;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SUDO_USER: &str = "pgdtest";
pub const SUDO_PW_USER: &str = "pgdtestpw";
pub const SUDO_PASSWORD: &str = "Sudo-Pass-7731";

pub struct Host {
    pub name: String,
    pub ip: String,
    pub port: u16,
    child: Child,
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<Host>,
}

fn need(cond: bool, what: &str) {
    assert!(cond, "{what}");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates the test users (idempotent): one with passwordless sudo, one whose sudo needs a
/// password.
fn ensure_users() {
    for (user, nopasswd) in [(SUDO_USER, true), (SUDO_PW_USER, false)] {
        let exists = Command::new("id")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !exists {
            let _ = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", user])
                .status();
        }
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{user}:{SUDO_PASSWORD}\n").as_bytes())
            .unwrap();
        child.wait().unwrap();
        let rule = if nopasswd {
            format!("{user} ALL=(ALL) NOPASSWD: ALL\n")
        } else {
            format!("{user} ALL=(ALL) ALL\n")
        };
        std::fs::write(format!("/etc/sudoers.d/{user}"), rule).unwrap();
        let _ = Command::new("chmod")
            .args(["0440", &format!("/etc/sudoers.d/{user}")])
            .status();
    }
}

impl Lab {
    /// Starts `n` sshd hosts on 127.0.1.1, 127.0.1.2, ...
    pub fn start(n: usize) -> Lab {
        Lab::start_with(n, "ed25519", "")
    }

    /// Hosts whose host keys are of type `key_type`, with `extra` lines in sshd's config (over
    /// the defaults).
    pub fn start_with(n: usize, key_type: &str, extra: &str) -> Lab {
        need(
            Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false),
            "integration tests need root: sshd must run as root to log users in. Run them as root (CI does).",
        );
        need(
            Path::new("/usr/sbin/sshd").exists(),
            "sshd is missing: apt-get install openssh-server",
        );
        need(
            Path::new("/usr/bin/sudo").exists(),
            "sudo is missing: apt-get install sudo",
        );
        std::fs::create_dir_all("/run/sshd").unwrap();
        ensure_users();
        let dir = tempfile::Builder::new()
            .prefix("pgdeploy-it-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("id_ed25519")));
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
        std::fs::set_permissions(
            d.join("authorized_keys"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let mut known = String::new();
        let mut hosts = Vec::new();
        for i in 0..n {
            let name = format!("h{}", i + 1);
            let ip = format!("127.0.1.{}", i + 1);
            let port = free_port(&ip);
            let key = d.join(format!("hostkey_{name}"));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", key_type, "-N", "", "-f"])
                .arg(&key));
            let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            let mut parts = pubkey.split_whitespace();
            known.push_str(&format!(
                "[{ip}]:{port} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            ));
            let config = d.join(format!("sshd_{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    // `extra` first: sshd takes the first value a keyword is given.
                    "{extra}ListenAddress {ip}:{port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
                     PermitRootLogin yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nLogLevel INFO\n\
                     AllowTcpForwarding yes\nMaxSessions 100\nMaxStartups 100\nSubsystem sftp internal-sftp\n",
                    key.display(),
                    d.join("authorized_keys").display(),
                    d.join(format!("sshd_{name}.pid")).display()
                ),
            )
            .unwrap();
            let child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(d.join(format!("sshd_{name}.log"))).unwrap(),
                ))
                .spawn()
                .expect("start sshd");
            hosts.push(Host {
                name,
                ip,
                port,
                child,
            });
        }
        std::fs::write(d.join("known_hosts"), known).unwrap();
        for h in &hosts {
            let start = Instant::now();
            while TcpStream::connect((h.ip.as_str(), h.port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "sshd on {}:{} did not start",
                    h.ip,
                    h.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::fs::create_dir_all(d.join("home")).unwrap();
        Lab { dir, hosts }
    }

    /// How many SSH logins a host's sshd has accepted so far.
    pub fn logins(&self, host: &str) -> usize {
        let log = std::fs::read_to_string(self.path().join(format!("sshd_{host}.log")))
            .unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("Accepted publickey"))
            .count()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An INI inventory of all hosts in group `web`, logging in as `user`.
    pub fn inventory(&self, user: &str, extra: &str) -> PathBuf {
        let mut text = String::from("[web]\n");
        for h in &self.hosts {
            text.push_str(&format!(
                "{} ansible_host={} ansible_port={} ansible_user={user} ansible_ssh_private_key_file={}\n",
                h.name,
                h.ip,
                h.port,
                self.path().join("id_ed25519").display()
            ));
        }
        text.push_str(extra);
        let path = self.path().join(format!("inventory_{user}.ini"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The lab's inventory (as root) plus a host `dead` in group `other` where nothing
    /// listens: it is unreachable.
    pub fn inventory_with_dead_host(&self) -> PathBuf {
        let dead_port = std::net::TcpListener::bind("127.0.1.9:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.inventory(
            "root",
            &format!("[other]\ndead ansible_host=127.0.1.9 ansible_port={dead_port}\n"),
        )
    }

    /// Writes a file into the test directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `pgdeploy run PLAYBOOK -i INVENTORY EXTRA...`.
    pub fn run(&self, playbook: &Path, inventory: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "run",
            playbook.to_str().unwrap(),
            "-i",
            inventory.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.pgdeploy(&args)
    }

    /// `pgdeploy ARGS` with this lab's known_hosts and a private HOME, without an agent.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgdeploy"));
        c.args(args)
            .arg("--known-hosts")
            .arg(self.path().join("known_hosts"))
            .env("HOME", self.path().join("home"))
            .env_remove("SSH_AUTH_SOCK");
        c
    }

    /// Runs `pgdeploy ARGS` (see [`Lab::command`]).
    pub fn pgdeploy(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run pgdeploy");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            let _ = h.child.kill();
            let _ = h.child.wait();
        }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The recap counts of a host: (ok, changed, unreachable, failed, skipped).
    pub fn recap(&self, host: &str) -> (u32, u32, u32, u32, u32) {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with(host) && l.contains(" : ok="))
            .unwrap_or_else(|| panic!("no recap line for {host} in:\n{}", self.all()));
        let n = |k: &str| -> u32 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u32::MAX)
        };
        (
            n("ok"),
            n("changed"),
            n("unreachable"),
            n("failed"),
            n("skipped"),
        )
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code; output:\n{}", self.all());
        self
    }
}

/// `commands=N` from the text recap line of `host` (the commands its connection ran).
pub fn recap_commands(out: &str, host: &str) -> u64 {
    out.lines()
        .rev()
        .find(|l| l.starts_with(&format!("{host} ")) && l.contains(" : ok="))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("commands="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no commands= for {host} in:\n{out}"))
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
