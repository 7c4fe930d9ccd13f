//! The crate's modules form layers: no import cycle between the library's top-level
//! modules, between sibling modules inside one of them (`cache::l1` and `cache::lru`), or
//! between the CLI's modules. A cycle means two modules are one idea split in two, or a
//! lower layer that knows about a higher one; either way it is refused here, with the
//! cycle named.
//!
//! The scan reads the sources: every `crate::a` and `super::a` path outside comments and
//! outside `#[cfg(test)] mod tests` (test code may reach upward) is an edge.
//!
//! The public API listing of `docs/ARCHITECTURE.md` (section 1b) is checked against
//! `src/lib.rs` here too: its root re-exports, public and private modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source with comments and the unit-test module removed.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source file");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal (a URL) cuts the line short: harmless, since
            // paths to modules never follow one on the same line.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> Option<&str> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

/// The first path segment after every `prefix` (`crate::` or `super::`), including each
/// item of a `prefix{a::x, b}` group.
fn first_segments(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not `crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        if let Some(name) = ident_at(group[start..i].trim_start()) {
                            found.insert(name.to_owned());
                        }
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if let Some(name) = ident_at(group[start..i].trim_start()) {
                            found.insert(name.to_owned());
                        }
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else if let Some(name) = ident_at(rest) {
            found.insert(name.to_owned());
        }
    }
    found
}

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable source directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The module path of a source file relative to its crate root (`cache/l1.rs` ->
/// `["cache", "l1"]`, `cache/mod.rs` -> `["cache"]`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).expect("file under its root");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Edges between the top-level modules of the crate rooted at `root` (whose root file is
/// `root_file`), and between siblings inside each module directory.
fn graphs(root: &Path, root_file: &str, skip: &[&str]) -> BTreeMap<String, Graph> {
    let mut graphs: BTreeMap<String, Graph> = BTreeMap::new();
    for file in sources(root) {
        let module = module_of(root, &file);
        if module.is_empty()
            || module == [root_file.trim_end_matches(".rs")]
            || skip.contains(&module[0].as_str())
        {
            continue;
        }
        let code = code_of(&file);
        let top = &module[0];
        for target in first_segments(&code, "crate::") {
            if &target != top {
                graphs
                    .entry("crate".into())
                    .or_default()
                    .entry(top.clone())
                    .or_default()
                    .insert(target);
            }
        }
        // Siblings: `module[..k]` is the parent, `module[k]` the child that holds `file`.
        for k in 1..module.len() {
            let parent = module[..k].join("::");
            let child = &module[k];
            let mut targets = first_segments(&code, &format!("crate::{parent}::"));
            if k + 1 == module.len() {
                targets.extend(first_segments(&code, "super::"));
            }
            for target in targets {
                if &target != child {
                    graphs
                        .entry(parent.clone())
                        .or_default()
                        .entry(child.clone())
                        .or_default()
                        .insert(target);
                }
            }
        }
    }
    graphs
}

/// A cycle in `graph`, as the list of modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            // Only modules of this graph count (`crate::Error` is an item, not a module).
            if graph.contains_key(next) || graph.values().any(|t| t.contains(next)) {
                if let Some(cycle) = visit(next, graph, done, stack) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut done, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

fn assert_acyclic(crate_name: &str, graphs: &BTreeMap<String, Graph>) {
    let mut cycles = Vec::new();
    for (scope, graph) in graphs {
        if let Some(cycle) = find_cycle(graph) {
            cycles.push(format!("{crate_name} {scope}: {}", cycle.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_library_modules_have_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graphs = graphs(&root, "lib.rs", &["bin"]);
    // The scan saw the layers it is meant to check.
    assert!(graphs["crate"]["store"].contains("manifest"));
    assert!(graphs["cache"]["l1"].contains("lru") || graphs["cache"]["lru"].contains("l1"));
    assert_acyclic("segstore", &graphs);
}

#[test]
fn the_cli_modules_have_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/segstore");
    let graphs = graphs(&root, "main.rs", &[]);
    assert!(
        graphs.contains_key("crate"),
        "the scan found the CLI's modules"
    );
    assert_acyclic("segstore (CLI)", &graphs);
}

#[test]
fn the_scan_finds_a_cycle_when_there_is_one() {
    let code = "use crate::{a::x, b};\nfn f() { super::c::y(); mycrate::d(); }";
    assert_eq!(
        first_segments(code, "crate::"),
        ["a", "b"].map(String::from).into()
    );
    assert_eq!(
        first_segments(code, "super::"),
        ["c"].map(String::from).into()
    );
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
}

/// The names between backticks in the paragraph of `docs/ARCHITECTURE.md`, section "1b",
/// that starts with `lead`, up to the sentence that starts with `until` (or the blank line).
fn listed_after(doc: &str, lead: &str, until: Option<&str>) -> BTreeSet<String> {
    let section = &doc[doc.find("## 1b. Public API").expect("section 1b")..];
    let at = section
        .find(lead)
        .unwrap_or_else(|| panic!("{lead:?} in 1b"));
    let text = &section[at + lead.len()..];
    let end = until
        .and_then(|u| text.find(u))
        .unwrap_or_else(|| text.find("\n\n").unwrap_or(text.len()));
    let text = &text[..end];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// `(name, public)` for every `mod` declared in `src/lib.rs`, and every name the root
/// re-exports with `pub use`.
fn lib_rs() -> (Vec<(String, bool)>, BTreeSet<String>) {
    let code = code_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"));
    let mut modules = Vec::new();
    for line in code.lines() {
        let line = line.trim();
        for (prefix, public) in [("pub mod ", true), ("mod ", false)] {
            if let Some(name) = line.strip_prefix(prefix).and_then(|r| r.strip_suffix(';')) {
                modules.push((name.to_owned(), public));
            }
        }
    }
    let mut exports = BTreeSet::new();
    let mut rest = &code[..];
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at..];
        let end = rest.find(';').expect("a `pub use` ends");
        let item = &rest["pub use ".len()..end];
        let names = match item.find('{') {
            Some(open) => item[open + 1..item.rfind('}').unwrap()].to_owned(),
            None => item.rsplit("::").next().unwrap().to_owned(),
        };
        for name in names.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                exports.insert(name.rsplit("::").next().unwrap().to_owned());
            }
        }
        rest = &rest[end..];
    }
    (modules, exports)
}

#[test]
fn the_public_api_listing_in_architecture_matches_lib_rs() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
    let (modules, exports) = lib_rs();
    let public: BTreeSet<String> = modules
        .iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| n.clone())
        .collect();
    let private: BTreeSet<String> = modules
        .iter()
        .filter(|(_, p)| !*p)
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        public.contains("store") && private.contains("error"),
        "{modules:?}"
    );

    let listed_exports = listed_after(&doc, "Crate root re-exports", None);
    assert_eq!(
        listed_exports, exports,
        "root re-exports: ARCHITECTURE vs src/lib.rs"
    );

    // The public paragraph names a module first, then the types it carries; only the
    // module names must match, so check both ways through the module list.
    let public_text = listed_after(&doc, "Public modules", Some("Private, reached"));
    let listed_public: BTreeSet<String> = public_text
        .into_iter()
        .filter(|name| public.contains(name) || private.contains(name))
        .collect();
    assert_eq!(
        listed_public, public,
        "public modules: ARCHITECTURE vs src/lib.rs"
    );
    let listed_private = listed_after(&doc, "Private, reached", Some("`tests/module_layers.rs`"));
    assert_eq!(
        listed_private, private,
        "private modules: ARCHITECTURE vs src/lib.rs"
    );
}
