//! Closed-loop load and latency statistics.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Figure {
    pub ops: u64,
    /// every call made, warm-up included (what per-command costs divide by)
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Figure with every number the median over repeats.
pub fn median_figure(runs: &[Figure]) -> Figure {
    let m = |f: fn(&Figure) -> f64| median(runs.iter().map(f).collect());
    Figure {
        ops: m(|f| f.ops as f64) as u64,
        calls: m(|f| f.calls as f64) as u64,
        errors: m(|f| f.errors as f64) as u64,
        seconds: m(|f| f.seconds),
        per_s: m(|f| f.per_s),
        p50_ms: m(|f| f.p50_ms),
        p99_ms: m(|f| f.p99_ms),
        p999_ms: m(|f| f.p999_ms),
    }
}

/// `concurrency` workers call `op(worker, i)` back to back for `warmup`
/// (not measured), then for `duration`; each op's latency is recorded.
/// `ops_per_call` scales throughput (messages per batch). Calls slower
/// than a short window could all start before it and end after it; the
/// workers then go on until one call started in the window has ended, and
/// the figure spans that longer time.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    ops_per_call: u64,
    op: F,
) -> Figure
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = measure_from + duration;
    let measured = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let (op, measured) = (op.clone(), measured.clone());
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= stop && measured.load(Ordering::Relaxed) {
                    break;
                }
                let r = op(w, i).await;
                i += 1;
                if t0 >= measure_from {
                    measured.store(true, Ordering::Relaxed);
                    match r {
                        Ok(()) => lat.push(t0.elapsed().as_secs_f64() * 1000.0),
                        Err(e) => {
                            if errors == 0 {
                                tracing::warn!(
                                    worker = w,
                                    error = format!("{e:#}"),
                                    "operation failed (first of this worker)"
                                );
                            }
                            errors += 1;
                        }
                    }
                }
            }
            (lat, errors, i)
        }));
    }
    let (mut all, mut errors, mut calls) = (Vec::new(), 0, 0);
    for h in handles {
        let (l, e, c) = h.await.expect("worker");
        all.extend(l);
        errors += e;
        calls += c;
    }
    let seconds = (Instant::now().min(stop + Duration::from_secs(60)) - measure_from).as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Figure {
        ops: all.len() as u64 * ops_per_call,
        calls,
        errors,
        seconds,
        per_s: all.len() as f64 * ops_per_call as f64 / seconds,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        p999_ms: percentile(&all, 0.999),
    }
}
