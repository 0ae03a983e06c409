//! docs/clients.md against the `.proto` files: every field, enum value, message, service and
//! method its Go and Java snippets name must exist in `proto/tactful/v1/`, under the name the
//! generators derive from it (protoc-gen-go's `GoCamelCase`, protoc's Java camel case). The
//! snippets are not compiled (no Go or Java toolchain here); this catches a renamed field or a
//! misspelled one, which is how such pages usually rot.

use std::collections::BTreeSet;
use std::path::Path;

#[derive(Default)]
struct Protos {
    messages: BTreeSet<String>,
    enums: BTreeSet<String>,
    /// `(enum, VALUE)`.
    values: BTreeSet<(String, String)>,
    services: BTreeSet<String>,
    methods: BTreeSet<String>,
    fields: BTreeSet<String>,
}

fn protos() -> Protos {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/tactful/v1");
    let mut p = Protos::default();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut current_enum = None;
        for line in text.lines() {
            let line = line.split("//").next().unwrap().trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["message", name, ..] => {
                    p.messages.insert(name.to_string());
                }
                ["enum", name, ..] => {
                    p.enums.insert(name.to_string());
                    current_enum = Some(name.to_string());
                }
                ["service", name, ..] => {
                    p.services.insert(name.to_string());
                }
                ["rpc", rest @ ..] => {
                    let name = rest.join(" ");
                    p.methods
                        .insert(name.split('(').next().unwrap().trim().to_string());
                }
                ["}"] => current_enum = None,
                [value, "=", _] if current_enum.is_some() => {
                    let e = current_enum.clone().unwrap();
                    p.values.insert((e, value.to_string()));
                }
                [.., name, "=", n] if n.ends_with(';') && words.len() >= 4 => {
                    p.fields.insert(name.to_string());
                }
                _ => {}
            }
        }
    }
    p
}

/// protoc-gen-go's GoCamelCase for the names in these protos (no dots, no leading `_`).
fn go_camel(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'_' && i + 1 < b.len() && b[i + 1].is_ascii_lowercase() {
        } else if c.is_ascii_digit() {
            out.push(c as char);
        } else {
            out.push(c.to_ascii_uppercase() as char);
            while i + 1 < b.len() && b[i + 1].is_ascii_lowercase() {
                i += 1;
                out.push(b[i] as char);
            }
        }
        i += 1;
    }
    out
}

/// protoc's Java accessor stem: a letter after `_` or a digit is capitalised, as is the first.
fn java_camel(name: &str) -> String {
    let mut out = String::new();
    let mut cap = true;
    for c in name.chars() {
        if c == '_' {
            cap = true;
        } else if c.is_ascii_digit() {
            out.push(c);
            cap = true;
        } else {
            out.push(if cap { c.to_ascii_uppercase() } else { c });
            cap = false;
        }
    }
    out
}

/// The code blocks of `lang` in a markdown text.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Identifiers (`[A-Za-z0-9_]+`) following each occurrence of `prefix`.
fn after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Keys of Go composite literals of tactfulv1 types (`UserId:` in `&tactfulv1.RankRequest{UserId:
/// ...}`, and in elided element literals inside a tactfulv1 slice).
fn go_literal_keys(code: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut stack: Vec<bool> = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '{' => {
                let before: String = chars[..i].iter().collect();
                let trimmed = before.trim_end();
                let typed = trimmed
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .next()
                    .unwrap_or("");
                let elided = trimmed.ends_with('{') || trimmed.ends_with(',');
                let inherited = elided && stack.last().copied().unwrap_or(false);
                stack.push(typed.starts_with("tactfulv1.") || inherited);
            }
            '}' => {
                stack.pop();
            }
            ':' if stack.last().copied().unwrap_or(false) && chars.get(i + 1) == Some(&' ') => {
                let before: String = chars[..i].iter().collect();
                let key = before
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")
                    .to_string();
                if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                    keys.push(key);
                }
            }
            _ => {}
        }
    }
    keys
}

fn page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/clients.md")).unwrap()
}

#[test]
fn the_name_rules_are_the_generators() {
    assert_eq!(go_camel("embedding_f32le"), "EmbeddingF32Le");
    assert_eq!(go_camel("user_id"), "UserId");
    assert_eq!(go_camel("k"), "K");
    assert_eq!(java_camel("embedding_f32le"), "EmbeddingF32Le");
    assert_eq!(java_camel("utc_offset_minutes"), "UtcOffsetMinutes");
    let p = protos();
    assert!(p.fields.contains("embedding_f32le") && p.fields.contains("item_id"));
    assert!(
        p.values
            .contains(&("DataDimension".into(), "DATA_DIMENSION_BROWSING".into()))
    );
    assert!(p.services.contains("Ranker") && p.methods.contains("Rank"));
    let keys = go_literal_keys(
        "x := &tactfulv1.RankRequest{UserId: u, Candidates: []*tactfulv1.Candidate{{ItemId: 1}}}\n\
         y := keepalive.ClientParameters{Time: t}",
    );
    assert_eq!(keys, ["UserId", "Candidates", "ItemId"]);
}

#[test]
fn the_go_snippets_name_only_what_the_protos_generate() {
    let p = protos();
    let go_fields: BTreeSet<String> = p.fields.iter().map(|f| go_camel(f)).collect();
    let code = blocks(&page(), "go").join("\n");
    assert!(!code.is_empty());
    let mut problems = Vec::new();
    for key in go_literal_keys(&code) {
        if !go_fields.contains(&key) {
            problems.push(format!("Go field {key} is no field of the protos"));
        }
    }
    for getter in after(&code, ".Get") {
        if !go_fields.contains(getter) {
            problems.push(format!("Go getter Get{getter} is no field of the protos"));
        }
    }
    for name in after(&code, "tactfulv1.") {
        let ok = p.messages.contains(name)
            || p.enums.contains(name)
            || name
                .strip_prefix("New")
                .and_then(|n| n.strip_suffix("Client"))
                .is_some_and(|s| p.services.contains(s))
            || name
                .strip_suffix("Client")
                .is_some_and(|s| p.services.contains(s))
            || name
                .split_once('_')
                .is_some_and(|(e, v)| p.values.contains(&(e.to_string(), v.to_string())));
        if !ok {
            problems.push(format!("tactfulv1.{name} is not generated from the protos"));
        }
    }
    for call in after(&code, "ranker.") {
        if !p.methods.contains(call) {
            problems.push(format!("ranker.{call}: no such method"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_java_snippets_name_only_what_the_protos_generate() {
    let p = protos();
    let java_fields: BTreeSet<String> = p.fields.iter().map(|f| java_camel(f)).collect();
    let code = blocks(&page(), "java").join("\n");
    assert!(!code.is_empty());
    let mut problems = Vec::new();
    for prefix in [".set", ".addAll", ".add"] {
        for stem in after(&code, prefix) {
            if prefix == ".add" && stem.starts_with("All") {
                continue; // an .addAll, checked as such
            }
            if !java_fields.contains(stem) {
                problems.push(format!("Java builder method {prefix}{stem} names no field"));
            }
        }
    }
    for class in code
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|w| w.strip_suffix("Grpc"))
    {
        if !p.services.contains(class) {
            problems.push(format!("{class}Grpc: no service {class}"));
        }
    }
    for (i, _) in code.match_indices(".newBuilder()") {
        let class = code[..i]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap();
        if !p.messages.contains(class) {
            problems.push(format!("{class}.newBuilder(): no message {class}"));
        }
    }
    for value in after(&code, "DataDimension.") {
        if !p
            .values
            .contains(&("DataDimension".to_string(), value.to_string()))
        {
            problems.push(format!("DataDimension.{value}: no such value"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
