//! The documentation's links hold: every relative link and image in `README.md`,
//! `ARCHITECTURE.md`, `k8s/README.md` and `docs/*.md` points at a file (or directory) that
//! exists, and every `#anchor` into a Markdown file names one of its headings. Properties
//! checked:
//! 1. The documents themselves: a broken link fails the test, naming the document and the link.
//! 2. The extractor finds inline links and images (also when the label wraps onto the next
//!    line) and reference definitions, and ignores code blocks, code spans and external links.
//! 3. Anchors follow GitHub's slugs: lowercase, spaces to `-`, punctuation other than `-` and `_`
//!    dropped, and a repeated heading gets `-1`, `-2`...
//! 4. The check itself fails on a missing file, a missing anchor in another file and in the
//!    same file, and passes when both exist (on documents written to a temporary directory).
//!
//! External (`http:`, `https:`, `mailto:`) links are never fetched: the test runs offline.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The documents whose links are checked, relative to the repository root.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![
        root.join("README.md"),
        root.join("ARCHITECTURE.md"),
        root.join("k8s/README.md"),
    ];
    let mut pages: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a readable entry of docs/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    docs
}

/// The text of a Markdown document with fenced code blocks blanked out (their lines kept
/// empty, so that line numbers stay right) and code spans removed.
fn prose(markdown: &str) -> String {
    let mut lines = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                fence = Some((m, run));
                lines.push(String::new());
            }
            (Some((m, n)), Some(c)) if c == m && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
                lines.push(String::new());
            }
            (Some(_), _) => lines.push(String::new()),
            (None, _) => lines.push(line.to_string()),
        }
    }
    // Code spans may wrap onto the next line, never across a blank line.
    lines
        .join("\n")
        .split("\n\n")
        .map(strip_code_spans)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Removes `code spans` (a run of backticks up to the next run of the same length); a run
/// with no partner is left as it is, as Markdown does.
fn strip_code_spans(block: &str) -> String {
    let chars: Vec<char> = block.chars().collect();
    let mut out = String::with_capacity(block.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    close = Some(j + other);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                // Keep the newlines a span held, so line numbers stay right.
                out.extend(chars[i..end].iter().filter(|c| **c == '\n'));
                i = end;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// One link found in a document: its target as written, and the line it is on.
#[derive(Debug, PartialEq)]
struct Link {
    target: String,
    line: usize,
}

/// The targets of the inline links and images (`[text](target)`, `![alt](target "title")`)
/// and reference definitions (`[label]: target`) of a document, outside code.
fn links(markdown: &str) -> Vec<Link> {
    let text = prose(markdown);
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("](") {
        let start = from + at + 2;
        // The target runs to the ')' that balances the '(' (targets may hold parentheses).
        let mut depth = 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'\n' {
            match bytes[end] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        if depth == 0 {
            let raw = text[start..end].trim();
            // `<a target with spaces>`, else the target up to an optional title.
            let target = match raw.strip_prefix('<').and_then(|r| r.split_once('>')) {
                Some((inside, _)) => inside,
                None => raw.split_whitespace().next().unwrap_or(""),
            };
            found.push(Link {
                target: target.to_string(),
                line: text[..start].matches('\n').count() + 1,
            });
        }
        from = start;
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix('[')
            && let Some(close) = rest.find("]:")
            && !rest[..close].is_empty()
            && !rest[..close].contains([']', '['])
            && let Some(target) = rest[close + 2..].split_whitespace().next()
        {
            found.push(Link {
                target: target
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string(),
                line: n + 1,
            });
        }
    }
    found.sort_by_key(|l| l.line);
    found
}

/// GitHub's anchor for a heading's text: lowercase, inline links reduced to their text,
/// spaces to '-', every other character that is not a letter, a digit, '-' or '_' dropped.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](url)` in a heading contributes its text only.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|c| after[c..].find(')').map(|e| (c, c + e)))
        {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a Markdown document offers: one per ATX heading outside code, repeated slugs
/// numbered as GitHub numbers them.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(markdown).lines() {
        let line = line.trim_start();
        let level = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&level) || !line[level..].starts_with([' ', '\t']) {
            continue;
        }
        let text = line[level..].trim().trim_end_matches('#').trim();
        let base = slug(text);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    ["http://", "https://", "mailto:", "ftp://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// Every broken relative link of `doc`, as `doc:line: link: what is wrong`, with paths shown
/// relative to `root`.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let text = match fs::read_to_string(doc) {
        Ok(text) => text,
        Err(e) => return vec![format!("{}: cannot be read: {e}", shown(doc))],
    };
    let mut problems = Vec::new();
    for link in links(&text) {
        if link.target.is_empty() || is_external(&link.target) {
            continue;
        }
        let (path, anchor) = match link.target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (link.target.as_str(), None),
        };
        let at = format!("{}:{}: ({})", shown(doc), link.line, link.target);
        let target = if path.is_empty() {
            doc.to_path_buf()
        } else if let Some(from_root) = path.strip_prefix('/') {
            root.join(from_root)
        } else {
            doc.parent().expect("a document has a directory").join(path)
        };
        if !target.exists() {
            problems.push(format!("{at}: {} does not exist", shown(&target)));
            continue;
        }
        let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
            continue;
        };
        if target.extension().is_none_or(|e| e != "md") {
            continue; // anchors into source files (#L10) or directories are not checked
        }
        let headings = anchors(&fs::read_to_string(&target).unwrap_or_default());
        if !headings.contains(&anchor.to_lowercase()) {
            problems.push(format!(
                "{at}: {} has no heading #{anchor} (it has: {})",
                shown(&target),
                headings.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

#[test]
fn every_relative_link_of_the_documentation_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = documents(root);
    assert!(
        docs.len() > 3,
        "docs/ holds the documentation's pages: found {docs:?}"
    );
    let problems: Vec<String> = docs.iter().flat_map(|d| broken_links(root, d)).collect();
    assert!(
        problems.is_empty(),
        "broken links in the documentation:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn links_are_found_in_prose_and_never_in_code() {
    let text = "\
# Title

See [the guide](docs/guide.md#set-up) and ![a chart](chart.svg \"Chart\"), also
[a label that
wraps](wrapped.md) and [parens](a_(b).md) and <[angle](<spaced name.md>)>.
Not `[code](in-a-span.md)`, nor ``[two](ticks.md)``, nor [web](https://example.com/x.md).

```sh
echo \"[fenced](in-a-block.md)\"
```

  ~~~
  [tilde](fenced-too.md)
  ~~~
[ref]: reference.md
";
    let found: Vec<(String, usize)> = links(text)
        .into_iter()
        .map(|l| (l.target, l.line))
        .collect();
    let expected = [
        ("docs/guide.md#set-up", 3),
        ("chart.svg", 3),
        ("wrapped.md", 5),
        ("a_(b).md", 5),
        ("spaced name.md", 5),
        ("https://example.com/x.md", 6),
        ("reference.md", 15),
    ];
    let expected: Vec<(String, usize)> =
        expected.iter().map(|(t, n)| (t.to_string(), *n)).collect();
    assert_eq!(found, expected);
    assert!(is_external("https://example.com/x.md"));
    assert!(!is_external("docs/guide.md"));
}

#[test]
fn anchors_follow_github_slugs() {
    assert_eq!(slug("How a ranking works"), "how-a-ranking-works");
    assert_eq!(
        slug("Durable state: the user's words survive"),
        "durable-state-the-users-words-survive"
    );
    assert_eq!(
        slug("Configuration: check and reload"),
        "configuration-check-and-reload"
    );
    assert_eq!(slug("`tactful bench` (load)"), "tactful-bench-load");
    assert_eq!(
        slug("snake_case and kebab-case"),
        "snake_case-and-kebab-case"
    );
    assert_eq!(slug("See [the docs](docs/x.md) now"), "see-the-docs-now");
    assert_eq!(slug("N = 1000 → 5000, 2×"), "n--1000--5000-2");
    let doc = "# Notes\n## Setup\n```\n## not a heading\n```\n## Setup\n#no-space\n### Setup ###\n";
    let expected: BTreeSet<String> = ["notes", "setup", "setup-1", "setup-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(anchors(doc), expected);
}

#[test]
fn the_check_names_the_document_and_the_link_it_cannot_follow() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("docs")).unwrap();
    fs::write(
        root.join("docs/good.md"),
        "# Good page\n## A section\nBack to [the top](#good-page).\n",
    )
    .unwrap();
    fs::write(
        root.join("README.md"),
        "# Readme\n\
         [ok](docs/good.md), [ok too](docs/good.md#a-section), [dir](docs/),\n\
         [gone](docs/missing.md), [no such heading](docs/good.md#elsewhere),\n\
         [not here](#nowhere), [root](/docs/good.md), [web](https://example.com/gone.md)\n",
    )
    .unwrap();
    assert_eq!(
        broken_links(root, &root.join("docs/good.md")),
        Vec::<String>::new()
    );
    let problems = broken_links(root, &root.join("README.md"));
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with("README.md:3: (docs/missing.md): docs/missing.md does not exist"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with(
            "README.md:3: (docs/good.md#elsewhere): docs/good.md has no heading #elsewhere"
        ),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].starts_with("README.md:4: (#nowhere): README.md has no heading #nowhere"),
        "{}",
        problems[2]
    );
}
