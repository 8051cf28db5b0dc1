//! The OpenAPI documents and the router agree both ways, the documents are
//! well formed, and `/docs` works from the binary alone.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The router's own answer for a request no route takes: the fallback's
/// 404 (each surface says `接口不存在`, admin `no such route`) or 405.
fn unmatched(status: StatusCode, body: &str) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND
            && (body.contains("接口不存在") || body.contains("no such route")))
}

async fn raw(app: &TestApp, method: Method, path: &str) -> (StatusCode, String) {
    let mut req = app
        .http
        .request(method.clone(), format!("{}{path}", app.base));
    if method == Method::POST || method == Method::PUT || method == Method::PATCH {
        req = req.header("content-type", "application/json").body("{}");
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                ops.push((m.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::start().await;
    let (status, doc) = app.api().get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");

    // the detector itself: an unknown path and a wrong method are unmatched
    let (s, b) = raw(&app, Method::GET, "/api/v1/no-such-thing").await;
    assert!(unmatched(s, &b), "{s} {b}");
    let (s, b) = raw(&app, Method::DELETE, "/api/room/list").await;
    assert!(unmatched(s, &b), "{s} {b}");
    let (s, b) = raw(&app, Method::GET, "/admin/nothing").await;
    assert!(unmatched(s, &b), "{s} {b}");

    let ops = operations(&doc);
    assert!(ops.len() >= 88, "{} operations documented", ops.len());
    for (method, path, _) in &ops {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = raw(&app, m, &concrete).await;
        assert!(
            !unmatched(status, &body),
            "{method} {path} is documented but not served: {status} {body}"
        );
        assert!(
            !status.is_server_error(),
            "{method} {path} answered {status}: {body}"
        );
    }
    app.stop().await;
}

/// Routes come only from the surfaces' `OpenApiRouter`s (`routes!`, which
/// documents as it routes); a plain `.route(` would serve a path the
/// documents do not show. The one allowed: the live site's trailing-slash
/// aliases, which copy the documented path's entry.
#[test]
fn no_route_is_added_outside_the_documented_routers() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains(".route(") || code.contains(".route_service(") {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut found,
    );
    let allowed =
        |l: &String| l.contains("src/http/live/mod.rs") && l.contains("r.route(&alias, method)");
    let stray: Vec<_> = found.iter().filter(|l| !allowed(l)).collect();
    assert!(stray.is_empty(), "routes outside the documents: {stray:#?}");
}

/// Every `$ref` resolves, operation ids are unique, every path template's
/// parameters are declared, every security requirement names a scheme,
/// and every operation documents a success and its surface's failure.
fn check_document(doc: &Value) {
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for piece in text.split("\"$ref\":\"").skip(1) {
        let target = &piece[..piece.find('"').unwrap()];
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(schemas.contains_key(name), "dangling $ref {target}");
    }
    let tags: HashSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = HashSet::new();
    for (method, path, op) in operations(doc) {
        let id = op["operationId"].as_str().expect("an operation id");
        assert!(ids.insert(id.to_owned()), "operation id {id} twice");
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, templated, "{method} {path}: path parameters");
        for req in op["security"].as_array().into_iter().flatten() {
            for name in req.as_object().unwrap().keys() {
                assert!(schemes.contains_key(name), "{method} {path}: scheme {name}");
            }
        }
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|k| k.starts_with('2') || k == "101"),
            "{method} {path}: no success documented"
        );
        assert!(
            responses.contains_key("4XX") || path == "/healthz" || path == "/metrics",
            "{method} {path}: the surface's failure is not documented"
        );
        for tag in op["tags"].as_array().expect("tags") {
            assert!(
                tags.contains(tag.as_str().unwrap()),
                "{method} {path}: tag {tag}"
            );
        }
    }
}

#[tokio::test]
async fn the_documents_are_well_formed_and_the_surfaces_make_up_the_whole() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, all) = api.get("/openapi.json", None).await;
    check_document(&all);
    let mut union = BTreeSet::new();
    for surface in [
        "roomchat", "chat8", "ocean1", "live", "gift", "admin", "ops",
    ] {
        let (status, doc) = api.get(&format!("/openapi/{surface}.json"), None).await;
        assert_eq!(status, StatusCode::OK, "{surface}");
        check_document(&doc);
        for (method, path, op) in operations(&doc) {
            assert_eq!(op["tags"][0], surface, "{method} {path}");
            assert_eq!(
                all["paths"][&path][&method], op,
                "{method} {path}: the same in both documents"
            );
            assert!(union.insert((method, path)));
        }
    }
    let whole: BTreeSet<_> = operations(&all)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    assert_eq!(
        union, whole,
        "the surfaces' documents make up the combined one"
    );

    // seed routes of every surface are there, with their contract's shapes
    for (method, path) in [
        ("post", "/api/message/send"),
        ("get", "/api/v1/messages/{id}"),
        ("post", "/api/proxy/sora"),
        ("get", "/api/live/get_ranked_lives/"),
        ("post", "/ingest/bilibili/{room_id}"),
        ("post", "/admin/ledger/adjustments"),
    ] {
        assert!(all["paths"][path][method].is_object(), "{method} {path}");
    }
    let failure = &all["components"]["schemas"]["chat8.Failure"]["properties"];
    assert!(failure["error"].is_object() && failure["success"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn docs_page_and_its_assets_come_from_the_binary_and_the_cli_prints_the_same_document() {
    let app = TestApp::start().await;
    let resp = app
        .http
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let page = resp.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(
        !page.contains("://cdn") && !page.contains("unpkg.com"),
        "no CDN: {page}"
    );
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        let resp = app
            .http
            .get(format!("{}/docs/{asset}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        let body = resp.text().await.unwrap();
        assert!(body.len() > 100, "{asset}");
        if asset == "swagger-initializer.js" {
            // every surface's document is listed, the combined one first
            assert!(body.contains("/openapi.json"), "{body}");
            assert!(body.contains("/openapi/chat8.json"), "{body}");
        }
    }
    let (_, served) = app.api().get("/openapi.json", None).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, served);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["openapi", "--surface", "gift"])
        .output()
        .unwrap();
    let gift: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(gift["info"]["title"], "Gift monitor (seed 001)");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["openapi", "--surface", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("known: roomchat"));
    app.stop().await;
}
