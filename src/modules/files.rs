//! Writing whole files: copy, template, and the content edits of lineinfile.
//!
//! The probe compares by hash on the host (and reads the old content only for `--diff`), in one
//! round trip. The write is atomic: a temporary file beside the destination, validated, given
//! its owner and mode, then renamed over the old one — also one round trip.

use super::args::{self, FileMode};
use super::{probed, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::{quote, Output, Stdin};
use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Files larger than this are not shown as text diffs (Ansible's `max_diff_size`, 104448).
pub const MAX_DIFF_BYTES: usize = 104_448;

/// A change to one file, for `--diff`: a unified diff of text, or one line for a file that is
/// binary or too large to show.
#[derive(Debug, Clone)]
pub struct FileDiff {
    pub path: String,
    body: DiffBody,
}

#[derive(Debug, Clone)]
enum DiffBody {
    Text { before: String, after: String },
    Summary(String),
}

impl FileDiff {
    /// A text diff of two contents.
    pub fn text(path: &str, before: &str, after: &str) -> FileDiff {
        FileDiff {
            path: path.to_string(),
            body: DiffBody::Text {
                before: before.to_string(),
                after: after.to_string(),
            },
        }
    }

    /// The diff of writing `new` over `current`: text when both sides are text of a showable
    /// size, else one line with the size and the hashes.
    fn of_write(path: &str, current: &RemoteFile, new: &NewContent<'_>) -> FileDiff {
        let showable = |b: &[u8]| b.len() <= MAX_DIFF_BYTES && !looks_binary(b);
        let before = if current.exists {
            current.content.as_deref()
        } else {
            Some(&b""[..])
        };
        if let (Some(b), Some(a)) = (before, new.preview) {
            if showable(b) && showable(a) {
                return FileDiff::text(
                    path,
                    &String::from_utf8_lossy(b),
                    &String::from_utf8_lossy(a),
                );
            }
        }
        let kind = if new.binary { "binary file" } else { "file" };
        let what = if current.exists {
            format!(
                "would change: sha256 {}… → {}…",
                short(&current.hash),
                short(new.hash)
            )
        } else {
            "would be created".to_string()
        };
        FileDiff {
            path: path.to_string(),
            body: DiffBody::Summary(format!("{path}: {kind}, {}, {what}", human_size(new.size))),
        }
    }

    /// A unified diff, or the one line (the caller masks secrets before printing).
    pub fn unified(&self) -> String {
        match &self.body {
            DiffBody::Text { before, after } => similar::TextDiff::from_lines(before, after)
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("{} (before)", self.path),
                    &format!("{} (after)", self.path),
                )
                .to_string(),
            DiffBody::Summary(line) => format!("{line}\n"),
        }
    }
}

/// What a file is to hold: its bytes on their way (`data`), their hash and size, the whole
/// content when it is small enough to diff (`preview`), and whether it is binary.
pub struct NewContent<'a> {
    pub data: Stdin,
    pub hash: &'a str,
    pub size: u64,
    pub preview: Option<&'a [u8]>,
    pub binary: bool,
}

impl<'a> NewContent<'a> {
    /// Content held in memory.
    pub fn bytes(bytes: &'a [u8], hash: &'a str) -> NewContent<'a> {
        NewContent {
            data: Stdin::Bytes(bytes.to_vec()),
            hash,
            size: bytes.len() as u64,
            preview: Some(bytes),
            binary: looks_binary(bytes),
        }
    }
}

/// Binary as git and diff judge it: a NUL byte, or not UTF-8 (in the part looked at).
pub fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8000)];
    head.contains(&0)
        || match std::str::from_utf8(head) {
            Ok(_) => false,
            // A multi-byte character cut at the end of the head is still text.
            Err(e) => e.error_len().is_some() || head.len() == bytes.len(),
        }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// 3.1 MB, 12.0 kB, 512 B (decimal units, as `ls -h --si`).
fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

pub fn hash_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What is on the host at a path.
#[derive(Debug, Default)]
pub struct RemoteFile {
    pub exists: bool,
    pub is_dir: bool,
    pub hash: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    /// The content, when asked for (diff mode) and small enough.
    pub content: Option<Vec<u8>>,
}

/// The probe of a file: kind, hash, owner, group, mode (and content when `with_content`).
pub fn probe_script(path: &str, with_content: bool) -> String {
    let q = quote(path);
    let content = if with_content {
        format!("if [ $(stat -c %s {q}) -le {MAX_DIFF_BYTES} ]; then printf C:; base64 -w0 < {q}; fi; echo")
    } else {
        "echo".into()
    };
    format!(
        "if [ -d {q} ]; then echo DIR; elif [ -e {q} ]; then echo FILE; sha256sum < {q}; stat -c '%U %G %a' {q}; {content}; else echo ABSENT; fi"
    )
}

/// `probe_script` declared as a module's probe: a batch answers it with the other files'
/// probes.
pub fn file_probe(path: &str, with_content: bool) -> Option<ProbeCmd> {
    Some(ProbeCmd {
        fold: Some(super::readahead::Fold::File {
            path: path.to_string(),
            content: with_content,
        }),
        ..ProbeCmd::plain(probe_script(path, with_content))
    })
}

/// What `probe_script` found at `path`: hash, owner, group, mode (and content when asked).
pub fn parse_probe(out: &Output, path: &str) -> Result<RemoteFile> {
    if !out.ok() {
        bail!("cannot read {path}: {}", out.stderr_str().trim());
    }
    let text = out.stdout_str();
    let mut lines = text.lines();
    let mut f = RemoteFile::default();
    match lines.next() {
        Some("DIR") => {
            f.exists = true;
            f.is_dir = true;
        }
        Some("FILE") => {
            f.exists = true;
            // sha256sum prints "HASH  -".
            f.hash = lines
                .next()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            let meta: Vec<&str> = lines
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            if meta.len() == 3 {
                f.owner = meta[0].into();
                f.group = meta[1].into();
                f.mode = u32::from_str_radix(meta[2], 8).unwrap_or(0);
            }
            // `C:` marks inlined content (an empty file too); no marker: too large, or not
            // asked for.
            if let Some(b64) = lines.next().and_then(|l| l.trim().strip_prefix("C:")) {
                f.content = base64::engine::general_purpose::STANDARD.decode(b64).ok();
            }
        }
        _ => {}
    }
    Ok(f)
}

/// The attributes a file should have.
pub struct Wanted {
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    pub backup: bool,
    pub validate: Option<String>,
    /// `force: no`: an existing file is left as it is.
    pub force: bool,
}

/// The owner, group and mode parameters of the file modules.
#[derive(Deserialize)]
pub struct Attrs {
    owner: Option<String>,
    group: Option<String>,
    mode: Option<FileMode>,
}

/// How copy, template and lineinfile write a file.
#[derive(Deserialize)]
pub struct Writing {
    #[serde(default)]
    backup: bool,
    validate: Option<String>,
}

impl Wanted {
    /// Only owner, group and mode (the file module).
    pub fn attrs_only(a: Attrs) -> Wanted {
        Wanted {
            owner: a.owner,
            group: a.group,
            mode: FileMode::of(a.mode),
            backup: false,
            validate: None,
            force: true,
        }
    }

    /// Attributes and how the file is written (`Attrs` and `Writing`).
    pub fn writing(p: &Params) -> Result<Wanted> {
        let w: Writing = p.parse()?;
        if let Some(v) = &w.validate {
            if !v.contains("%s") {
                bail!(
                    "{}: `validate` must contain %s (the file to check), e.g. 'haproxy -c -f %s'",
                    p.module
                );
            }
        }
        Ok(Wanted {
            backup: w.backup,
            validate: w.validate,
            ..Wanted::attrs_only(p.parse()?)
        })
    }

    /// The parameters `writing` reads.
    pub fn writing_fields() -> Vec<&'static str> {
        [args::fields::<Attrs>(), args::fields::<Writing>()].concat()
    }

    /// Whether an existing file's owner, group and mode already match.
    pub fn attrs_match(&self, f: &RemoteFile) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|o| *o == f.owner || o.parse::<u32>().is_ok())
            && self
                .group
                .as_ref()
                .is_none_or(|g| *g == f.group || g.parse::<u32>().is_ok())
            && self.mode.is_none_or(|m| m == f.mode)
    }

    /// `chown`/`chgrp` of a target given as a shell word (already quoted), with `flags` such
    /// as `-R `; nothing when neither owner nor group is wanted.
    pub fn chown(&self, target: &str, flags: &str) -> String {
        match (&self.owner, &self.group) {
            (Some(o), Some(g)) => format!("chown {flags}{}:{} {target}; ", quote(o), quote(g)),
            (Some(o), None) => format!("chown {flags}{} {target}; ", quote(o)),
            (None, Some(g)) => format!("chgrp {flags}{} {target}; ", quote(g)),
            (None, None) => String::new(),
        }
    }

    /// Owner, group and mode for a new file `target`; what is not wanted is copied from
    /// `reference` (the file it replaces), or for a new file the mode comes from the umask
    /// saved in `$um`. Both are shell words, already quoted.
    fn chown_chmod(&self, target: &str, reference: Option<&str>) -> String {
        let mut s = self.chown(target, "");
        if s.is_empty() {
            if let Some(r) = reference {
                s.push_str(&format!(
                    "chown --reference={r} {target} 2>/dev/null || true; "
                ));
            }
        }
        match (self.mode, reference) {
            (Some(m), _) => s.push_str(&format!("chmod {m:o} {target}; ")),
            (None, Some(r)) => s.push_str(&format!("chmod --reference={r} {target}; ")),
            // New file without a mode: what the umask gives, as Ansible does.
            (None, None) => s.push_str(&format!("chmod $(printf %o $((0666 & ~$um))) {target}; ")),
        }
        s
    }
}

/// The plan of writing `new` to `dest` (probed: `answer`), unless it is already there with
/// the wanted attributes.
fn plan_content(
    ctx: &ModuleCtx<'_>,
    answer: Option<Output>,
    dest: &str,
    new: NewContent<'_>,
    wanted: &Wanted,
) -> Result<Plan> {
    let current = parse_probe(&probed(answer)?, dest)?;
    Ok(plan_write(ctx, &current, dest, new, wanted))
}

/// `plan_content` for content held in memory.
fn plan_bytes(
    ctx: &ModuleCtx<'_>,
    answer: Option<Output>,
    dest: &str,
    bytes: &[u8],
    wanted: &Wanted,
) -> Result<Plan> {
    let hash = hash_hex(bytes);
    plan_content(ctx, answer, dest, NewContent::bytes(bytes, &hash), wanted)
}

/// The plan of writing `new` over `current`: an atomic write (a temporary file beside it,
/// validated, given its owner and mode, renamed over it), or only owner and mode.
pub fn plan_write(
    ctx: &ModuleCtx<'_>,
    current: &RemoteFile,
    dest: &str,
    new: NewContent<'_>,
    wanted: &Wanted,
) -> Plan {
    let new_hash = new.hash;
    if current.is_dir {
        return Plan::done(Outcome::failed(format!(
            "{dest} is a directory; give the file's full path"
        )));
    }
    if current.exists && !wanted.force {
        return Plan::done(
            Outcome::ok()
                .with("dest", dest)
                .with_msg("force: no, and the file exists: left as it is"),
        );
    }
    let content_same = current.exists && current.hash == new_hash;
    if content_same && wanted.attrs_match(current) {
        return Plan::done(Outcome::ok().with("dest", dest).with("checksum", new_hash));
    }
    let mut outcome = Outcome::changed()
        .counting(crate::report::Changes::files(1))
        .with("dest", dest)
        .with("checksum", new_hash);
    if ctx.diff && !content_same {
        outcome.diffs.push(FileDiff::of_write(dest, current, &new));
    }
    let q = quote(dest);
    // The caller's umask decides a new file's mode; the temporary file starts private.
    let mut script = String::from("set -e; um=$(umask); umask 077; ");
    if content_same {
        // Only owner or mode differ: no rewrite.
        script.push_str(&wanted.chown_chmod(&q, Some(&q)));
    } else {
        script.push_str(&format!(
            "tmp=$(mktemp {}); trap 'rm -f \"$tmp\"' EXIT; cat > \"$tmp\"; ",
            quote(&format!("{dest}.pgdeploy.XXXXXX"))
        ));
        if let Some(v) = &wanted.validate {
            let check = v.replace("%s", "\"$tmp\"");
            script.push_str(&format!(
                "if ! out=$({check} 2>&1); then echo \"validation failed: $out\" >&2; exit 3; fi; "
            ));
        }
        if wanted.backup && current.exists {
            script.push_str(&format!("cp -p {q} {q}.$(date +%Y%m%d%H%M%S).bak; "));
        }
        let reference = current.exists.then_some(q.as_str());
        script.push_str(&wanted.chown_chmod("\"$tmp\"", reference));
        script.push_str(&format!("mv -f \"$tmp\" {q}; trap - EXIT; "));
    }
    Plan::change(
        outcome,
        Apply {
            stdin: if content_same { Stdin::None } else { new.data },
            ..Apply::script(script, format!("writing {dest} failed"))
        },
    )
}

/// Resolves a local `src`: as given, beside the playbook, or in its `files/`/`templates/`.
pub fn local_path(ctx: &ModuleCtx<'_>, src: &str, sub: &str) -> Result<PathBuf> {
    let direct = PathBuf::from(src);
    if direct.is_absolute() {
        return Ok(direct);
    }
    let in_role = ctx.role_path.map(|r| r.join(sub).join(src));
    for cand in in_role.into_iter().chain([
        ctx.dir.join(sub).join(src),
        ctx.dir.join(src),
        direct.clone(),
    ]) {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(anyhow!(
        "cannot find `{src}` (looked in {} and {})",
        ctx.dir.join(sub).display(),
        ctx.dir.display()
    ))
}

/// copy's own parameters (beside `Attrs` and `Writing`).
#[derive(Deserialize)]
struct CopyArgs {
    src: Option<String>,
    content: Option<serde_json::Value>,
    dest: String,
    force: Option<bool>,
    #[serde(default)]
    remote_src: bool,
    /// The SHA-1 the file must have: a different one fails the task before anything is written.
    checksum: Option<String>,
}

/// Fails when `checksum` is given and the file's SHA-1 is another.
fn check_sha1(checksum: &Option<String>, actual: impl FnOnce() -> Result<String>) -> Result<()> {
    let Some(want) = checksum else {
        return Ok(());
    };
    let got = actual()?;
    if !got.eq_ignore_ascii_case(want.trim()) {
        bail!("copy: the file's SHA-1 is {got}, not the `checksum` {want}: nothing was written");
    }
    Ok(())
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(bytes))
}

/// `content` as written: a string as it is, anything else as JSON.
fn content_text(content: serde_json::Value) -> Result<String> {
    Ok(match content {
        serde_json::Value::String(s) => s,
        other => serde_json::to_string_pretty(&other)?,
    })
}

/// The file `src` names on the control machine, and where it goes (`dest/` takes its name).
fn copy_source(ctx: &ModuleCtx<'_>, src: &str, dest: &str) -> Result<(PathBuf, String)> {
    let path = local_path(ctx, src, "files")?;
    if path.is_dir() {
        bail!("copy: `{src}` is a directory; copying directories is not supported yet");
    }
    let dest = if dest.ends_with('/') {
        format!(
            "{dest}{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        )
    } else {
        dest.to_string()
    };
    Ok((path, dest))
}

/// The destination's probe, with its content for `--diff` when the new content is text small
/// enough to show (as `converge_content` asks).
fn copy_probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: CopyArgs = p.parse()?;
    let (dest, shown) = match (a.content, &a.src) {
        (Some(content), _) => (a.dest, !looks_binary(content_text(content)?.as_bytes())),
        (None, Some(src)) => {
            let (path, dest) = copy_source(ctx, src, &a.dest)?;
            let small = std::fs::metadata(&path)?.len() as usize <= MAX_DIFF_BYTES;
            (
                dest,
                ctx.diff && small && !looks_binary(&std::fs::read(&path)?),
            )
        }
        // Read ahead of the task that makes the content (see `Engine::run_once_on_host`):
        // without --diff the probe does not show it, so it is the same.
        (None, None) if !ctx.diff => return Ok(file_probe(&a.dest, false)),
        (None, None) => return Ok(None),
    };
    Ok(file_probe(&dest, ctx.diff && shown))
}

/// template's probe: the destination's, with its content for `--diff`.
fn template_probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    Ok(file_probe(&p.parse::<TemplateArgs>()?.dest, ctx.diff))
}

async fn copy_plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: CopyArgs = p.parse()?;
    let dest = a.dest;
    let wanted = Wanted {
        force: a.force.unwrap_or(true),
        ..Wanted::writing(p)?
    };
    if a.remote_src {
        bail!("copy: remote_src is not supported; use `command: cp ...` with creates:");
    }
    if let Some(content) = a.content {
        let bytes = content_text(content)?.into_bytes();
        check_sha1(&a.checksum, || Ok(sha1_hex(&bytes)))?;
        return plan_bytes(ctx, answer, &dest, &bytes, &wanted);
    }
    let Some(src) = a.src else {
        bail!("copy: give `src` (a file) or `content`");
    };
    let (path, dest) = copy_source(ctx, &src, &dest)?;
    let meta = std::fs::metadata(&path)
        .map_err(|e| anyhow!("copy: cannot read {}: {e}", path.display()))?;
    // Large files are streamed and hashed without holding them in memory.
    if meta.len() as usize > MAX_DIFF_BYTES {
        check_sha1(&a.checksum, || {
            use sha1::Digest as _;
            use std::io::Read as _;
            let (mut f, mut h) = (std::fs::File::open(&path)?, sha1::Sha1::new());
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match f.read(&mut buf)? {
                    0 => break,
                    n => h.update(&buf[..n]),
                }
            }
            Ok(hex::encode(h.finalize()))
        })?;
        let (hash, binary) = hash_file(&path)?;
        let file = tokio::fs::File::open(&path).await?;
        let reader = tokio::io::BufReader::with_capacity(1 << 20, file);
        let new = NewContent {
            data: Stdin::Reader(Box::new(reader)),
            hash: &hash,
            size: meta.len(),
            preview: None,
            binary,
        };
        return plan_content(ctx, answer, &dest, new, &wanted);
    }
    let bytes = std::fs::read(&path)?;
    check_sha1(&a.checksum, || Ok(sha1_hex(&bytes)))?;
    plan_bytes(ctx, answer, &dest, &bytes, &wanted)
}

/// A file's SHA-256, read in pieces, and whether its first piece looks binary.
fn hash_file(path: &std::path::Path) -> Result<(String, bool)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut binary = None;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        binary.get_or_insert_with(|| looks_binary(&buf[..n]));
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), binary.unwrap_or(false)))
}

/// template's own parameters (beside `Attrs` and `Writing`).
#[derive(Deserialize)]
struct TemplateArgs {
    src: String,
    dest: String,
    force: Option<bool>,
}

async fn template_plan(
    p: &Params<'_>,
    ctx: &ModuleCtx<'_>,
    answer: Option<Output>,
) -> Result<Plan> {
    let TemplateArgs { src, dest, force } = p.parse()?;
    let wanted = Wanted {
        force: force.unwrap_or(true),
        ..Wanted::writing(p)?
    };
    // Rendered before anything is written: a failed render writes nothing.
    let rendered = render_template(ctx, &src)?;
    plan_bytes(ctx, answer, &dest, rendered.as_bytes(), &wanted)
}

/// Renders a template by name: from the playbook's `templates/` or beside it, else from the
/// template directories (user's, then built in).
fn render_template(ctx: &ModuleCtx<'_>, src: &str) -> Result<String> {
    if let Ok(path) = local_path(ctx, src, "templates") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow!("template: cannot read {}: {e}", path.display()))?;
        return render_named(ctx, &path.display().to_string(), &text);
    }
    ctx.templates.render_file(src, ctx.vars)
}

fn render_named(ctx: &ModuleCtx<'_>, name: &str, text: &str) -> Result<String> {
    ctx.templates.render_str(text, ctx.vars, name)
}

/// The `copy` module.
pub const COPY: Spec = Spec {
    params: || [args::fields::<CopyArgs>(), Wanted::writing_fields()].concat(),
    refused: &[
        ("directory_mode", "copying directories is not supported"),
        ("follow", "not supported: pgdeploy acts on the path given (links are followed as the command does)"),
        ("unsafe_writes", "pgdeploy always writes atomically (a temporary file renamed over the old one)"),
        (
            "decrypt",
            "a Vault-encrypted `src` file is not decrypted (vars files and !vault values are)",
        ),
    ],
    ..Spec::host_state("copy", copy_probe, |p, ctx, answer| {
        Box::pin(copy_plan(p, ctx, answer))
    })
};

/// The `template` module.
pub const TEMPLATE: Spec = Spec {
    params: || [args::fields::<TemplateArgs>(), Wanted::writing_fields()].concat(),
    refused: &[
        ("newline_sequence", "templates are written with \\n line endings"),
        ("trim_blocks", "templates render with Ansible's defaults (trim_blocks on, lstrip_blocks off)"),
        ("lstrip_blocks", "templates render with Ansible's defaults (trim_blocks on, lstrip_blocks off)"),
        ("follow", "not supported: pgdeploy acts on the path given (links are followed as the command does)"),
        ("unsafe_writes", "pgdeploy always writes atomically (a temporary file renamed over the old one)"),
        ("output_encoding", "templates are written as UTF-8"),
        ("block_start_string", "templates use Jinja's default delimiters"),
        ("block_end_string", "templates use Jinja's default delimiters"),
        ("variable_start_string", "templates use Jinja's default delimiters"),
        ("variable_end_string", "templates use Jinja's default delimiters"),
    ],
    ..Spec::host_state("template", template_probe, |p, ctx, answer| {
        Box::pin(template_plan(p, ctx, answer))
    })
};

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(content: &[u8]) -> RemoteFile {
        RemoteFile {
            exists: true,
            hash: hash_hex(content),
            content: Some(content.to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn text_is_diffed_binary_and_large_files_are_one_line() {
        let new = NewContent::bytes(b"b = 2\n", "h");
        let d = FileDiff::of_write("/etc/x.conf", &existing(b"a = 1\n"), &new).unified();
        assert!(d.contains("-a = 1") && d.contains("+b = 2"), "{d}");

        let blob = [0u8, 159, 146, 150, 1, 2];
        let hash = hash_hex(&blob);
        let new = NewContent::bytes(&blob, &hash);
        let d = FileDiff::of_write("/x.deb", &RemoteFile::default(), &new).unified();
        assert_eq!(d, "/x.deb: binary file, 6 B, would be created\n");
        let d = FileDiff::of_write("/x.deb", &existing(b"old\n"), &new).unified();
        assert!(
            d.starts_with("/x.deb: binary file, 6 B, would change: sha256 ")
                && d.contains(&format!("… → {}…", &hash[..12])),
            "{d}"
        );

        let big = "line\n".repeat(30_000);
        let new = NewContent::bytes(big.as_bytes(), "h");
        let d = FileDiff::of_write("/big.txt", &RemoteFile::default(), &new).unified();
        assert_eq!(d, "/big.txt: file, 150.0 kB, would be created\n");
    }

    #[test]
    fn binary_as_git_judges_it() {
        assert!(!looks_binary("Grüße\n".as_bytes()));
        assert!(looks_binary(b"\x00abc"));
        assert!(looks_binary(b"\xff\xfe"));
        // A character cut at the end of the part looked at is still text.
        let mut long = "a".repeat(7999).into_bytes();
        long.extend("ü and more".as_bytes());
        assert!(!looks_binary(&long));
    }
}
