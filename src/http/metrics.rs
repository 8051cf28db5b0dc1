//! `GET /metrics`: projection progress in the Prometheus text format,
//! computed at scrape time from the same rows as `/healthz`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::core::Core;
use crate::projector::ProjectionStatus;

pub fn routes() -> OpenApiRouter<Core> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Projection progress, Prometheus text format", body = String, content_type = "text/plain"),
        (status = 503, description = "The database is unreachable", body = String, content_type = "text/plain"),
    ))]
async fn metrics(State(state): State<Core>) -> Response {
    let rows = match crate::projector::status(&state.pool).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "metrics: reading projection status");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response();
        }
    };
    let head: Option<i64> = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&state.pool)
        .await
        .unwrap_or(None);
    match render(&rows, head.unwrap_or(0)) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: encoding");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn render(rows: &[ProjectionStatus], head: i64) -> prometheus::Result<String> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), &["projection"])?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let position = gauge(
        "tidelog_projection_checkpoint_position",
        "global_position of the last applied event",
    )?;
    let lag = gauge(
        "tidelog_projection_lag_events",
        "events of the projection's types not applied yet",
    )?;
    let applied = gauge(
        "tidelog_projection_events_applied",
        "events applied since the last rebuild",
    )?;
    let failing = gauge(
        "tidelog_projection_failing",
        "1 while the projection is stopped on an event",
    )?;
    let retries = gauge(
        "tidelog_projection_retries",
        "retries since the last success",
    )?;
    let held = GaugeVec::new(
        Opts::new(
            "tidelog_projection_held_back_seconds",
            "how long an open transaction has held the projection's horizon",
        ),
        &["projection", "xid"],
    )?;
    registry.register(Box::new(held.clone()))?;
    let collector = &crate::gifts::collector::METRICS;
    for (name, help, value) in [
        (
            "tidelog_collector_connections",
            "Bilibili rooms connected by this process",
            &collector.connections,
        ),
        (
            "tidelog_collector_reconnects_total",
            "room connections lost and made again",
            &collector.reconnects,
        ),
        (
            "tidelog_collector_refusals_352_total",
            "calls refused by Bilibili's risk control (-352)",
            &collector.refusals_352,
        ),
        (
            "tidelog_collector_decode_errors_total",
            "packets and messages the collector could not read",
            &collector.decode_errors,
        ),
    ] {
        let g = IntGauge::new(name, help)?;
        g.set(value.load(std::sync::atomic::Ordering::Relaxed) as i64);
        registry.register(Box::new(g))?;
    }
    let by_cmd = IntGaugeVec::new(
        Opts::new(
            "tidelog_collector_messages_total",
            "messages decoded, by command",
        ),
        &["cmd"],
    )?;
    registry.register(Box::new(by_cmd.clone()))?;
    for (cmd, n) in collector.messages() {
        by_cmd.with_label_values(&[&cmd]).set(n as i64);
    }
    let log_head = IntGauge::new(
        "tidelog_log_head_position",
        "highest global_position in the event store",
    )?;
    registry.register(Box::new(log_head.clone()))?;
    log_head.set(head);
    let now = chrono::Utc::now();
    for r in rows {
        let l = [r.name.as_str()];
        position.with_label_values(&l).set(r.last_position);
        lag.with_label_values(&l).set(r.lag_events);
        applied.with_label_values(&l).set(r.events_applied);
        failing
            .with_label_values(&l)
            .set(i64::from(r.last_error.is_some()));
        retries.with_label_values(&l).set(i64::from(r.retries));
        if let (Some(xid), Some(since)) = (&r.held_back_by_xid, r.held_back_since) {
            held.with_label_values(&[r.name.as_str(), xid.as_str()])
                .set((now - since).num_milliseconds() as f64 / 1000.0);
        }
    }
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(String::from_utf8(buf).expect("the text format is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_series_per_projection_and_the_horizon_holder() {
        let rows = vec![
            ProjectionStatus {
                name: "roomchat".into(),
                last_position: 9,
                lag_events: 2,
                ..Default::default()
            },
            ProjectionStatus {
                name: "accounts".into(),
                last_error: Some("boom".into()),
                retries: 3,
                held_back_by_xid: Some("777".into()),
                held_back_since: Some(chrono::Utc::now() - chrono::Duration::seconds(5)),
                ..Default::default()
            },
        ];
        let text = render(&rows, 42).unwrap();
        assert!(
            text.contains("tidelog_projection_checkpoint_position{projection=\"roomchat\"} 9"),
            "{text}"
        );
        assert!(text.contains("tidelog_projection_lag_events{projection=\"roomchat\"} 2"));
        assert!(text.contains("tidelog_projection_failing{projection=\"accounts\"} 1"));
        assert!(text.contains("tidelog_projection_retries{projection=\"accounts\"} 3"));
        assert!(text.contains(
            "tidelog_projection_held_back_seconds{projection=\"accounts\",xid=\"777\"} 5"
        ));
        assert!(text.contains("tidelog_log_head_position 42"));
    }
}
