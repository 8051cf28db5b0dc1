//! The layering of `src/`, kept true: each module imports only modules of
//! a lower layer (or of its own layer, without cycles), services know
//! nothing of axum, and surfaces do not import each other.
//!
//! Layers, lowest first (the README's "How it is built"):
//! 0 base values and adapters · 1 `store`, `projector` · 2 `core` ·
//! 3 services · 4 the HTTP toolkit (`http::{body, context, reply, session}`)
//! · 5 one module per surface · 6 `http` (the router) and `http::docs` ·
//! 7 `app` (the composition root) · 8 `cli`.
//!
//! It reads every `crate::` and `super::` path of `src/` (in `use` trees
//! and inline), with comments and string literals removed, and fails
//! naming the file and line of each edge that breaks a rule. The CLI may
//! use the documents (`http::docs`) but no surface: what it shares with
//! HTTP is a service or a read-model query.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: &[(&[&str], &str)] = &[
    (
        &[
            "config",
            "timefmt",
            "telemetry",
            "ids",
            "files",
            "bilibili",
            "auth",
            "embedded_pg",
            "db",
        ],
        "base",
    ),
    (&["store", "projector"], "event store and projector runtime"),
    (&["core"], "core"),
    (
        &[
            "identity",
            "ledger",
            "liverooms",
            "generation",
            "social",
            "live",
            "gifts",
            "tlog",
            "analytics",
        ],
        "services",
    ),
    (
        &[
            "http::body",
            "http::context",
            "http::reply",
            "http::session",
            "http::socket",
            "http::origin",
        ],
        "HTTP toolkit",
    ),
    (
        &[
            "http::roomchat",
            "http::chat8",
            "http::ocean1",
            "http::live",
            "http::gift",
            "http::admin",
            "http::health",
            "http::metrics",
            "http::witness",
            "grpc",
        ],
        "surfaces",
    ),
    (&["http", "http::docs"], "router and documents"),
    (&["app"], "composition root"),
    (&["cli"], "command line"),
];

/// Surfaces never import each other.
const SURFACES: usize = 5;
/// Layers up to (and including) this one must not name axum.
const NO_AXUM_BELOW: usize = 3;

fn layer_of(node: &str) -> Option<usize> {
    LAYERS.iter().position(|(nodes, _)| nodes.contains(&node))
}

/// A file's module path (`["http", "chat8", "ws"]`) from its place in `src/`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The node a module path belongs to: a top-level module, or a module of
/// `http/` (anything else of `http` is the router, `http/mod.rs`).
fn node_of(path: &[String], http_children: &BTreeSet<String>) -> Option<String> {
    let first = path.first()?;
    if first == "http" {
        return Some(match path.get(1) {
            Some(child) if http_children.contains(child) => format!("http::{child}"),
            _ => "http".into(),
        });
    }
    Some(first.clone())
}

/// The text with comments, string and char literals blanked (newlines kept,
/// so line numbers hold).
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            continue;
        }
        // raw strings: r"..", r#".."#, br#".."#
        let raw_start = if c == 'r' && matches!(next, Some('"') | Some('#')) {
            Some(i + 1)
        } else if c == 'b' && next == Some('r') && matches!(b.get(i + 2), Some('"') | Some('#')) {
            Some(i + 2)
        } else {
            None
        };
        let ident_before = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        if let (Some(mut j), false) = (raw_start, ident_before) {
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&'"') {
                for _ in i..=j {
                    out.push(' ');
                }
                i = j + 1;
                while i < b.len() {
                    if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                        for _ in 0..=hashes {
                            out.push(' ');
                        }
                        i += 1 + hashes;
                        break;
                    }
                    out.push(blank(b[i]));
                    i += 1;
                }
                continue;
            }
        }
        if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
            continue;
        }
        if c == '\'' {
            // a char literal ('a', '\n', '\''), not a lifetime ('a)
            let close = if next == Some('\\') {
                (i + 2..(i + 12).min(b.len())).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = close {
                for _ in i..=end {
                    out.push(' ');
                }
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Every path a `use` tree names, flattened (`a::{b, c::{d}}` → `a::b`,
/// `a::c::d`), each with the offset of its start.
fn expand_tree(tree: &str) -> Vec<String> {
    fn split_top(s: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    let tree: String = tree.split_whitespace().collect();
    match tree.find('{') {
        None => vec![tree.split(" as ").next().unwrap_or("").to_owned()],
        Some(open) => {
            let prefix = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            split_top(inner)
                .into_iter()
                .filter(|p| !p.is_empty())
                .flat_map(|p| {
                    expand_tree(p)
                        .into_iter()
                        .map(|q| format!("{prefix}{q}"))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }
}

struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

/// The paths (`crate::…`, `super::…`, resolved) a file names, with lines.
fn paths_in(text: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
    let code = strip(text);
    let line_at = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    // an inline `mod tests` sits one module deeper
    let tests_at = code.find("mod tests").unwrap_or(code.len());
    let resolve = |raw: &str, offset: usize| -> Option<Vec<String>> {
        let segs: Vec<&str> = raw.split("::").filter(|s| !s.is_empty()).collect();
        match *segs.first()? {
            "crate" => Some(segs[1..].iter().map(|s| s.to_string()).collect()),
            "super" => {
                // `super` of a file module is its parent; of a `mod.rs`, the
                // parent of the directory's module
                let mut base: Vec<String> = module.to_vec();
                if offset > tests_at {
                    base.push("tests".into());
                }
                let mut rest = &segs[..];
                while rest.first() == Some(&"super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().map(|s| s.to_string()));
                Some(base)
            }
            _ => None,
        }
    };
    // `use` trees, whole
    let mut search = 0;
    while let Some(at) = code[search..].find("use ") {
        let start = search + at;
        search = start + 4;
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = code[start..].find(';') else {
            break;
        };
        let tree = &code[start + 4..start + end];
        let tree = tree.trim();
        if !(tree.starts_with("crate") || tree.starts_with("super")) {
            continue;
        }
        for p in expand_tree(tree) {
            if let Some(path) = resolve(&p, start) {
                found.push((path, line_at(start)));
            }
        }
        search = start + end;
    }
    // inline paths (`crate::http::x(..)`), outside `use` lines
    for key in ["crate::", "super::"] {
        let mut search = 0;
        while let Some(at) = code[search..].find(key) {
            let start = search + at;
            search = start + key.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let line_start = code[..start].rfind('\n').map_or(0, |i| i + 1);
            if code[line_start..start].trim_start().starts_with("use ")
                || code[line_start..start].trim_start().starts_with("pub use ")
                || code[line_start..start]
                    .trim_start()
                    .starts_with("pub(crate) use ")
            {
                continue;
            }
            let len = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - start);
            if let Some(path) = resolve(code[start..start + len].trim_end_matches(':'), start) {
                found.push((path, line_at(start)));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn edges() -> (Vec<Edge>, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let http_children: BTreeSet<String> = fs::read_dir(src.join("http"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "mod")
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut edges = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel.starts_with("bin") || rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        let module = module_path(&src, &file);
        let Some(from) = node_of(&module, &http_children) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        let from_layer = layer_of(&from);
        if from_layer.is_none() {
            problems.push(format!(
                "{}: module `{from}` is in no layer (add it to LAYERS in tests/architecture.rs)",
                rel.display()
            ));
        }
        if from_layer.is_some_and(|l| l <= NO_AXUM_BELOW) {
            for (n, line) in strip(&text).lines().enumerate() {
                if line.contains("axum::") || line.contains("axum_") {
                    problems.push(format!(
                        "src/{}:{}: `{from}` (layer {}) names axum: HTTP types belong to http/",
                        rel.display(),
                        n + 1,
                        from_layer.unwrap()
                    ));
                }
            }
        }
        for (path, line) in paths_in(&text, &module) {
            let Some(to) = node_of(&path, &http_children) else {
                continue;
            };
            if to != from {
                edges.push(Edge {
                    from: from.clone(),
                    to,
                    file: Path::new("src").join(rel),
                    line,
                });
            }
        }
    }
    (edges, problems)
}

#[test]
fn every_import_goes_down_a_layer_and_no_module_cycle_exists() {
    let (edges, mut problems) = edges();
    assert!(
        edges.len() > 100,
        "the scan found only {} edges: it no longer reads src/",
        edges.len()
    );
    for e in &edges {
        let (Some(f), Some(t)) = (layer_of(&e.from), layer_of(&e.to)) else {
            if layer_of(&e.to).is_none() {
                problems.push(format!(
                    "{}:{}: `{}` imports `{}`, which is in no layer",
                    e.file.display(),
                    e.line,
                    e.from,
                    e.to
                ));
            }
            continue;
        };
        if t > f {
            problems.push(format!(
                "{}:{}: `{}` ({}) imports `{}` ({}), a higher layer",
                e.file.display(),
                e.line,
                e.from,
                LAYERS[f].1,
                e.to,
                LAYERS[t].1
            ));
        } else if e.from == "cli" && t == SURFACES {
            problems.push(format!(
                "{}:{}: the CLI imports surface `{}`: what the CLI and HTTP both need is a service or a read-model query",
                e.file.display(),
                e.line,
                e.to
            ));
        } else if t == f && f == SURFACES {
            problems.push(format!(
                "{}:{}: surface `{}` imports surface `{}`: share through a lower layer",
                e.file.display(),
                e.line,
                e.from,
                e.to
            ));
        }
    }
    // cycles among modules of one layer
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &edges {
        if layer_of(&e.from).is_some() && layer_of(&e.from) == layer_of(&e.to) {
            graph.entry(&e.from).or_default().insert(&e.to);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        let mut text = format!("a cycle: {}", cycle.join(" → "));
        for pair in cycle.windows(2) {
            if let Some(e) = edges.iter().find(|e| e.from == pair[0] && e.to == pair[1]) {
                text.push_str(&format!(
                    "\n    {}:{}: `{}` imports `{}`",
                    e.file.display(),
                    e.line,
                    e.from,
                    e.to
                ));
            }
        }
        problems.push(text);
    }
    assert!(
        problems.is_empty(),
        "{} layering problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn find_cycle<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n);
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// The checker itself: it must see what it is meant to catch.
#[test]
fn the_scanner_reads_use_trees_inline_paths_and_skips_comments_and_strings() {
    let text = r##"
// use crate::app::AppState;
use crate::{core::Core, http::{context::RequestContext, reply}};
use super::sibling;
fn f() -> String {
    let s = "crate::cli::run";
    let r = r#"use crate::app;"#;
    crate::http::chat8::format_time(x);
    '"'; 'a';
    format!("{s}{r}")
}
"##;
    let module: Vec<String> = vec!["social".into(), "feed".into()];
    let found: Vec<String> = paths_in(text, &module)
        .into_iter()
        .map(|(p, line)| format!("{}@{line}", p.join("::")))
        .collect();
    assert_eq!(
        found,
        [
            "core::Core@3",
            "http::context::RequestContext@3",
            "http::reply@3",
            "social::sibling@4",
            "http::chat8::format_time@8",
        ]
    );
}
