//! YAML read the way Ansible reads it.
//!
//! Ansible uses PyYAML, which follows YAML 1.1: `yes`/`no`/`on`/`off` are booleans and `0644` is
//! an octal integer. Every node keeps its line so that errors in playbooks, inventories and vars
//! files can name `file:line`. Aliases are expanded under a budget so that an "anchor bomb"
//! (a few lines that expand to billions of nodes) fails fast instead of exhausting memory.

use anyhow::{bail, Result};
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// The most nodes one document may expand to (aliases included).
const NODE_BUDGET: usize = 1_000_000;
/// The deepest nesting accepted.
const MAX_DEPTH: usize = 256;

/// A YAML node with the line (1-based) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_string() == key)
            .map(|(_, v)| v)
    }

    /// A mapping key as text (`1` and `true` become "1" and "true", as JSON needs).
    pub fn key_string(&self) -> String {
        match &self.value {
            NodeValue::Str(s) => s.clone(),
            NodeValue::Null => "null".into(),
            NodeValue::Bool(b) => b.to_string(),
            NodeValue::Int(i) => i.to_string(),
            NodeValue::Float(f) => f.to_string(),
            _ => format!("{}", self.to_json()),
        }
    }

    /// A short description of the node's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::Number((*i).into()),
            NodeValue::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k.key_string(), v.to_json());
                }
                Value::Object(map)
            }
        }
    }
}

/// A YAML error with its place.
#[derive(Debug)]
pub struct YamlError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for YamlError {}

/// Reads a YAML file into one document node (an empty file is `null`).
pub fn load_file(path: &Path) -> Result<Node> {
    if let Some(text) = crate::builtin::builtin_source(path) {
        return parse(text, &path.display().to_string());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let origin = path.display().to_string();
    if crate::vault::is_vault(&text) {
        // A whole file in Vault: every string in it is a secret from now on.
        let node = parse(&crate::vault::decrypt(&text, &origin)?, &origin)?;
        let mut strings = Vec::new();
        node.to_json().strings(&mut strings);
        crate::vault::reveal(strings);
        return Ok(node);
    }
    parse(&text, &origin)
}

/// Every string in a JSON value (for masking what came out of Vault).
trait Strings {
    fn strings(&self, out: &mut Vec<String>);
}

impl Strings for Value {
    fn strings(&self, out: &mut Vec<String>) {
        match self {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| v.strings(out)),
            Value::Object(m) => m.values().for_each(|v| v.strings(out)),
            _ => {}
        }
    }
}

/// Parses one YAML document; `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<Node> {
    let mut builder = Builder {
        origin,
        anchors: HashMap::new(),
        budget: NODE_BUDGET,
    };
    let mut parser = Parser::new_from_str(text);
    let mut doc: Option<Node> = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| YamlError {
            file: origin.to_string(),
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if doc.is_some() {
                    return Err(YamlError {
                        file: origin.into(),
                        line: span.start.line(),
                        message: "more than one YAML document in this file; keep one".into(),
                    }
                    .into());
                }
                let node = builder.node(&mut parser, 0)?;
                doc = Some(node);
            }
            _ => {}
        }
    }
    Ok(doc.unwrap_or(Node {
        value: NodeValue::Null,
        line: 1,
    }))
}

/// Parses YAML text and returns plain JSON values (for vars files and `-e @file`).
pub fn parse_json(text: &str, origin: &str) -> Result<Value> {
    Ok(parse(text, origin)?.to_json())
}

struct Builder<'a> {
    origin: &'a str,
    anchors: HashMap<usize, Node>,
    budget: usize,
}

impl Builder<'_> {
    fn err<T>(&self, line: usize, message: impl Into<String>) -> Result<T> {
        Err(YamlError {
            file: self.origin.into(),
            line,
            message: message.into(),
        }
        .into())
    }

    fn spend(&mut self, n: usize, line: usize) -> Result<()> {
        if n > self.budget {
            return self.err(
                line,
                format!("document expands to more than {NODE_BUDGET} nodes (alias bomb?)"),
            );
        }
        self.budget -= n;
        Ok(())
    }

    fn node<'i, I: saphyr_parser::Input>(
        &mut self,
        parser: &mut Parser<'i, I>,
        depth: usize,
    ) -> Result<Node> {
        let Some(next) = parser.next_event() else {
            return self.err(0, "unexpected end of YAML");
        };
        let (event, span) = next.map_err(|e| YamlError {
            file: self.origin.into(),
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = span.start.line();
        if depth > MAX_DEPTH {
            return self.err(line, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.spend(1, line)?;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let value = self.scalar(&text, style, tag.as_deref(), line)?;
                (Node { value, line }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    if peek_is(parser, |e| matches!(e, Event::SequenceEnd)) {
                        parser.next_event();
                        break;
                    }
                    items.push(self.node(parser, depth + 1)?);
                }
                (
                    Node {
                        value: NodeValue::Seq(items),
                        line,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut pairs: Vec<(Node, Node)> = Vec::new();
                // Where each key is in `pairs`: duplicates are found in constant time.
                let mut index: HashMap<String, usize> = HashMap::new();
                loop {
                    if peek_is(parser, |e| matches!(e, Event::MappingEnd)) {
                        parser.next_event();
                        break;
                    }
                    let key = self.node(parser, depth + 1)?;
                    let value = self.node(parser, depth + 1)?;
                    if key.as_str() == Some("<<") {
                        self.merge(&mut pairs, &mut index, value)?;
                        continue;
                    }
                    let name = key.key_string();
                    if let Some(&i) = index.get(&name) {
                        // As PyYAML: a later duplicate key wins.
                        pairs[i] = (key, value);
                    } else {
                        index.insert(name, pairs.len());
                        pairs.push((key, value));
                    }
                }
                (
                    Node {
                        value: NodeValue::Map(pairs),
                        line,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return self.err(line, "alias to an unknown anchor");
                };
                self.spend(weight(&target), line)?;
                (target, 0)
            }
            other => return self.err(line, format!("unexpected YAML event {other:?}")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// `<<: *base` (or a list of them): keys not already present are merged in.
    fn merge(
        &self,
        pairs: &mut Vec<(Node, Node)>,
        index: &mut HashMap<String, usize>,
        value: Node,
    ) -> Result<()> {
        let sources = match value.value {
            NodeValue::Map(_) => vec![value],
            NodeValue::Seq(items) => items,
            _ => {
                return self.err(
                    value.line,
                    "merge key `<<` needs a mapping or a list of them",
                )
            }
        };
        for source in sources {
            let NodeValue::Map(src) = source.value else {
                return self.err(source.line, "merge key `<<` needs mappings");
            };
            for (k, v) in src {
                let name = k.key_string();
                if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(name) {
                    slot.insert(pairs.len());
                    pairs.push((k, v));
                }
            }
        }
        Ok(())
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&str>,
        line: usize,
    ) -> Result<NodeValue> {
        match tag {
            None => {}
            Some("!!str") | Some("tag:yaml.org,2002:str") | Some("!unsafe") => {
                return Ok(NodeValue::Str(text.to_string()))
            }
            Some("!!int") | Some("tag:yaml.org,2002:int") => {
                return match resolve_int(text) {
                    Some(i) => Ok(NodeValue::Int(i)),
                    None => self.err(line, format!("`{text}` is tagged !!int but is not one")),
                }
            }
            Some("!!bool") | Some("tag:yaml.org,2002:bool") => {
                return match resolve_bool(text) {
                    Some(b) => Ok(NodeValue::Bool(b)),
                    None => self.err(line, format!("`{text}` is tagged !!bool but is not one")),
                }
            }
            Some("!vault") => {
                let plain = crate::vault::decrypt(text, &format!("{}:{line}", self.origin))?;
                crate::vault::reveal([plain.clone()]);
                return Ok(NodeValue::Str(plain));
            }
            Some(other) => {
                return self.err(line, format!("unsupported YAML tag `{other}`"));
            }
        }
        if style != ScalarStyle::Plain {
            return Ok(NodeValue::Str(text.to_string()));
        }
        Ok(resolve_plain(text))
    }
}

fn peek_is<'i, I: saphyr_parser::Input>(
    parser: &mut Parser<'i, I>,
    test: impl Fn(&Event) -> bool,
) -> bool {
    matches!(parser.peek(), Some(Ok((e, _))) if test(e))
}

/// What expanding a node again costs: one per node, and one per 16 bytes of text (an alias to
/// a long string repeated many times is a bomb too).
fn weight(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::Seq(items) => items.iter().map(weight).sum(),
        NodeValue::Map(pairs) => pairs.iter().map(|(k, v)| weight(k) + weight(v)).sum(),
        NodeValue::Str(s) => s.len() / 16,
        _ => 0,
    }
}

/// YAML 1.1 resolution of a plain (unquoted) scalar, as PyYAML does it.
pub fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        _ => {}
    }
    if let Some(b) = resolve_bool(text) {
        return NodeValue::Bool(b);
    }
    if let Some(i) = resolve_int(text) {
        return NodeValue::Int(i);
    }
    if let Some(f) = resolve_float(text) {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_string())
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// PyYAML's (YAML 1.1) integers: binary, octal with a leading zero (file modes like 0644),
/// hex, decimal, and base 60 (`1:30` is 90). `0o17` is YAML 1.2's and stays a string.
fn resolve_int(text: &str) -> Option<i64> {
    static INT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^(?:[-+]?0b[01_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        )
        .expect("valid regex")
    });
    if !INT.is_match(text) {
        return None;
    }
    let (negative, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let value = if let Some(hex) = clean.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = clean.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if clean.contains(':') {
        clean.split(':').try_fold(0i64, |acc, part| {
            acc.checked_mul(60)?.checked_add(part.parse::<i64>().ok()?)
        })?
    } else if clean.len() > 1 && clean.starts_with('0') {
        i64::from_str_radix(&clean[1..], 8).ok()?
    } else {
        clean.parse().ok()?
    };
    Some(if negative { -value } else { value })
}

/// PyYAML's (YAML 1.1) floats: a dot is required and an exponent needs its sign, so `1e5`
/// and `1.0e5` are strings as in Ansible; base 60 (`1:30.5`) too.
fn resolve_float(text: &str) -> Option<f64> {
    static FLOAT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*)$",
        )
        .expect("valid regex")
    });
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    if !FLOAT.is_match(text) {
        return None;
    }
    let clean = text.replace('_', "");
    if !clean.contains(':') {
        return clean.parse().ok();
    }
    let (negative, body) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.trim_start_matches('+')),
    };
    let value = body.split(':').try_fold(0f64, |acc, part| {
        Some(acc * 60.0 + part.parse::<f64>().ok()?)
    })?;
    Some(if negative { -value } else { value })
}

/// Reads a file that must hold a mapping (a vars file), as JSON values.
pub fn load_mapping(path: &Path) -> Result<Map<String, Value>> {
    let node = load_file(path)?;
    match node.to_json() {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => bail!(
            "{}:{}: a vars file must be a mapping of names to values",
            path.display(),
            node.line
        ),
    }
}

/// Serialises a JSON value as block YAML (used by `to_yaml`/`to_nice_yaml`).
pub fn to_yaml(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_yaml(value, indent, 0, &mut out, false);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn write_yaml(value: &Value, indent: usize, level: usize, out: &mut String, inline_first: bool) {
    let pad = " ".repeat(level * indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, v)) in map.iter().enumerate() {
                if !(i == 0 && inline_first) {
                    out.push_str(&pad);
                }
                out.push_str(&yaml_scalar_str(k));
                out.push(':');
                write_child(v, indent, level, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                if !(i == 0 && inline_first) {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        write_yaml(v, indent, level + 1, out, true)
                    }
                    Value::Array(a) if !a.is_empty() => write_yaml(v, indent, level + 1, out, true),
                    _ => {
                        out.push_str(&yaml_scalar(v));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push_str(&yaml_scalar(value));
            out.push('\n');
        }
    }
}

fn write_child(v: &Value, indent: usize, level: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(v, indent, level + 1, out, false);
        }
        Value::Array(a) if !a.is_empty() => {
            // PyYAML writes a list under a key without indenting it.
            out.push('\n');
            write_yaml(v, indent, level, out, false);
        }
        _ => {
            out.push(' ');
            out.push_str(&yaml_scalar(v));
            out.push('\n');
        }
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_scalar_str(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Quotes a string when a YAML reader would otherwise read it as something else.
fn yaml_scalar_str(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && matches!(resolve_plain(s), NodeValue::Str(_))
        && !s.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.ends_with(char::is_whitespace)
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains('\n')
        && !s.ends_with(':');
    if plain_ok {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// Checks that a node is a mapping and returns its pairs, or an error naming the place.
pub fn expect_map<'a>(node: &'a Node, origin: &str, what: &str) -> Result<&'a [(Node, Node)]> {
    match node.as_map() {
        Some(m) => Ok(m),
        None => bail!(
            "{origin}:{}: {what} must be a mapping, found {}",
            node.line,
            node.kind()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn j(text: &str) -> Value {
        parse_json(text, "t.yml").unwrap()
    }

    #[test]
    fn yaml_11_booleans_and_octal() {
        assert_eq!(
            j("a: yes\nb: off\nc: 0644\nd: '0644'\ne: 0x1f\nf: 1_000\ng: ~\nh: 1.5\ni: On"),
            json!({"a": true, "b": false, "c": 420, "d": "0644", "e": 31, "f": 1000, "g": null, "h": 1.5, "i": true})
        );
    }

    #[test]
    fn yaml_11_numbers_as_pyyaml_reads_them() {
        assert_eq!(
            j("a: 1e5\nb: 1.0e5\nc: 0o17\nd: 1.0e+5\ne: 6.\nf: .5\ng: 1:30\nh: -0b11\ni: 1:30.5\nj: 0_17\nk: 10.0.0.1"),
            json!({"a": "1e5", "b": "1.0e5", "c": "0o17", "d": 100000.0, "e": 6.0, "f": 0.5, "g": 90, "h": -3, "i": 90.5, "j": 15, "k": "10.0.0.1"})
        );
    }

    #[test]
    fn plain_words_stay_strings() {
        assert_eq!(
            j("a: y\nb: 10.0.0.1\nc: 1e\nd: 08\ne: -x"),
            json!({"a": "y", "b": "10.0.0.1", "c": "1e", "d": "08", "e": "-x"})
        );
    }

    #[test]
    fn lines_are_kept() {
        let n = parse("a: 1\nb:\n  - x\n  - y\n", "t").unwrap();
        assert_eq!(n.get("b").unwrap().line, 3);
        assert_eq!(n.get("b").unwrap().as_seq().unwrap()[1].line, 4);
    }

    #[test]
    fn many_keys_and_long_string_aliases() {
        // 40,000 keys (and a duplicate, which wins as in PyYAML): linear, not quadratic.
        let mut text: String = (0..40_000).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k7: last\n");
        let v = j(&text);
        assert_eq!(v.as_object().unwrap().len(), 40_000);
        assert_eq!(v["k7"], "last");
        // A 100 KB string behind an alias, used 10,000 times, would be 1 GB expanded.
        let big = "x".repeat(100_000);
        let mut bomb = format!("a: &s {big}\nb: [");
        bomb.push_str(&vec!["*s"; 10_000].join(", "));
        bomb.push_str("]\n");
        let err = parse(&bomb, "bomb.yml").unwrap_err();
        assert!(format!("{err:#}").contains("alias bomb"), "{err:#}");
    }

    #[test]
    fn merge_keys() {
        assert_eq!(
            j("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3"),
            json!({"base": {"x": 1, "y": 2}, "c": {"y": 3, "x": 1}})
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse(&text, "bomb.yml").unwrap_err().to_string();
        assert!(err.contains("bomb.yml:"), "{err}");
        assert!(err.contains("alias bomb"), "{err}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n", "bad.yml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yml:"), "{err}");
    }

    #[test]
    fn vault_is_a_clear_error() {
        let err = parse("a: !vault |\n  $ANSIBLE\n", "v.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Vault"), "{err}");
    }

    #[test]
    fn to_yaml_round_trips() {
        let v = json!({"a": [1, {"b": "yes", "c": [true, null]}], "d": {"e": "x: y"}, "f": [], "g": "0644"});
        let text = to_yaml(&v, 2);
        assert_eq!(j(&text), v, "{text}");
    }
}
