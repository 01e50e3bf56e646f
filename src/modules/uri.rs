//! uri: an HTTP request made through the host's SSH connection (direct-tcpip), so the URL is
//! reached as the host reaches it and the host needs no curl. https runs TLS over that
//! connection; as in Ansible, `ca_path`, `client_cert` and `client_key` are files on the host
//! (read in one round trip, kept out of traces), and the server's certificate is verified
//! unless `validate_certs: false`.

use super::{args, ModuleCtx, Outcome, Params, ProbeCmd, RequestAhead, Spec};
use crate::transport::{quote, Connection, Output};
use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize, Clone)]
struct Args {
    url: String,
    method: Option<String>,
    body: Option<Value>,
    body_format: Option<String>,
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    status_code: Vec<i64>,
    return_content: Option<bool>,
    timeout: Option<i64>,
    #[serde(alias = "user")]
    url_username: Option<String>,
    #[serde(alias = "password")]
    url_password: Option<String>,
    force_basic_auth: Option<bool>,
    validate_certs: Option<bool>,
    ca_path: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    creates: Option<String>,
    removes: Option<String>,
}

/// `creates`/`removes` as one read of the host: it prints `skip` when the call is not needed.
fn guard_script(a: &Args) -> Option<String> {
    if a.creates.is_none() && a.removes.is_none() {
        return None;
    }
    let mut probe = String::new();
    if let Some(c) = &a.creates {
        probe.push_str(&format!("[ -e {} ] && echo skip; ", quote(c)));
    }
    if let Some(r) = &a.removes {
        probe.push_str(&format!("[ -e {} ] || echo skip; ", quote(r)));
    }
    probe.push_str("true");
    Some(probe)
}

/// The files https needs from the host (the CA to trust, the client certificate and key),
/// and the one command that prints them, a NUL after each (PEM holds none). None for http,
/// or https with no file to read.
fn tls_files(a: &Args) -> Result<Option<([Option<String>; 3], String)>> {
    if !a.url.starts_with("https://") {
        return Ok(None);
    }
    let validate = a.validate_certs.unwrap_or(true);
    let ca = match a.ca_path.clone() {
        Some(c) => Some(c),
        None if validate => Some("/etc/ssl/certs/ca-certificates.crt".to_string()),
        None => None,
    };
    let (cert, key) = (a.client_cert.clone(), a.client_key.clone());
    if cert.is_some() != key.is_some() {
        bail!("uri: client_cert and client_key go together");
    }
    let paths = [ca, cert, key];
    if paths.iter().all(Option::is_none) {
        return Ok(None);
    }
    let script: String = paths
        .iter()
        .map(|p| match p {
            Some(path) => format!("cat -- {} || exit 1; printf '\\0'; ", quote(path)),
            None => "printf '\\0'; ".to_string(),
        })
        .collect();
    Ok(Some((paths, script)))
}

/// Its first read of the host: the `creates`/`removes` guard, else the TLS files (their output
/// holds a private key: never traced).
fn probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    if let Some(guard) = guard_script(&a) {
        return Ok(ProbeCmd::script(guard));
    }
    Ok(tls_files(&a)?
        .and_then(|(_, script)| ProbeCmd::script(script))
        .map(|c| ProbeCmd {
            untraced: true,
            ..c
        }))
}

/// An HTTP request as it goes out.
struct Request {
    method: String,
    url: String,
    tls: bool,
    host: String,
    port: u16,
    bytes: Vec<u8>,
    timeout: Duration,
}

impl Request {
    /// GET and the like only read: they run in check mode, and may be made ahead.
    fn read_only(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }

    /// What names the response when the request is made ahead: method, URL and a hash of
    /// the request (its headers may hold credentials: only their hash is shown).
    fn key(&self, a: &Args) -> Result<String> {
        let files = tls_files(a)?.map(|(_, script)| script).unwrap_or_default();
        let mut seen = self.bytes.clone();
        seen.extend_from_slice(files.as_bytes());
        seen.push(a.validate_certs.unwrap_or(true) as u8);
        let hash = super::files::hash_hex(&seen);
        Ok(format!(
            "{} {} (made ahead; request {})",
            self.method,
            self.url,
            &hash[..16]
        ))
    }

    /// Makes the request through `conn` (TLS with `config` for https).
    async fn send(&self, conn: &Connection, config: Option<Arc<ClientConfig>>) -> Result<Vec<u8>> {
        match config {
            Some(c) => {
                tls_exchange(conn, c, &self.host, self.port, &self.bytes, self.timeout).await
            }
            None => {
                conn.tcp_exchange(&self.host, self.port, &self.bytes, self.timeout)
                    .await
            }
        }
    }
}

fn request(a: &Args) -> Result<Request> {
    let url = a.url.clone();
    let method = a
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => bail!("uri: only http:// and https:// URLs are supported, got `{url}`"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| anyhow!("uri: bad port in `{url}`"))?,
        ),
        None => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(str::to_string)
        .unwrap_or(host);
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = &a.headers {
        for (k, v) in h {
            headers.push((
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ));
        }
    }
    let body = match (&a.body, a.body_format.as_deref()) {
        (None, _) => Vec::new(),
        (Some(b), Some("json")) => {
            headers.push(("Content-Type".into(), "application/json".into()));
            match b {
                Value::String(s) => s.clone().into_bytes(),
                other => serde_json::to_vec(other)?,
            }
        }
        (Some(Value::String(s)), _) => s.clone().into_bytes(),
        (Some(other), _) => serde_json::to_vec(other)?,
    };
    // Credentials go with the first request, which is what force_basic_auth asks for; without
    // it Ansible waits for the server's 401, and the server sees the same request.
    let _preemptive = a.force_basic_auth;
    if let Some(u) = &a.url_username {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{u}:{}",
            a.url_password.as_deref().unwrap_or_default()
        ));
        headers.push(("Authorization".into(), format!("Basic {token}")));
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: pgdeploy\r\nAccept: */*\r\n");
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    Ok(Request {
        method,
        url,
        tls,
        host,
        port,
        bytes,
        timeout: Duration::from_secs(a.timeout.unwrap_or(30).max(1) as u64),
    })
}

/// A request that only reads (GET, no `creates`/`removes`) is made ahead, once the batch has
/// read the TLS files it needs: requests of several tasks then go out side by side.
fn ahead(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<RequestAhead>> {
    let a: Args = p.parse()?;
    let req = request(&a)?;
    if guard_script(&a).is_some() || !req.read_only() {
        return Ok(None);
    }
    let key = req.key(&a)?;
    let needs = tls_files(&a)?.map(|(_, script)| ProbeCmd {
        untraced: true,
        ..ProbeCmd::plain(script)
    });
    Ok(Some(RequestAhead {
        key,
        needs,
        run: Box::new(move |conn, files| {
            Box::pin(async move {
                let config = match req.tls {
                    true => Some(tls_config_from(&a, files.unwrap_or_default())?),
                    false => None,
                };
                req.send(&conn, config).await
            })
        }),
    }))
}

pub async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let a: Args = p.parse()?;
    let req = request(&a)?;
    let (method, url) = (req.method.clone(), req.url.clone());
    let read_only = req.read_only();
    // creates/removes: a path on the host says whether the call is needed (one probe).
    if let Some(guard) = guard_script(&a) {
        if ctx.sh(&guard).await?.stdout_str().contains("skip") {
            return Ok(Outcome::ok().with_msg("skipped: creates/removes says it already ran"));
        }
    }
    if ctx.check && !read_only && !ctx.force_run {
        return Ok(Outcome::not_run(format!("would send {method} {url}")));
    }
    let expected: Vec<i64> = if a.status_code.is_empty() {
        vec![200]
    } else {
        a.status_code.clone()
    };
    // The response read ahead, when it has the status the task expects (else the request
    // goes again, as the task reaches it: a server may answer otherwise by then); a request
    // that got no answer ahead is not made twice (a server that does not answer is waited
    // for once).
    let early = match read_only {
        true => ctx.response_ahead(&req.key(&a)?).filter(|r| match r {
            Ok(r) => {
                parse_response(r).is_ok_and(|(status, _, _)| expected.contains(&(status as i64)))
            }
            Err(_) => true,
        }),
        false => None,
    };
    let exchange = async {
        if let Some(r) = early {
            return r.map_err(|e| anyhow!(e));
        }
        let config = match req.tls {
            true => Some(tls_config(&a, ctx).await?),
            false => None,
        };
        req.send(ctx.conn()?, config).await
    };
    let response = match exchange.await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome::failed(format!("{method} {url}: {e:#}")).with("status", -1));
        }
    };
    let (status, resp_headers, content) = parse_response(&response)?;
    let text = String::from_utf8_lossy(&content).into_owned();
    let mut outcome = if expected.contains(&(status as i64)) {
        Outcome::ok()
    } else {
        Outcome::failed(format!(
            "{method} {url}: status {status}, expected {expected:?}: {}",
            text.chars().take(300).collect::<String>()
        ))
    };
    if !read_only {
        outcome.changed = !outcome.failed;
    }
    let is_json = resp_headers
        .get("content_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.contains("json"));
    if is_json {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            outcome.data.insert("json".into(), v);
        }
    }
    outcome.data.extend(resp_headers.clone());
    // The body as text unless return_content says no (JSON is parsed into `json` either way).
    if a.return_content.unwrap_or(true) {
        outcome = outcome.with("content", text);
    }
    Ok(outcome.with("status", status).with("url", url.clone()))
}

/// The TLS settings of a request: the CA to trust (`ca_path`, else the host's bundle), the
/// client certificate and key if given, no verification with `validate_certs: false`.
async fn tls_config(a: &Args, ctx: &ModuleCtx<'_>) -> Result<Arc<ClientConfig>> {
    let out = match tls_files(a)? {
        Some((_, script)) => {
            ctx.sh_as_untraced(
                &script,
                crate::transport::Stdin::None,
                ctx.become_user.clone(),
            )
            .await?
        }
        None => Output::default(),
    };
    tls_config_from(a, out)
}

/// The TLS settings from the files `tls_files` printed.
fn tls_config_from(a: &Args, out: Output) -> Result<Arc<ClientConfig>> {
    let validate = a.validate_certs.unwrap_or(true);
    let paths = tls_files(a)?.map(|(paths, _)| paths).unwrap_or_default();
    let [ca, cert, _] = &paths;
    if out.code != 0 {
        bail!(
            "uri: cannot read {}: {}",
            paths
                .iter()
                .filter_map(|p| p.as_deref())
                .collect::<Vec<_>>()
                .join(", "),
            out.stderr_str().trim()
        );
    }
    let parts: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if validate {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(part(0)) {
            roots.add(c.map_err(|e| anyhow!("uri: {}: {e}", ca.as_deref().unwrap_or("")))?)?;
        }
        if roots.is_empty() {
            bail!("uri: no certificate in {}", ca.as_deref().unwrap_or(""));
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let config = if cert.is_some() {
        let chain = CertificateDer::pem_slice_iter(part(1))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("uri: client_cert: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(part(2))
            .map_err(|_| anyhow!("uri: client_key holds no private key"))?;
        builder.with_client_auth_cert(chain, key)?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(config))
}

async fn tls_exchange(
    conn: &Connection,
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| anyhow!("{host} is not a name a certificate can be checked against"))?;
    let fut = async {
        let tcp = conn.tcp_stream(host, port).await?;
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| anyhow!("TLS with {host}:{port}: {e}"))?;
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        match stream.read_to_end(&mut buf).await {
            Ok(_) => {}
            // Servers often close without TLS's close_notify; the response is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
            Err(e) => return Err(anyhow!("TLS with {host}:{port}: {e}")),
        }
        Ok(buf)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("{host}:{port}: no answer within {}s", timeout.as_secs()))?
}

/// `validate_certs: false`: any certificate is accepted (its signature is still checked).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Status, headers (lower-case, `-` as `_`, as Ansible returns them) and the de-chunked body.
fn parse_response(raw: &[u8]) -> Result<(u16, Map<String, Value>, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            anyhow!("uri: the server closed the connection without a complete HTTP response")
        })?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("uri: bad status line `{status_line}`"))?;
    let mut headers = Map::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(
                k.trim().to_ascii_lowercase().replace('-', "_"),
                Value::String(v.trim().to_string()),
            );
        }
    }
    if headers
        .get("transfer_encoding")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("uri: bad chunked body"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("uri: bad chunk size `{size_text}`"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("uri: truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The `uri` module.
pub const URI: Spec = Spec {
    params: args::fields::<Args>,
    ahead: Some(ahead),
    refused: &[
        (
            "follow_redirects",
            "redirects are not followed; call the final URL",
        ),
        ("dest", "downloading to a file is not supported"),
        (
            "unix_socket",
            "not supported: HTTP goes over TCP through the host's SSH connection",
        ),
    ],
    probe: Some(probe),
    // Its probe reads files (the TLS ones, or the creates/removes path) and never waits.
    quick_probe: true,
    ..Spec::new("uri", |p, ctx| Box::pin(run(p, ctx)))
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_json() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
        let (status, headers, body) = parse_response(raw).unwrap();
        assert_eq!(status, 503);
        assert_eq!(headers["content_type"], "application/json");
        assert_eq!(body, b"{\"a\":1}");
    }
}
