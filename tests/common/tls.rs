//! An HTTPS client for the lab tests: asks a service of the cluster with (or without) a client
//! certificate, trusting only the cluster's CA (the files pgdeploy keeps beside the inventory).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A TLS client that trusts only `ca`, showing `client` (certificate, key) if given.
fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .map_err(|e| e.to_string())?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
                PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string()),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The HTTP status of GET `path` on `ip:port` over TLS, or why there is none (the handshake
/// refused, the connection closed). `client`: the certificate and key to show.
pub fn https_get(
    ip: &str,
    port: u16,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<u16, String> {
    let config = client_config(ca, client)?;
    let name = ServerName::try_from(ip.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let addr = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    get_status(rustls::StreamOwned::new(conn, tcp), ip, path)
}

/// The same request in plain HTTP: its status, or why there is none.
pub fn http_get(ip: &str, port: u16, path: &str) -> Result<u16, String> {
    let addr = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    get_status(s, ip, path)
}

/// Sends GET `path` and reads the status line's code.
fn get_status(mut s: impl Read + Write, ip: &str, path: &str) -> Result<u16, String> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {:?}", String::from_utf8_lossy(&head)))
}

/// Asks PostgreSQL (or PgBouncer) at `ip:port` to log `user` in to `db` over TLS (trusting
/// `ca`), as libpq does: SSLRequest, the handshake, a StartupMessage. Ok: the server asked for
/// a password (the login may go on); Err: what it said instead (an ErrorResponse's message).
pub fn pg_login_answer(ip: &str, port: u16, ca: &Path, user: &str, db: &str) -> Result<(), String> {
    let addr = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .map_err(|e| e.to_string())?;
    let mut yes = [0u8; 1];
    tcp.read_exact(&mut yes).map_err(|e| e.to_string())?;
    if yes[0] != b'S' {
        return Err(format!("no TLS offered ({:?})", yes[0] as char));
    }
    let config = client_config(ca, None)?;
    let name = ServerName::try_from(ip.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).map_err(|e| e.to_string())?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut rest = vec![0u8; len.saturating_sub(4).min(65536)];
    s.read_exact(&mut rest).map_err(|e| e.to_string())?;
    match head[0] {
        b'R' => Ok(()),
        b'E' => Err(rest
            .split(|b| *b == 0)
            .find(|f| f.first() == Some(&b'M'))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
            .unwrap_or_else(|| String::from_utf8_lossy(&rest).into_owned())),
        other => Err(format!("unexpected message {:?}", other as char)),
    }
}
