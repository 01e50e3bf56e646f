//! Running pgdeploy against the lab (systemd-nspawn hosts), for the lab and cluster tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub out: String,
}

/// Runs pgdeploy with an empty HOME: host keys are trusted only through the lab's known_hosts.
pub fn pgdeploy(home: &Path, args: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(args)
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

pub fn ok(r: Run) -> String {
    assert_eq!(r.code, 0, "{}", r.out);
    r.out
}

/// The run's recap lists each of `hosts`, and no host in it changed anything.
pub fn assert_nothing_changed(out: &str, hosts: &[&str]) {
    let recap: Vec<&str> = out.lines().filter(|l| l.contains(" : ok=")).collect();
    for host in hosts {
        assert!(
            recap.iter().any(|l| l.starts_with(&format!("{host} "))),
            "{host} is in the recap:\n{out}"
        );
    }
    for line in recap {
        assert!(
            line.contains(" changed=0 "),
            "the run must change nothing: {line}\n{out}"
        );
    }
}

/// A lab in a temporary directory, powered off when dropped (even after a failed assertion).
pub struct TestLab {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub dir: PathBuf,
}

impl TestLab {
    pub fn up() -> TestLab {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the lab tests need root (bridge, mounts, containers)"
        );
        need("systemd-nspawn", "systemd-container");
        need("debootstrap", "debootstrap");
        let tmp = tempfile::Builder::new()
            .prefix("pgdeploy-lab-")
            .tempdir()
            .unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let dir = tmp.path().join("lab");
        let lab = TestLab { tmp, home, dir };
        ok(lab.lab(&["up"]));
        lab
    }

    pub fn lab(&self, args: &[&str]) -> Run {
        let mut a = vec!["lab"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--dir", self.dir.to_str().unwrap()]);
        pgdeploy(&self.home, &a)
    }

    pub fn inventory(&self) -> String {
        self.dir.join("inventory").display().to_string()
    }

    pub fn pgdeploy(&self, args: &[&str]) -> Run {
        pgdeploy(&self.home, args)
    }

    /// Writes a playbook into the test's directory and runs it against the lab's hosts.
    pub fn play(&self, name: &str, yaml: &str, extra: &[&str]) -> Run {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        let inv = self.inventory();
        let mut args = vec!["run", path.to_str().unwrap(), "-i", &inv];
        args.extend_from_slice(extra);
        self.pgdeploy(&args)
    }

    /// Takes a host out of the inventory file (as a user does after `remove-node`).
    pub fn forget(&self, host: &str) {
        let path = self.dir.join("inventory");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(host))
            .collect();
        assert!(kept.len() < text.lines().count(), "{host} is not in {text}");
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    }

    /// Builds the offline bundle (in the test's directory) and returns its path.
    pub fn bundle(&self) -> PathBuf {
        let bundle = self.tmp.path().join("bundle");
        ok(self.pgdeploy(&["bundle", "--out", bundle.to_str().unwrap()]));
        bundle
    }
}

impl TestLab {
    /// A shell command on `host` (through pgdeploy run); it must succeed.
    pub fn on(&self, host: &str, cmd: &str) {
        let yaml = format!(
            "- hosts: {host}\n  gather_facts: no\n  tasks:\n    - shell: {}\n",
            serde_json::to_string(cmd).unwrap()
        );
        ok(self.play("on.yml", &yaml, &[]));
    }

    /// The database hosts that have the lab's VIP (10.77.0.100) on an interface; unreachable
    /// hosts count as not.
    pub fn vip_holders(&self) -> Vec<String> {
        let r = self.play(
            "vip.yml",
            "- hosts: postgres_cluster\n  gather_facts: no\n  tasks:\n    - command: ip -o -4 addr show\n      register: a\n      changed_when: false\n    - debug: msg=\"holder {{ inventory_hostname }}\"\n      when: \"' 10.77.0.100/' in a.stdout\"\n",
            &["--connect-timeout", "3"],
        );
        r.out
            .lines()
            .filter_map(|l| {
                l.split_once("=> holder ")
                    .map(|(_, h)| h.trim().to_string())
            })
            .collect()
    }
}

/// The member of `nodes` (name, address) whose Patroni says it is the primary, asked from
/// this machine over https with the cluster's CA `ca`.
pub fn leader(nodes: &[(&'static str, &str)], ca: &Path) -> Option<&'static str> {
    nodes
        .iter()
        .find(|(_, ip)| super::tls::https_get(ip, 8008, "/primary", ca, None) == Ok(200))
        .map(|(n, _)| *n)
}

/// Waits (polling every half second) until `f` holds; fails after `limit` seconds.
pub fn until(limit: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(limit),
            "{what}: not within {limit} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.lab(&["down"]);
    }
}

pub fn need(cmd: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        found,
        "the lab tests need {cmd}: apt-get install -y {package}"
    );
}
