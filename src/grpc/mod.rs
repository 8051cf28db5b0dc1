//! The analysts' read endpoint, KurrentDB-protocol compatible: the read
//! side of the KurrentDB (formerly EventStoreDB) gRPC client protocol v1
//! over tidelog's log, so the stock clients analysts already use
//! (`kurrentdb`/`eventstore` in Rust, `kurrentdbclient` in Python,
//! `@kurrent/kurrentdb-client` in Node) read streams and `$all` and run
//! catch-up subscriptions that turn live without a gap.
//!
//! Served: `Streams.Read` (`read.rs`, `subscribe.rs`),
//! `ServerFeatures.GetSupportedMethods` and `Gossip.Read` (one member, the
//! leader). Every other method of `Streams` — the writes — and the v2
//! append service are refused with the protocol's access-denied error; any
//! other service (persistent subscriptions, projections, users) is
//! unimplemented.
//!
//! The mapping: a stream is `<AggregateType>-<aggregate id>`; its revision
//! is the event's sequence − 1 (revisions start at 0, sequences at 1); an
//! event's commit and prepare positions are both its log position
//! (`log_positions`, contiguous from 1 in the horizon-safe order — the
//! transparency log's leaf index + 1), so a subscriber resuming from a
//! position never skips a late commit; data is the payload JSON
//! (credentials redacted), custom metadata the event's metadata JSON,
//! `created` its `recorded_at`. Positions are not byte offsets and mean
//! nothing to any KurrentDB node.
//!
//! Plaintext is served on a loopback address only (Python and Node clients
//! send no credentials without TLS); on any other address the endpoint
//! needs a certificate, speaks TLS only, and every read needs the clients'
//! basic credentials with the auditors' token as password. It reads the
//! database it is given, a hot standby included.

// tonic's `Status` is the error of every gRPC API; boxing it here would
// only be unboxed at the boundary
#![allow(clippy::result_large_err)]

mod feed;
mod filter;
mod log;
mod out;
pub mod proto;
mod read;
mod request;
mod subscribe;
mod tls;
mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use futures::future::{BoxFuture, FutureExt};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::config::{GrpcConfig, Secret};
use crate::core::Core;
use proto::gossip::{gossip_server, member_info::VNodeState, ClusterInfo, EndPoint, MemberInfo};
use proto::server_features::{server_features_server, SupportedMethod, SupportedMethods};
use proto::streams::streams_server::StreamsServer;
use proto::Empty;

/// The one method of `Streams` served.
const READ_PATH: &str = "/event_store.client.streams.Streams/Read";

/// How the endpoint runs beyond its configuration.
pub struct Settings {
    /// The auditors' token: the password every read needs over TLS.
    pub audit_token: Option<Secret>,
    /// How often the live feed looks for new events when no progress is
    /// announced (a standby, where nothing is).
    pub poll: Duration,
}

/// A running endpoint.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tls: bool,
    server: JoinHandle<()>,
    feed: JoinHandle<()>,
}

impl Endpoint {
    /// Waits for the endpoint to stop (after shutdown).
    pub async fn stopped(self) {
        let _ = self.server.await;
        let _ = self.feed.await;
    }
}

/// Binds and serves until `shutdown`. A non-loopback address without TLS
/// is refused; with TLS the auditors' token must be known.
pub async fn start(
    core: &Core,
    config: &GrpcConfig,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<Endpoint>> {
    let Some(bind) = config.bind else {
        return Ok(None);
    };
    let acceptor = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ if !bind.ip().is_loopback() => bail!(
            "TIDELOG_GRPC_BIND={bind} is not a loopback address: the gRPC endpoint speaks \
             plaintext on loopback only; set TIDELOG_GRPC_TLS_CERT and TIDELOG_GRPC_TLS_KEY \
             (or bind 127.0.0.1, or TIDELOG_GRPC_BIND=off)"
        ),
        _ => None,
    };
    let token = match (&acceptor, settings.audit_token) {
        (Some(_), Some(t)) => Some(Arc::<str>::from(t.expose())),
        (Some(_), None) => bail!("the gRPC endpoint over TLS needs the auditors' token"),
        (None, _) => None,
    };
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("binding the gRPC endpoint to {bind} (TIDELOG_GRPC_BIND; `off` disables it)")
    })?;
    let addr = listener.local_addr()?;

    let feed = feed::Feed::new();
    let feed_task = tokio::spawn(feed.clone().run(
        core.pool.clone(),
        core.progress.clone(),
        settings.poll,
        shutdown.clone(),
    ));
    let streams = read::Streams {
        pool: core.pool.clone(),
        feed,
        shutdown: shutdown.clone(),
    };
    let streams = Guard {
        inner: StreamsServer::new(streams),
        token,
    };
    let node = Node {
        addr,
        instance: uuid::Uuid::new_v4(),
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(streams)
        .add_service(V2Appends)
        .add_service(server_features_server::ServerFeaturesServer::new(
            node.clone(),
        ))
        .add_service(gossip_server::GossipServer::new(node));
    let mut stop = shutdown;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let tls = acceptor.is_some();
    let server = match acceptor {
        Some(acceptor) => {
            let incoming = tls::incoming(listener, acceptor);
            tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                    tracing::error!(error = %e, "gRPC endpoint stopped");
                }
            })
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                    tracing::error!(error = %e, "gRPC endpoint stopped");
                }
            })
        }
    };
    tracing::info!(%addr, tls, "tidelog gRPC listening");
    Ok(Some(Endpoint {
        addr,
        tls,
        server,
        feed: feed_task,
    }))
}

/// `Streams` behind two checks. Every method but `Read` — the writes — is
/// refused as the protocol refuses what a user may not do
/// (`PermissionDenied`, `exception: access-denied`): the clients report
/// access denied, and none takes it for a failed node to reconnect to.
/// With a token (TLS), a read needs the clients' credentials: `Basic
/// <user:token>` (any user name; clients take it from the connection
/// string, `esdb://analyst:<token>@host:2113?tls=true`) or `Bearer
/// <token>`; else `Unauthenticated`.
#[derive(Clone)]
struct Guard<S> {
    inner: S,
    token: Option<Arc<str>>,
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<
        http::Request<B>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let refusal = if req.uri().path() != READ_PATH {
            Some(write_refused(req.uri().path()))
        } else {
            self.token.as_deref().and_then(|token| {
                let given = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(password_of);
                match given {
                    Some(p) if bool::from(p.as_bytes().ct_eq(token.as_bytes())) => None,
                    Some(_) => Some(Status::unauthenticated(
                        "Bad credentials: the password is the auditors' token",
                    )),
                    None => Some(Status::unauthenticated(
                        "Credentials are required: a user name and the auditors' token as password",
                    )),
                }
            })
        };
        match refusal {
            Some(status) => futures::future::ready(Ok(status.into_http())).boxed(),
            None => self.inner.call(req).boxed(),
        }
    }
}

/// The protocol's answer to what a user may not do.
fn write_refused(path: &str) -> Status {
    let mut status = Status::permission_denied(format!(
        "Access denied: tidelog's KurrentDB-protocol endpoint is read-only ({path} writes)"
    ));
    status
        .metadata_mut()
        .insert("exception", "access-denied".parse().expect("ASCII"));
    status
}

/// The protocol's v2 streams service, which only appends (newer clients'
/// multi-stream appends): refused like the v1 writes.
#[derive(Clone)]
struct V2Appends;

impl NamedService for V2Appends {
    const NAME: &'static str = "kurrentdb.protocol.v2.streams.StreamsService";
}

impl<B> tower::Service<http::Request<B>> for V2Appends {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = futures::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        futures::future::ready(Ok(write_refused(req.uri().path()).into_http()))
    }
}

/// The password of `Basic` credentials, or a `Bearer` token.
fn password_of(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// This node, as `ServerFeatures` and `Gossip` describe it.
#[derive(Clone)]
struct Node {
    addr: SocketAddr,
    instance: uuid::Uuid,
}

#[tonic::async_trait]
impl server_features_server::ServerFeatures for Node {
    async fn get_supported_methods(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let method = |name: &str, service: &str, features: &[&str]| SupportedMethod {
            method_name: name.into(),
            service_name: service.into(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
        };
        Ok(Response::new(SupportedMethods {
            methods: vec![
                method(
                    "read",
                    "event_store.client.streams.streams",
                    &["position", "events"],
                ),
                method(
                    "getsupportedmethods",
                    "event_store.client.server_features.serverfeatures",
                    &[],
                ),
                method("read", "event_store.client.gossip.gossip", &[]),
            ],
            // tidelog's own version: no KurrentDB release is claimed
            event_store_server_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }
}

#[tonic::async_trait]
impl gossip_server::Gossip for Node {
    async fn read(&self, req: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        // the address the client reached: right behind any bind address
        let at = req.local_addr().unwrap_or(self.addr);
        let (msb, lsb) = self.instance.as_u64_pair();
        let now = chrono::Utc::now().timestamp_micros() * 10;
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(proto::Uuid {
                    value: Some(proto::event_store::client::uuid::Value::Structured(
                        proto::event_store::client::uuid::Structured {
                            most_significant_bits: msb as i64,
                            least_significant_bits: lsb as i64,
                        },
                    )),
                }),
                time_stamp: now,
                state: VNodeState::Leader as i32,
                is_alive: true,
                http_end_point: Some(EndPoint {
                    address: at.ip().to_string(),
                    port: u32::from(at.port()),
                }),
            }],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_and_bearer_tokens_give_the_password() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("analyst:t0k:en")
        );
        assert_eq!(password_of(&basic).as_deref(), Some("t0k:en"));
        assert_eq!(password_of("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(password_of("Basic !!!"), None);
        assert_eq!(password_of("Digest x"), None);
        assert_eq!(password_of("abc"), None);
    }
}
