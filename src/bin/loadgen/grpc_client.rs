//! The benchmark's gRPC client: the stock Rust `kurrentdb` crate against
//! tidelog's KurrentDB-protocol endpoint, run by the load generator as a
//! child process (`grpc.rs`). An example target, so that only `cargo test`
//! and `scripts/bench.sh` build the client (a dev-dependency), never the
//! server's own build.
//!
//!   grpc-client read-all --addr 127.0.0.1:2113
//!       reads `$all` from the start; prints {"events", "seconds", "bytes"}
//!   grpc-client subscribe --addr … --subscribers 100 --marker lag-1 --expect 50
//!       opens the subscriptions to `$all` from the end, prints `ready`
//!       once every one is live, then one JSON line: for each subscriber
//!       and each event whose data holds `<marker>-<k>`, [k, subscriber,
//!       unix µs when received]

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use kurrentdb::{
    Client, ClientSettings, ReadAllOptions, StreamPosition, SubscribeToAllOptions,
    SubscriptionEvent,
};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    ReadAll {
        #[arg(long)]
        addr: String,
    },
    Subscribe {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        subscribers: usize,
        #[arg(long)]
        marker: String,
        #[arg(long)]
        expect: usize,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

fn client(addr: &str) -> anyhow::Result<Client> {
    let settings: ClientSettings = format!("esdb://{addr}?tls=false").parse()?;
    Client::new(settings).map_err(|e| anyhow::anyhow!("{e}"))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// `k` of the first `<marker>-<k>` in `data`.
fn marked(data: &[u8], marker: &[u8]) -> Option<u64> {
    let at = data.windows(marker.len()).position(|w| w == marker)?;
    let rest = data.get(at + marker.len()..)?.strip_prefix(b"-")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::ReadAll { addr } => {
            let client = client(&addr)?;
            let t0 = Instant::now();
            let mut read = client.read_all(&ReadAllOptions::default()).await?;
            let (mut events, mut bytes) = (0u64, 0u64);
            while let Some(e) = read.next().await? {
                let e = e.get_original_event();
                events += 1;
                bytes += (e.data.len() + e.custom_metadata.len()) as u64;
            }
            let seconds = t0.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"events": events, "seconds": seconds, "bytes": bytes})
            );
        }
        Command::Subscribe {
            addr,
            subscribers,
            marker,
            expect,
            timeout,
        } => {
            // ten subscriptions per connection, as a few processes would have
            let clients: Vec<Client> = (0..subscribers.div_ceil(10))
                .map(|_| client(&addr))
                .collect::<anyhow::Result<_>>()?;
            let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
            let mut tasks = Vec::new();
            for s in 0..subscribers {
                let client = clients[s / 10].clone();
                let (marker, ready) = (marker.clone().into_bytes(), ready_tx.clone());
                tasks.push(tokio::spawn(async move {
                    let mut sub = client
                        .subscribe_to_all(
                            &SubscribeToAllOptions::default().position(StreamPosition::End),
                        )
                        .await;
                    let mut got = Vec::new();
                    while got.len() < expect {
                        match sub.next_subscription_event().await? {
                            SubscriptionEvent::CaughtUp(_) => {
                                let _ = ready.send(());
                            }
                            SubscriptionEvent::EventAppeared(e) => {
                                let at = now_us();
                                if let Some(k) = marked(&e.get_original_event().data, &marker) {
                                    got.push((k, s, at));
                                }
                            }
                            _ => {}
                        }
                    }
                    anyhow::Ok(got)
                }));
            }
            drop(ready_tx);
            for _ in 0..subscribers {
                ready_rx
                    .recv()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("a subscriber ended"))?;
            }
            println!("ready");
            std::io::stdout().flush()?;
            let mut received = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            for t in tasks {
                let got = tokio::time::timeout_at(deadline, t).await???;
                received.extend(got.into_iter().map(|(k, s, at)| [k, s as u64, at]));
            }
            println!("{}", serde_json::json!({ "received": received }));
        }
    }
    Ok(())
}
