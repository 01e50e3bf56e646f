//! Builds `templates/*.j2` and `playbooks/**/*.yml` into the binary, so one file is all a user
//! copies.

use std::fmt::Write;
use std::path::Path;

fn yml_files(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir)
        .expect("playbooks/ directory")
        .filter_map(|e| e.ok())
    {
        let name = e.file_name().into_string().unwrap_or_default();
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if e.path().is_dir() {
            yml_files(&e.path(), &rel, out);
        } else if name.ends_with(".yml") {
            out.push(rel);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=playbooks");
    let mut playbooks = Vec::new();
    yml_files(Path::new("playbooks"), "", &mut playbooks);
    playbooks.sort();
    let mut pb = String::from("/// Playbooks shipped in `playbooks/`, by path below it.\npub const BUILTIN_PLAYBOOKS: &[(&str, &str)] = &[\n");
    for p in playbooks {
        println!("cargo:rerun-if-changed=playbooks/{p}");
        writeln!(
            pb,
            "    ({p:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/playbooks/{p}\"))),"
        )
        .unwrap();
    }
    pb.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").unwrap();
    std::fs::write(Path::new(&out_dir).join("builtin_playbooks.rs"), pb).unwrap();

    println!("cargo:rerun-if-changed=templates");
    let mut names: Vec<String> = std::fs::read_dir("templates")
        .expect("templates/ directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".j2"))
        .collect();
    names.sort();
    let mut out = String::from("/// Templates shipped in `templates/`, by file name.\npub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[\n");
    for n in names {
        println!("cargo:rerun-if-changed=templates/{n}");
        writeln!(
            out,
            "    ({n:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/templates/{n}\"))),"
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest =
        std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_templates.rs");
    std::fs::write(dest, out).unwrap();
}
