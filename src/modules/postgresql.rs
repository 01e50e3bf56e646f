//! postgresql_query: SQL through psql on the host (as the task's become_user, usually
//! postgres). Rows come back as a list of mappings.

use super::{ModuleCtx, Outcome, Params};
use crate::transport::{quote, Stdin};
use anyhow::{bail, Result};
use serde_json::{Map, Value};

pub async fn query(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
    let mut sql = p.req("query")?;
    if let Some(Value::Array(args)) = p.get("positional_args") {
        for a in args {
            if !sql.contains("%s") {
                bail!("postgresql_query: more positional_args than %s placeholders");
            }
            sql = sql.replacen("%s", &literal(a), 1);
        }
    }
    if let Some(Value::Object(args)) = p.get("named_args") {
        for (k, v) in args {
            sql = sql.replace(&format!("%({k})s"), &literal(v));
        }
    }
    let psql = psql_command(p, true)?;
    let read_only = is_read_only(&sql);
    if ctx.check && !read_only && !ctx.force_run {
        return Ok(Outcome::not_run("would run the statement in a real run"));
    }
    let out = run_sql(ctx, &psql, &sql, true).await?;
    if !out.ok() {
        return Ok(
            Outcome::failed(format!("query failed: {}", out.stderr_str().trim()))
                .with("query", sql),
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
        .with("query", sql);
    Ok(outcome)
}

/// The psql command line for a task's login_* parameters (CSV output, stop at the first error).
/// `db` is the database to connect to, except in postgresql_db where it names the database
/// the task creates (`db_is_login: false`).
pub fn psql_command(p: &Params<'_>, db_is_login: bool) -> Result<String> {
    let mut db = p.str("login_db")?;
    if db_is_login {
        db = db.or(p.str("db")?);
    }
    let db = db.unwrap_or_else(|| "postgres".into());
    let port = p
        .str("login_port")?
        .or(p.str("port")?)
        .unwrap_or_else(|| "5432".into());
    // From /: the login user's directory may not be readable by the user psql runs as.
    let mut cmd = String::from("cd / && ");
    if let Some(pw) = p.str("login_password")? {
        cmd.push_str(&format!("PGPASSWORD={} ", quote(&pw)));
    }
    cmd.push_str(&format!(
        "psql -X -q --csv -v ON_ERROR_STOP=1 -d {} -p {}",
        quote(&db),
        quote(&port)
    ));
    if let Some(u) = p.str("login_user")? {
        cmd.push_str(&format!(" -U {}", quote(&u)));
    }
    if let Some(h) = p.str("login_host")?.or(p.str("login_unix_socket")?) {
        cmd.push_str(&format!(" -h {}", quote(&h)));
    }
    Ok(cmd)
}

/// Runs SQL (on stdin, so it is in no process list) as the task's become_user, postgres by
/// default. `traced: false` keeps the output out of -v traces (password verifiers).
pub async fn run_sql(
    ctx: &ModuleCtx<'_>,
    psql: &str,
    sql: &str,
    traced: bool,
) -> Result<crate::transport::Output> {
    let become_as = ctx.become_user.clone().or(Some("postgres".into()));
    let stdin = Stdin::Bytes(sql.as_bytes().to_vec());
    if traced {
        ctx.sh_as(psql, stdin, become_as).await
    } else {
        ctx.sh_as_untraced(psql, stdin, become_as).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows() {
        let rows = parse_csv_rows("name,note\nalice,\"a, \"\"b\"\"\nc\"\nbob,\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["note"], "a, \"b\"\nc");
        assert_eq!(rows[1]["name"], "bob");
        assert_eq!(rows[1]["note"], "");
    }

    #[test]
    fn literals_and_kinds() {
        assert_eq!(literal(&Value::String("it's".into())), "'it''s'");
        assert!(is_read_only("  SELECT 1"));
        assert!(is_read_only("with x as (select 1) select * from x"));
        assert!(!is_read_only("ALTER ROLE x PASSWORD 'y'"));
    }
}
