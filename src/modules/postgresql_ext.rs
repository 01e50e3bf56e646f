//! The `postgresql_ext` module: an extension created in a database, as Ansible's
//! community.postgresql.postgresql_ext does it. Never drops one (its objects would go with it).

use super::postgresql::Login;
use super::postgresql::{literal, parse_csv_rows, psql_command, run_sql, sql_probe};
use super::postgresql_role::{ident, sql_change};
use super::{ModuleCtx, Outcome, Params, Plan, ProbeCmd, Spec};
use crate::transport::Output;
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Args {
    #[serde(alias = "ext")]
    name: String,
    /// The database the extension goes in (the login database).
    #[serde(alias = "login_db")]
    db: Option<String>,
    schema: Option<String>,
    #[serde(default)]
    cascade: bool,
    state: Option<String>,
}

/// Whether the extension is there.
fn extension_query(name: &str) -> String {
    format!(
        "SELECT extname FROM pg_extension WHERE extname = {}",
        literal(&Value::String(name.to_string()))
    )
}

fn probe(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Option<ProbeCmd>> {
    let a: Args = p.parse()?;
    Ok(sql_probe(
        &psql_command(p, a.db)?,
        &extension_query(&a.name),
        ctx,
    ))
}

/// CREATE EXTENSION when it is missing.
async fn plan(p: &Params<'_>, ctx: &ModuleCtx<'_>, answer: Option<Output>) -> Result<Plan> {
    let a: Args = p.parse()?;
    let name = a.name;
    let state = a.state.unwrap_or_else(|| "present".into());
    if state != "present" {
        bail!(
            "postgresql_ext: state `{state}` is not supported: pgdeploy creates extensions and \
             never drops one (its objects and the data in them would go; DROP EXTENSION it \
             yourself with psql if you mean it)"
        );
    }
    let psql = psql_command(p, a.db.clone())?;
    let db = a.db.unwrap_or("postgres".into());
    let out = match answer {
        Some(out) => out,
        None => run_sql(ctx, &psql, &extension_query(&name), true).await?,
    };
    if !out.ok() {
        return Ok(Plan::done(Outcome::failed(format!(
            "postgresql_ext {name} in {db}: {}",
            out.stderr_str().trim()
        ))));
    }
    if !parse_csv_rows(&out.stdout_str()).is_empty() {
        return Ok(Plan::done(Outcome::ok()));
    }
    let mut sql = format!("CREATE EXTENSION IF NOT EXISTS {}", ident(&name));
    if let Some(schema) = a.schema.filter(|s| !s.is_empty()) {
        sql.push_str(&format!(" SCHEMA {}", ident(&schema)));
    }
    if a.cascade {
        sql.push_str(" CASCADE");
    }
    let what = format!("create extension {name} in database {db}");
    Ok(sql_change(ctx, &psql, sql, what, &name))
}

/// The `postgresql_ext` module.
pub const POSTGRESQL_EXT: Spec = Spec {
    params: Login::with::<Args>,
    refused: &[
        (
            "version",
            "pgdeploy creates the version the installed package ships; update one with \
             `postgresql_query: ALTER EXTENSION ... UPDATE`",
        ),
        (
            "session_role",
            "connect as the role that should own the extension (login_user, become_user)",
        ),
    ],
    ..Spec::planned("postgresql_ext", probe, |p, ctx, answer| {
        Box::pin(plan(p, ctx, answer))
    })
};
