//! Reaching hosts: one SSH connection per host for the whole run, a channel per command.
//!
//! Commands are shell scripts run by `sh -c` (under `sudo` or `runuser` when a task becomes
//! another user), built only with [`quote`]. stdout and stderr come back apart with the exit
//! status. HTTP checks and TCP waits go through the same connection (direct-tcpip), so hosts
//! need no curl.

mod known_hosts;
mod quick_ack;
mod quote;
mod ssh_config;

pub use known_hosts::{HostKeyPolicy, KeyVerdict, KnownHosts};
pub use quote::{join as quote_join, quote, split_words};
pub use ssh_config::SshConfig;

use anyhow::{anyhow, bail, Context, Result};
use russh::client::{self, Handle};
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::OnceCell;

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The inventory name (for messages).
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Key files to offer, in order (an agent's keys are tried first).
    pub key_files: Vec<PathBuf>,
    pub password: Option<String>,
    pub become_password: Option<String>,
    pub connect_timeout: Duration,
    /// A bastion to go through (ProxyJump): the connection to this host is tunnelled through
    /// an SSH connection to it. Its host key is verified like any other.
    pub jump: Option<Box<Target>>,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The exit status; 255 when the command died of a signal or the channel closed without one.
    pub code: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// What a command reads on stdin.
pub enum Stdin {
    None,
    Bytes(Vec<u8>),
    /// Streamed from a reader (large uploads are not held in memory).
    Reader(Box<dyn AsyncRead + Unpin + Send>),
}

/// Options of one command.
#[derive(Default)]
pub struct ExecOptions {
    /// Run as this user (through sudo when the login user is not root).
    pub become_user: Option<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

/// Why a host could not be reached (the engine reports these hosts as unreachable).
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

struct Client {
    known: KnownHosts,
    host: String,
    port: u16,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(KeyVerdict::Unknown {
                fingerprint: "a host certificate (certificates are not supported yet)".into(),
            });
            return Ok(false);
        };
        let verdict = self.known.verify(&self.host, self.port, key);
        let ok = matches!(verdict, KeyVerdict::Trusted | KeyVerdict::Learned(_));
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
        Ok(ok)
    }
}

/// An authenticated SSH connection to one host.
pub struct Connection {
    handle: Arc<Handle<Client>>,
    /// A session channel opened while the previous command ran: the next command then costs
    /// one round trip (its request and answer) instead of two (opening the channel first).
    spare: Mutex<Option<tokio::task::JoinHandle<Result<Session, russh::Error>>>>,
    target: Target,
    /// Whether `sudo` asks this login user for a password (found out once, on first use).
    sudo_asks_password: OnceCell<bool>,
    /// The bastion's connection, kept open while the tunnel through it is used.
    _jump: Option<Box<Connection>>,
    /// Channels opened (commands run, TCP connections made through the host): each costs
    /// network round trips, so this is what latency multiplies.
    commands: std::sync::atomic::AtomicU64,
}

type Session = russh::Channel<client::Msg>;

/// How long a command waits for the server to allow it a session (see `open_session`).
const SESSION_WAIT: Duration = Duration::from_secs(60);

/// The host key algorithms pgdeploy accepts: russh's, without `ssh-rsa`, whose signatures
/// use SHA-1 (OpenSSH turned it off by default in 8.8); RSA keys sign with rsa-sha2-256/512.
fn host_key_algorithms() -> Vec<russh::keys::Algorithm> {
    russh::Preferred::DEFAULT
        .key
        .iter()
        .filter(|a| !matches!(a, russh::keys::Algorithm::Rsa { hash: None }))
        .cloned()
        .collect()
}

impl Connection {
    /// Connects, verifies the host key and authenticates.
    pub async fn connect(target: &Target, known: &KnownHosts) -> Result<Connection> {
        let config = client::Config {
            // Long commands (package installs, restores) must not be cut by inactivity.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            window_size: 8 * 1024 * 1024,
            maximum_packet_size: 65535,
            nodelay: true,
            preferred: russh::Preferred {
                key: Cow::Owned(host_key_algorithms()),
                ..Default::default()
            },
            ..Default::default()
        };
        let verdict = Arc::new(Mutex::new(None));
        let client = Client {
            known: known.clone(),
            host: target.address.clone(),
            port: target.port,
            verdict: verdict.clone(),
        };
        let config = Arc::new(config);
        let mut jump_conn = None;
        let connect = async {
            match &target.jump {
                None => {
                    let addr = (target.address.as_str(), target.port);
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    client::connect_stream(config, quick_ack::QuickAck(tcp), client).await
                }
                Some(jump) => {
                    let via = Box::pin(Connection::connect(jump, known))
                        .await
                        .map_err(|e| {
                            russh::Error::IO(std::io::Error::other(format!(
                                "through the jump host {}: {e:#}",
                                jump.name
                            )))
                        })?;
                    let channel = via
                        .handle
                        .channel_open_direct_tcpip(
                            target.address.clone(),
                            target.port as u32,
                            "127.0.0.1",
                            0,
                        )
                        .await?;
                    jump_conn = Some(Box::new(via));
                    client::connect_stream(config, channel.into_stream(), client).await
                }
            }
        };
        let result = tokio::time::timeout(target.connect_timeout, connect).await;
        let mut handle = match result {
            Err(_) => {
                return Err(Unreachable(format!(
                    "cannot connect to {}:{}: no answer within {}s",
                    target.address,
                    target.port,
                    target.connect_timeout.as_secs()
                ))
                .into())
            }
            Ok(Err(e)) => {
                let v = verdict.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(v) =
                    v.filter(|v| !matches!(v, KeyVerdict::Trusted | KeyVerdict::Learned(_)))
                {
                    return Err(Unreachable(known.refusal(&target.address, target.port, &v)).into());
                }
                return Err(Unreachable(format!(
                    "cannot connect to {}:{}: {e}",
                    target.address, target.port
                ))
                .into());
            }
            Ok(Ok(h)) => h,
        };
        authenticate(&mut handle, target).await?;
        Ok(Connection {
            handle: Arc::new(handle),
            spare: Mutex::new(None),
            target: target.clone(),
            sudo_asks_password: OnceCell::new(),
            commands: Default::default(),
            _jump: jump_conn,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs a shell script and collects its output.
    pub async fn exec(&self, script: &str, stdin: Stdin, opts: &ExecOptions) -> Result<Output> {
        let (command, password) = self.wrap(script, opts).await?;
        let run = self.run(&command, password, stdin);
        match opts.timeout {
            Some(t) => tokio::time::timeout(t, run)
                .await
                .map_err(|_| anyhow!("command timed out after {}s", t.as_secs()))?,
            None => run.await,
        }
    }

    /// The command line the server runs, and the sudo password to send first, if any.
    async fn wrap(&self, script: &str, opts: &ExecOptions) -> Result<(String, Option<String>)> {
        let mut body = String::new();
        for (k, v) in &opts.env {
            body.push_str(&format!("export {k}={}; ", quote(v)));
        }
        body.push_str(script);
        let login = self.target.user.as_str();
        let user = match &opts.become_user {
            Some(u) if u != login => u.as_str(),
            _ => return Ok((format!("/bin/sh -c {}", quote(&body)), None)),
        };
        if login == "root" {
            // root needs no sudo; runuser is in util-linux on every distribution.
            return Ok((
                format!("runuser -u {} -- /bin/sh -c {}", quote(user), quote(&body)),
                None,
            ));
        }
        let asks = *self
            .sudo_asks_password
            .get_or_try_init(|| async {
                let out = self.run("sudo -n true", None, Stdin::None).await?;
                Ok::<bool, anyhow::Error>(!out.ok())
            })
            .await?;
        let home = "-H ";
        if !asks {
            return Ok((
                format!(
                    "sudo -n {home}-u {} -- /bin/sh -c {}",
                    quote(user),
                    quote(&body)
                ),
                None,
            ));
        }
        let Some(pw) = self.target.become_password.clone() else {
            bail!(
                "sudo on {} asks {login} for a password; set ansible_become_password (or allow NOPASSWD for {login})",
                self.target.name
            );
        };
        // -k: always read the password, so it never leaks into the command's stdin.
        Ok((
            format!(
                "sudo -k -S -p '' {home}-u {} -- /bin/sh -c {}",
                quote(user),
                quote(&body)
            ),
            Some(pw),
        ))
    }

    async fn run(&self, command: &str, password: Option<String>, stdin: Stdin) -> Result<Output> {
        self.count();
        let channel = self.session().await?;
        let (mut read, write) = channel.split();
        write
            .exec(true, command)
            .await
            .context("exec request failed")?;
        let writer = async {
            if let Some(pw) = password {
                write.data_bytes(format!("{pw}\n").into_bytes()).await?;
            }
            match stdin {
                Stdin::None => {}
                Stdin::Bytes(b) => write.data_bytes(b).await?,
                Stdin::Reader(r) => write.data(r).await?,
            }
            write.eof().await?;
            Ok::<(), russh::Error>(())
        };
        let reader = async {
            let mut out = Output {
                code: 255,
                ..Default::default()
            };
            let mut got_status = false;
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.code = exit_status;
                        got_status = true;
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.stderr.extend_from_slice(
                            format!("killed by signal {signal_name:?}").as_bytes(),
                        );
                        got_status = true;
                    }
                    _ => {}
                }
            }
            (out, got_status)
        };
        let (w, (out, got_status)) = tokio::join!(writer, reader);
        if let Err(e) = w {
            // The command may legitimately exit before reading all of stdin.
            if !got_status {
                bail!("{}: sending input failed: {e}", self.target.name);
            }
        }
        if !got_status && self.handle.is_closed() {
            return Err(Unreachable(format!(
                "{}: connection lost during a command",
                self.target.name
            ))
            .into());
        }
        Ok(out)
    }

    /// A session channel for a command: the one opened ahead if it opened, else a new one;
    /// either way the next is opened ahead now.
    async fn session(&self) -> Result<Session> {
        let ahead = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        let ready = match ahead {
            Some(task) => task.await.ok().and_then(|r| r.ok()),
            None => None,
        };
        let channel = match ready {
            Some(c) => c,
            // None opened ahead, or the server refused a second session (MaxSessions 1).
            None => self.open_session().await?,
        };
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        // Only one ahead: a second would stay open, unused, until the connection closes.
        if spare.is_none() {
            let handle = self.handle.clone();
            *spare = Some(tokio::spawn(
                async move { handle.channel_open_session().await },
            ));
        }
        Ok(channel)
    }

    /// A new session channel. A server that allows fewer sessions at once than pgdeploy
    /// opens (sshd's MaxSessions) refuses one while the others run — or while a finished
    /// command's channel is still counted — so a refusal is asked again, waiting a little
    /// longer each time, for up to `SESSION_WAIT`.
    async fn open_session(&self) -> Result<Session> {
        let mut wait = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        loop {
            let why = match self.handle.channel_open_session().await {
                Ok(c) => return Ok(c),
                Err(russh::Error::ChannelOpenFailure(why)) => why,
                Err(e) => {
                    return Err(
                        Unreachable(format!("{}: connection lost: {e}", self.target.name)).into(),
                    )
                }
            };
            if waited >= SESSION_WAIT {
                bail!(
                    "{}: the server refuses another session ({why:?}) after {}s; allow more \
                     sessions per connection (sshd's MaxSessions, 10 by default)",
                    self.target.name,
                    waited.as_secs()
                );
            }
            tokio::time::sleep(wait).await;
            waited += wait;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    /// Opens a TCP connection from the host to `host:port`, sends `request`, and returns all
    /// that comes back until the peer closes (or `timeout`).
    pub async fn tcp_exchange(
        &self,
        host: &str,
        port: u16,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let fut = async {
            self.count();
            let channel = self
                .handle
                .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
                .await
                .map_err(|e| anyhow!("{host}:{port} from {}: {e}", self.target.name))?;
            let (mut read, write) = channel.split();
            write.data_bytes(request.to_vec()).await?;
            let mut buf = Vec::new();
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => buf.extend_from_slice(&data),
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
            Ok::<Vec<u8>, anyhow::Error>(buf)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("{host}:{port}: no answer within {}s", timeout.as_secs()))?
    }

    /// A TCP connection to `host:port` made from the host, as a byte stream (TLS runs over it).
    pub async fn tcp_stream(
        &self,
        host: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<client::Msg>> {
        self.count();
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| anyhow!("{host}:{port} from {}: {e}", self.target.name))?;
        Ok(channel.into_stream())
    }

    /// Whether `host:port` accepts a TCP connection, seen from the host.
    pub async fn tcp_open(&self, host: &str, port: u16) -> bool {
        self.count();
        match self
            .handle
            .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
            .await
        {
            Ok(ch) => {
                let _ = ch.close().await;
                true
            }
            Err(_) => false,
        }
    }

    fn count(&self) {
        self.commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many channels (commands, TCP connections) this connection has opened.
    pub fn commands(&self) -> u64 {
        self.commands.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

async fn authenticate(handle: &mut Handle<Client>, target: &Target) -> Result<()> {
    let user = target.user.clone();
    let mut tried = Vec::new();
    // An agent's keys first, as OpenSSH does.
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
            if let Ok(ids) = agent.request_identities().await {
                for id in ids {
                    let key = id.public_key().into_owned();
                    let hash = rsa_hash(handle, &key).await;
                    if let Ok(r) = handle
                        .authenticate_publickey_with(user.clone(), key, hash, &mut agent)
                        .await
                    {
                        if r.success() {
                            return Ok(());
                        }
                    }
                }
                tried.push("ssh-agent".to_string());
            }
        }
    }
    for file in &target.key_files {
        if !file.exists() {
            continue;
        }
        let key = match load_secret_key(file, None) {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} (unreadable: {e})", file.display()));
                continue;
            }
        };
        let hash = rsa_hash(handle, key.public_key()).await;
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        let r = handle
            .authenticate_publickey(user.clone(), key)
            .await
            .map_err(|e| Unreachable(format!("{}: authentication failed: {e}", target.name)))?;
        if r.success() {
            return Ok(());
        }
        tried.push(file.display().to_string());
    }
    if let Some(pw) = &target.password {
        let r = handle
            .authenticate_password(user.clone(), pw.clone())
            .await
            .map_err(|e| Unreachable(format!("{}: authentication failed: {e}", target.name)))?;
        if r.success() {
            return Ok(());
        }
        tried.push("password".into());
    }
    Err(Unreachable(format!(
        "{}: {}@{}:{} refused every credential ({}); set ansible_ssh_private_key_file or ansible_user",
        target.name,
        user,
        target.address,
        target.port,
        if tried.is_empty() { "no key found".to_string() } else { tried.join(", ") }
    ))
    .into())
}

async fn rsa_hash(
    handle: &Handle<Client>,
    key: &russh::keys::PublicKey,
) -> Option<russh::keys::HashAlg> {
    if key.algorithm().is_rsa() {
        handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten()
    } else {
        None
    }
}

/// The default key files OpenSSH offers.
pub fn default_key_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .collect()
}
