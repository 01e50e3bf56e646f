//! sysctl: a kernel parameter in a sysctl file and (by default) live.

use super::readahead::Fold;
use super::{args, probed, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::quote;
use crate::transport::Output;
use anyhow::{bail, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Args {
    #[serde(alias = "key")]
    name: String,
    #[serde(alias = "val")]
    value: Option<String>,
    state: Option<String>,
    sysctl_file: Option<String>,
    reload: Option<bool>,
    sysctl_set: Option<bool>,
    #[serde(default)]
    ignoreerrors: bool,
}

const DEFAULT_FILE: &str = "/etc/sysctl.d/99-pgdeploy.conf";

/// One command: the sysctl file's lines (shell builtins: a host reads many of these at once),
/// then the live value (`cat`: /proc/sys/net files answer a read at an offset with nothing, so
/// the shell's byte-at-a-time `read` sees one character).
fn probe(p: &Params<'_>, _: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    probe_of(&a.name, a.sysctl_file.as_deref().unwrap_or(DEFAULT_FILE)).map(Some)
}

/// The probe of `name` in `file` (a batch reads the file once for all its keys: `Fold`).
pub fn probe_of(name: &str, file: &str) -> Result<ProbeCmd> {
    Ok(ProbeCmd {
        fold: Some(Fold::Sysctl {
            file: file.to_string(),
            path: live_path(name),
        }),
        ..ProbeCmd::plain(probe_script(name, file)?)
    })
}

/// Where the kernel shows the parameter's live value.
fn live_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

fn probe_script(name: &str, file: &str) -> Result<String> {
    check_name(name)?;
    let path = live_path(name);
    Ok(format!(
        "if [ -r {f} ]; then while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < {f}; fi; echo '--'; cat {p} 2>/dev/null",
        f = quote(file),
        p = quote(&path)
    ))
}

/// The value the file gives `name`: its last line setting it (what `sysctl --system` keeps).
fn value_in_file(text: &str, name: &str) -> String {
    let Ok(line) = regex::Regex::new(&format!(r"^\s*{}\s*=", regex::escape(name))) else {
        return String::new();
    };
    text.lines()
        .rfind(|l| line.is_match(l))
        .and_then(|l| l.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// The file's line rewritten and the live value set, where they differ.
async fn plan(p: &Params<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: Args = p.parse()?;
    let name = a.name;
    let state = a.state.unwrap_or_else(|| "present".into());
    let file = a.sysctl_file.unwrap_or_else(|| DEFAULT_FILE.into());
    let set_live = a.sysctl_set.unwrap_or(true) && a.reload.unwrap_or(true);
    let value = match state.as_str() {
        "present" => Some(
            a.value
                .ok_or_else(|| anyhow::anyhow!("sysctl: parameter `value` is required"))?,
        ),
        "absent" => None,
        other => bail!("sysctl: state `{other}` must be present or absent"),
    };
    let qf = quote(&file);
    let out = probed(answer)?;
    let text = out.stdout_str();
    // The separator printed last: the file's own lines come before it.
    let (file_text, live) = text.rsplit_once("--\n").unwrap_or((&text, ""));
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (in_file, live) = (norm(&value_in_file(file_text, &name)), norm(live));
    let mut script = Vec::new();
    match &value {
        Some(v) => {
            let v = norm(v);
            if in_file != v {
                script.push(format!(
                    "touch {qf}; sed -i '/^[[:space:]]*{}[[:space:]]*=/d' {qf}; printf '%s = %s\\n' {} {} >> {qf}",
                    regex::escape(&name).replace('/', "\\/"),
                    quote(&name),
                    quote(&v)
                ));
            }
            if set_live && live != v {
                // ignoreerrors: an unknown key is not an error (sysctl -e).
                let e = if a.ignoreerrors { "-e " } else { "" };
                script.push(format!("sysctl {e}-q -w {}={}", quote(&name), quote(&v)));
            }
        }
        None => {
            if !in_file.is_empty() {
                script.push(format!(
                    "sed -i '/^[[:space:]]*{}[[:space:]]*=/d' {qf}",
                    regex::escape(&name).replace('/', "\\/")
                ));
            }
        }
    }
    if script.is_empty() {
        return Ok(Plan::done(Outcome::ok()));
    }
    Ok(Plan::change(
        Outcome::changed(),
        Apply::script(script.join(" && "), format!("sysctl {name}")),
    ))
}

/// A kernel parameter's name as sysctl knows them (`net.ipv4.ip_forward`, `net/ipv4/conf/eth0.1/rp_filter`):
/// it is put into a path under /proc/sys and into sed and grep patterns, so nothing else.
fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/:@+".contains(c);
    if name.is_empty()
        || !name.chars().all(ok_char)
        || name.starts_with(['/', '-', '.'])
        || name.contains("//")
        || name.contains("..")
    {
        bail!(
            "sysctl: `{name}` is not a kernel parameter name (letters, digits and . _ - / : @ +, \
             like net.ipv4.ip_forward)"
        );
    }
    Ok(())
}

/// The `sysctl` module.
pub const SYSCTL: Spec = Spec {
    params: args::fields::<Args>,
    ..Spec::host_state("sysctl", probe, |p, _, answer| Box::pin(plan(p, answer)))
};

#[cfg(test)]
mod tests {
    use super::{check_name, probe_script, value_in_file, Args};
    use crate::modules::Params;

    /// The probe's own output, read as the plan reads it: the last line setting the key
    /// (spaces, tabs, a last line without a newline), none for a key the file does not set.
    #[test]
    fn the_probe_reads_the_file_and_the_live_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("90-x.conf");
        std::fs::write(
            &file,
            "# net.core.somaxconn = 1\nnet.core.somaxconn = 2\n  net.core.somaxconn\t=\t4096\n--\nvm.swappiness=1",
        )
        .unwrap();
        let args = serde_json::json!({
            "name": "net.core.somaxconn",
            "value": "x",
            "sysctl_file": file.display().to_string(),
        });
        let p = Params {
            module: "sysctl",
            map: args.as_object().unwrap(),
        };
        let a = p.parse::<Args>().unwrap();
        let script = probe_script(&a.name, a.sysctl_file.as_deref().unwrap()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (file_text, live) = text.rsplit_once("--\n").unwrap();
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
        assert_eq!(live, somaxconn);
        assert_eq!(
            value_in_file(file_text, "net.core.somaxconn").trim(),
            "4096"
        );
        assert_eq!(value_in_file(file_text, "vm.swappiness"), "1");
        assert_eq!(value_in_file(file_text, "net.core.rmem_max"), "");
    }

    #[test]
    fn kernel_parameter_names() {
        for ok in [
            "net.ipv4.ip_forward",
            "vm.swappiness",
            "net/ipv4/conf/eth0.1/rp_filter",
            "kernel.core_pattern",
        ] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "a b",
            "x'; touch /tmp/p; '",
            "net/../../etc/shadow",
            "../x",
            "/etc/passwd",
            "a\nb",
            "-w",
            "a$(id)",
            "a;b",
            "a//b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
