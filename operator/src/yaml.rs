//! YAML that every common loader reads the same way.
//!
//! `serde_yaml` writes YAML 1.2: it quotes a string only when a YAML 1.2 reader would take it for
//! something else. Many readers of Vigil's files are YAML 1.1 loaders (PyYAML, Ansible, Go's
//! `yaml.v2` inside Prometheus and Alertmanager), and for them `=`, `<<`, `yes`, `on`, `NO`,
//! `1:20`, `1_000` or `2024-01-31` are not strings: `matchType: =` is an error to PyYAML. Every
//! file Vigil writes goes through [`to_string`], which single-quotes exactly those plain scalars
//! and leaves everything else as `serde_yaml` wrote it.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// `value` as YAML whose plain scalars mean the same under YAML 1.1 and YAML 1.2.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(value).map(|text| quote_yaml11_scalars(&text))
}

/// Plain scalars a YAML 1.1 loader resolves to something other than a string (the YAML 1.1 type
/// repository: bool, int, float, null, timestamp, merge and value).
static YAML11_IMPLICIT: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used, reason = "a constant pattern, exercised by the tests")]
    Regex::new(concat!(
        r"^(?:",
        r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        r"|[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
        r"|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+][0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        r"|~|null|Null|NULL|",
        r"|[0-9]{4}-[0-9]{2}-[0-9]{2}",
        r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?",
        r"|<<|=",
        r")$"
    ))
    .expect("valid regex")
});

/// Plain scalars that are not strings under YAML 1.2's core schema: what `serde_yaml` writes
/// for real numbers, booleans and nulls, which must stay as they are.
static YAML12_CORE: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(
        clippy::expect_used,
        reason = "a constant pattern, exercised by the tests"
    )]
    Regex::new(concat!(
        r"^(?:null|Null|NULL|~|true|True|TRUE|false|False|FALSE",
        r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
        r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?",
        r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$"
    ))
    .expect("valid regex")
});

/// A plain scalar that is a string to `serde_yaml` but not to a YAML 1.1 loader.
fn is_yaml11_trap(plain: &str) -> bool {
    !plain.is_empty() && YAML11_IMPLICIT.is_match(plain) && !YAML12_CORE.is_match(plain)
}

/// A plain scalar, single-quoted when a YAML 1.1 loader would read it as another type.
fn fix_plain(scalar: &str) -> std::borrow::Cow<'_, str> {
    if is_yaml11_trap(scalar) {
        // None of the trap patterns contains a quote, so no escaping is needed.
        format!("'{scalar}'").into()
    } else {
        scalar.into()
    }
}

/// Whether a node's text starts a quoted, flow, alias, anchor, tag or block scalar rather than a
/// plain scalar.
fn is_plain(node: &str) -> bool {
    !node.is_empty()
        && !matches!(
            node.as_bytes()[0],
            b'\'' | b'"' | b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>'
        )
}

/// Where a quoted key that starts `text` ends (the index after its closing quote).
fn quoted_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = *bytes.first()?;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Rewrites the block-style YAML `serde_yaml` emits (one node per line, no folding) so that the
/// plain scalars YAML 1.1 would misread are quoted. Block scalar content is left untouched.
fn quote_yaml11_scalars(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    // Column of the key or dash that opened a block scalar (`|`, `>`): deeper lines are content.
    let mut block: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = body.len() - body.trim_start_matches(' ').len();
        if let Some(column) = block {
            if body.trim().is_empty() || indent > column {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        let mut start = indent;
        while body[start..].starts_with("- ") {
            start += 2;
        }
        out.push_str(&body[..start]);
        let node = &body[start..];
        let column = start.saturating_sub(2).max(indent);
        // Split `key: value` (or `key:`) from a lone sequence item.
        let (key, value) = if node.starts_with('\'') || node.starts_with('"') {
            match quoted_end(node) {
                Some(end) if node[end..].starts_with(": ") => {
                    (Some(&node[..end]), Some(&node[end + 2..]))
                }
                Some(end) if &node[end..] == ":" => (Some(&node[..end]), None),
                _ => (None, Some(node)),
            }
        } else if let Some(at) = node.find(": ") {
            (Some(&node[..at]), Some(&node[at + 2..]))
        } else if let Some(k) = node.strip_suffix(':') {
            (Some(k), None)
        } else if node == "-" {
            (None, None)
        } else {
            (None, Some(node))
        };
        if node == "-" {
            out.push('-');
        }
        if let Some(key) = key {
            if is_plain(key) {
                out.push_str(&fix_plain(key));
            } else {
                out.push_str(key);
            }
            out.push(':');
            if value.is_some() {
                out.push(' ');
            }
        }
        if let Some(value) = value {
            if value.starts_with('|') || value.starts_with('>') {
                block = Some(if key.is_some() { start } else { column });
                out.push_str(value);
            } else if is_plain(value) {
                out.push_str(&fix_plain(value));
            } else {
                out.push_str(value);
            }
        }
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The traps YAML 1.1 loaders fall into are quoted; real numbers, booleans and nulls and
    /// ordinary strings are written as before.
    #[test]
    fn quotes_exactly_the_yaml11_traps() {
        for trap in [
            "=",
            "<<",
            "yes",
            "on",
            "Off",
            "NO",
            "y",
            "n",
            "1:20",
            "190:20:30",
            "1_000",
            "2024-01-31",
            "2001-12-14 21:59:43.10 -5",
        ] {
            let text = to_string(&BTreeMap::from([("k", trap)])).unwrap();
            assert_eq!(text, format!("k: '{trap}'\n"), "{trap}");
            let back: BTreeMap<String, String> = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back["k"], trap);
        }
        for plain in [
            "warning",
            "a=b",
            "http://x:9090/",
            "1.2.3",
            "v17.2",
            "-",
            "=~",
        ] {
            let text = to_string(&BTreeMap::from([("k", plain)])).unwrap();
            assert_eq!(
                text,
                serde_yaml::to_string(&BTreeMap::from([("k", plain)])).unwrap()
            );
        }
        let typed =
            serde_json::json!({"int": 1, "float": 0.5, "bool": true, "null": null, "text": "1"});
        assert_eq!(
            to_string(&typed).unwrap(),
            serde_yaml::to_string(&typed).unwrap()
        );
    }

    /// Keys, nested sequences and mappings inside sequences are covered; block scalar content is
    /// never touched.
    #[test]
    fn covers_keys_sequences_and_leaves_block_scalars_alone() {
        let value = serde_json::json!({
            "on": [{"matchType": "=", "y": ["yes", "no"]}],
            "nested": [["on", "x"]],
            "script": "line one\nmatchType: =\n- yes\n",
            "after": "off",
        });
        let text = to_string(&value).unwrap();
        let same: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(same, value, "{text}");
        assert!(text.contains("'on':"), "{text}");
        assert!(text.contains("matchType: '='"), "{text}");
        assert!(text.contains("- - 'on'"), "{text}");
        assert!(
            text.contains("  matchType: =\n"),
            "block content changed:\n{text}"
        );
        assert!(text.contains("after: 'off'"), "{text}");
    }
}
