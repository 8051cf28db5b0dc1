//! The OpenAPI 3.1 documents, one per surface and one combined, generated
//! from the handlers' `#[utoipa::path]` attributes and the contract types:
//! each surface builds its router and its document in one
//! [`OpenApiRouter`], so a route cannot be served undocumented. `GET
//! /openapi.json`, `GET /openapi/{surface}.json`, `tidelog openapi` and the
//! `/docs` page (Swagger UI, its assets in the binary: no CDN).

use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{tag::TagBuilder, ComponentsBuilder, InfoBuilder, OpenApi, Server};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::{SwaggerUi, Url};

use crate::config::Config;
use crate::core::Core;

/// The account session: the token any surface's login returns.
pub const SESSION: &str = "session";
/// The same session as the HttpOnly cookie set at login (Ocean1, live).
pub const SESSION_COOKIE: &str = "sessionCookie";
/// The gift monitor's key (`x-api-key`, or `Authorization: Bearer`).
pub const GIFT_KEY: &str = "giftApiKey";
pub const ADMIN_TOKEN: &str = "adminToken";
pub const AUDIT_TOKEN: &str = "auditToken";

pub struct Surface {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// the surface's part of the document (from its routes)
    document: fn(&Config) -> OpenApi,
}

/// Every surface the server serves, in the order `/docs` lists them.
pub const SURFACES: &[Surface] = &[
    Surface {
        name: "roomchat",
        title: "Room chat (seed 004)",
        description: "`/register`, `/login`, `/api/room/*`, `/api/message/*` and the \
            room socket. Envelope `{code, msg, data}`: `code` 0 on success, 1 on failure.",
        document: |c| super::roomchat::routes(c).split_for_parts().1,
    },
    Surface {
        name: "chat8",
        title: "Chat8 (seed 003)",
        description: "Accounts, friends, direct messages, uploads and keys under `/api/v1`, \
            and the socket `/ws/{user_id}`. Envelope `{success, data, message, timestamp}`; \
            failures `{success: false, error: {code, message}, timestamp}`.",
        document: |c| super::chat8::routes(c).split_for_parts().1,
    },
    Surface {
        name: "ocean1",
        title: "Ocean1 (seed 002)",
        description: "Accounts and points (`/api/auth/*`, `/api/user/*`, `/api/pay/redeem`) \
            and the generation proxy (`/api/proxy/*`). Bodies `{status, ...}`; failures \
            `{status: \"failed\", msg}`.",
        document: |c| super::ocean1::routes(c).split_for_parts().1,
    },
    Surface {
        name: "live",
        title: "Live rooms (seed 000)",
        description: "Live rooms, coins and anchors: `/api/live/*`, `/api/anchor/*`, \
            `/api/users/*`, `/api/payment/*`. Envelope `{code: 0, data}`; failures \
            `{code: 1, msg}`.",
        document: |c| super::live::routes(c).split_for_parts().1,
    },
    Surface {
        name: "gift",
        title: "Gift monitor (seed 001)",
        description: "Rooms, gift ingestion and monthly statistics. Bare JSON bodies; \
            failures `{error}`.",
        document: |c| super::gift::routes(c).split_for_parts().1,
    },
    Surface {
        name: "admin",
        title: "Operators and auditors",
        description: "`/admin/*`: projections, the ledger and the transparency log \
            (`/admin/tlog/*`). `Authorization: Bearer` with the admin token \
            (`TIDELOG_ADMIN_TOKEN`), or the audit token for the ledger's and the log's \
            reads. Failures `{error}`.",
        document: |c| super::admin::routes(c).split_for_parts().1,
    },
    Surface {
        name: "ops",
        title: "Health and metrics",
        description: "`/healthz` and the Prometheus `/metrics`.",
        document: |c| ops_routes(c).split_for_parts().1,
    },
];

/// `/healthz` and `/metrics`.
pub fn ops_routes(_: &Config) -> OpenApiRouter<Core> {
    OpenApiRouter::new()
        .merge(super::health::routes())
        .merge(super::metrics::routes())
}

fn info(title: &str, description: &str) -> utoipa::openapi::Info {
    InfoBuilder::new()
        .title(title)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(description))
        .build()
}

fn security_schemes() -> ComponentsBuilder {
    let bearer = |desc: &str| {
        let mut s = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        s.description = Some(desc.to_owned());
        SecurityScheme::Http(s)
    };
    ComponentsBuilder::new()
        .security_scheme(
            SESSION,
            bearer("The `token` (Chat8: `access_token`) any surface's login returns; one account for every surface."),
        )
        .security_scheme(
            SESSION_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::identity::SESSION_COOKIE,
                "The session cookie set at login (HttpOnly).",
            ))),
        )
        .security_scheme(
            GIFT_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The gift monitor's key (`TIDELOG_API_SECRET`); `Authorization: Bearer` works too.",
            ))),
        )
        .security_scheme(ADMIN_TOKEN, bearer("`TIDELOG_ADMIN_TOKEN`."))
        .security_scheme(
            AUDIT_TOKEN,
            bearer("`TIDELOG_AUDIT_TOKEN`: the ledger's reads only."),
        )
}

/// A surface's document, or the combined one when `surface` is `None`.
pub fn openapi(surface: Option<&str>) -> Option<Value> {
    let chosen: Vec<&Surface> = match surface {
        None => SURFACES.iter().collect(),
        Some(name) => vec![SURFACES.iter().find(|s| s.name == name)?],
    };
    let mut head = OpenApi::new(
        match surface {
            None => info(
                "tidelog",
                "One event-sourced server for five frontends. Each surface keeps the \
                 paths, fields and envelopes of its seed document.",
            ),
            Some(_) => info(chosen[0].title, chosen[0].description),
        },
        utoipa::openapi::Paths::new(),
    );
    head.components = Some(security_schemes().build());
    head.tags = Some(
        chosen
            .iter()
            .map(|s| {
                TagBuilder::new()
                    .name(s.name)
                    .description(Some(format!("{}. {}", s.title, s.description)))
                    .build()
            })
            .collect(),
    );
    head.servers = Some(vec![Server::new("/")]);
    let mut doc = serde_json::to_value(&head).expect("a document is JSON");
    // the routes' limits do not show in the document: any configuration will do
    let config = Config::default();
    for s in &chosen {
        let part = (s.document)(&config);
        let part = namespaced(
            s.name,
            serde_json::to_value(&part).expect("a document is JSON"),
        );
        for key in ["/paths", "/components/schemas"] {
            let Some(Value::Object(found)) = part.pointer(key) else {
                continue;
            };
            let target = match key {
                "/paths" => &mut doc["paths"],
                _ => &mut doc["components"]["schemas"],
            };
            if target.is_null() {
                *target = Value::Object(Default::default());
            }
            let target = target.as_object_mut().expect("an object");
            for (k, v) in found {
                // axum's catch-all `{*path}` is an ordinary parameter to OpenAPI
                let k = k.replace("{*", "{");
                match (target.get_mut(&k), v) {
                    (Some(Value::Object(have)), Value::Object(more)) => have.extend(more.clone()),
                    _ => {
                        target.insert(k, v.clone());
                    }
                }
            }
        }
    }
    Some(doc)
}

/// Surfaces reuse names (`LoginRequest`, `login`): their schemas become
/// `surface.Name` and their operation ids `surface.name`, unique in the
/// combined document.
fn namespaced(surface: &str, mut part: Value) -> Value {
    const REF: &str = "#/components/schemas/";
    fn walk(v: &mut Value, surface: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match (k.as_str(), &mut *child) {
                        ("$ref", Value::String(r)) if r.starts_with(REF) => {
                            *r = format!("{REF}{surface}.{}", &r[REF.len()..]);
                        }
                        ("operationId", Value::String(id)) => *id = format!("{surface}.{id}"),
                        _ => walk(child, surface),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, surface)),
            _ => {}
        }
    }
    walk(&mut part, surface);
    if let Some(Value::Object(schemas)) = part.pointer_mut("/components/schemas") {
        *schemas = std::mem::take(schemas)
            .into_iter()
            .map(|(name, s)| (format!("{surface}.{name}"), s))
            .collect();
    }
    part
}

/// `/openapi.json`, `/openapi/{surface}.json` and `/docs`.
pub fn router() -> axum::Router {
    let mut urls = vec![(
        Url::with_primary("all surfaces", "/openapi.json", true),
        openapi(None).expect("the combined document"),
    )];
    for s in SURFACES {
        let url: &'static str = Box::leak(format!("/openapi/{}.json", s.name).into_boxed_str());
        urls.push((
            Url::new(s.title, url),
            openapi(Some(s.name)).expect("a known surface"),
        ));
    }
    SwaggerUi::new("/docs")
        .external_urls_from_iter_unchecked(urls)
        .into()
}
