//! Jinja templates, as Ansible renders them, on minijinja.
//!
//! Undefined variables are errors (strict), output is never HTML-escaped (the templates render
//! YAML and config files), and variables whose values are themselves templates are rendered
//! lazily when used, as Ansible does.

mod filters;

use anyhow::{anyhow, Result};
use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{AutoEscape, Environment, ErrorKind, Expression, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The value Ansible playbooks write as `default(omit)`: a parameter with it is left out.
pub const OMIT: &str = "__omit_place_holder__pgdeploy";
/// How deep variables may refer to other templated variables.
const MAX_LAZY_DEPTH: usize = 32;

thread_local! {
    static LAZY_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Set while looking for the undefined variable of a failed render: lookups then say
    /// whether a name exists without rendering it again.
    static PROBING: Cell<bool> = const { Cell::new(false) };
    /// Set while reading ahead (`Templates::quietly`): a failure there only means "not known
    /// yet", so it is not described (which variable, which line), which costs more than the
    /// rendering itself.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Where the templates come from: a user's directories first, then those built into the binary.
#[derive(Clone)]
pub struct Templates {
    shared: Arc<Shared>,
}

/// The environment, and the expressions compiled in it so far: a run evaluates the same few
/// hundred `when:` conditions and `{{ }}` values on every host at every task, and compiling
/// one costs more than evaluating it.
struct Shared {
    // Declared before `env`, so dropped before it: each expression refers to `env`.
    expressions: std::sync::Mutex<HashMap<String, Arc<Expression<'static, 'static>>>>,
    env: Environment<'static>,
}

/// How many compiled expressions are kept (expressions made from variables could grow the
/// cache without end; past this it starts again).
const EXPRESSION_CACHE: usize = 4096;

/// Templates shipped inside the binary.
pub type Builtin = &'static [(&'static str, &'static str)];

include!(concat!(env!("OUT_DIR"), "/builtin_templates.rs"));

/// How much work one rendering may do (minijinja's instruction count).
const TEMPLATE_FUEL: u64 = 20_000_000;

impl Templates {
    pub fn new(dirs: Vec<PathBuf>, builtin: Builtin) -> Templates {
        let mut env = Environment::new();
        // A template that would loop for minutes (nested ranges, say) stops with an error:
        // the cluster's largest expressions use a few hundred thousand units.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_keep_trailing_newline(true);
        // Ansible's template module sets trim_blocks.
        env.set_trim_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        filters::register(&mut env);
        env.add_global("omit", OMIT);
        env.set_loader(move |name| {
            for dir in &dirs {
                let path = dir.join(name);
                if path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                        minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            format!("cannot read {}: {e}", path.display()),
                        )
                    });
                }
            }
            Ok(builtin
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, src)| src.to_string()))
        });
        Templates {
            shared: Arc::new(Shared {
                expressions: Default::default(),
                env,
            }),
        }
    }

    /// Renders a template file (by name, relative to the template directories).
    pub fn render_file(&self, name: &str, ctx: &Value) -> Result<String> {
        let tpl = self
            .shared
            .env
            .get_template(name)
            .map_err(|e| self.describe(e, name, None, ctx))?;
        tpl.render(ctx)
            .map_err(|e| self.describe(e, name, tpl_source(&self.shared.env, name).as_deref(), ctx))
    }

    /// Renders a string; `origin` names where it was written (file:line) for errors.
    pub fn render_str(&self, src: &str, ctx: &Value, origin: &str) -> Result<String> {
        if !is_template(src) {
            return Ok(src.to_string());
        }
        self.shared
            .env
            .render_str(src, ctx)
            .map_err(|e| self.describe(e, origin, Some(src), ctx))
    }

    /// Templates every string inside a value. A string that is one `{{ expression }}` keeps the
    /// expression's type (a list stays a list), as Ansible does.
    pub fn render_value(&self, v: &Json, ctx: &Value, origin: &str) -> Result<Json> {
        Ok(match v {
            Json::String(s) => self.render_string_value(s, ctx, origin)?,
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.render_value(i, ctx, origin))
                    .collect::<Result<_>>()?,
            ),
            Json::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let key = self.render_str(k, ctx, origin)?;
                    out.insert(key, self.render_value(v, ctx, origin)?);
                }
                Json::Object(out)
            }
            other => other.clone(),
        })
    }

    fn render_string_value(&self, s: &str, ctx: &Value, origin: &str) -> Result<Json> {
        if !is_template(s) {
            return Ok(Json::String(s.to_string()));
        }
        if let Some(expr) = single_expression(s) {
            let value = self.eval(expr, ctx, origin)?;
            return to_json(&value).map_err(|e| anyhow!("{origin}: {e}"));
        }
        Ok(Json::String(self.render_str(s, ctx, origin)?))
    }

    /// Evaluates an expression (`when:`, `until:`, `changed_when:`, ...).
    pub fn eval(&self, expr: &str, ctx: &Value, origin: &str) -> Result<Value> {
        let compiled = self
            .expression(expr)
            .map_err(|e| self.describe(e, origin, Some(expr), ctx))?;
        let value = compiled
            .eval(ctx)
            .map_err(|e| self.describe(e, origin, Some(expr), ctx))?;
        if value.is_undefined() {
            return Err(self.describe(
                minijinja::Error::new(ErrorKind::UndefinedError, "undefined value"),
                origin,
                Some(expr),
                ctx,
            ));
        }
        Ok(value)
    }

    /// `expr` compiled, once per run (handed out for no longer than `self` is borrowed).
    fn expression<'a>(&'a self, expr: &str) -> Result<Arc<Expression<'a, 'a>>, minijinja::Error> {
        let cache = &self.shared.expressions;
        if let Some(e) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
            return Ok(e.clone());
        }
        let compiled = self.shared.env.compile_expression_owned(expr.to_string())?;
        // SAFETY: the expression refers to `self.shared.env`, which never moves (it is inside
        // an Arc) and outlives every expression in the cache (`Shared` drops the cache first);
        // one handed out lives no longer than the borrow of `self` (the signature says so).
        let compiled: Expression<'static, 'static> = unsafe { std::mem::transmute(compiled) };
        let compiled = Arc::new(compiled);
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= EXPRESSION_CACHE {
            cache.clear();
        }
        cache.insert(expr.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// Evaluates a condition as Ansible does (a bare string "false" or "no" is false).
    pub fn eval_bool(&self, expr: &str, ctx: &Value, origin: &str) -> Result<bool> {
        let expr = expr.trim();
        let expr = single_expression(expr).unwrap_or(expr);
        let v = self.eval(expr, ctx, origin)?;
        Ok(filters::truthy(&v))
    }

    /// Runs `f` with failures left undescribed: for callers that only ask whether something
    /// can be worked out yet, and drop the error.
    pub fn quietly<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = QUIET.with(|q| q.replace(true));
        let out = f();
        QUIET.with(|q| q.set(was));
        out
    }

    /// Builds an error that says where, which variable, and the line of the template.
    fn describe(
        &self,
        e: minijinja::Error,
        origin: &str,
        src: Option<&str>,
        ctx: &Value,
    ) -> anyhow::Error {
        if QUIET.with(|q| q.get()) {
            return TemplateError(format!("{origin}: not known yet")).into();
        }
        if let Some(inner) = lazy_error(&e) {
            return TemplateError(format!("{origin}: {inner}")).into();
        }
        let line = e.line().unwrap_or(1);
        let place = if src.is_some_and(|s| !s.contains('\n')) || e.line().is_none() {
            origin.to_string()
        } else {
            format!("{origin}:{line}")
        };
        let mut msg = match e.kind() {
            ErrorKind::UndefinedError => {
                let names = src
                    .map(|s| self.missing_variables(s, ctx))
                    .unwrap_or_default();
                if names.is_empty() {
                    "undefined variable".to_string()
                } else {
                    format!("undefined variable `{}`", names.join("`, `"))
                }
            }
            _ => match e.detail() {
                Some(d) => format!("{}: {d}", e.kind()),
                None => e.kind().to_string(),
            },
        };
        if let Some(text) = src.and_then(|s| s.lines().nth(line.saturating_sub(1))) {
            msg.push_str(&format!("\n  | {}", text.trim()));
        }
        if e.kind() == ErrorKind::UndefinedError {
            msg.push_str(
                "\n  define it in the inventory, a vars file or with -e, or write `| default(...)`",
            );
        }
        TemplateError(format!("{place}: {msg}")).into()
    }

    /// Which of a template's variables (dotted paths) cannot be resolved in `ctx`.
    fn missing_variables(&self, src: &str, ctx: &Value) -> Vec<String> {
        let names = if is_template(src) {
            match self.shared.env.template_from_str(src) {
                Ok(t) => t.undeclared_variables(true),
                Err(_) => return vec![],
            }
        } else {
            match self.shared.env.compile_expression(src) {
                Ok(e) => e.undeclared_variables(true),
                Err(_) => return vec![],
            }
        };
        PROBING.with(|p| p.set(true));
        let mut missing: Vec<String> = names
            .into_iter()
            .filter(|name| {
                let mut cur = ctx.clone();
                for part in name.split('.') {
                    match cur.get_attr(part) {
                        Ok(v) if !v.is_undefined() => cur = v,
                        _ => return true,
                    }
                }
                false
            })
            .collect();
        PROBING.with(|p| p.set(false));
        missing.sort();
        missing
    }

    pub fn env(&self) -> &Environment<'static> {
        &self.shared.env
    }
}

fn tpl_source(env: &Environment<'static>, name: &str) -> Option<String> {
    env.get_template(name).ok().map(|t| t.source().to_string())
}

/// A value's truth as Ansible's `bool` filter reads it (`new_node=true`, `yes`, `1`, ...).
pub fn ansible_bool(v: &serde_json::Value) -> bool {
    filters::to_bool(Value::from_serialize(v))
}

/// An error in a template or expression (an undefined variable, a syntax or filter error):
/// the engine tells these apart from what a host answered.
#[derive(Debug)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

fn lazy_error(e: &minijinja::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(me) = err.downcast_ref::<minijinja::Error>() {
            if let Some(d) = me.detail() {
                if let Some(rest) = d.strip_prefix("LAZY:") {
                    return Some(rest.to_string());
                }
            }
        }
        cur = err.source();
    }
    None
}

/// Whether a string has Jinja syntax in it.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The expression of a string that is exactly one `{{ ... }}`, with nothing around it (not
/// even a newline: `"{{ x }}\n"` is text and renders as text).
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// minijinja value to JSON (undefined becomes an error, not null).
pub fn to_json(v: &Value) -> Result<Json> {
    if v.is_undefined() {
        return Err(anyhow!("undefined value"));
    }
    serde_json::to_value(v).map_err(|e| anyhow!("cannot convert a template value: {e}"))
}

/// A host's variables as templates see them. String values that are templates are rendered on
/// use, against the same variables.
#[derive(Debug)]
pub struct Vars {
    /// Where names are looked up, the last first (a later layer overrides an earlier one, as
    /// merging them in this order would): shared, so a task's variables cost no copy.
    layers: Vec<Arc<Map<String, Json>>>,
    /// Rendered values of templated variables; `None` while one is being rendered (a cycle).
    rendered: std::sync::Mutex<std::collections::HashMap<String, Option<Value>>>,
    templates: TemplatesRef,
    /// Extra top-level names resolved on demand (e.g. `hostvars`).
    extra: Vec<(String, Value)>,
}

/// A Templates handle that is Debug (minijinja objects must be).
#[derive(Clone)]
struct TemplatesRef(Templates);

impl std::fmt::Debug for TemplatesRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Vars {
    pub fn new(map: Map<String, Json>, templates: &Templates) -> Vars {
        Vars::layered(vec![Arc::new(map)], templates)
    }

    /// Variables from several maps, each overriding those before it.
    pub fn layered(layers: Vec<Arc<Map<String, Json>>>, templates: &Templates) -> Vars {
        Vars {
            layers,
            rendered: Default::default(),
            templates: TemplatesRef(templates.clone()),
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: Value) -> Vars {
        self.extra.push((name.to_string(), value));
        self
    }

    pub fn into_value(self) -> Value {
        Value::from_object(self)
    }
}

impl Object for Vars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if let Some((_, v)) = self.extra.iter().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        let raw = self.layers.iter().rev().find_map(|l| l.get(name))?;
        if PROBING.with(|p| p.get()) {
            return Some(Value::from_serialize(raw));
        }
        let cached = self.rendered.lock().ok()?.get(name).cloned();
        match cached {
            Some(Some(v)) => return Some(v),
            Some(None) => {
                return Some(Value::from(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("LAZY:variable `{name}` refers to itself"),
                )))
            }
            None => {}
        }
        if !contains_template(raw) {
            // Kept: a large value (facts, say) is converted once, not on every lookup.
            let value = Value::from_serialize(raw);
            self.rendered
                .lock()
                .ok()?
                .insert(name.to_string(), Some(value.clone()));
            return Some(value);
        }
        let depth = LAZY_DEPTH.with(|d| d.get());
        if depth >= MAX_LAZY_DEPTH {
            return Some(Value::from(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "LAZY:variable `{name}` is nested more than {MAX_LAZY_DEPTH} templates deep"
                ),
            )));
        }
        self.rendered.lock().ok()?.insert(name.to_string(), None);
        LAZY_DEPTH.with(|d| d.set(depth + 1));
        let ctx = Value::from_dyn_object(self.clone());
        let out = self
            .templates
            .0
            .render_value(raw, &ctx, &format!("variable `{name}`"));
        LAZY_DEPTH.with(|d| d.set(depth));
        let value = match out {
            Ok(v) => Value::from_serialize(&v),
            Err(e) => Value::from(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("LAZY:{e:#}"),
            )),
        };
        self.rendered
            .lock()
            .ok()?
            .insert(name.to_string(), Some(value.clone()));
        Some(value)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut names: indexmap::IndexSet<&str> = indexmap::IndexSet::new();
        for l in &self.layers {
            names.extend(l.keys().map(String::as_str));
        }
        names.extend(self.extra.iter().map(|(k, _)| k.as_str()));
        let keys: Vec<Value> = names.into_iter().map(Value::from).collect();
        Enumerator::Values(keys)
    }
}

fn contains_template(v: &Json) -> bool {
    match v {
        Json::String(s) => is_template(s),
        Json::Array(a) => a.iter().any(contains_template),
        Json::Object(m) => m.values().any(contains_template),
        _ => false,
    }
}

/// A mapping resolved on demand (`hostvars`: host name to that host's variables).
/// Finds the value of one key of a [`LazyMap`].
pub type Lookup = Box<dyn Fn(&str) -> Option<Value> + Send + Sync>;

pub struct LazyMap {
    pub keys: Vec<String>,
    pub lookup: Lookup,
}

impl std::fmt::Debug for LazyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

impl Object for LazyMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (self.lookup)(key.as_str()?)
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.keys.iter().map(|k| Value::from(k.as_str())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn tpl() -> Templates {
        Templates::new(
            vec![],
            &[(
                "hello.j2",
                "a={{ a }}\n{% if b %}\nb={{ b }}\n{% endif %}\nc={{ missing_one }}\n",
            )],
        )
    }

    fn ctx(v: Json) -> Value {
        let Json::Object(map) = v else { panic!() };
        Vars::new(map, &tpl()).into_value()
    }

    #[test]
    fn undefined_variable_names_template_line_and_variable() {
        let err = tpl()
            .render_file("hello.j2", &ctx(json!({"a": 1, "b": true})))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("hello.j2:5:"), "{err}");
        assert!(err.contains("`missing_one`"), "{err}");
    }

    #[test]
    fn a_template_that_would_run_for_minutes_stops() {
        let start = std::time::Instant::now();
        let err = tpl()
            .render_str(
                "{% for a in range(9999) %}{% for b in range(9999) %}x{% endfor %}{% endfor %}",
                &ctx(json!({})),
                "play.yml:7",
            )
            .unwrap_err();
        assert!(format!("{err:#}").contains("fuel"), "{err:#}");
        assert!(format!("{err:#}").contains("play.yml:7"), "{err:#}");
        assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
    }

    #[test]
    fn undefined_attribute_is_named() {
        let err = tpl()
            .render_str("x {{ a.b.c }}", &ctx(json!({"a": {"b": {}}})), "play.yml:3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("play.yml:3"), "{err}");
        assert!(err.contains("`a.b.c`"), "{err}");
    }

    #[test]
    fn no_html_escaping_and_trim_blocks() {
        let out = tpl()
            .render_str(
                "{% if true %}\n<&'\">{{ s }}\n{% endif %}\n",
                &ctx(json!({"s": "<x>"})),
                "t",
            )
            .unwrap();
        assert_eq!(out, "<&'\"><x>\n");
    }

    #[test]
    fn lazy_variables_and_native_types() {
        let c = ctx(
            json!({"base": "/data", "dir": "{{ base }}/pg", "list": [1, 2], "n": "{{ list }}", "self": "{{ self }}"}),
        );
        let t = tpl();
        assert_eq!(t.render_str("{{ dir }}", &c, "t").unwrap(), "/data/pg");
        assert_eq!(
            t.render_value(&json!("{{ n }}"), &c, "t").unwrap(),
            json!([1, 2])
        );
        assert_eq!(
            t.render_value(&json!({"k": "{{ list | length }}"}), &c, "t")
                .unwrap(),
            json!({"k": 2})
        );
        let err = t.render_str("{{ self }}", &c, "t").unwrap_err().to_string();
        assert!(err.contains("refers to itself"), "{err}");
    }

    #[test]
    fn default_and_defined_work_in_strict_mode() {
        let c = ctx(json!({}));
        let t = tpl();
        assert_eq!(
            t.render_str("{{ nope | default('x') }}", &c, "t").unwrap(),
            "x"
        );
        assert!(!t.eval_bool("nope is defined", &c, "t").unwrap());
    }

    #[test]
    fn conditions_read_as_ansible_reads_them() {
        let c = ctx(json!({"s": "false", "y": "yes", "n": 0}));
        let t = tpl();
        assert!(!t.eval_bool("s | bool", &c, "t").unwrap());
        assert!(t.eval_bool("y | bool", &c, "t").unwrap());
        assert!(!t.eval_bool("{{ n }}", &c, "t").unwrap());
        assert!(t.eval_bool("n == 0", &c, "t").unwrap());
    }

    #[test]
    fn per_group_settings_merge_as_the_system_role_does() {
        let c = ctx(json!({
            "group_names": ["postgres_cluster", "balancers"],
            "conf": {
                "etcd_cluster": [{"name": "x.never", "value": "1"}],
                "postgres_cluster": [{"name": "vm.swappiness", "value": "1"}, {"name": "net.a", "value": "2"}],
                "balancers": [{"name": "net.a", "value": "2"}],
            },
        }));
        let out = tpl()
            .render_str(
                "{{ conf | dict2items | selectattr('key', 'in', group_names) | map(attribute='value') | flatten \
                 | items2dict(key_name='name', value_name='value') | dict2items(key_name='name', value_name='value') \
                 | rejectattr('name', 'match', '^net\\.') | map(attribute='name') | join(',') }}",
                &c,
                "t",
            )
            .unwrap();
        assert_eq!(out, "vm.swappiness");
    }

    #[test]
    fn extract_and_dotted_attributes() {
        let c = ctx(json!({
            "names": ["a", "b", "c"],
            "hv": {
                "a": {"inventory_hostname": "a", "pg": {"stat": {"exists": true}}, "ip": "10.0.0.1"},
                "b": {"inventory_hostname": "b", "pg": {"stat": {"exists": false}}, "ip": "10.0.0.2"},
                "c": {"inventory_hostname": "c", "pg": {"stat": {"exists": true}}, "ip": "10.0.0.3"},
            },
        }));
        let t = tpl();
        let r = |e: &str| t.render_str(e, &c, "t").unwrap();
        assert_eq!(
            r("{{ names | map('extract', hv, 'ip') | join(',') }}"),
            "10.0.0.1,10.0.0.2,10.0.0.3"
        );
        assert_eq!(r("{{ names | map('extract', hv, ['pg', 'stat', 'exists']) | select | list | length }}"), "2");
        assert_eq!(
            r("{{ names | map('extract', hv) | selectattr('pg.stat.exists') | map(attribute='inventory_hostname') | join(',') }}"),
            "a,c"
        );
    }
}
