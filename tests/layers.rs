//! The layering rule of `src/lib.rs`, checked from the source: every
//! `crate::…` path in `src/` (and every `super::` path that reaches a sibling
//! file) is an arrow from one file to another; an arrow from a lower layer to
//! a higher one, or a circle of files outside `store/`, fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom; a room may import only rooms on a lower line (or itself).
/// Keep in step with the module map in `src/lib.rs`.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["cli"],
    &["lib", "reload"],
    &["router", "scheduler", "server"],
    &["handlers"],
    &["lifecycle"],
    &["app"],
    &["sync", "reviews"],
    &["alerts", "outbox", "identity"],
    &["slack", "sources", "provision"],
    &["store"],
    &["domain"],
    &["slack_api"],
    &["net", "metrics", "limit"],
    &["config"],
];

/// Arrows that run back up on purpose: (from file, to room, why).
/// Empty today; an entry needs a reason a reviewer accepts.
const ALLOWED_UP: &[(&str, &str, &str)] = &[];

/// Rooms whose files may import each other in a circle: the store's
/// bookkeeping of effects sits behind one facade.
const KNOTS_ALLOWED_IN: &[&str] = &["store"];

fn layer_of(room: &str) -> Option<usize> {
    let from_top = LAYERS.iter().position(|rooms| rooms.contains(&room))?;
    Some(LAYERS.len() - from_top)
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs` → `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The room a file lives in: its first folder, or its own name.
fn room_of(relative: &str) -> String {
    let first = relative
        .trim_start_matches("src/")
        .split('/')
        .next()
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// Source text with comments and string literals blanked out, so doc links
/// and messages are not read as imports.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(bytes.len(), |e| i + e + 4);
            i = end;
            out.push(' ');
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if bytes[i] == b'\'' && bytes.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"'; lifetimes have no closing quote.
            out.push_str("' '");
            i += 3;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every path a `prefix::` (or `prefix::{…}`) names, as segments; braces are
/// expanded one level per item, which is enough to find the file.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let needle = format!("{prefix}::");
    let mut start = 0;
    while let Some(at) = code[start..].find(&needle) {
        let begin = start + at;
        start = begin + needle.len();
        let before = code[..begin].chars().next_back().unwrap_or(' ');
        if before.is_alphanumeric() || before == '_' || before == ':' && prefix == "super" {
            continue;
        }
        expand(&code[start..], &mut Vec::new(), &mut found);
    }
    found
}

fn expand(rest: &str, head: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item_start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&inner[item_start..i], head, found);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[item_start..i], head, found);
                    item_start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident = ident_at(rest);
    if ident.is_empty() || ident == "self" {
        if !head.is_empty() {
            found.push(head.clone());
        }
        return;
    }
    head.push(ident.to_string());
    let after = rest[ident.len()..].trim_start();
    if let Some(next) = after.strip_prefix("::") {
        expand(next, head, found);
    } else {
        found.push(head.clone());
    }
    head.pop();
}

struct Tree {
    /// Module path → file (relative to the crate root, `src/…`).
    files: BTreeMap<Vec<String>, String>,
}

impl Tree {
    /// The file that defines the longest prefix of `path`.
    fn resolve(&self, path: &[String]) -> Option<&String> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.files.get(&path[..n]))
    }
}

struct Arrow {
    from: String,
    to: String,
}

fn arrows() -> (Tree, Vec<Arrow>) {
    let src = src_dir();
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let root = src.parent().expect("src/ has a parent").to_path_buf();
    let mut tree = Tree {
        files: BTreeMap::new(),
    };
    let mut texts = Vec::new();
    for path in &paths {
        let relative = path
            .strip_prefix(&src)
            .expect("file under src/")
            .to_path_buf();
        let shown = path
            .strip_prefix(&root)
            .expect("file under the crate")
            .to_string_lossy()
            .replace('\\', "/");
        let module = module_path(&relative);
        if relative != Path::new("main.rs") {
            tree.files.insert(module.clone(), shown.clone());
        }
        let text = std::fs::read_to_string(path).expect("source is UTF-8");
        texts.push((shown, module, code_only(&text)));
    }
    let mut arrows = Vec::new();
    for (file, module, code) in &texts {
        let mut targets = BTreeSet::new();
        for path in paths_after(code, "crate") {
            if let Some(to) = tree.resolve(&path) {
                targets.insert(to.clone());
            }
        }
        // `main.rs` is its own crate and reaches the library as `accessd::`.
        if file == "src/main.rs" {
            for path in paths_after(code, "accessd") {
                if let Some(to) = tree.resolve(&path) {
                    targets.insert(to.clone());
                }
            }
        }
        // `super::x` from a file reaches a sibling only when `x` is a file;
        // otherwise it is the file's own parent or, from an inline test
        // module, the file itself.
        let parent = &module[..module.len().saturating_sub(1)];
        for path in paths_after(code, "super") {
            let mut full = parent.to_vec();
            full.extend(path);
            if let Some(to) = tree.resolve(&full) {
                if tree.files.get(parent) != Some(to) {
                    targets.insert(to.clone());
                }
            }
        }
        targets.remove(file);
        for to in targets {
            arrows.push(Arrow {
                from: file.clone(),
                to,
            });
        }
    }
    (tree, arrows)
}

#[test]
fn every_file_is_on_a_layer() {
    let (tree, _) = arrows();
    let unplaced: Vec<_> = tree
        .files
        .values()
        .filter(|f| layer_of(&room_of(f)).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "files in no layer (add their room to LAYERS in tests/layers.rs and to src/lib.rs): {unplaced:?}"
    );
}

#[test]
fn no_lower_layer_names_a_higher_one() {
    let (_, arrows) = arrows();
    assert!(arrows.len() > 100, "the parser found too few imports");
    let mut upward = Vec::new();
    for arrow in &arrows {
        let (from_room, to_room) = (room_of(&arrow.from), room_of(&arrow.to));
        let (Some(from), Some(to)) = (layer_of(&from_room), layer_of(&to_room)) else {
            continue;
        };
        let allowed = ALLOWED_UP
            .iter()
            .any(|(file, room, _)| *file == arrow.from && *room == to_room);
        let lateral = from == to && from_room != to_room;
        if (to > from || lateral) && !allowed {
            upward.push(format!("{} -> {}", arrow.from, arrow.to));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up (or sideways between rooms of one layer):\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn no_handler_calls_another() {
    let (_, arrows) = arrows();
    // What the surfaces share lives in mod.rs, tell.rs and who.rs.
    let shared = [
        "src/handlers/mod.rs",
        "src/handlers/tell.rs",
        "src/handlers/who.rs",
    ];
    let lateral: Vec<_> = arrows
        .iter()
        .filter(|a| a.from.starts_with("src/handlers/") && a.to.starts_with("src/handlers/"))
        .filter(|a| !shared.contains(&a.to.as_str()) && !a.from.ends_with("/mod.rs"))
        .filter(|a| {
            // A surface split over a folder may use its own files.
            let folder = |f: &str| f.rsplit_once('/').map(|(d, _)| d.to_string());
            folder(&a.from) != folder(&a.to) || folder(&a.from).as_deref() == Some("src/handlers")
        })
        .map(|a| format!("{} -> {}", a.from, a.to))
        .collect();
    assert!(
        lateral.is_empty(),
        "a handler imports another surface:\n  {}",
        lateral.join("\n  ")
    );
}

#[test]
fn no_circle_outside_the_store() {
    let (tree, arrows) = arrows();
    let files: Vec<&String> = tree.files.values().collect();
    let index: BTreeMap<&String, usize> = files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let mut next = vec![Vec::new(); files.len()];
    for arrow in &arrows {
        if let (Some(&a), Some(&b)) = (index.get(&arrow.from), index.get(&arrow.to)) {
            next[a].push(b);
        }
    }
    let circles: Vec<Vec<&String>> = strongly_connected(&next)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|i| files[i]).collect())
        .collect();
    let outside: Vec<_> = circles
        .iter()
        .filter(|c| {
            !c.iter()
                .all(|f| KNOTS_ALLOWED_IN.contains(&room_of(f).as_str()))
        })
        .collect();
    assert!(outside.is_empty(), "import circles: {outside:#?}");
}

/// Tarjan's algorithm, iterative so a deep graph cannot overflow the stack.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = next.len();
    let (mut index, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut out) = (vec![false; n], Vec::new(), Vec::new());
    let mut counter = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if *child == 0 {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = next[v].get(*child) {
                *child += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}
