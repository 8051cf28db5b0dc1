//! The generation proxy's figures: a GrsAI-style gateway on loopback that
//! answers at once, called through the proxy (points held, job recorded,
//! submitted, settled by the poller) and directly; and many open Sora
//! streams at once, with the server's memory while they are open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::stats::Figure;

#[derive(Default)]
pub struct Gateway {
    next: AtomicU64,
    /// while set, every task stays running (the open-streams figure)
    pub hold: AtomicBool,
}

async fn submit(State(g): State<Arc<Gateway>>, Json(_): Json<Value>) -> Json<Value> {
    let id = g.next.fetch_add(1, Ordering::Relaxed);
    Json(json!({"code": 0, "msg": "success", "data": {"id": format!("bench-{id}")}}))
}

async fn result(State(g): State<Arc<Gateway>>, Json(body): Json<Value>) -> Json<Value> {
    let id = body["id"].as_str().unwrap_or_default();
    let data = if g.hold.load(Ordering::Relaxed) {
        json!({"id": id, "status": "running", "progress": 10})
    } else {
        json!({"id": id, "status": "succeeded", "progress": 100, "results": [{"url": format!("https://cdn.bench/{id}")}]})
    };
    Json(json!({"code": 0, "msg": "success", "data": data}))
}

/// Starts the gateway; answers its base URL.
pub async fn start_gateway() -> anyhow::Result<(String, Arc<Gateway>)> {
    let g = Arc::new(Gateway::default());
    let app = axum::Router::new()
        .route("/v1/video/sora-video", axum::routing::post(submit))
        .route("/v1/draw/nano-banana", axum::routing::post(submit))
        .route("/v1/draw/result", axum::routing::post(result))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, g))
}

/// `n` Sora streams opened at once (the gateway keeps them running); the
/// server's resident memory while all are open, and how many opened.
pub async fn open_streams(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    n: usize,
    pid: u32,
    gateway: &Gateway,
) -> anyhow::Result<(Figure, f64)> {
    gateway.hold.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0u64;
    let opens = (0..n).map(|i| {
        let (http, url, token) = (
            http.clone(),
            format!("{base}/api/proxy/sora"),
            tokens[i % tokens.len()].clone(),
        );
        tokio::spawn(async move {
            let t0 = Instant::now();
            let resp = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"prompt": format!("open stream {i}"), "duration": 1}))
                .send()
                .await;
            (t0.elapsed(), resp)
        })
    });
    for h in opens.collect::<Vec<_>>() {
        match h.await? {
            (took, Ok(mut r)) if r.status().is_success() => {
                // the first frame: the stream is open and the job running
                if r.chunk().await.ok().flatten().is_some() {
                    lat.push(took.as_secs_f64() * 1000.0);
                    streams.push(r);
                } else {
                    errors += 1;
                }
            }
            _ => errors += 1,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss) = crate::rss_mb(pid);
    let open = streams.len();
    gateway.hold.store(false, Ordering::Relaxed);
    drop(streams);
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        Figure {
            ops: open as u64,
            errors,
            seconds,
            per_s: open as f64 / seconds,
            p50_ms: crate::stats::percentile(&lat, 0.5),
            p99_ms: crate::stats::percentile(&lat, 0.99),
            p999_ms: crate::stats::percentile(&lat, 0.999),
            ..Default::default()
        },
        rss,
    ))
}
