//! uri: an HTTP request made through the host's SSH connection (direct-tcpip), so the URL is
//! reached as the host reaches it and the host needs no curl. Plain HTTP only.

use super::{ModuleCtx, Outcome, Params};
use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::time::Duration;

pub async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let url = p.req("url")?;
    let method = p
        .str("method")?
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("uri: only http:// URLs are supported through the SSH connection, got `{url}`");
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
        None => (authority.to_string(), 80),
    };
    let read_only = matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if ctx.check && !read_only && !ctx.force_run {
        return Ok(Outcome::not_run(format!("would send {method} {url}")));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(h)) = p.get("headers") {
        for (k, v) in h {
            headers.push((
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ));
        }
    }
    let body = match (p.get("body"), p.str("body_format")?.as_deref()) {
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
    let user = p.str("url_username")?.or(p.str("user")?);
    let password = p.str("url_password")?.or(p.str("password")?);
    if let Some(u) = &user {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{u}:{}", password.unwrap_or_default()));
        headers.push(("Authorization".into(), format!("Basic {token}")));
    }
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: pgdeploy\r\nAccept: */*\r\n");
    for (k, v) in &headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(&body);
    let timeout = Duration::from_secs(p.int("timeout")?.unwrap_or(30).max(1) as u64);
    let response = match ctx.conn.tcp_exchange(&host, port, &bytes, timeout).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome::failed(format!("{method} {url}: {e:#}")).with("status", -1));
        }
    };
    let (status, resp_headers, content) = parse_response(&response)?;
    let expected: Vec<i64> = match p.get("status_code") {
        None => vec![200],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
            .collect(),
        Some(v) => vec![v
            .as_i64()
            .or_else(|| v.as_str()?.parse().ok())
            .unwrap_or(200)],
    };
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
    Ok(outcome
        .with("status", status)
        .with("url", url.clone())
        .with("content", text))
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
