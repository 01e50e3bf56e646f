//! The command line itself: shell completions.

use std::process::{Command, Stdio};

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "_pgdeploy()"),
        ("zsh", "#compdef pgdeploy"),
        ("fish", "complete -c pgdeploy"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker) && text.contains("add-node") && text.contains("profile"),
            "{shell}: {}",
            &text[..text.len().min(400)]
        );
    }
    // Read only in part (`| head`): no panic on the closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
