//! An HTTPS client for the lab tests: asks a service of the cluster with (or without) a client
//! certificate, trusting only the cluster's CA (the files pgdeploy keeps beside the inventory).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP status of GET `path` on `ip:port` over TLS, or why there is none (the handshake
/// refused, the connection closed). `client`: the certificate and key to show.
pub fn https_get(
    ip: &str,
    port: u16,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<u16, String> {
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
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .map_err(|e| e.to_string())?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
                PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
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
