//! The layout's one rule, checked on the source itself so that it cannot rot:
//! `core` imports only `core`; `protocol`, `config`, `auth`, `metrics`, `store` and
//! `clock` import only `core`; `services` never import axum or `state`; `http` and
//! `tasks` import `state` and below; nothing imports `app` or `main`; `rusqlite` and
//! SQL live in `store/` alone; no module cycle.
//!
//! The checker reads `use` items and inline `crate::…` paths as text (comments and
//! string literals removed), so a violation names its file and the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which layer a file of `src/` belongs to, by its path.
fn layer_of(module: &str) -> &'static str {
    let first = module.split("::").next().unwrap_or("");
    match first {
        "core" => "core",
        "protocol" | "config" | "auth" | "metrics" | "store" | "clock" | "telemetry" | "tls" => {
            "base"
        }
        "services" => "services",
        "state" => "state",
        "http" | "tasks" => "edge",
        "tools" => "tools",
        "app" => "app",
        "main" => "main",
        "" => "root",
        _ => "unknown",
    }
}

/// The crate's own modules a layer may import (by first path segment).
fn may_import(layer: &str, target_first: &str) -> bool {
    let below: &[&str] = match layer {
        "core" => &["core"],
        "base" => &["core"],
        "services" => &[
            "core", "protocol", "config", "auth", "metrics", "store", "clock", "tls", "services",
        ],
        "state" => &[
            "core", "protocol", "config", "auth", "metrics", "store", "clock", "services",
        ],
        "edge" => &[
            "core", "protocol", "config", "auth", "metrics", "store", "clock", "services", "state",
            "http", "tasks",
        ],
        "tools" => &[
            "core", "protocol", "config", "auth", "metrics", "store", "clock", "tls", "tools",
        ],
        "app" => &[
            "core", "protocol", "config", "auth", "metrics", "store", "clock", "services", "state",
            "http", "tasks",
        ],
        "root" | "main" => return true,
        _ => &[],
    };
    // A base module may use its own submodules (store::writer, …).
    below.contains(&target_first)
}

/// Outside crates and std paths a layer must not touch.
fn forbidden_outside(layer: &str, module: &str) -> &'static [&'static str] {
    match layer {
        "core" => &[
            "tokio",
            "axum",
            "rusqlite",
            "reqwest",
            "hyper",
            "tungstenite",
            "tokio_tungstenite",
            "prometheus_client",
            "tracing",
            "std::fs",
            "std::net",
            "std::thread",
            "std::process",
            "SystemTime",
            "Instant",
        ],
        "services" => &["axum", "hyper", "tokio_tungstenite"],
        "base" if module == "protocol" || module == "config" || module == "auth" => {
            &["axum", "tokio"]
        }
        _ => &[],
    }
}

/// One source file: its module path (`services::hub`) and its text without comments
/// and string literals.
struct Source {
    file: String,
    module: String,
    code: String,
    /// String literals, kept to find SQL.
    strings: Vec<String>,
}

fn read_tree(src: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect(src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let module = rel
                .trim_end_matches(".rs")
                .trim_end_matches("/mod")
                .replace('/', "::");
            let module = if module == "lib" {
                String::new()
            } else {
                module
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let (code, strings) = strip(&text);
            Source {
                file: format!("src/{rel}"),
                module,
                code,
                strings,
            }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Removes comments, and string and char literals (returned apart), keeping code.
fn strip(text: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = text.chars().collect();
    let (mut code, mut strings) = (String::new(), Vec::new());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // raw string r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                code.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let start = j;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            strings.push(chars[start..j.min(chars.len())].iter().collect());
            code.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if let Some(&ch) = chars.get(j) {
                    s.push(ch);
                }
                j += 1;
            }
            strings.push(s);
            code.push_str("\"\"");
            i = j + 1;
        } else if c == '\'' && is_char_literal(&chars, i) {
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 1;
            }
            j += 1;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            code.push_str("' '");
            i = j + 1;
        } else {
            code.push(c);
            i += 1;
        }
    }
    (code, strings)
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `'a'` or `'\n'`, not a lifetime `'a`.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    matches!(
        (chars.get(i + 1), chars.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// Every path the code names: `use` items expanded (`use a::{b, c::d}` → `a::b`,
/// `a::c::d`), plus inline `x::y` paths, as written.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        expand(after[..end].trim(), "", &mut out);
        rest = &after[end..];
    }
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if (chars[i].is_alphabetic() || chars[i] == '_') && !ident_before(&chars, i) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let word = word.trim_end_matches(':').to_string();
            if word.contains("::") || matches!(word.as_str(), "SystemTime" | "Instant") {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let after = bytes.get(at + word.len()).copied().unwrap_or(b' ');
        if before_ok && after.is_ascii_whitespace() {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap().trim();
        out.push(join(prefix, path));
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}::{path}"),
    }
}

/// The crate module a `crate::…` (or `super::…`) path lands in: the longest prefix that
/// is a module of the tree.
fn resolve(path: &str, from: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
    let mut parts = path.split("::").peekable();
    match parts.peek().copied() {
        Some("crate") | Some("diemcau") => {
            parts.next();
            segments.clear();
        }
        Some("super") => {
            while parts.peek() == Some(&"super") {
                parts.next();
                segments.pop();
            }
        }
        Some("self") => {
            parts.next();
        }
        _ => return None,
    }
    let mut best = None;
    for part in parts {
        segments.push(part);
        let candidate = segments.join("::");
        if modules.contains(&candidate) {
            best = Some(candidate);
        } else {
            break;
        }
    }
    best
}

/// Every breach of the rule in the tree at `src`, one line each, naming file and import.
fn violations(src: &Path) -> Vec<String> {
    let sources = read_tree(src);
    let modules: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    let mut found = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in &sources {
        let layer = layer_of(&source.module);
        let top = source.module.split("::").next().unwrap_or("");
        for path in paths(&source.code) {
            let first = path.split("::").next().unwrap_or("");
            if matches!(first, "crate" | "super" | "diemcau" | "self") {
                let Some(target) = resolve(&path, &source.module, &modules) else {
                    continue;
                };
                if target == source.module || target.is_empty() {
                    continue;
                }
                let target_first = target.split("::").next().unwrap_or("");
                let own_folder = target_first == top && layer == "base";
                if matches!(target_first, "app" | "main") && layer != "main" {
                    found.push(format!(
                        "{}: imports `{path}`: nothing imports app or main",
                        source.file
                    ));
                } else if !own_folder && !may_import(layer, target_first) {
                    found.push(format!(
                        "{}: imports `{path}`: {layer} ({}) may not import {target_first}",
                        source.file, source.module
                    ));
                }
                // Parent modules are named by their children; a cycle is between siblings.
                if !source.module.starts_with(&format!("{target}::"))
                    && !target.starts_with(&format!("{}::", source.module))
                {
                    graph
                        .entry(source.module.clone())
                        .or_default()
                        .insert(target);
                }
            } else {
                for banned in forbidden_outside(layer, top) {
                    if path == *banned
                        || path.starts_with(&format!("{banned}::"))
                        || path.contains(&format!("::{banned}"))
                    {
                        found.push(format!(
                            "{}: uses `{path}`: {layer} may not use {banned}",
                            source.file
                        ));
                    }
                }
                if first == "rusqlite" && top != "store" {
                    found.push(format!(
                        "{}: uses `{path}`: rusqlite lives in store/ alone",
                        source.file
                    ));
                }
            }
        }
        if top != "store" {
            for s in &source.strings {
                if looks_like_sql(s) {
                    found.push(format!(
                        "{}: SQL outside store/: \"{}\"",
                        source.file,
                        s.trim()
                    ));
                }
            }
        }
    }
    found.extend(cycles(&graph));
    found.sort();
    found.dedup();
    found
}

fn looks_like_sql(s: &str) -> bool {
    let upper = s.trim_start().to_ascii_uppercase();
    [
        "SELECT ",
        "INSERT INTO",
        "UPDATE ",
        "DELETE FROM",
        "CREATE TABLE",
        "PRAGMA ",
    ]
    .iter()
    .any(|k| upper.starts_with(k))
}

/// One line per module cycle (by depth-first search), naming its members in order.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![start.clone()];
        walk(graph, &mut stack, &mut done, &mut found);
    }
    found
        .into_iter()
        .map(|c| format!("module cycle: {c}"))
        .collect()
}

fn walk(
    graph: &BTreeMap<String, BTreeSet<String>>,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    found: &mut BTreeSet<String>,
) {
    let here = stack.last().unwrap().clone();
    if done.contains(&here) {
        return;
    }
    for next in graph.get(&here).into_iter().flatten() {
        if let Some(at) = stack.iter().position(|m| m == next) {
            let mut cycle: Vec<String> = stack[at..].to_vec();
            let min = cycle.iter().enumerate().min_by_key(|(_, m)| *m).unwrap().0;
            cycle.rotate_left(min);
            cycle.push(cycle[0].clone());
            found.insert(cycle.join(" → "));
        } else {
            stack.push(next.clone());
            walk(graph, stack, done, found);
            stack.pop();
        }
    }
    done.insert(here);
}

#[test]
fn the_source_tree_keeps_the_layering_rule() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "the layout's rule is broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_folder_of_the_layout_is_there() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for folder in ["core", "services", "store", "http", "http/ws", "tools"] {
        assert!(
            src.join(folder).join("mod.rs").is_file(),
            "src/{folder}/mod.rs is missing"
        );
    }
    for file in [
        "main.rs",
        "lib.rs",
        "app.rs",
        "state.rs",
        "tasks.rs",
        "protocol.rs",
    ] {
        assert!(src.join(file).is_file(), "src/{file} is missing");
    }
}

/// The checker itself: a small tree with one planted breach of each kind is caught,
/// naming the file and the import.
#[test]
fn the_checker_names_each_planted_violation() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let path = src.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod app; pub mod core; pub mod services; pub mod state; pub mod store;\n",
    );
    write("app.rs", "use crate::state::AppState;\n");
    write("state.rs", "use crate::services::hub::Hub;\n");
    write("core/mod.rs", "pub mod timer; pub mod sites;\n");
    // core reaching the shell, a clock read, and a cycle timer → sites → timer
    write(
        "core/timer.rs",
        "use crate::store::Store;\nuse crate::core::sites::SiteId;\nfn now() { let _ = std::time::SystemTime::now(); }\n",
    );
    write(
        "core/sites.rs",
        "// use crate::store::Store; (a comment is not an import)\nuse crate::core::timer::Timer;\n",
    );
    write("services/mod.rs", "pub mod hub;\n");
    // a service holding axum types, importing state, and running SQL with rusqlite
    write(
        "services/hub.rs",
        "use axum::extract::ws::Message;\nuse crate::{state::AppState, core::timer};\nfn f(tx: &rusqlite::Transaction) { tx.execute(\"INSERT INTO sites VALUES (1)\", []); }\n",
    );
    write("store/mod.rs", "use crate::app::App;\n");

    let found = violations(src);
    let expect = [
        "src/core/timer.rs: imports `crate::store::Store`: core (core::timer) may not import store",
        "src/core/timer.rs: uses `std::time::SystemTime::now`: core may not use SystemTime",
        "module cycle: core::sites → core::timer → core::sites",
        "module cycle: services::hub → state → services::hub",
        "module cycle: app → state → services::hub → core::timer → store → app",
        "src/services/hub.rs: uses `axum::extract::ws::Message`: services may not use axum",
        "src/services/hub.rs: imports `crate::state::AppState`: services (services::hub) may not import state",
        "src/services/hub.rs: uses `rusqlite::Transaction`: rusqlite lives in store/ alone",
        "src/services/hub.rs: SQL outside store/: \"INSERT INTO sites VALUES (1)\"",
        "src/store/mod.rs: imports `crate::app::App`: nothing imports app or main",
    ];
    for line in expect {
        assert!(
            found.iter().any(|f| f == line),
            "not caught: {line}\nfound:\n{}",
            found.join("\n")
        );
    }
    assert!(
        !found
            .iter()
            .any(|f| f.contains("core/sites.rs: imports `crate::store")),
        "a commented-out import was counted: {found:?}"
    );
    assert_eq!(
        found.len(),
        expect.len(),
        "unexpected findings:\n{}",
        found.join("\n")
    );
}
