//! The `postgresql_ext` module: an extension created in a database, as Ansible's
//! community.postgresql.postgresql_ext does it. Never drops one (its objects would go with it).

use super::postgresql::Login;
use super::postgresql::{literal, parse_csv_rows, psql_command, run_sql};
use super::postgresql_role::{apply, ident};
use super::{ModuleCtx, Outcome, Params, Spec};
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

async fn run(p: &Params<'_>, ctx: &ModuleCtx<'_>) -> Result<Outcome> {
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
    let probe = format!(
        "SELECT extname FROM pg_extension WHERE extname = {}",
        literal(&Value::String(name.clone()))
    );
    let out = run_sql(ctx, &psql, &probe, true).await?;
    if !out.ok() {
        return Ok(Outcome::failed(format!(
            "postgresql_ext {name} in {db}: {}",
            out.stderr_str().trim()
        )));
    }
    if !parse_csv_rows(&out.stdout_str()).is_empty() {
        return Ok(Outcome::ok());
    }
    let mut sql = format!("CREATE EXTENSION IF NOT EXISTS {}", ident(&name));
    if let Some(schema) = a.schema.filter(|s| !s.is_empty()) {
        sql.push_str(&format!(" SCHEMA {}", ident(&schema)));
    }
    if a.cascade {
        sql.push_str(" CASCADE");
    }
    let what = format!("create extension {name} in database {db}");
    apply(ctx, &psql, &sql, what, &name).await
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
    ..Spec::new("postgresql_ext", |p, ctx| Box::pin(run(p, ctx)))
};
