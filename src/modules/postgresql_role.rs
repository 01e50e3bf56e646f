//! postgresql_user and postgresql_db: roles and databases converged through psql.
//!
//! A password is compared with the role's stored SCRAM verifier and, when it differs, set as a
//! new verifier made here: the clear password never reaches the server, its logs or psql's
//! command line, and an unchanged password reports no change.

use super::postgresql::{
    literal, parse_csv_rows, psql_command, psql_user, run_sql, sql_probe, Login, Psql,
};
use super::{scram, Apply, ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::{Output, Stdin};
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::Value;

/// Role attributes as CREATE ROLE names them, and their pg_authid columns.
const ROLE_ATTRS: &[(&str, &str)] = &[
    ("SUPERUSER", "rolsuper"),
    ("CREATEROLE", "rolcreaterole"),
    ("CREATEDB", "rolcreatedb"),
    ("LOGIN", "rolcanlogin"),
    ("REPLICATION", "rolreplication"),
    ("BYPASSRLS", "rolbypassrls"),
    ("INHERIT", "rolinherit"),
];

/// `"LOGIN,CREATEDB,NOSUPERUSER"` as (column, wanted) pairs.
fn parse_flags(flags: &str) -> Result<Vec<(&'static str, &'static str, bool)>> {
    let mut out = Vec::new();
    for f in flags
        .split([',', ' '])
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        let up = f.to_ascii_uppercase();
        let (name, on) = match up.strip_prefix("NO") {
            Some(rest) if ROLE_ATTRS.iter().any(|(n, _)| *n == rest) => (rest.to_string(), false),
            _ => (up.clone(), true),
        };
        let Some((n, col)) = ROLE_ATTRS.iter().find(|(n, _)| *n == name) else {
            bail!(
                "postgresql_user: unknown role_attr_flags entry `{f}`; it takes {} (or NO before one)",
                ROLE_ATTRS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            );
        };
        out.push((*n, *col, on));
    }
    Ok(out)
}

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(Deserialize)]
struct UserArgs {
    #[serde(alias = "user")]
    name: String,
    password: Option<String>,
    role_attr_flags: Option<String>,
    state: Option<String>,
    encrypted: Option<bool>,
    /// The database to connect to.
    #[serde(alias = "login_db")]
    db: Option<String>,
}

/// The role's attributes and stored password verifier.
fn role_query(name: &str) -> String {
    format!(
        "SELECT {}, coalesce(rolpassword, '') AS pw FROM pg_authid WHERE rolname = {}",
        ROLE_ATTRS
            .iter()
            .map(|(_, c)| *c)
            .collect::<Vec<_>>()
            .join(", "),
        literal(&Value::String(name.to_string()))
    )
}

fn user_probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: UserArgs = p.parse()?;
    let probe = sql_probe(&psql_command(p, a.db)?, &role_query(&a.name), ctx);
    // Its answer holds the role's password verifier: never in a -v trace.
    Ok(probe.map(|c| ProbeCmd {
        untraced: true,
        ..c
    }))
}

/// The database's owner, encoding and locale.
fn database_query(name: &str) -> String {
    format!(
        "SELECT pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding, \
         datcollate, datctype FROM pg_database WHERE datname = {}",
        literal(&Value::String(name.to_string()))
    )
}

fn db_probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: DbArgs = p.parse()?;
    Ok(sql_probe(
        &psql_command(p, a.maintenance_db)?,
        &database_query(&a.name),
        ctx,
    ))
}

/// CREATE, ALTER or DROP ROLE where the role differs.
async fn user_plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: UserArgs = p.parse()?;
    let name = a.name;
    if a.encrypted == Some(false) {
        bail!(
            "postgresql_user: `encrypted: no` is not supported: PostgreSQL 10 and later store \
             passwords encrypted only (SCRAM here)"
        );
    }
    let state = a.state.unwrap_or_else(|| "present".into());
    let flags = parse_flags(&a.role_attr_flags.unwrap_or_default())?;
    let password = a.password.filter(|pw| !pw.is_empty());
    let psql = psql_command(p, a.db)?;
    let out = match answer {
        Some(out) => out,
        None => run_sql(ctx, &psql, &role_query(&name), false).await?,
    };
    if !out.ok() {
        return Ok(Plan::done(Outcome::failed(format!(
            "postgresql_user {name}: {}",
            out.stderr_str().trim()
        ))));
    }
    let row = parse_csv_rows(&out.stdout_str()).into_iter().next();
    let role = ident(&name);
    let (sql, what) = match (state.as_str(), &row) {
        ("absent", None) => return Ok(Plan::done(Outcome::ok())),
        ("absent", Some(_)) => (format!("DROP ROLE {role}"), format!("drop role {name}")),
        ("present", None) => {
            let mut sql = format!("CREATE USER {role}");
            let attrs: Vec<String> = flags
                .iter()
                .map(|(n, _, on)| format!("{}{n}", if *on { "" } else { "NO" }))
                .collect();
            if !attrs.is_empty() {
                sql.push_str(&format!(" {}", attrs.join(" ")));
            }
            if let Some(pw) = &password {
                sql.push_str(&format!(" PASSWORD '{}'", scram::verifier(pw)?));
            }
            let shown = if attrs.is_empty() {
                "LOGIN".into()
            } else {
                attrs.join(" ")
            };
            (sql, format!("create role {name} ({shown})"))
        }
        ("present", Some(row)) => {
            let has = |col: &str| row.get(col).and_then(Value::as_str) == Some("t");
            let mut changes: Vec<String> = flags
                .iter()
                .filter(|(_, col, on)| has(col) != *on)
                .map(|(n, _, on)| format!("{}{n}", if *on { "" } else { "NO" }))
                .collect();
            let stored = row.get("pw").and_then(Value::as_str).unwrap_or_default();
            let mut what = changes.join(" ");
            if let Some(pw) = &password {
                if !scram::matches(stored, pw) {
                    changes.push(format!("PASSWORD '{}'", scram::verifier(pw)?));
                    what = format!("{what} (new password)").trim().to_string();
                }
            }
            if changes.is_empty() {
                return Ok(Plan::done(Outcome::ok()));
            }
            (
                format!("ALTER ROLE {role} WITH {}", changes.join(" ")),
                format!("alter role {name}: {what}"),
            )
        }
        (other, _) => bail!("postgresql_user: state `{other}` must be present or absent"),
    };
    Ok(sql_change(ctx, &psql, sql, what, &name))
}

#[derive(Deserialize)]
struct DbArgs {
    #[serde(alias = "db")]
    name: String,
    /// The database to connect to (Ansible's `maintenance_db`).
    #[serde(alias = "login_db")]
    maintenance_db: Option<String>,
    owner: Option<String>,
    encoding: Option<String>,
    lc_collate: Option<String>,
    lc_ctype: Option<String>,
    template: Option<String>,
    state: Option<String>,
}

/// CREATE DATABASE when it is missing; a database made otherwise fails the task.
async fn db_plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: DbArgs = p.parse()?;
    let name = a.name;
    let state = a.state.unwrap_or_else(|| "present".into());
    if state != "present" {
        bail!(
            "postgresql_db: state `{state}` is not supported: pgdeploy creates databases and \
             never drops one (drop it yourself with psql if you mean it)"
        );
    }
    let psql = psql_command(p, a.maintenance_db)?;
    let out = match answer {
        Some(out) => out,
        None => run_sql(ctx, &psql, &database_query(&name), true).await?,
    };
    if !out.ok() {
        return Ok(Plan::done(Outcome::failed(format!(
            "postgresql_db {name}: {}",
            out.stderr_str().trim()
        ))));
    }
    let owner = a.owner.filter(|o| !o.is_empty());
    let wanted = [
        ("encoding", "ENCODING", a.encoding),
        ("datcollate", "LC_COLLATE", a.lc_collate),
        ("datctype", "LC_CTYPE", a.lc_ctype),
    ];
    let (sql, what) = match parse_csv_rows(&out.stdout_str()).into_iter().next() {
        None => {
            let mut sql = format!("CREATE DATABASE {}", ident(&name));
            if let Some(o) = &owner {
                sql.push_str(&format!(" OWNER {}", ident(o)));
            }
            if let Some(t) = &a.template {
                sql.push_str(&format!(" TEMPLATE {}", ident(t)));
            }
            for (_, kw, v) in &wanted {
                if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                    sql.push_str(&format!(" {kw} {}", literal(&Value::String(v.clone()))));
                }
            }
            (sql, format!("create database {name}"))
        }
        Some(row) => {
            for (col, kw, v) in &wanted {
                let have = row.get(*col).and_then(Value::as_str).unwrap_or_default();
                if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                    if !v.eq_ignore_ascii_case(have) {
                        return Ok(Plan::done(Outcome::failed(format!(
                            "database {name} exists with {kw} {have}, the task wants {v}: an \
                             existing database keeps it (dump and restore into a new one)"
                        ))));
                    }
                }
            }
            let have = row.get("owner").and_then(Value::as_str).unwrap_or_default();
            match &owner {
                Some(o) if o != have => (
                    format!("ALTER DATABASE {} OWNER TO {}", ident(&name), ident(o)),
                    format!("owner of {name}: {have} -> {o}"),
                ),
                _ => return Ok(Plan::done(Outcome::ok())),
            }
        }
    };
    Ok(sql_change(ctx, &psql, sql, what, &name))
}

/// Runs a change (`sql`), or in check mode says it would (`what`).
/// The plan of running `sql` (a change described by `what`) through `psql`.
pub(super) fn sql_change(
    ctx: &ModuleCtx<'_>,
    psql: &Psql,
    sql: String,
    what: String,
    name: &str,
) -> Plan {
    let msg = if ctx.check {
        format!("would {what}")
    } else {
        what
    };
    Plan::change(
        Outcome::changed().with_msg(msg),
        Apply {
            stdin: Stdin::Bytes(psql.stdin(&sql)),
            user: psql_user(ctx),
            ..Apply::script(psql.cmd(), name)
        },
    )
}

/// The `postgresql_user` module.
pub const POSTGRESQL_USER: Spec = Spec {
    params: Login::with::<UserArgs>,
    ..Spec::planned("postgresql_user", user_probe, |p, ctx, answer| {
        Box::pin(user_plan(p, ctx, answer))
    })
};

/// The `postgresql_db` module.
pub const POSTGRESQL_DB: Spec = Spec {
    params: Login::with::<DbArgs>,
    ..Spec::planned("postgresql_db", db_probe, |p, ctx, answer| {
        Box::pin(db_plan(p, ctx, answer))
    })
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_flags() {
        let f = parse_flags("LOGIN, nosuperuser,CREATEDB").unwrap();
        assert_eq!(
            f,
            vec![
                ("LOGIN", "rolcanlogin", true),
                ("SUPERUSER", "rolsuper", false),
                ("CREATEDB", "rolcreatedb", true)
            ]
        );
        let err = parse_flags("LOGIN,SUPER").unwrap_err().to_string();
        assert!(err.contains("`SUPER`"), "{err}");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
