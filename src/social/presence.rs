//! Chat8 presence from sockets, across processes: each process keeps a
//! row per open socket in `chat8_sockets` and beats it every third of
//! the stale time (30 s by default). A user's first socket makes them
//! `online` (unless they set `away`); when their last socket anywhere has
//! closed (after a grace, 5 s by default, so a reload is not a flicker) or
//! stopped beating for the stale time (its process died), they are
//! `offline`. The changes are `PresenceChanged` events, so friends'
//! sockets on every process hear them from the log.

use aggregates::values::Presence;
use aggregates::AccountCommand;
use tokio::sync::watch;
use uuid::Uuid;

use crate::core::Core;
use crate::store::CommandMeta;

/// A socket row older than this belongs to a process that is gone.
fn stale_secs(core: &Core) -> f64 {
    core.config.chat8_presence_stale.as_secs_f64()
}

fn meta(node: &str) -> CommandMeta {
    let id = format!("presence-{}", Uuid::now_v7());
    CommandMeta {
        actor: "system:presence".into(),
        surface: "chat8",
        request_id: id.clone(),
        correlation_id: node.to_owned(),
        causation_id: id,
        client_ip: "local".into(),
    }
}

async fn set(core: &Core, node: &str, account: Uuid, status: Presence) {
    let at = crate::store::now();
    let result = core
        .store
        .execute(
            &core.store.accounts,
            &account.to_string(),
            &meta(node),
            || AccountCommand::SetPresence { status, at },
        )
        .await;
    if let Err(e) = result {
        tracing::warn!(%account, error = %e, "recording presence failed");
    }
}

async fn presence(core: &Core, account: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT presence FROM accounts WHERE account_id = $1")
        .bind(account)
        .fetch_optional(&core.pool)
        .await
        .map(Option::flatten)
}

/// A socket opened.
pub async fn opened(
    core: &Core,
    node: &str,
    conn: u64,
    account: Uuid,
    number: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO chat8_sockets (node, conn_id, user_id, account_id, seen_at) VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (node, conn_id) DO UPDATE SET seen_at = now()",
    )
    .bind(node)
    .bind(conn as i64)
    .bind(number)
    .bind(account)
    .execute(&core.pool)
    .await?;
    if !matches!(
        presence(core, account).await?.as_deref(),
        Some("online" | "away")
    ) {
        set(core, node, account, Presence::Online).await;
    }
    Ok(())
}

async fn sockets_left(core: &Core, number: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM chat8_sockets
          WHERE user_id = $1 AND seen_at > now() - make_interval(secs => $2)",
    )
    .bind(number)
    .bind(stale_secs(core))
    .fetch_one(&core.pool)
    .await
}

/// A socket closed: after the grace, offline if it was the last anywhere.
pub async fn closed(core: Core, node: String, conn: u64, account: Uuid, number: i64) {
    let gone = sqlx::query("DELETE FROM chat8_sockets WHERE node = $1 AND conn_id = $2")
        .bind(&node)
        .bind(conn as i64)
        .execute(&core.pool)
        .await;
    if let Err(e) = gone {
        tracing::warn!(error = %e, "forgetting a socket failed");
    }
    tokio::time::sleep(core.config.chat8_presence_grace).await;
    match sockets_left(&core, number).await {
        Ok(0) => {
            if presence(&core, account).await.ok().flatten().as_deref() != Some("offline") {
                set(&core, &node, account, Presence::Offline).await;
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "counting sockets failed"),
    }
}

/// Beats this process's sockets, and takes offline the users whose
/// sockets all belong to processes that stopped beating.
pub async fn run(core: Core, node: String, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = sqlx::query("DELETE FROM chat8_sockets WHERE node = $1")
                    .bind(&node)
                    .execute(&core.pool)
                    .await;
                return;
            }
            _ = tokio::time::sleep(core.config.chat8_presence_stale / 3) => {}
        }
        let beat = sqlx::query("UPDATE chat8_sockets SET seen_at = now() WHERE node = $1")
            .bind(&node)
            .execute(&core.pool)
            .await;
        if let Err(e) = beat {
            tracing::warn!(error = %e, "socket heartbeat failed");
            continue;
        }
        let dead: sqlx::Result<Vec<(Uuid,)>> = sqlx::query_as(
            "DELETE FROM chat8_sockets s
              WHERE seen_at < now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM chat8_sockets f WHERE f.user_id = s.user_id
                                   AND f.seen_at >= now() - make_interval(secs => $1))
             RETURNING account_id",
        )
        .bind(stale_secs(&core))
        .fetch_all(&core.pool)
        .await;
        match dead {
            Ok(accounts) => {
                let mut accounts: Vec<Uuid> = accounts.into_iter().map(|(a,)| a).collect();
                accounts.sort();
                accounts.dedup();
                for a in accounts {
                    set(&core, &node, a, Presence::Offline).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeping dead sockets failed"),
        }
    }
}
