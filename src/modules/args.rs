//! Module parameters as typed structs, read with Ansible's typing rules.
//!
//! Each module declares its parameters as a `#[derive(Deserialize)]` struct: the struct's
//! fields (and their `alias`es) are the names the task may use, checked when the playbook is
//! read; a field no code reads is a compiler warning (dead code), so nothing is accepted and
//! ignored. Values are read as Ansible reads them: `yes`/`no`/`on`/`1` are booleans, numbers
//! and booleans are strings where a string is wanted, `"5"` is a number where one is wanted, a
//! comma-separated string is a list, and null is "not given".

use anyhow::{anyhow, Result};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

type Error = de::value::Error;

/// Reads a module's parameters into its struct; errors name the module and the parameter.
pub fn from_map<T: DeserializeOwned>(module: &str, map: &Map<String, Value>) -> Result<T> {
    T::deserialize(Loose::Map(map)).map_err(|e| {
        let msg = e.to_string();
        match msg
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            Some(field) => anyhow!("{module}: parameter `{field}` is required"),
            None => anyhow!("{module}: {msg}"),
        }
    })
}

/// The parameter names (aliases included) a struct reads.
pub fn fields<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut names = Fields(None);
    let _ = T::deserialize(&mut names);
    names.0.map(<[_]>::to_vec).unwrap_or_default()
}

/// A file mode: `'0644'`, `'644'`, or an integer (YAML 1.1 already read `0644` as 420; a
/// decimal `644` is read as Ansible reads it). `preserve` is no mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub Option<u32>);

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an octal mode such as '0644'")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
                u32::try_from(v)
                    .map(|m| FileMode(Some(m)))
                    .map_err(|_| E::custom(format!("bad mode {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
                self.visit_u64(u64::try_from(v).map_err(|_| E::custom(format!("bad mode {v}")))?)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FileMode, E> {
                let t = s.trim();
                if t == "preserve" {
                    return Ok(FileMode(None));
                }
                u32::from_str_radix(t, 8).map(|m| FileMode(Some(m))).map_err(|_| {
                    E::custom(format!(
                        "must be an octal mode such as '0644', found `{s}` (symbolic modes are not supported)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl FileMode {
    pub fn of(m: Option<FileMode>) -> Option<u32> {
        m.and_then(|m| m.0)
    }
}

/// A value read the Ansible way (see the module docs).
#[derive(Clone, Copy)]
enum Loose<'a> {
    Value(&'a Value),
    Map(&'a Map<String, Value>),
}

fn found(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

impl<'de> de::Deserializer<'de> for Loose<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let v = match self {
            Loose::Map(m) => return visitor.visit_map(Entries::new(m, true)),
            Loose::Value(v) => v,
        };
        match v {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or_default())
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Object(m) => visitor.visit_map(Entries::new(m, false)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Loose::Value(v) = self else {
            return Err(de::Error::custom("must be yes or no, found a mapping"));
        };
        let b = match v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" | "y" => true,
                "no" | "false" | "off" | "0" | "n" | "" => false,
                _ => return Err(de::Error::custom(format!("must be yes or no, found `{s}`"))),
            },
            other => {
                return Err(de::Error::custom(format!(
                    "must be yes or no, found {}",
                    found(other)
                )))
            }
        };
        visitor.visit_bool(b)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let number = |v: &Value| -> Option<i64> {
            match v {
                Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        match self {
            Loose::Value(v) => match number(v) {
                Some(n) => visitor.visit_i64(n),
                None => Err(de::Error::custom(format!(
                    "must be a number, found {}",
                    found(v)
                ))),
            },
            Loose::Map(_) => Err(de::Error::custom("must be a number, found a mapping")),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Loose::Value(Value::String(s)) => visitor.visit_str(s),
            Loose::Value(v @ (Value::Number(_) | Value::Bool(_))) => {
                visitor.visit_string(v.to_string())
            }
            Loose::Value(other) => Err(de::Error::custom(format!(
                "must be a string, found {other}"
            ))),
            Loose::Map(_) => Err(de::Error::custom("must be a string, found a mapping")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Loose::Value(Value::Null) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// A list: a YAML list (nulls left out), a comma-separated string, or one value.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Loose::Value(Value::Array(items)) => visitor.visit_seq(Items(items.iter())),
            Loose::Value(Value::String(s)) => {
                let parts: Vec<Value> = s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                visitor.visit_seq(OwnedItems(parts.into_iter()))
            }
            Loose::Value(other) => visitor.visit_seq(Items(std::slice::from_ref(other).iter())),
            Loose::Map(_) => Err(de::Error::custom("must be a list, found a mapping")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Loose::Value(Value::String(s)) => visitor.visit_enum(s.as_str().into_deserializer()),
            Loose::Value(other) => Err(de::Error::custom(format!(
                "must be one of its words, found {other}"
            ))),
            Loose::Map(_) => Err(de::Error::custom("must be a word, found a mapping")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 u8 i128 u128 f32 f64 char bytes byte_buf unit unit_struct tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// A list's items, each read the Ansible way.
struct Items<'a>(std::slice::Iter<'a, Value>);

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = Error;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(v) => seed.deserialize(Loose::Value(v)).map(Some),
            None => Ok(None),
        }
    }
}

/// The items of a comma-separated string.
struct OwnedItems(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for OwnedItems {
    type Error = Error;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(v) => seed.deserialize(Loose::Value(&v)).map(Some),
            None => Ok(None),
        }
    }
}

/// A mapping's entries; an error in a value names its key. In the parameters themselves
/// (`top`) a null value is left out: a parameter set to null counts as not given.
struct Entries<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<(&'a str, &'a Value)>,
    top: bool,
}

impl<'a> Entries<'a> {
    fn new(m: &'a Map<String, Value>, top: bool) -> Entries<'a> {
        Entries {
            iter: m.iter(),
            value: None,
            top,
        }
    }
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Error;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (k, v) in self.iter.by_ref() {
            if self.top && v.is_null() {
                continue;
            }
            self.value = Some((k, v));
            return seed.deserialize(k.as_str().into_deserializer()).map(Some);
        }
        Ok(None)
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(Loose::Value(v)).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with('`') {
                de::Error::custom(msg) // already names its (inner) parameter
            } else {
                de::Error::custom(format!("`{k}` {msg}"))
            }
        })
    }
}

/// A deserializer that only notes the field names a struct asks for.
struct Fields(Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &mut Fields {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("not a struct"))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("fields noted"))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Example {
        #[serde(alias = "dest")]
        path: String,
        force: Option<bool>,
        #[serde(default)]
        groups: Vec<String>,
        timeout: Option<i64>,
        mode: Option<FileMode>,
        owner: Option<String>,
        #[serde(rename = "_raw_params")]
        raw: Option<String>,
    }

    fn read(v: Value) -> Result<Example> {
        from_map("example", v.as_object().unwrap())
    }

    #[test]
    fn values_are_read_as_ansible_reads_them() {
        let e = read(
            json!({"dest": "/x", "force": "yes", "groups": "a, b,", "timeout": "30",
            "mode": "0644", "owner": 1000, "_raw_params": "ls"}),
        )
        .unwrap();
        assert_eq!(e.path, "/x");
        assert_eq!(e.force, Some(true));
        assert_eq!(e.groups, ["a", "b"]);
        assert_eq!(e.timeout, Some(30));
        assert_eq!(e.mode, Some(FileMode(Some(0o644))));
        assert_eq!(e.owner.as_deref(), Some("1000"));
        assert_eq!(e.raw.as_deref(), Some("ls"));
        let e = read(
            json!({"path": "/x", "force": 0, "groups": ["a", 7], "mode": 420,
            "owner": null}),
        )
        .unwrap();
        assert_eq!(
            (e.force, e.groups),
            (Some(false), vec!["a".into(), "7".into()])
        );
        assert_eq!((e.mode, e.owner), (Some(FileMode(Some(0o644))), None));
        assert_eq!(
            read(json!({"path": "/x", "mode": "preserve"}))
                .unwrap()
                .mode,
            Some(FileMode(None))
        );
    }

    #[test]
    fn errors_name_the_module_and_parameter() {
        let err = |v| read(v).unwrap_err().to_string();
        assert_eq!(err(json!({})), "example: parameter `path` is required");
        assert_eq!(
            err(json!({"path": "/x", "force": "maybe"})),
            "example: `force` must be yes or no, found `maybe`"
        );
        assert_eq!(
            err(json!({"path": "/x", "timeout": "soon"})),
            "example: `timeout` must be a number, found `soon`"
        );
        assert!(err(json!({"path": "/x", "mode": "u+x"})).contains("`mode` must be an octal mode"));
        assert_eq!(
            err(json!({"path": ["/x"]})),
            "example: `path` must be a string, found [\"/x\"]"
        );
    }

    #[test]
    fn fields_lists_names_and_aliases() {
        let f = fields::<Example>();
        for name in ["path", "dest", "force", "groups", "_raw_params"] {
            assert!(f.contains(&name), "{name} in {f:?}");
        }
    }
}
