//! Ansible Vault: files and `!vault` values encrypted by `ansible-vault` (format 1.1, and 1.2
//! with a vault id; AES256), decrypted with the passwords given on the command line.
//!
//! The payload is hex of three hex lines: salt, HMAC, ciphertext. PBKDF2-HMAC-SHA256 with
//! 10,000 rounds turns the password and salt into 80 bytes: the AES-256 key, the HMAC-SHA256
//! key and the CTR counter block. The HMAC over the ciphertext says whether a password is the
//! right one; the plaintext ends with PKCS#7 padding.

use aes::cipher::{KeyIvInit, StreamCipher};
use anyhow::{anyhow, bail, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Mutex;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// The passwords given (`--vault-id`'s label, or "default"), in the order given.
static PASSWORDS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
/// What was decrypted since last asked: secrets from now on (see [`take_revealed`]).
static REVEALED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether a file's text is a Vault file.
pub fn is_vault(text: &str) -> bool {
    text.trim_start().starts_with("$ANSIBLE_VAULT;")
}

/// Sets the passwords decryption tries (the command line's, read once).
pub fn set_passwords(passwords: Vec<(String, String)>) {
    *PASSWORDS.lock().unwrap_or_else(|e| e.into_inner()) = passwords;
}

/// Decrypted values not yet handed to the output's masking.
pub fn take_revealed() -> Vec<String> {
    std::mem::take(&mut *REVEALED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Notes values that came out of Vault (each string of a decrypted file, say).
pub fn reveal(values: impl IntoIterator<Item = String>) {
    REVEALED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(values);
}

/// Decrypts a Vault text; `origin` names it in errors (`file:line`).
pub fn decrypt(text: &str, origin: &str) -> Result<String> {
    let mut lines = text.trim().lines();
    let header = lines.next().unwrap_or_default().trim();
    let fields: Vec<&str> = header.split(';').collect();
    let (version, cipher, id) = match fields.as_slice() {
        ["$ANSIBLE_VAULT", v, c] => (*v, *c, None),
        ["$ANSIBLE_VAULT", v, c, id] => (*v, *c, Some(*id)),
        _ => bail!("{origin}: not an Ansible Vault header: `{header}`"),
    };
    if !matches!(version, "1.1" | "1.2") || cipher != "AES256" {
        bail!("{origin}: Vault format {version} with {cipher} is not supported (1.1 and 1.2 with AES256 are)");
    }
    let hex_body: String = lines.map(str::trim).collect();
    let inner = hex::decode(&hex_body)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| anyhow!("{origin}: the Vault payload is not valid hex"))?;
    let parts: Vec<&str> = inner.lines().collect();
    let [salt, mac, data] = parts.as_slice() else {
        bail!("{origin}: the Vault payload is not salt, HMAC and ciphertext");
    };
    let (salt, mac, data) = match (hex::decode(salt), hex::decode(mac), hex::decode(data)) {
        (Ok(s), Ok(m), Ok(d)) => (s, m, d),
        _ => bail!("{origin}: the Vault payload is not valid hex"),
    };
    let passwords = PASSWORDS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if passwords.is_empty() {
        bail!(
            "{origin} is encrypted with Ansible Vault{}: give its password with \
             --vault-password-file FILE, --ask-vault-pass or --vault-id",
            id.map(|i| format!(" (vault id `{i}`)")).unwrap_or_default()
        );
    }
    // The password of the file's vault id first, then the others (as Ansible tries them).
    let mut ordered: Vec<&(String, String)> = passwords
        .iter()
        .filter(|(label, _)| Some(label.as_str()) == id)
        .collect();
    ordered.extend(
        passwords
            .iter()
            .filter(|(label, _)| Some(label.as_str()) != id),
    );
    for (_, password) in ordered {
        let mut keys = [0u8; 80];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, 10_000, &mut keys);
        let (key, rest) = keys.split_at(32);
        let (mac_key, iv) = rest.split_at(32);
        let mut check = <Hmac<Sha256> as Mac>::new_from_slice(mac_key).expect("any key length");
        check.update(&data);
        if check.verify_slice(&mac).is_err() {
            continue;
        }
        let mut plain = data.clone();
        Aes256Ctr::new(key.into(), iv.into()).apply_keystream(&mut plain);
        let pad = usize::from(*plain.last().unwrap_or(&0));
        if pad == 0 || pad > 16 || pad > plain.len() {
            bail!("{origin}: the decrypted Vault data has bad padding");
        }
        plain.truncate(plain.len() - pad);
        return String::from_utf8(plain)
            .map_err(|_| anyhow!("{origin}: the decrypted Vault data is not UTF-8 text"));
    }
    bail!(
        "{origin}: none of the Vault passwords given decrypts it{}",
        id.map(|i| format!(" (vault id `{i}`)")).unwrap_or_default()
    )
}

/// A password from `--vault-password-file`/`--vault-id` SOURCE: a file's first line, or what
/// an executable file prints (as Ansible runs it), or `prompt`.
pub fn password_from(source: &str, label: &str) -> Result<String> {
    if source == "prompt" {
        let prompt = if label == "default" {
            "Vault password: ".to_string()
        } else {
            format!("Vault password ({label}): ")
        };
        return rpassword::prompt_password(prompt)
            .map_err(|e| anyhow!("cannot read the Vault password from the terminal: {e}"));
    }
    let path = std::path::Path::new(source);
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("vault password file {source}: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    let text = if meta.permissions().mode() & 0o111 != 0 {
        let out = std::process::Command::new(path)
            .output()
            .map_err(|e| anyhow!("vault password script {source}: {e}"))?;
        if !out.status.success() {
            bail!(
                "vault password script {source} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow!("vault password file {source}: {e}"))?
    };
    let pw = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string();
    if pw.is_empty() {
        bail!("vault password file {source} is empty");
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/vault")
                .join(name),
        )
        .unwrap()
    }

    /// Files made by ansible-vault (tests/fixtures/vault/README.md), 1.1 and 1.2 with an id.
    #[test]
    fn decrypts_what_ansible_vault_encrypted() {
        set_passwords(vec![
            ("default".into(), "not-this".into()),
            ("default".into(), "fixture-vault-pw".into()),
            ("prod".into(), "prod-vault-pw".into()),
        ]);
        let plain = decrypt(&fixture("secrets.yml"), "secrets.yml").unwrap();
        assert_eq!(
            plain,
            "db_pass: S3cret-Whole-File\nwhole_word: hello-from-vault\n"
        );
        let inline = fixture("inline.yml");
        let block: String = inline
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        assert!(block.starts_with("$ANSIBLE_VAULT;1.2;AES256;prod"));
        assert_eq!(
            decrypt(&block, "inline.yml:1").unwrap(),
            "Inline-T0ken-Value"
        );
        set_passwords(vec![("default".into(), "wrong".into())]);
        let err = decrypt(&fixture("secrets.yml"), "secrets.yml").unwrap_err();
        assert!(
            format!("{err}").contains("none of the Vault passwords"),
            "{err}"
        );
        set_passwords(vec![]);
        let err = decrypt(&fixture("secrets.yml"), "secrets.yml").unwrap_err();
        assert!(format!("{err}").contains("--vault-password-file"), "{err}");
    }
}
