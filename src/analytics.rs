//! SQL for BI tools: a read-only role and an `analytics` schema of
//! documented views — the events with the same positions the gRPC endpoint
//! serves, every projection's read model, and how far each projection
//! stands — so DuckDB, Metabase or Superset read tidelog with nothing new
//! to run. Set up on the primary; the role and the views reach every hot
//! standby by replication, where BI tools then read without loading the
//! primary. Credentials never show: the payload keys and read-model
//! columns named in [`CREDENTIAL_KEYS`] are redacted or left out.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use sqlx::{Connection, PgPool};

use crate::core::Core;
use crate::store::CREDENTIAL_KEYS;

/// The role `tidelog analytics setup` creates when none is named.
pub const DEFAULT_ROLE: &str = "tidelog_analytics";
pub const SCHEMA: &str = "analytics";

/// What a setup did.
#[derive(Debug, serde::Serialize)]
pub struct Setup {
    pub role: String,
    /// The role was created by this setup.
    pub created: bool,
    /// The role's new password (created or renewed), shown once.
    #[serde(skip)]
    pub password: Option<String>,
    /// The views of the schema, each `analytics.<name>`.
    pub views: Vec<String>,
}

/// A role name PostgreSQL takes unquoted: lower-case letters, digits and
/// `_`, not starting with a digit, at most 63 bytes.
fn check_role(role: &str) -> anyhow::Result<()> {
    let ok = !role.is_empty()
        && role.len() <= 63
        && !role.starts_with(|c: char| c.is_ascii_digit())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !role.starts_with("pg_");
    if !ok {
        bail!("--role {role:?}: use lower-case letters, digits and _ (not starting with a digit or pg_)");
    }
    Ok(())
}

/// The SQL text of a string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const EVENTS_VIEW: &str = "
CREATE VIEW analytics.events AS
SELECT p.position,
       e.aggregate_type || '-' || e.aggregate_id AS stream,
       e.aggregate_type AS category,
       e.aggregate_id,
       e.sequence AS version,
       e.sequence - 1 AS revision,
       e.event_type AS type,
       e.event_version AS type_version,
       e.recorded_at AS time,
       CASE WHEN {credential_test}
            THEN analytics.redacted(e.payload::jsonb)
            ELSE e.payload::jsonb END AS payload,
       e.metadata::jsonb AS metadata,
       e.global_position,
       e.transaction_id::text AS transaction_id,
       encode(e.hash, 'hex') AS hash
  FROM log_positions p JOIN events e ON e.global_position = p.global_position";

/// Every value of a credential key replaced, at any depth (plpgsql: a SQL
/// function could not name itself before it exists).
const REDACTED_FUNCTION: &str = "
CREATE FUNCTION analytics.redacted(doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN CASE jsonb_typeof(doc)
        WHEN 'object' THEN (
            SELECT coalesce(jsonb_object_agg(k, CASE WHEN k = ANY ({keys})
                                                     THEN to_jsonb('<redacted>'::text)
                                                     ELSE analytics.redacted(v) END), '{}'::jsonb)
              FROM jsonb_each(doc) AS t(k, v))
        WHEN 'array' THEN (
            SELECT coalesce(jsonb_agg(analytics.redacted(v) ORDER BY i), '[]'::jsonb)
              FROM jsonb_array_elements(doc) WITH ORDINALITY AS t(v, i))
        ELSE doc
    END;
END
$$";

const PROJECTIONS_VIEW: &str = "
CREATE VIEW analytics.projections AS
SELECT name, last_position AS global_position, events_applied, updated_at, last_error
  FROM projection_checkpoints";

/// Builds (or rebuilds) the schema and grants `role` read access to it
/// only. The role is created — with a new password, returned — when it
/// does not exist; `new_password` renews the password of one that does.
/// All in one transaction: analysts see the old views or the new ones.
pub async fn setup(core: &Core, role: &str, new_password: bool) -> anyhow::Result<Setup> {
    check_role(role)?;
    let pool: &PgPool = &core.pool;
    if crate::db::in_recovery(pool).await? {
        bail!(
            "this database is a hot standby: run `tidelog analytics setup` on the primary; \
             the role and the views reach the standbys by replication"
        );
    }
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let keys = format!(
        "ARRAY[{}]",
        CREDENTIAL_KEYS
            .iter()
            .map(|k| literal(k))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let credential_test = CREDENTIAL_KEYS
        .iter()
        .map(|k| {
            format!(
                "strpos(e.payload::text, {}) > 0",
                literal(&format!("\"{k}\""))
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    sqlx::query("DROP SCHEMA IF EXISTS analytics CASCADE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE SCHEMA analytics")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&REDACTED_FUNCTION.replace("{keys}", &keys))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&EVENTS_VIEW.replace("{credential_test}", &credential_test))
        .execute(&mut *tx)
        .await?;
    sqlx::query(PROJECTIONS_VIEW).execute(&mut *tx).await?;
    let mut views = vec!["events".to_owned(), "projections".to_owned()];
    let mut comments = String::new();
    let _ = writeln!(
        comments,
        "COMMENT ON SCHEMA analytics IS {};",
        literal("tidelog for BI tools: the events and every read model, read-only (tidelog analytics setup)")
    );
    for (column, text) in EVENT_COLUMNS {
        let _ = writeln!(
            comments,
            "COMMENT ON COLUMN analytics.events.{column} IS {};",
            literal(text)
        );
    }
    let _ = writeln!(
        comments,
        "COMMENT ON VIEW analytics.events IS {};",
        literal("Every event the log has numbered, in log order (position); the same positions, streams and revisions as the KurrentDB-protocol endpoint. Credentials in payloads are <redacted>.")
    );
    let _ = writeln!(
        comments,
        "COMMENT ON VIEW analytics.projections IS {};",
        literal("How far each projection (read model) stands: its last applied event's global_position, and its failure if any")
    );
    for projector in projections::all(core.config.timezone) {
        for table in projector.tables() {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = $1
                  ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            let shown: Vec<String> = columns
                .into_iter()
                .filter(|c| !CREDENTIAL_KEYS.contains(&c.as_str()))
                .map(|c| format!("\"{c}\""))
                .collect();
            if shown.is_empty() {
                continue;
            }
            sqlx::query(&format!(
                "CREATE VIEW analytics.\"{table}\" AS SELECT {} FROM \"{table}\"",
                shown.join(", ")
            ))
            .execute(&mut *tx)
            .await?;
            let _ = writeln!(
                comments,
                "COMMENT ON VIEW analytics.\"{table}\" IS {};",
                literal(&format!(
                    "Read model of the `{}` projection, as of its checkpoint (analytics.projections)",
                    projector.name()
                ))
            );
            views.push((*table).to_owned());
        }
    }
    sqlx::raw_sql(&comments).execute(&mut *tx).await?;

    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut *tx)
            .await?;
    let password = (!exists || new_password).then(crate::auth::random_secret);
    if !exists {
        sqlx::query(&format!(
            "CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}",
            literal(password.as_deref().unwrap_or_default())
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| {
            format!(
                "creating the role {role}: the database user needs CREATEROLE \
                 (or create {role} yourself and run setup again)"
            )
        })?;
    } else if let Some(p) = &password {
        sqlx::query(&format!("ALTER ROLE \"{role}\" PASSWORD {}", literal(p)))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("renewing the password of {role}"))?;
    }
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *tx)
        .await?;
    let grants = format!(
        "GRANT CONNECT ON DATABASE \"{database}\" TO \"{role}\";
         GRANT USAGE ON SCHEMA analytics TO \"{role}\";
         GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO \"{role}\";
         GRANT EXECUTE ON FUNCTION analytics.redacted(jsonb) TO \"{role}\";"
    );
    sqlx::raw_sql(&grants).execute(&mut *tx).await?;
    // read-only by default and the views first, for every session of it
    // (where the role is the setup user's to alter)
    let settings = format!(
        "ALTER ROLE \"{role}\" IN DATABASE \"{database}\" SET default_transaction_read_only = on;
         ALTER ROLE \"{role}\" IN DATABASE \"{database}\" SET search_path = analytics;"
    );
    sqlx::raw_sql(&settings)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("setting {role}'s defaults (read-only, search_path analytics)"))?;
    tx.commit().await?;
    Ok(Setup {
        role: role.to_owned(),
        created: !exists,
        password,
        views,
    })
}

const EVENT_COLUMNS: [(&str, &str); 14] = [
    ("position", "log position: contiguous from 1 in the horizon-safe commit order; commit and prepare position on the gRPC endpoint; the transparency log's leaf index + 1"),
    ("stream", "<category>-<aggregate_id>, as the gRPC endpoint names streams"),
    ("category", "the aggregate type (Account, ChatRoom, Wallet, ...)"),
    ("aggregate_id", "the aggregate's id within its category"),
    ("version", "the event's sequence in its stream, from 1"),
    ("revision", "version - 1: the stream revision KurrentDB clients see (from 0)"),
    ("type", "the event type"),
    ("type_version", "the event type's schema version"),
    ("time", "when the event was recorded (recorded_at)"),
    ("payload", "the event's body as JSON; credentials <redacted>"),
    ("metadata", "who and from where: actor, surface, request, correlation and causation ids, client IP"),
    ("global_position", "the events table's identity: unique, not gap-free, not commit-ordered (order by position)"),
    ("transaction_id", "the writing transaction (xid8)"),
    ("hash", "the event's chain hash (hex), as tidelog audit verify checks it"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for ok in ["tidelog_analytics", "bi", "metabase_2"] {
            check_role(ok).unwrap();
        }
        for bad in [
            "",
            "Bi",
            "2bi",
            "bi-tools",
            "pg_monitor",
            "x\"; DROP",
            &"a".repeat(64),
        ] {
            assert!(check_role(bad).is_err(), "{bad}");
        }
        assert_eq!(literal("it's"), "'it''s'");
    }
}
