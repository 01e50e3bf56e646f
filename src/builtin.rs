//! The playbooks shipped inside the binary, read by path as if from disk.

include!(concat!(env!("OUT_DIR"), "/builtin_playbooks.rs"));

/// Where the built-in playbooks appear to be: read from the binary, never from disk, and
/// named in errors as `pgdeploy:playbooks/roles/...`.
pub const BUILTIN_ROOT: &str = "pgdeploy:playbooks";

/// The text of a built-in playbook file, for a path below [`BUILTIN_ROOT`].
pub fn builtin_source(path: &std::path::Path) -> Option<&'static str> {
    let rel = path.strip_prefix(BUILTIN_ROOT).ok()?;
    let rel = rel.to_str()?;
    BUILTIN_PLAYBOOKS
        .iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, text)| *text)
}
