//! postgresql_query: SQL through psql on the host (as the task's become_user, usually
//! postgres). Rows come back as a list of mappings.

use super::{args, ModuleCtx, Outcome, Params, ProbeCmd, Spec};
use crate::transport::{quote, Stdin};
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

/// How psql connects: the login parameters every PostgreSQL module takes (the database is
/// each module's own parameter: postgresql_db's `db` names the database it creates).
#[derive(Deserialize)]
pub struct Login {
    login_user: Option<String>,
    login_host: Option<String>,
    #[serde(alias = "port")]
    login_port: Option<String>,
    login_unix_socket: Option<String>,
    login_password: Option<String>,
}

impl Login {
    /// A module's parameters: its own struct's and the login's.
    pub fn with<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
        [args::fields::<T>(), args::fields::<Login>()].concat()
    }
}

#[derive(Deserialize)]
struct QueryArgs {
    query: String,
    #[serde(alias = "login_db")]
    db: Option<String>,
    autocommit: Option<bool>,
    positional_args: Option<Vec<Value>>,
    named_args: Option<Map<String, Value>>,
    encoding: Option<String>,
    #[serde(default)]
    search_path: Vec<String>,
    as_single_query: Option<bool>,
    session_role: Option<String>,
    trust_input: Option<bool>,
}

/// A query whose task says it only reads (`check_mode: false`) is read ahead with the other
/// tasks' probes, inside a read-only transaction: a statement that would write fails there
/// and changes nothing, and a failed answer is never taken, so the task then runs it live, in
/// its turn.
fn query_probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    if !ctx.force_run {
        return Ok(None);
    }
    let (mut psql, sql, _) = query_command(p)?;
    psql.single_transaction();
    Ok(sql_probe(
        &psql,
        &format!("SET TRANSACTION READ ONLY;\n{sql}"),
        ctx,
    ))
}

/// psql, the SQL it reads (session settings, then the query with its arguments), and the
/// query as the task gave it (with its arguments).
fn query_command(p: &Params<'_>) -> Result<(Psql, String, String)> {
    let a: QueryArgs = p.parse()?;
    let mut sql = a.query.clone();
    for v in a.positional_args.iter().flatten() {
        if !sql.contains("%s") {
            bail!("postgresql_query: more positional_args than %s placeholders");
        }
        sql = sql.replacen("%s", &literal(v), 1);
    }
    for (k, v) in a.named_args.iter().flatten() {
        sql = sql.replace(&format!("%({k})s"), &literal(v));
    }
    let mut psql = psql_command(p, a.db.clone())?;
    if !a.as_single_query.unwrap_or(true) {
        bail!(
            "postgresql_query: `as_single_query: no` is not supported: the query runs as one \
             script; use one task per statement"
        );
    }
    // trust_input: values reach SQL only as quoted identifiers and literals, so there is
    // nothing to refuse either way.
    let _ = a.trust_input;
    let query = sql.clone();
    let sql = format!("{}{sql}", session_settings(&a));
    // autocommit: no (explicitly) runs the query in one transaction, as Ansible does.
    if a.autocommit == Some(false) {
        psql.single_transaction();
    }
    Ok((psql, sql, query))
}

pub async fn query(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let (psql, sql, query) = query_command(p)?;
    // No statement is safe to run in check mode on its word: a rolled-back transaction does
    // not undo pg_reload_conf() or a sequence's nextval(). A read-only query says so.
    if ctx.check && !ctx.force_run {
        return Ok(Outcome::skipped(
            "skipped in check mode: a statement may have effects a rollback does not undo; \
             a read-only query runs in check mode with `check_mode: false` on its task",
        ));
    }
    let read_only = is_read_only(&query);
    let ahead = query_probe(p, ctx)?.and_then(|probe| ctx.answer_ahead(probe));
    let out = match ahead {
        Some(out) => out,
        None => run_sql(ctx, &psql, &sql, true).await?,
    };
    if !out.ok() {
        return Ok(
            Outcome::failed(format!("query failed: {}", out.stderr_str().trim()))
                .with("query", query),
        );
    }
    let rows = parse_csv_rows(&out.stdout_str());
    let mut outcome = if read_only {
        Outcome::ok()
    } else {
        Outcome::changed()
    };
    outcome = outcome
        .with("rowcount", rows.len())
        .with(
            "query_result",
            Value::Array(rows.into_iter().map(Value::Object).collect()),
        )
        .with("query", query);
    Ok(outcome)
}

/// `session_role`, `search_path` and `encoding` as SET statements run before the query.
fn session_settings(a: &QueryArgs) -> String {
    let mut out = String::new();
    if let Some(enc) = &a.encoding {
        out.push_str(&format!(
            "SET client_encoding TO {};\n",
            literal(&Value::String(enc.clone()))
        ));
    }
    let path = &a.search_path;
    if !path.is_empty() {
        let names: Vec<String> = path
            .iter()
            .map(|s| crate::modules::postgresql_role::ident(s))
            .collect();
        out.push_str(&format!("SET search_path TO {};\n", names.join(", ")));
    }
    if let Some(role) = &a.session_role {
        out.push_str(&format!(
            "SET ROLE {};\n",
            crate::modules::postgresql_role::ident(role)
        ));
    }
    out
}

/// The psql command line for a task's login_* parameters (CSV output, stop at the first error).
/// `db` is the database to connect to, except in postgresql_db where it names the database
/// the task creates (`db_is_login: false`).
/// A psql invocation: the command line, and the password it reads from the first line of its
/// stdin (never on a command line, where `ps` shows it to every user of the host).
pub struct Psql {
    /// The command without psql's `-1`: probes of one connection share it as a session.
    session: String,
    /// The whole input in one transaction (`-1`).
    single: bool,
    pub password: Option<String>,
}

impl Psql {
    /// What the command reads on stdin: the password line, then the SQL.
    pub fn stdin(&self, sql: &str) -> Vec<u8> {
        let mut input = Vec::new();
        if let Some(pw) = &self.password {
            input.extend_from_slice(pw.as_bytes());
            input.push(b'\n');
        }
        input.extend_from_slice(sql.as_bytes());
        input
    }
}

/// Which psql runs: on Debian the newest installed one's own binary, else `psql` from PATH.
/// Debian's /usr/bin/psql is pg_wrapper, a Perl script that costs ~25 ms of CPU per call
/// before psql starts (measured on the lab: 40 ms a call through it, 13 ms direct); psql of
/// the newest version talks to older servers too. Shell builtins only: it runs in every probe.
const PICK_PSQL: &str = "__psql=psql; __v=0; for __p in /usr/lib/postgresql/*/bin/psql; do __n=${__p#/usr/lib/postgresql/}; __n=${__n%%[!0-9]*}; if [ -x \"$__p\" ] && [ \"${__n:-0}\" -gt \"$__v\" ]; then __v=$__n; __psql=$__p; fi; done; ";

/// psql as `PICK_PSQL` picked it, without reading ~/.psqlrc.
const PSQL: &str = "\"$__psql\" -X";

impl Psql {
    /// The whole input in one transaction (`-1`).
    fn single_transaction(&mut self) {
        self.single = true;
    }

    /// The command line that runs psql.
    pub fn cmd(&self) -> String {
        match self.single {
            true => self
                .session
                .replacen(&format!("{PSQL} "), &format!("{PSQL} -1 "), 1),
            false => self.session.clone(),
        }
    }
}

/// psql for the task's `Login` parameters, connected to `db` (postgres when none).
pub fn psql_command(p: &Params<'_>, db: Option<String>) -> Result<Psql> {
    let login: Login = p.parse()?;
    let db = db.unwrap_or_else(|| "postgres".into());
    let port = login.login_port.unwrap_or_else(|| "5432".into());
    // From /: the login user's directory may not be readable by the user psql runs as.
    let mut cmd = format!("cd / && {PICK_PSQL}");
    let password = login.login_password;
    if let Some(pw) = &password {
        if pw.contains('\n') || pw.contains('\r') {
            bail!("login_password: a password with a line break cannot be passed to psql");
        }
        // The shell's `read` takes exactly the first line; psql reads the SQL after it.
        cmd.push_str("IFS= read -r PGPASSWORD && export PGPASSWORD && ");
    }
    cmd.push_str(&format!(
        "{PSQL} -q --csv -v ON_ERROR_STOP=1 -d {} -p {}",
        quote(&db),
        quote(&port)
    ));
    if let Some(u) = login.login_user {
        cmd.push_str(&format!(" -U {}", quote(&u)));
    }
    if let Some(h) = login.login_host.or(login.login_unix_socket) {
        cmd.push_str(&format!(" -h {}", quote(&h)));
    }
    Ok(Psql {
        session: cmd,
        single: false,
        password,
    })
}

/// Runs SQL (on stdin, so it is in no process list) as the task's become_user, postgres by
/// default. `traced: false` keeps the output out of -v traces (password verifiers).
/// The user psql runs as: the task's become_user, postgres by default.
pub fn psql_user(ctx: &ModuleCtx<'_>) -> Option<String> {
    ctx.become_user.clone().or(Some("postgres".into()))
}

/// A PostgreSQL module's probe: `sql` through psql as `run_sql` runs it. None with a
/// `login_password`, which psql reads on stdin: a probe's stdin goes into the batch's script.
pub fn sql_probe(psql: &Psql, sql: &str, ctx: &ModuleCtx<'_>) -> Option<ProbeCmd> {
    if psql.password.is_some() {
        return None;
    }
    // The probes of one connection share a psql session in a batch (`Fold::Psql`).
    Some(ProbeCmd {
        stdin: Some(psql.stdin(sql)),
        user: psql_user(ctx),
        fold: Some(super::readahead::Fold::Psql {
            session: psql.session.clone(),
            single: psql.single,
        }),
        ..ProbeCmd::plain(psql.cmd())
    })
}

pub async fn run_sql(
    ctx: &ModuleCtx<'_>,
    psql: &Psql,
    sql: &str,
    traced: bool,
) -> Result<crate::transport::Output> {
    let become_as = psql_user(ctx);
    let stdin = Stdin::Bytes(psql.stdin(sql));
    if traced {
        ctx.sh_as(&psql.cmd(), stdin, become_as).await
    } else {
        ctx.sh_as_untraced(&psql.cmd(), stdin, become_as).await
    }
}

fn is_read_only(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(
        first.as_str(),
        "select" | "show" | "explain" | "values" | "table" | "with"
    ) && !sql.to_ascii_lowercase().contains("nextval(")
}

/// A SQL literal: numbers and booleans as they are, strings quoted with `'` doubled.
pub fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        // A list is an SQL array, as psycopg2 adapts one for Ansible's module.
        Value::Array(items) if items.is_empty() => "'{}'".into(),
        Value::Array(items) => format!(
            "ARRAY[{}]",
            items.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

/// psql's --csv output (a header line, then rows) as mappings.
pub fn parse_csv_rows(text: &str) -> Vec<Map<String, Value>> {
    let records = parse_csv(text);
    let Some((header, rows)) = records.split_first() else {
        return vec![];
    };
    rows.iter()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.iter().map(|v| Value::String(v.clone())))
                .collect()
        })
        .collect()
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if any {
        record.push(field);
        records.push(record);
    }
    records
}

/// The `postgresql_query` module.
pub const POSTGRESQL_QUERY: Spec = Spec {
    params: Login::with::<QueryArgs>,
    probe: Some(query_probe),
    ..Spec::new("postgresql_query", |p, ctx| Box::pin(query(p, ctx)))
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The newest installed version's own psql, by number (not by name: 9.6 sorts after 15).
    #[test]
    fn the_newest_psql_is_picked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        for v in ["9.6", "13", "15"] {
            let bin = dir.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("psql"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(
                bin.join("psql"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        let pick = PICK_PSQL.replace("/usr/lib/postgresql", &root);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{pick}echo \"$__psql\""))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{root}/15/bin/psql")
        );
        let none = PICK_PSQL.replace("/usr/lib/postgresql", "/nonexistent");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{none}echo \"$__psql\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "psql");
    }

    #[test]
    fn csv_rows() {
        let rows = parse_csv_rows("name,note\nalice,\"a, \"\"b\"\"\nc\"\nbob,\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["note"], "a, \"b\"\nc");
        assert_eq!(rows[1]["name"], "bob");
        assert_eq!(rows[1]["note"], "");
    }

    /// The password reaches psql in its environment, from stdin: not on the command line,
    /// which a fake psql (in PATH) records with its environment and its stdin.
    #[test]
    fn the_password_reaches_psql_through_stdin_not_argv() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("psql");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"pw=$PGPASSWORD\"\necho \"args=$*\"\ncat\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let map = serde_json::json!({"login_password": "s3cr'et \"x\" $HOME", "db": "app"});
        let p = Params {
            module: "postgresql_query",
            map: map.as_object().unwrap(),
        };
        let psql = psql_command(&p, Some("app".into())).unwrap();
        assert!(!psql.cmd().contains("s3cr"), "{}", psql.cmd());
        // The fake in PATH, not a psql this machine may have installed.
        let cmd = psql.cmd().replace(PICK_PSQL, "__psql=psql; ");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&psql.stdin("SELECT 1;\nSELECT 2;\n"))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("pw=s3cr'et \"x\" $HOME"));
        let args = lines.next().unwrap();
        assert!(
            args.starts_with("args=") && !args.contains("s3cr"),
            "{args}"
        );
        assert_eq!(lines.collect::<Vec<_>>(), ["SELECT 1;", "SELECT 2;"]);

        let map = serde_json::json!({"login_password": "two\nlines"});
        let p = Params {
            module: "postgresql_query",
            map: map.as_object().unwrap(),
        };
        assert!(psql_command(&p, None).is_err());
    }

    #[test]
    fn literals_and_kinds() {
        assert_eq!(literal(&Value::String("it's".into())), "'it''s'");
        assert_eq!(
            literal(&serde_json::json!(["a", "b'c", 3])),
            "ARRAY['a', 'b''c', 3]"
        );
        assert_eq!(literal(&serde_json::json!([])), "'{}'");
        assert!(is_read_only("  SELECT 1"));
        assert!(is_read_only("with x as (select 1) select * from x"));
        assert!(!is_read_only("ALTER ROLE x PASSWORD 'y'"));
    }
}
