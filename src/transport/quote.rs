//! Shell quoting: the one way commands sent to hosts are built.
//!
//! Every argument is wrapped in single quotes (a single quote inside becomes `'"'"'`), so no
//! character is special; words that need no quoting are left bare for readable `-v` output.

/// Quotes one word for a POSIX shell.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if safe {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r#"'"'"'"#))
}

/// Quotes each word and joins them with spaces.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The shell must give back exactly the word we quoted, whatever it holds.
    #[test]
    fn round_trips_through_sh() {
        let words = [
            "plain",
            "",
            "with space",
            "it's",
            "$(reboot)",
            "`id`",
            "a\"b",
            "back\\slash",
            "semi;colon",
            "new\nline",
            "glob*?[x]",
            "~user",
            "-n",
            "'",
            "''",
            "\t",
            "é ü 中",
            "$HOME",
            "a'b'c",
            "!bang",
            "#hash",
            "&amp",
            "|pipe",
            "<in>",
            "{a,b}",
        ];
        for w in words {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(w)))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                w,
                "word {w:?} quoted as {}",
                quote(w)
            );
        }
    }

    #[test]
    fn joins() {
        assert_eq!(join(&["ls", "-l", "a b"]), "ls -l 'a b'");
    }
}
