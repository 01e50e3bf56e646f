//! The engine's speed against real OpenSSH servers on 127.0.1.N (`cargo bench --bench engine`,
//! as root, like the integration tests). Prints a Markdown table for README.md.
//!
//! Per host, written with loops as an Ansible user would: 10 directories, 20 templates (~30
//! lines, host vars and a loop), 5 lineinfile edits on one file, 10 commands guarded by
//! `creates:`, one handler notified by the templates. Against 1, 10 and 30 hosts: the first run,
//! the no-op second run, and two floors measured with the same SSH client: one connection per
//! host sending 47 `true` commands one after another, and one script per host. Also the upload
//! rate of a 150 MB file and pgdeploy's peak memory.

#[path = "../tests/common/mod.rs"]
mod common;

use pgdeploy::transport::{Connection, ExecOptions, HostKeyPolicy, KnownHosts, Stdin, Target};
use std::time::{Duration, Instant};

const PLAYBOOK: &str = r#"
- hosts: web
  gather_facts: true
  vars:
    dirs: "{{ range(1, 11) | map('string') | list }}"
    templates: "{{ range(1, 21) | map('string') | list }}"
    settings:
      - { key: max_connections, value: 100 }
      - { key: shared_buffers, value: 128MB }
      - { key: work_mem, value: 4MB }
      - { key: port, value: 5432 }
      - { key: listen_addresses, value: "'*'" }
    marks: "{{ range(1, 11) | map('string') | list }}"
  tasks:
    - name: directories
      file:
        path: "{{ base }}/{{ inventory_hostname }}/d{{ item }}"
        state: directory
        mode: "0755"
      loop: "{{ dirs }}"
    - name: templates
      template:
        src: bench.conf.j2
        dest: "{{ base }}/{{ inventory_hostname }}/d1/t{{ item }}.conf"
      loop: "{{ templates }}"
      notify: reload
    - name: settings
      lineinfile:
        path: "{{ base }}/{{ inventory_hostname }}/settings.conf"
        regexp: "^{{ item.key }} ="
        line: "{{ item.key }} = {{ item.value }}"
        create: true
      loop: "{{ settings }}"
    - name: one-time commands
      command: touch {{ base }}/{{ inventory_hostname }}/mark{{ item }}
      args:
        creates: "{{ base }}/{{ inventory_hostname }}/mark{{ item }}"
      loop: "{{ marks }}"
  handlers:
    - name: reload
      command: "true"
"#;

const TEMPLATE: &str = r#"# Managed by the benchmark: {{ inventory_hostname }}
# host {{ ansible_host }} port {{ ansible_port }}
[main]
name = {{ inventory_hostname }}
address = {{ ansible_host }}
user = {{ ansible_user }}
template = {{ item }}
{% for n in range(1, 8) %}
option_{{ n }} = {{ n * 10 }}   # {{ inventory_hostname }}-{{ n }}
{% endfor %}

[peers]
{% for h in groups['web'][:8] %}
{{ h }} = {{ hostvars[h]['ansible_host'] }}:{{ hostvars[h]['ansible_port'] }}
{% endfor %}

[limits]
nofile = 65536
nproc = 4096
memlock = unlimited
stack = 8192

[end]
# {{ item }} of 20
"#;

/// A user with a plain home: on this kind of machine root's ~/.bashrc may be heavy (pyenv
/// and the like), and Debian's bash reads ~/.bashrc for every command sshd starts: that
/// would measure root's shell start-up, not pgdeploy.
const BENCH_USER: &str = common::SUDO_USER;

struct Measure {
    seconds: f64,
    peak_kib: u64,
    ok: bool,
    out: String,
}

/// Runs pgdeploy, timing it and sampling its peak resident memory (VmHWM).
fn pgdeploy(lab: &common::Lab, args: &[&str]) -> Measure {
    let start = Instant::now();
    let mut child = lab
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let out_reader = drain(child.stdout.take().unwrap());
    let err_reader = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = start.elapsed().as_secs_f64();
    let out = out_reader.join().unwrap() + &err_reader.join().unwrap();
    Measure {
        seconds,
        peak_kib: peak,
        ok: status.success(),
        out,
    }
}

/// Reads a child's output to the end on its own thread (so a full pipe never blocks it).
fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        r.read_to_string(&mut s).ok();
        s
    })
}

fn targets(lab: &common::Lab, n: usize) -> Vec<Target> {
    lab.hosts[..n]
        .iter()
        .map(|h| Target {
            name: h.name.clone(),
            address: h.ip.clone(),
            port: h.port,
            user: BENCH_USER.into(),
            key_files: vec![lab.path().join("id_ed25519")],
            password: None,
            become_password: None,
            connect_timeout: Duration::from_secs(10),
            jump: None,
        })
        .collect()
}

/// The floors: one connection per host, then `commands` commands one after another on each
/// host, all hosts at once. Returns the seconds it took, connecting included (as for pgdeploy's
/// runs) and without it.
async fn floor(lab: &common::Lab, n: usize, commands: usize, script: &str) -> (f64, f64) {
    let known = KnownHosts {
        files: vec![lab.path().join("known_hosts")],
        policy: HostKeyPolicy::Strict,
    };
    let connecting = Instant::now();
    let conns = futures::future::join_all(
        targets(lab, n)
            .iter()
            .map(|t| Connection::connect(t, &known)),
    )
    .await;
    let conns: Vec<Connection> = conns.into_iter().map(|c| c.unwrap()).collect();
    let start = Instant::now();
    futures::future::join_all(conns.iter().map(|c| async move {
        for _ in 0..commands {
            let out = c
                .exec(script, Stdin::None, &ExecOptions::default())
                .await
                .unwrap();
            assert!(out.ok());
        }
    }))
    .await;
    (
        connecting.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64(),
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and must not spend minutes here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("the engine benchmark runs with `cargo bench --bench engine`");
        return;
    }
    let lab = common::Lab::start(30);
    // The bench user works in the lab's directory.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(lab.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let world = |p: &std::path::Path| {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    };
    let pb = lab.write("bench.yml", PLAYBOOK);
    std::fs::create_dir_all(lab.path().join("templates")).unwrap();
    std::fs::write(lab.path().join("templates/bench.conf.j2"), TEMPLATE).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let script47: String = vec!["true"; 47].join("\n");
    println!(
        "| hosts | first run | no-op run | floor: connect + 47 commands | floor: connect + one script | (47 commands alone) | peak memory |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let inv = lab.inventory(BENCH_USER, "");
    for n in [1usize, 10, 30] {
        let (first, second) = first_and_no_op(&lab, &pb, &inv, n, &format!("state{n}"));
        let f47 = rt.block_on(floor(&lab, n, 47, "true"));
        let f1 = rt.block_on(floor(&lab, n, 1, &script47));
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.0} MiB |",
            first.seconds,
            second.seconds,
            f47.0,
            f1.0,
            f47.1,
            first.peak_kib.max(second.peak_kib) as f64 / 1024.0
        );
    }
    world(&lab.path().join("upload"));
    upload(&lab);
    latency(&lab, &rt, &pb);
}

/// The same playbook with 25 ms of round-trip latency in front of every sshd (real clusters
/// sit behind bastions and WAN links): a delaying TCP proxy per host on 127.0.2.N, each chunk
/// forwarded 12.5 ms after it arrived, in both directions. The kernel here has no netem.
fn latency(lab: &common::Lab, rt: &tokio::runtime::Runtime, pb: &std::path::Path) {
    let one_way = Duration::from_micros(12_500);
    let known_path = lab.path().join("known_hosts");
    let mut known = std::fs::read_to_string(&known_path).unwrap();
    let mut inv = String::from("[web]\n");
    for (i, h) in lab.hosts.iter().enumerate() {
        let ip = format!("127.0.2.{}", i + 1);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((ip.as_str(), 0)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream: std::net::SocketAddr = format!("{}:{}", h.ip, h.port).parse().unwrap();
        rt.spawn(delaying_proxy(listener, upstream, one_way));
        // The proxy's address vouched for by the host's own key.
        let line = known
            .lines()
            .find(|l| l.starts_with(&format!("[{}]:{} ", h.ip, h.port)))
            .unwrap()
            .to_string();
        let key = line.split_once(' ').unwrap().1.to_string();
        known.push_str(&format!("[{ip}]:{port} {key}\n"));
        inv.push_str(&format!(
            "{} ansible_host={ip} ansible_port={port} ansible_user={BENCH_USER} ansible_ssh_private_key_file={}\n",
            h.name,
            lab.path().join("id_ed25519").display()
        ));
    }
    std::fs::write(&known_path, known).unwrap();
    let inv_path = lab.write("inventory_latency.ini", &inv);
    println!(
        "\n| hosts | commands per host, first run | commands per host, no-op run | first run, +25 ms RTT | no-op run, +25 ms RTT |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in [1usize, 10, 30] {
        let (first, second) = first_and_no_op(lab, pb, &inv_path, n, &format!("latency{n}"));
        println!(
            "| {n} | {} | {} | {:.2} s | {:.2} s |",
            common::recap_commands(&first.out, "h1"),
            common::recap_commands(&second.out, "h1"),
            first.seconds,
            second.seconds
        );
    }
}

/// Accepts connections and forwards each to `upstream`, every chunk `one_way` late.
async fn delaying_proxy(
    listener: tokio::net::TcpListener,
    upstream: std::net::SocketAddr,
    one_way: Duration,
) {
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::spawn(delayed_pipe(cr, sw, one_way));
        tokio::spawn(delayed_pipe(sr, cw, one_way));
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (order kept, chunks
/// in flight overlap as on a long link).
async fn delayed_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The playbook on the first `n` hosts, twice: the first run, and the second, which must
/// change nothing. Their state lives in `dir` below the lab's directory (open to all: the
/// bench user writes there).
fn first_and_no_op(
    lab: &common::Lab,
    pb: &std::path::Path,
    inv: &std::path::Path,
    n: usize,
    dir: &str,
) -> (Measure, Measure) {
    let names: Vec<&str> = lab.hosts[..n].iter().map(|h| h.name.as_str()).collect();
    let base = lab.path().join(dir);
    std::fs::create_dir_all(&base).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
    let limit = names.join(",");
    let base_arg = format!("base={}", base.display());
    let args = [
        "run",
        pb.to_str().unwrap(),
        "-i",
        inv.to_str().unwrap(),
        "-l",
        &limit,
        "-e",
        &base_arg,
    ];
    let first = pgdeploy(lab, &args);
    assert!(first.ok, "{}", first.out);
    let second = pgdeploy(lab, &args);
    assert!(
        second.ok && second.out.contains("changed=0"),
        "the second run must change nothing:\n{}",
        second.out
    );
    (first, second)
}

/// A 150 MB file copied to one host (the copy module streams it through the connection).
fn upload(lab: &common::Lab) {
    let src = lab.path().join("big.bin");
    let size: usize = 150 * 1000 * 1000;
    {
        let mut f = std::fs::File::create(&src).unwrap();
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut written = 0;
        while written < size {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = block.len().min(size - written);
            std::io::Write::write_all(&mut f, &block[..n]).unwrap();
            written += n;
        }
    }
    let pb = lab.write(
        "upload.yml",
        "- hosts: h1\n  gather_facts: false\n  tasks:\n    - copy: { src: \"{{ src }}\", dest: \"{{ dest }}\" }\n",
    );
    let inv = lab.inventory(BENCH_USER, "");
    let dest = lab.path().join("upload/big.copy");
    let src_arg = format!("src={}", src.display());
    let dest_arg = format!("dest={}", dest.display());
    let m = pgdeploy(
        lab,
        &[
            "run",
            pb.to_str().unwrap(),
            "-i",
            inv.to_str().unwrap(),
            "-e",
            &src_arg,
            "-e",
            &dest_arg,
        ],
    );
    assert!(m.ok, "{}", m.out);
    assert_eq!(std::fs::metadata(&dest).unwrap().len() as usize, size);
    println!(
        "\nupload of 150 MB to one host: {:.2} s, {:.0} MB/s (whole run, hashing included); peak memory {:.0} MiB",
        m.seconds,
        150.0 / m.seconds,
        m.peak_kib as f64 / 1024.0
    );
}
