//! tls_certificate: a certificate for one name, signed by a CA kept on the control machine.
//!
//! The CA (`ca.crt`, `ca.key`) is made once in `ca_dir` and reused by every run; each name
//! gets `NAME.crt` and `NAME.key` there, issued again only when one is missing, not signed by
//! the CA, made for other names or addresses, its key does not match, or it expires within
//! `renew_days`. Keys are ECDSA P-256 (Go, OpenSSL and Python all take it); files are 0600 in
//! a 0700 directory. A CA given without its key (`ca.crt` alone) is the user's own: its
//! certificates must be given too, and are checked, never issued.
//! Runs on the control machine; check mode writes nothing. The private key it returns is a
//! secret (masked in every output).

use super::{args, ModuleCtx, Outcome, Params, Spec};
use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use serde::Deserialize;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Hosts run in parallel; the CA is made once.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";

pub async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    certificate(p, ctx.check)
}

#[derive(Deserialize)]
struct Args {
    ca_dir: String,
    name: String,
    #[serde(default)]
    subject_alt_names: Vec<String>,
    valid_days: Option<i64>,
    renew_days: Option<i64>,
    ca_valid_days: Option<i64>,
    ca_common_name: Option<String>,
}

/// Issues (or keeps) the certificate on the control machine.
fn certificate(p: &Params<'_>, check: bool) -> Result<Outcome> {
    let a: Args = p.parse()?;
    let dir = PathBuf::from(a.ca_dir);
    let name = a.name;
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        || name == "ca"
    {
        bail!("tls_certificate: `name` must be a host name (letters, digits, . - _), not `{name}`");
    }
    let mut sans = a.subject_alt_names;
    sans.retain(|s| !s.is_empty());
    sans.sort();
    sans.dedup();
    let days = |key: &str, given: Option<i64>, default: i64| -> Result<i64> {
        match given.unwrap_or(default) {
            d if (0..=36500).contains(&d) => Ok(d),
            d => bail!("tls_certificate: `{key}` must be between 0 and 36500 days, not {d}"),
        }
    };
    let valid_days = days("valid_days", a.valid_days, 825)?;
    let renew_days = days("renew_days", a.renew_days, 30)?;
    let ca_days = days("ca_valid_days", a.ca_valid_days, 3650)?;
    let ca_name = a.ca_common_name.unwrap_or_else(|| "pgdeploy CA".into());

    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut made = Vec::new();
    let ca = match load_ca(&dir)? {
        Some(ca) => ca,
        None if check => {
            return Ok(Outcome::not_run(format!(
                "would make a CA in {} and issue a certificate for {name}",
                dir.display()
            )))
        }
        None => {
            made.push(format!("made a CA in {}", dir.display()));
            make_ca(&dir, &ca_name, ca_days)?
        }
    };
    let now = OffsetDateTime::now_utc();
    if ca.not_after - now < Duration::days(renew_days) {
        bail!(
            "tls_certificate: the CA in {} expires on {}: move the directory away to make a new \
             CA (every certificate is then issued again), or put your own ca.crt and ca.key there",
            dir.display(),
            ca.not_after.date()
        );
    }
    let crt_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    let existing = read_private(&crt_path)?.zip(read_private(&key_path)?);
    let problem = match &existing {
        None => Some("there is none".to_string()),
        Some((crt, key)) => unusable(crt, key, &ca, &sans, now, renew_days)?,
    };
    let (cert, key, not_after) = match (problem, existing) {
        (None, Some((crt, key))) => {
            let not_after = cert_info(&crt)?.not_after;
            (crt, key, not_after)
        }
        (Some(why), _) => {
            let Some(ca_key) = &ca.key else {
                bail!(
                    "tls_certificate: {} holds a CA without its key (ca.key), so the certificate \
                     for {name} must be given: {}: {why}; put {name}.crt and {name}.key there, \
                     signed by that CA, for {}",
                    dir.display(),
                    crt_path.display(),
                    sans.join(", ")
                );
            };
            if check {
                return Ok(Outcome::not_run(format!(
                    "would issue a certificate for {name} ({why})"
                )));
            }
            let (crt, key, not_after) = issue(&name, &sans, valid_days, &ca.pem, ca_key)?;
            write_private(&key_path, &key)?;
            write_private(&crt_path, &crt)?;
            made.push(format!("issued a certificate for {name} ({why})"));
            (crt, key, not_after)
        }
        (None, None) => unreachable!("a usable certificate exists"),
    };
    let mut out = if made.is_empty() {
        Outcome::ok()
    } else {
        Outcome::changed().with_msg(made.join("; "))
    };
    out.secrets.push(key.clone());
    Ok(out
        .with("ca_cert", ca.pem.clone())
        .with("cert", cert)
        .with("private_key", key)
        .with("not_after", rfc3339(not_after))
        .with("expires_in_days", (not_after - now).whole_days())
        .with("ca_not_after", rfc3339(ca.not_after))
        .with("cert_path", crt_path.display().to_string())
        .with("ca_path", dir.join(CA_CERT).display().to_string()))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

struct Ca {
    pem: String,
    key: Option<KeyPair>,
    not_after: OffsetDateTime,
    spki: Vec<u8>,
}

struct CertInfo {
    not_after: OffsetDateTime,
    sans: Vec<String>,
    spki: Vec<u8>,
}

fn cert_info(pem: &str) -> Result<CertInfo> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = p
        .parse_x509()
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => sans.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b)?).to_string()),
                    16 => {
                        sans.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b)?).to_string())
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    sans.sort();
    sans.dedup();
    Ok(CertInfo {
        not_after,
        sans,
        spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}

/// Why a certificate cannot be kept, or None when it can.
fn unusable(
    crt: &str,
    key: &str,
    ca: &Ca,
    sans: &[String],
    now: OffsetDateTime,
    renew_days: i64,
) -> Result<Option<String>> {
    let Ok(info) = cert_info(crt) else {
        return Ok(Some("the certificate file is not a certificate".into()));
    };
    if !signed_by(crt, &ca.spki) {
        return Ok(Some("it is not signed by the CA".into()));
    }
    let Ok(kp) = KeyPair::from_pem(key) else {
        return Ok(Some("the key file is not a private key".into()));
    };
    if kp.subject_public_key_info() != info.spki {
        return Ok(Some("the key does not match the certificate".into()));
    }
    let mut wanted: Vec<String> = sans.iter().map(|s| normalise(s)).collect();
    wanted.sort();
    wanted.dedup();
    if info.sans != wanted {
        return Ok(Some(format!(
            "it is for {}, not {}",
            info.sans.join(", "),
            wanted.join(", ")
        )));
    }
    if info.not_after - now < Duration::days(renew_days) {
        return Ok(Some(format!(
            "it expires on {}, within {renew_days} days",
            info.not_after.date()
        )));
    }
    Ok(None)
}

/// An IP address as the certificate holds it (::1 and 0:0::1 are one address).
fn normalise(san: &str) -> String {
    san.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| san.to_string())
}

fn signed_by(crt: &str, ca_spki: &[u8]) -> bool {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(crt.as_bytes()) else {
        return false;
    };
    let Ok(cert) = p.parse_x509() else {
        return false;
    };
    let Ok((_, spki)) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            ca_spki,
        )
    else {
        return false;
    };
    cert.verify_signature(Some(&spki)).is_ok()
}

fn load_ca(dir: &Path) -> Result<Option<Ca>> {
    let Some(pem) = read_private(&dir.join(CA_CERT))? else {
        if dir.join(CA_KEY).exists() {
            bail!(
                "tls_certificate: {} has ca.key but no ca.crt: put the CA's certificate beside \
                 its key, or move both away to make a new CA",
                dir.display()
            );
        }
        return Ok(None);
    };
    let info = cert_info(&pem).with_context(|| format!("{}", dir.join(CA_CERT).display()))?;
    let key = match read_private(&dir.join(CA_KEY))? {
        Some(k) => {
            let kp = KeyPair::from_pem(&k)
                .map_err(|e| anyhow!("{}: not a private key: {e}", dir.join(CA_KEY).display()))?;
            if kp.subject_public_key_info() != info.spki {
                bail!(
                    "tls_certificate: {} does not belong to {}: give the CA's own key",
                    dir.join(CA_KEY).display(),
                    dir.join(CA_CERT).display()
                );
            }
            Some(kp)
        }
        None => None,
    };
    Ok(Some(Ca {
        pem,
        key,
        not_after: info.not_after,
        spki: info.spki,
    }))
}

fn serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow!("no randomness for a serial number: {e}"))?;
    b[0] &= 0x7f; // a positive number
    Ok(SerialNumber::from_slice(&b))
}

fn make_ca(dir: &Path, common_name: &str, days: i64) -> Result<Ca> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot make {}", dir.display()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(serial()?);
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
    write_private(&dir.join(CA_CERT), &pem)?;
    let info = cert_info(&pem)?;
    Ok(Ca {
        pem,
        key: Some(key),
        not_after: info.not_after,
        spki: info.spki,
    })
}

fn issue(
    name: &str,
    sans: &[String],
    days: i64,
    ca_pem: &str,
    ca_key: &KeyPair,
) -> Result<(String, String, OffsetDateTime)> {
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(sans.to_vec())
        .map_err(|e| anyhow!("tls_certificate: a subject alternative name is not valid: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // One certificate per host serves its servers and its clients (etcd peers are both).
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(serial()?);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem(), params.not_after))
}

/// A file of ours: a symbolic link is refused, group/other permissions are taken away.
fn read_private(path: &Path) -> Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !meta.is_file() {
        bail!(
            "tls_certificate: {} is not a regular file (a symbolic link?): put the file itself there",
            path.display()
        );
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private (chmod 600)", path.display()))?;
    }
    std::fs::read_to_string(path)
        .map(Some)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Written whole or not at all (as the secrets file is): a 0600 file beside it, synced,
/// renamed over it.
fn write_private(path: &Path, text: &str) -> Result<()> {
    crate::vars::generated::save(path, text)
}

/// The `tls_certificate` module.
pub const TLS_CERTIFICATE: Spec = Spec {
    params: args::fields::<Args>,
    local: true,
    ..Spec::new("tls_certificate", |p, ctx| Box::pin(run(p, ctx)))
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn run_with(v: Value, check: bool) -> Outcome {
        let m = v.as_object().unwrap().clone();
        certificate(
            &Params {
                module: "tls_certificate",
                map: &m,
            },
            check,
        )
        .unwrap()
    }

    #[test]
    fn issues_once_then_keeps_then_renews() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tls");
        let args = |sans: Value, renew: i64| {
            json!({"ca_dir": dir.to_str().unwrap(), "name": "pgnode01",
                   "subject_alt_names": sans, "renew_days": renew, "valid_days": 60})
        };
        // Check mode writes nothing.
        let o = run_with(args(json!(["pgnode01", "10.0.0.1"]), 30), true);
        assert!(o.changed && o.unknown, "{o:?}");
        assert!(!dir.exists());

        let first = run_with(args(json!(["pgnode01", "10.0.0.1"]), 30), false);
        assert!(first.changed, "{first:?}");
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(mode("pgnode01.key"), 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let key = first.data["private_key"].as_str().unwrap().to_string();
        assert!(first.secrets.contains(&key));
        let info = cert_info(first.data["cert"].as_str().unwrap()).unwrap();
        assert_eq!(info.sans, vec!["10.0.0.1", "pgnode01"]);

        // The same again: nothing changes, the same key comes back (also in check mode).
        for check in [false, true] {
            let again = run_with(args(json!(["10.0.0.1", "pgnode01"]), 30), check);
            assert!(!again.changed, "{again:?}");
            assert_eq!(again.data["private_key"].as_str().unwrap(), key);
        }
        // Another address: issued again.
        let moved = run_with(args(json!(["pgnode01", "10.0.0.2"]), 30), false);
        assert!(moved.changed);
        assert!(moved.msg.unwrap().contains("it is for 10.0.0.1"));
        // Close to expiry (valid 60 days, renewed within 90): issued again, by the same CA.
        let renewed = run_with(args(json!(["pgnode01", "10.0.0.2"]), 90), false);
        assert!(renewed.changed);
        assert!(renewed.msg.unwrap().contains("within 90 days"));
        assert_eq!(renewed.data["ca_cert"], first.data["ca_cert"]);
        assert!(signed_by(
            renewed.data["cert"].as_str().unwrap(),
            &cert_info(first.data["ca_cert"].as_str().unwrap())
                .unwrap()
                .spki
        ));
    }

    #[test]
    fn a_ca_without_its_key_is_used_not_extended() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tls");
        let a = json!({"ca_dir": dir.to_str().unwrap(), "name": "h1", "subject_alt_names": ["h1"]});
        assert!(run_with(a.clone(), false).changed);
        std::fs::remove_file(dir.join("ca.key")).unwrap();
        assert!(!run_with(a, false).changed);
        let b = json!({"ca_dir": dir.to_str().unwrap(), "name": "h2", "subject_alt_names": ["h2"]});
        let m = b.as_object().unwrap().clone();
        let err = certificate(
            &Params {
                module: "tls_certificate",
                map: &m,
            },
            false,
        )
        .unwrap_err();
        assert!(format!("{err}").contains("must be given"), "{err}");
    }

    #[test]
    fn names_that_are_paths_are_refused() {
        for bad in ["../x", "ca", "a/b", ""] {
            let m = json!({"ca_dir": "/tmp/none", "name": bad});
            let m = m.as_object().unwrap().clone();
            assert!(certificate(
                &Params {
                    module: "tls_certificate",
                    map: &m
                },
                false
            )
            .is_err());
        }
    }
}
