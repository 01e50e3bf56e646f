//! SCRAM-SHA-256 verifiers as PostgreSQL stores them (`rolpassword`), so that a role's
//! password can be checked and set without the clear password reaching the server.
//! Format: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (scram_iterations).
const ITERATIONS: u32 = 4096;

fn keys(password: &str, salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    (stored_key, hmac(&salted, b"Server Key"))
}

/// A new verifier for `password` with a random salt.
pub fn verifier(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
    let (stored, server) = keys(password, &salt, ITERATIONS);
    Ok(format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored),
        B64.encode(server)
    ))
}

/// Whether a stored verifier was made from `password`. Anything but a SCRAM verifier (an MD5
/// hash, no password) counts as not matching, so it is replaced by a SCRAM one.
pub fn matches(stored: &str, password: &str) -> bool {
    let check = || -> Option<bool> {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, stored_keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored_key, server_key) = stored_keys.split_once(':')?;
        let (s, k) = keys(password, &B64.decode(salt).ok()?, iter.parse().ok()?);
        Some(s[..] == B64.decode(stored_key).ok()?[..] && k[..] == B64.decode(server_key).ok()?[..])
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_a_verifier_made_elsewhere() {
        // Made by an independent implementation (Python's hashlib.pbkdf2_hmac and hmac, RFC
        // 5802's steps); the lab's cluster test checks verifiers PostgreSQL itself made.
        let pg = "SCRAM-SHA-256$4096:cCDRL6ZVXsxl5jrNxGqBZg==$3jrSqfMZD3Ss9M/q76pV7bbSTkwHxjX49jTyuKdHrAc=:hPR7vDDw7POa83GkP+R2HhCcMyWZGTFhCMr6/QI8kfM=";
        assert!(matches(pg, "secret-pw"));
        assert!(!matches(pg, "secret-pX"));
        assert!(!matches("md5d3b07384d113edec49eaa6238ad5ff00", "secret-pw"));
        assert!(!matches("", "secret-pw"));
    }

    #[test]
    fn new_verifiers_check_and_are_salted() {
        let a = verifier("pw").unwrap();
        let b = verifier("pw").unwrap();
        assert_ne!(a, b);
        assert!(matches(&a, "pw") && matches(&b, "pw"));
        assert!(!matches(&a, "pw2"));
    }
}
