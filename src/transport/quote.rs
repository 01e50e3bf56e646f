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

/// Splits a line into words as Python's shlex does (what Ansible uses for inventory host lines
/// and the `command` module): quotes group, a backslash escapes, and with `comments` a `#` at
/// the start of a word ends the line.
pub fn split_words(line: &str, comments: bool) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if comments && !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("unterminated single quote in `{line}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(format!("unterminated double quote in `{line}`")),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("unterminated double quote in `{line}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn splits_like_shlex() {
        assert_eq!(
            split_words(r#"psql -c "select 'a b'" --x='y z' plain\ word"#, false).unwrap(),
            vec!["psql", "-c", "select 'a b'", "--x=y z", "plain word"]
        );
        assert_eq!(
            split_words("h1 a=1 # note", true).unwrap(),
            vec!["h1", "a=1"]
        );
        assert!(split_words("echo 'open", false).is_err());
    }

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
