//! Ansible's filters and tests that playbooks and templates use, on top of minijinja's builtins.

use base64::Engine as _;
use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;
use sha2::Digest;
use std::collections::HashMap;
use std::net::Ipv4Addr;

pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("bool", to_bool);
    env.add_filter("to_json", to_json);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_nice_yaml);
    env.add_filter("from_json", from_json);
    env.add_filter("from_yaml", from_yaml);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("regex_search", regex_search);
    env.add_filter("regex_findall", regex_findall);
    env.add_filter("regex_escape", |s: String| regex::escape(&s));
    env.add_filter("combine", combine);
    env.add_filter("ternary", ternary);
    env.add_filter("b64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    env.add_filter("b64decode", b64decode);
    env.add_filter("quote", |s: Value| crate::transport::quote(&plain(&s)));
    env.add_filter("basename", |s: String| {
        s.rsplit('/').next().unwrap_or_default().to_string()
    });
    env.add_filter("dirname", dirname);
    env.add_filter("flatten", flatten);
    env.add_filter("mandatory", mandatory);
    env.add_filter("dict2items", dict2items);
    env.add_filter("items2dict", items2dict);
    env.add_filter("hash", hash);
    env.add_filter("ipaddr", ipaddr);
    env.add_filter("pgpool_aes", pgpool_aes);
    env.add_filter("extract", extract);
    env.add_filter("ansible.utils.ipaddr", ipaddr);
    env.add_filter("difference", difference);
    env.add_filter("intersect", intersect);
    env.add_filter("union", union);
    env.add_filter("type_debug", |v: Value| type_name(&v).to_string());
    env.add_filter("to_int", |v: Value| {
        plain(&v).trim().parse::<i64>().unwrap_or(0)
    });
    env.add_test("version", version_test);
    env.add_test("version_compare", version_test);
    env.add_test("match", |s: String, re: String| {
        regex_test(&s, &format!("^(?:{re})"))
    });
    env.add_test("search", |s: String, re: String| regex_test(&s, &re));
    env.add_test("regex", |s: String, re: String| regex_test(&s, &re));
    env.add_test("succeeded", |r: Value| !result_flag(&r, "failed"));
    env.add_test("success", |r: Value| !result_flag(&r, "failed"));
    env.add_test("failed", |r: Value| result_flag(&r, "failed"));
    env.add_test("failure", |r: Value| result_flag(&r, "failed"));
    env.add_test("changed", |r: Value| result_flag(&r, "changed"));
    env.add_test("skipped", |r: Value| result_flag(&r, "skipped"));
    env.add_test("truthy", |v: Value| truthy(&v));
    env.add_test("falsy", |v: Value| !truthy(&v));
    env.add_function("lookup", lookup);
    env.add_function("query", query);
}

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// A value's text without quoting (strings as they are, others as Jinja prints them).
fn plain(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn json(v: &Value) -> Result<Json, Error> {
    serde_json::to_value(v).map_err(|e| err(format!("cannot serialise value: {e}")))
}

/// Truthiness as Ansible's conditionals see it: booleans, the strings of the `bool` filter,
/// numbers and collections as Python does.
pub(crate) fn truthy(v: &Value) -> bool {
    match v.kind() {
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default().trim().to_ascii_lowercase();
            !(s.is_empty() || matches!(s.as_str(), "false" | "no" | "off" | "0" | "n" | "f"))
        }
        _ => v.is_true(),
    }
}

/// Ansible's `bool`: "yes", "on", "1", "true" (any case) are true; everything else false.
pub(crate) fn to_bool(v: Value) -> bool {
    match v.kind() {
        ValueKind::Bool => v.is_true(),
        ValueKind::Number => v.is_true() && plain(&v) == "1",
        ValueKind::None | ValueKind::Undefined => false,
        _ => matches!(
            plain(&v).trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "1" | "true" | "y" | "t"
        ),
    }
}

/// As Ansible's `to_json` (Python's json.dumps): `{"a": 1, "b": [1, 2]}`.
fn to_json(v: Value) -> Result<String, Error> {
    fn write(v: &Json, out: &mut String) {
        match v {
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Json::Object(map) => {
                out.push('{');
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push_str(": ");
                    write(item, out);
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(&json(&v)?, &mut out);
    Ok(out)
}

fn to_nice_json(v: Value, kw: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kw.get("indent")?;
    kw.assert_all_used()?;
    let value = json(&v)?;
    let pad = " ".repeat(indent.unwrap_or(4));
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(pad.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&value, &mut ser).map_err(|e| err(e.to_string()))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn to_yaml(v: Value, kw: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kw.get("indent")?;
    let _: Option<Value> = kw.get("default_flow_style")?;
    let _: Option<Value> = kw.get("width")?;
    kw.assert_all_used()?;
    Ok(crate::yaml::to_yaml(&json(&v)?, indent.unwrap_or(2)))
}

fn to_nice_yaml(v: Value, kw: Kwargs) -> Result<String, Error> {
    to_yaml(v, kw)
}

fn from_json(s: String) -> Result<Value, Error> {
    let v: Json = serde_json::from_str(&s).map_err(|e| err(format!("from_json: {e}")))?;
    Ok(Value::from_serialize(v))
}

fn from_yaml(s: String) -> Result<Value, Error> {
    let v = crate::yaml::parse_json(&s, "from_yaml").map_err(|e| err(format!("{e:#}")))?;
    Ok(Value::from_serialize(v))
}

fn compile(re: &str, kw: &Kwargs) -> Result<regex::Regex, Error> {
    let icase: Option<bool> = kw.get("ignorecase")?;
    let multiline: Option<bool> = kw.get("multiline")?;
    cached_regex(re, icase.unwrap_or(false), multiline.unwrap_or(false))
}

thread_local! {
    /// Compiled expressions by pattern and flags: the playbooks test the same few patterns on
    /// every host at every task, and compiling one costs far more than matching.
    static REGEXES: std::cell::RefCell<HashMap<(String, bool, bool), regex::Regex>> =
        Default::default();
}

fn cached_regex(re: &str, icase: bool, multiline: bool) -> Result<regex::Regex, Error> {
    let key = (re.to_string(), icase, multiline);
    if let Some(rx) = REGEXES.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(rx);
    }
    let rx = regex::RegexBuilder::new(re)
        .case_insensitive(icase)
        .multi_line(multiline)
        .build()
        .map_err(|e| err(format!("bad regular expression `{re}`: {e}")))?;
    REGEXES.with(|c| {
        let mut c = c.borrow_mut();
        // Patterns made from variables could grow it without end.
        if c.len() >= 512 {
            c.clear();
        }
        c.insert(key, rx.clone());
    });
    Ok(rx)
}

/// Python's `\1` and `\g<name>` back-references to the regex crate's `${1}` and `${name}`.
fn python_replacement(rep: &str) -> String {
    let mut out = String::new();
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        n.push(*d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn regex_replace(s: Value, re: String, rep: Option<String>, kw: Kwargs) -> Result<String, Error> {
    let rx = compile(&re, &kw)?;
    kw.assert_all_used()?;
    let rep = python_replacement(&rep.unwrap_or_default());
    Ok(rx.replace_all(&plain(&s), rep.as_str()).into_owned())
}

fn regex_search(s: Value, re: String, kw: Kwargs) -> Result<Value, Error> {
    let rx = compile(&re, &kw)?;
    kw.assert_all_used()?;
    let text = plain(&s);
    Ok(match rx.find(&text) {
        Some(m) => Value::from(m.as_str()),
        None => Value::from(()),
    })
}

fn regex_findall(s: Value, re: String, kw: Kwargs) -> Result<Value, Error> {
    let rx = compile(&re, &kw)?;
    kw.assert_all_used()?;
    let text = plain(&s);
    let found: Vec<String> = rx
        .captures_iter(&text)
        .map(|c| {
            c.get(1)
                .or_else(|| c.get(0))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default()
        })
        .collect();
    Ok(Value::from(found))
}

fn regex_test(s: &str, re: &str) -> Result<bool, Error> {
    Ok(cached_regex(re, false, false)?.is_match(s))
}

fn merge(base: &mut Json, other: &Json, recursive: bool, list_merge: &str) {
    match (base, other) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) if recursive && (existing.is_object() && v.is_object()) => {
                        merge(existing, v, recursive, list_merge)
                    }
                    Some(Json::Array(existing)) if list_merge != "replace" && v.is_array() => {
                        let items = v.as_array().cloned().unwrap_or_default();
                        match list_merge {
                            "append" => existing.extend(items),
                            "prepend" => {
                                let mut new = items;
                                new.append(existing);
                                *existing = new;
                            }
                            _ => *existing = items,
                        }
                    }
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (base, other) => *base = other.clone(),
    }
}

fn combine(base: Value, others: Rest<Value>, kw: Kwargs) -> Result<Value, Error> {
    let recursive: Option<bool> = kw.get("recursive")?;
    let list_merge: Option<String> = kw.get("list_merge")?;
    kw.assert_all_used()?;
    let mut out = json(&base)?;
    if !out.is_object() {
        return Err(err("combine expects dictionaries"));
    }
    let mut sources = Vec::new();
    for o in others.iter() {
        match json(o)? {
            Json::Array(items) => sources.extend(items),
            v => sources.push(v),
        }
    }
    for s in sources {
        if !s.is_object() {
            return Err(err("combine expects dictionaries"));
        }
        merge(
            &mut out,
            &s,
            recursive.unwrap_or(false),
            list_merge.as_deref().unwrap_or("replace"),
        );
    }
    Ok(Value::from_serialize(out))
}

fn ternary(cond: Value, yes: Value, no: Value, none: Option<Value>) -> Value {
    if cond.is_none() {
        if let Some(n) = none {
            return n;
        }
    }
    if truthy(&cond) {
        yes
    } else {
        no
    }
}

fn b64decode(s: String) -> Result<String, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| err(format!("b64decode: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn dirname(s: String) -> String {
    match s.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => s[..i].to_string(),
        None => String::new(),
    }
}

fn flatten(v: Value, levels: Option<usize>) -> Result<Value, Error> {
    fn walk(v: &Json, depth: Option<usize>, out: &mut Vec<Json>) {
        for item in v.as_array().into_iter().flatten() {
            match item {
                Json::Array(_) if depth != Some(0) => walk(item, depth.map(|d| d - 1), out),
                Json::Null => {}
                other => out.push(other.clone()),
            }
        }
    }
    let mut out = Vec::new();
    walk(&json(&v)?, levels, &mut out);
    Ok(Value::from_serialize(out))
}

fn mandatory(v: Value, msg: Option<String>) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            msg.unwrap_or_else(|| "mandatory variable not defined".into()),
        ));
    }
    Ok(v)
}

fn dict2items(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let key: Option<String> = kw.get("key_name")?;
    let val: Option<String> = kw.get("value_name")?;
    kw.assert_all_used()?;
    let (key, val) = (key.unwrap_or("key".into()), val.unwrap_or("value".into()));
    let Json::Object(map) = json(&v)? else {
        return Err(err("dict2items expects a dictionary"));
    };
    let items: Vec<Json> = map
        .into_iter()
        .map(|(k, v)| {
            let mut m = serde_json::Map::new();
            m.insert(key.clone(), Json::String(k));
            m.insert(val.clone(), v);
            Json::Object(m)
        })
        .collect();
    Ok(Value::from_serialize(items))
}

fn items2dict(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let key: Option<String> = kw.get("key_name")?;
    let val: Option<String> = kw.get("value_name")?;
    kw.assert_all_used()?;
    let (key, val) = (key.unwrap_or("key".into()), val.unwrap_or("value".into()));
    let Json::Array(items) = json(&v)? else {
        return Err(err("items2dict expects a list"));
    };
    let mut out = serde_json::Map::new();
    for item in items {
        let k = item
            .get(&key)
            .ok_or_else(|| err(format!("items2dict: an item has no `{key}`")))?;
        let k = match k {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(k, item.get(&val).cloned().unwrap_or(Json::Null));
    }
    Ok(Value::from_serialize(out))
}

fn hash(s: String, algo: Option<String>) -> Result<String, Error> {
    match algo.as_deref().unwrap_or("sha1") {
        "md5" => Ok(hex::encode(md5::Md5::digest(s.as_bytes()))),
        "sha256" => Ok(hex::encode(sha2::Sha256::digest(s.as_bytes()))),
        "sha512" => Ok(hex::encode(sha2::Sha512::digest(s.as_bytes()))),
        other => Err(err(format!(
            "hash: algorithm `{other}` is not supported; use md5, sha256 or sha512"
        ))),
    }
}

/// `password | pgpool_aes(key)`: a pool_passwd entry as Pgpool-II's pg_enc writes it, "AES"
/// and the base64 of AES-256-CBC with the key and IV of OpenSSL's EVP_BytesToKey (SHA-1, no
/// salt, one round). Deterministic, so a re-run renders the same file.
fn pgpool_aes(password: String, key: String) -> Result<String, Error> {
    use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    use base64::Engine as _;
    if key.is_empty() {
        return Err(err("pgpool_aes: the key is empty"));
    }
    let mut material = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    while material.len() < 48 {
        let mut h = <sha1::Sha1 as sha1::Digest>::new();
        sha1::Digest::update(&mut h, &last);
        sha1::Digest::update(&mut h, key.as_bytes());
        last = sha1::Digest::finalize(h).to_vec();
        material.extend_from_slice(&last);
    }
    let enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(&material[..32], &material[32..48])
        .map_err(|e| err(format!("pgpool_aes: {e}")))?;
    let mut buf = password.as_bytes().to_vec();
    buf.extend_from_slice(&[0; 16]);
    let out = enc
        .encrypt_padded_mut::<Pkcs7>(&mut buf, password.len())
        .map_err(|e| err(format!("pgpool_aes: {e}")))?;
    Ok(format!(
        "AES{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    ))
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, p.parse().ok()?),
        None => (s, 32),
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    (prefix <= 32).then_some((addr, prefix))
}

/// `ipaddr` for IPv4: `ipaddr` (valid or false), `'address'`, `'network'`, `'prefix'`,
/// `'netmask'`, `'network/prefix'`.
/// `key | extract(container, morekeys)`: container[key], then each of morekeys in turn
/// (`groups['x'] | map('extract', hostvars, 'ansible_host')`).
fn extract(key: Value, container: Value, morekeys: Option<Value>) -> Result<Value, Error> {
    let mut v = container.get_item(&key)?;
    let more: Vec<Value> = match morekeys {
        None => vec![],
        Some(m) if m.kind() == ValueKind::Seq => m.try_iter()?.collect(),
        Some(m) => vec![m],
    };
    for k in more {
        if v.is_undefined() {
            break;
        }
        v = v.get_item(&k)?;
    }
    Ok(v)
}

fn ipaddr(v: Value, query: Option<String>) -> Value {
    let text = plain(&v);
    let Some((addr, prefix)) = parse_cidr(&text) else {
        return Value::from(false);
    };
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let network = Ipv4Addr::from(u32::from(addr) & mask);
    match query.as_deref() {
        None | Some("") => Value::from(text),
        Some("address") => Value::from(addr.to_string()),
        Some("network") => Value::from(network.to_string()),
        Some("prefix") => Value::from(prefix),
        Some("netmask") => Value::from(Ipv4Addr::from(mask).to_string()),
        Some("network/prefix") | Some("subnet") => Value::from(format!("{network}/{prefix}")),
        Some(_) => Value::from(false),
    }
}

fn list_of(v: &Value) -> Result<Vec<Json>, Error> {
    match json(v)? {
        Json::Array(a) => Ok(a),
        Json::Null => Ok(vec![]),
        other => Ok(vec![other]),
    }
}

fn difference(a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (list_of(&a)?, list_of(&b)?);
    let mut out: Vec<Json> = Vec::new();
    for x in a {
        if !b.contains(&x) && !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from_serialize(out))
}

fn intersect(a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (list_of(&a)?, list_of(&b)?);
    let mut out: Vec<Json> = Vec::new();
    for x in a {
        if b.contains(&x) && !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from_serialize(out))
}

fn union(a: Value, b: Value) -> Result<Value, Error> {
    let mut out: Vec<Json> = Vec::new();
    for x in list_of(&a)?.into_iter().chain(list_of(&b)?) {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from_serialize(out))
}

fn type_name(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "AnsibleUndefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number => {
            if plain(v).contains('.') {
                "float"
            } else {
                "int"
            }
        }
        ValueKind::String => "str",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// Compares dotted versions numerically part by part (`15.4 >= 15`), as LooseVersion does.
pub(crate) fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-', '_', '+'])
            .map(|p| {
                let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_string())
            })
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).cloned().unwrap_or((0, String::new()));
        let y = pb.get(i).cloned().unwrap_or((0, String::new()));
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => continue,
            o => return o,
        }
    }
    std::cmp::Ordering::Equal
}

fn version_test(v: Value, other: Value, op: Option<String>) -> Result<bool, Error> {
    use std::cmp::Ordering::*;
    let ord = compare_versions(&plain(&v), &plain(&other));
    Ok(match op.as_deref().unwrap_or("eq") {
        "<" | "lt" => ord == Less,
        "<=" | "le" => ord != Greater,
        ">" | "gt" => ord == Greater,
        ">=" | "ge" => ord != Less,
        "==" | "=" | "eq" => ord == Equal,
        "!=" | "<>" | "ne" => ord != Equal,
        other => return Err(err(format!("version: unknown operator `{other}`"))),
    })
}

fn result_flag(r: &Value, name: &str) -> bool {
    r.get_attr(name).map(|v| v.is_true()).unwrap_or(false)
}

/// `lookup('env', NAME)` and `lookup('file', PATH)` on the control machine.
fn lookup(kind: String, args: Rest<String>, kw: Kwargs) -> Result<Value, Error> {
    let default: Option<Value> = kw.get("default")?;
    let _: Option<bool> = kw.get("wantlist")?;
    kw.assert_all_used()?;
    let mut out = Vec::new();
    for arg in args.iter() {
        match kind.as_str() {
            "env" => out.push(
                std::env::var(arg)
                    .ok()
                    .map(Value::from)
                    .or(default.clone())
                    .unwrap_or(Value::from("")),
            ),
            "fileglob" => {
                let mut found = fileglob(arg)?;
                found.sort();
                out.extend(found.into_iter().map(Value::from));
            }
            "file" => out.push(Value::from(
                std::fs::read_to_string(arg)
                    .map_err(|e| err(format!("lookup('file', '{arg}'): {e}")))?
                    .trim_end_matches('\n')
                    .to_string(),
            )),
            other => {
                return Err(err(format!(
                    "lookup plugin `{other}` is not supported; use env or file"
                )))
            }
        }
    }
    Ok(if out.len() == 1 {
        out.remove(0)
    } else {
        Value::from(out)
    })
}

/// `query(...)`: like `lookup` but always a list (Ansible's `wantlist=True`).
fn query(kind: String, args: Rest<String>, kw: Kwargs) -> Result<Value, Error> {
    let v = lookup(kind, args, kw)?;
    Ok(match v.kind() {
        ValueKind::Seq => v,
        _ => Value::from(vec![v]),
    })
}

/// Local files matching a `dir/*.ext` pattern (wildcards in the file name only).
fn fileglob(pattern: &str) -> Result<Vec<String>, Error> {
    let path = std::path::Path::new(pattern);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("*");
    let entries = std::fs::read_dir(dir).map_err(|e| err(format!("fileglob {pattern}: {e}")))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|f| crate::glob::glob(name, f))
        .map(|f| dir.join(f).display().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::template::{Templates, Vars};
    use serde_json::json;

    fn render(src: &str, vars: serde_json::Value) -> String {
        let t = Templates::new(vec![], &[]);
        let serde_json::Value::Object(map) = vars else {
            panic!()
        };
        let ctx = Vars::new(map, &t).into_value();
        t.render_str(src, &ctx, "test").unwrap()
    }

    /// The same bytes as `openssl enc -aes-256-cbc -md sha1 -nosalt -a -pass pass:k3yK3y`
    /// (pg_enc's derivation), and md5 as md5sum.
    #[test]
    fn pgpool_aes_and_md5() {
        let vars = json!({"pw": "app-pw", "k": "k3yK3y"});
        assert_eq!(
            render("{{ pw | pgpool_aes(k) }}", vars.clone()),
            "AES0xq0oUCFBv8CHpjPnBgkog=="
        );
        assert_eq!(
            render("{{ pw | hash('md5') }}", vars),
            "aa94fdadf4b74e635ed1f732ab54eb35"
        );
    }

    fn r(src: &str) -> String {
        render(src, json!({}))
    }

    #[test]
    fn bool_as_ansible() {
        assert_eq!(r("{{ 'yes'|bool }} {{ 'off'|bool }} {{ 'True'|bool }} {{ 1|bool }} {{ 'no'|bool }} {{ 0|bool }}"), "True False True True False False");
    }

    #[test]
    fn json_and_yaml() {
        assert_eq!(r("{{ {'a': [1, 'x']} | to_json }}"), r#"{"a": [1, "x"]}"#);
        assert_eq!(
            r("{{ {'a': 1} | to_nice_json(indent=2) }}"),
            "{\n  \"a\": 1\n}"
        );
        assert_eq!(
            r("{{ {'a': {'b': [1, 'yes']}} | to_nice_yaml(indent=2) }}"),
            "a:\n  b:\n  - 1\n  - 'yes'\n".replace("'yes'", "\"yes\"")
        );
        assert_eq!(
            r("{{ ('a: 1' | from_yaml).a }} {{ ('[2]' | from_json)[0] }}"),
            "1 2"
        );
        assert_eq!(r("{{ ['a','b'] | to_yaml }}"), "- a\n- b\n");
    }

    #[test]
    fn regex_filters() {
        assert_eq!(
            r("{{ 'host-01.example' | regex_replace('^(\\\\w+)-(\\\\d+).*$', '\\\\2_\\\\1') }}"),
            "01_host"
        );
        assert_eq!(r("{{ 'abc123' | regex_search('[0-9]+') }}"), "123");
        assert_eq!(
            r("{{ 'a1b22' | regex_findall('[0-9]+') | join(',') }}"),
            "1,22"
        );
        assert_eq!(r("{{ 'a.b' | regex_escape }}"), "a\\.b");
        assert_eq!(r("{{ 'a$b' | regex_replace('b', '$z') }}"), "a$$z");
        // Compiled patterns are kept per pattern and flags: the same pattern with and without
        // ignorecase/multiline is not taken for the other.
        assert_eq!(
            r("{{ 'ABC' | regex_search('abc') is none }} {{ 'ABC' | regex_search('abc', ignorecase=true) }} {{ 'ABC' | regex_search('abc') is none }}"),
            "True ABC True"
        );
        assert_eq!(
            r("{{ 'x\ny' | regex_findall('^y') | length }} {{ 'x\ny' | regex_findall('^y', multiline=true) | length }}"),
            "0 1"
        );
        assert_eq!(
            r("{{ 'AB' is match('ab') }} {{ 'ab' is match('ab') }}"),
            "False True"
        );
    }

    #[test]
    fn combine_and_ternary() {
        assert_eq!(r("{{ ({'a': {'x': 1}, 'b': 1} | combine({'a': {'y': 2}}, recursive=true)) | to_json }}"), r#"{"a": {"x": 1, "y": 2}, "b": 1}"#);
        assert_eq!(
            r("{{ ({'a': {'x': 1}} | combine({'a': {'y': 2}})) | to_json }}"),
            r#"{"a": {"y": 2}}"#
        );
        assert_eq!(
            r("{{ ({'l': [1]} | combine({'l': [2]}, list_merge='append')).l | to_json }}"),
            "[1, 2]"
        );
        assert_eq!(
            r("{{ true | ternary('on', 'off') }} {{ 'no' | ternary('on', 'off') }}"),
            "on off"
        );
    }

    #[test]
    fn strings_and_paths() {
        assert_eq!(
            r("{{ 'secret' | b64encode }} {{ 'c2VjcmV0' | b64decode }}"),
            "c2VjcmV0 secret"
        );
        assert_eq!(r("{{ \"it's\" | quote }}"), "'it'\"'\"'s'");
        assert_eq!(r("{{ '/etc/patroni/config.yml' | basename }} {{ '/etc/patroni/config.yml' | dirname }}"), "config.yml /etc/patroni");
        assert_eq!(
            r("{{ 'abc' | hash('sha256') }}"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn lists() {
        assert_eq!(
            r("{{ [1, [2, [3]], 4] | flatten | to_json }}"),
            "[1, 2, 3, 4]"
        );
        assert_eq!(
            r("{{ [1, [2, [3]]] | flatten(1) | to_json }}"),
            "[1, 2, [3]]"
        );
        assert_eq!(
            r("{{ [1, 2, 2, 3] | unique | list | to_json }}"),
            "[1, 2, 3]"
        );
        assert_eq!(r("{{ [1, 2, 3] | difference([2]) | to_json }} {{ [1, 2] | intersect([2, 3]) | to_json }} {{ [1] | union([2, 1]) | to_json }}"), "[1, 3] [2] [1, 2]");
    }

    #[test]
    fn dict_items_round_trip() {
        assert_eq!(
            r("{{ {'a': 1, 'b': 2} | dict2items | map(attribute='key') | join(',') }}"),
            "a,b"
        );
        assert_eq!(r("{{ ([{'key': 'x', 'value': 1}] | items2dict).x }}"), "1");
        assert_eq!(
            r("{{ ([{'n': 'x', 'v': 1}] | items2dict(key_name='n', value_name='v')).x }}"),
            "1"
        );
    }

    #[test]
    fn ipaddr_helpers() {
        assert_eq!(r("{{ '10.0.0.7/24' | ipaddr('address') }} {{ '10.0.0.7/24' | ipaddr('network') }} {{ '10.0.0.7/24' | ipaddr('prefix') }} {{ '10.0.0.7/24' | ipaddr('netmask') }}"), "10.0.0.7 10.0.0.0 24 255.255.255.0");
        assert_eq!(r("{{ 'nope' | ipaddr }}"), "False");
    }

    #[test]
    fn tests_and_format() {
        assert_eq!(r("{{ '15.4' is version('15', '>=') }} {{ '9.6' is version('10', '<') }} {{ '2.10' is version('2.9', 'gt') }}"), "True True True");
        assert_eq!(r("{{ 'node01' is match('node') }} {{ 'xnode' is match('node') }} {{ 'xnode' is search('node') }}"), "True False True");
        assert_eq!(r("{{ '%02d-%s' | format(7, 'x') }}"), "07-x");
        assert_eq!(r("{{ range(1, 4) | list | to_json }}"), "[1, 2, 3]");
        assert_eq!(r("{{ {'failed': false, 'changed': true} is succeeded }} {{ {'changed': true} is changed }}"), "True True");
        assert_eq!(r("{{ [{'n': 1}, {'n': 2}] | selectattr('n', 'gt', 1) | map(attribute='n') | list | to_json }}"), "[2]");
        assert_eq!(r("{{ 'a,b' .split(',') | to_json }}"), r#"["a", "b"]"#);
        assert_eq!(
            r("{{ lookup('env', 'PGDEPLOY_SURELY_UNSET_X', default='d') }}"),
            "d"
        );
        assert_eq!(r("{{ 42 | type_debug }} {{ 'x' | type_debug }}"), "int str");
    }

    #[test]
    fn fileglob_lists_matching_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.deb", "a.deb", "Packages"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let d = dir.path().display();
        assert_eq!(
            r(&format!(
                "{{{{ query('fileglob', '{d}/*.deb') | map('basename') | join(',') }}}}"
            )),
            "a.deb,b.deb"
        );
        assert_eq!(
            r(&format!("{{{{ query('fileglob', '{d}/*') | length }}}}")),
            "3"
        );
    }

    #[test]
    fn mandatory_fails_when_undefined() {
        let t = Templates::new(vec![], &[]);
        let ctx = Vars::new(serde_json::Map::new(), &t).into_value();
        assert!(t.render_str("{{ x | mandatory }}", &ctx, "t").is_err());
    }
}
