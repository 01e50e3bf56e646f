//! Builds `templates/*.j2` into the binary, so one file is all a user copies.

use std::fmt::Write;

fn main() {
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
