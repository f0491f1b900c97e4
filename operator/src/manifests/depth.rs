//! A linear pass over manifest text, before any YAML parsing, that bounds how deeply flow
//! collections (`[`, `{`) nest in each document.
//!
//! The YAML scanner under `serde_yaml` keeps one entry per open flow collection and walks all of
//! them for every token, so a document of `n` nested `[` costs `n²` (100 000 of them took 16 s)
//! before the deserialiser's own recursion limit ever sees it. Objects Vigil reads nest a few
//! levels; anything deeper than [`MAX_DEPTH`] is rejected here, naming the document and line.
//!
//! The pass tokenises just enough YAML to tell structure from text: comments, quoted scalars,
//! block scalars (`|`, `>`) and plain scalars are stepped over, so brackets in a PromQL
//! expression, a regex or a message do not count. It errs towards counting: a bracket it cannot
//! place (say, at the start of a plain scalar's continuation line) counts as an opening.

use std::fmt;

/// The deepest flow nesting accepted. `serde_yaml` stops at 128 levels of any nesting, so no
/// document deeper than this could have loaded anyway.
pub(super) const MAX_DEPTH: usize = 100;

/// A document whose flow collections nest deeper than [`MAX_DEPTH`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooDeep {
    /// 1-based, counted as the loader counts documents.
    pub document: usize,
    /// 1-based line of the opening bracket past the bound.
    pub line: usize,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "document {} nests collections more than {MAX_DEPTH} levels deep (line {}); \
             Vigil manifests nest a few levels",
            self.document, self.line
        )
    }
}

/// Checks every document of `text`; the first one too deep is the error. Runs in time linear in
/// the length of `text`.
pub(super) fn check(text: &str) -> Result<(), TooDeep> {
    Scanner {
        s: text.as_bytes(),
        i: 0,
        line: 1,
        line_start: 0,
        document: 1,
        seen_content: false,
        depth: 0,
    }
    .run()
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
    line_start: usize,
    document: usize,
    seen_content: bool,
    depth: usize,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_flow_indicator(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}')
}

impl Scanner<'_> {
    fn peek(&self, at: usize) -> Option<u8> {
        self.s.get(at).copied()
    }

    /// Blank, a line break or the end of the input at `at`.
    fn blank_or_end(&self, at: usize) -> bool {
        self.peek(at).is_none_or(is_blank)
    }

    fn newline(&mut self) {
        self.i += 1;
        self.line += 1;
        self.line_start = self.i;
    }

    fn column(&self) -> usize {
        self.i - self.line_start
    }

    /// Moves to the end of the current line (before its line break).
    fn skip_line(&mut self) {
        while self.peek(self.i).is_some_and(|b| b != b'\n') {
            self.i += 1;
        }
    }

    fn run(mut self) -> Result<(), TooDeep> {
        while let Some(b) = self.peek(self.i) {
            match b {
                b'\n' => self.newline(),
                b' ' | b'\t' | b'\r' => self.i += 1,
                _ if self.column() == 0 && self.marker() => {
                    // `---` or `...`: a new document starts with the next content.
                    if self.seen_content {
                        self.document += 1;
                        self.seen_content = false;
                    }
                    self.depth = 0;
                    self.i += 3;
                }
                b'%' if self.column() == 0 => self.skip_line(),
                b'#' if self.i == 0 || is_blank(self.s[self.i - 1]) => self.skip_line(),
                b'[' | b'{' => {
                    self.seen_content = true;
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(TooDeep {
                            document: self.document,
                            line: self.line,
                        });
                    }
                    self.i += 1;
                }
                b']' | b'}' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.i += 1;
                }
                b',' => self.i += 1,
                b'\'' => {
                    self.seen_content = true;
                    self.single_quoted();
                }
                b'"' => {
                    self.seen_content = true;
                    self.double_quoted();
                }
                b'|' | b'>' if self.depth == 0 => {
                    self.seen_content = true;
                    self.block_scalar();
                }
                b'-' | b'?' | b':' if self.blank_or_end(self.i + 1) => self.i += 1,
                b':' if self.depth > 0 && self.peek(self.i + 1).is_some_and(is_flow_indicator) => {
                    self.i += 1
                }
                _ => {
                    self.seen_content = true;
                    self.plain();
                }
            }
        }
        Ok(())
    }

    /// `---` or `...` at the start of a line, followed by a blank or the end.
    fn marker(&self) -> bool {
        let rest = &self.s[self.i..];
        (rest.starts_with(b"---") || rest.starts_with(b"...")) && self.blank_or_end(self.i + 3)
    }

    /// A plain scalar (or a tag, anchor or alias, which end the same way or sooner): up to
    /// `: `, ` #`, the line's end, or in a flow collection a flow indicator.
    fn plain(&mut self) {
        self.i += 1;
        while let Some(b) = self.peek(self.i) {
            let ends = match b {
                b'\n' => true,
                b':' => {
                    self.blank_or_end(self.i + 1)
                        || (self.depth > 0 && self.peek(self.i + 1).is_some_and(is_flow_indicator))
                }
                b'#' => is_blank(self.s[self.i - 1]),
                _ => self.depth > 0 && is_flow_indicator(b),
            };
            if ends {
                return;
            }
            self.i += 1;
        }
    }

    /// `'…'`, where `''` is a quote.
    fn single_quoted(&mut self) {
        self.i += 1;
        while let Some(b) = self.peek(self.i) {
            match b {
                b'\'' if self.peek(self.i + 1) == Some(b'\'') => self.i += 2,
                b'\'' => {
                    self.i += 1;
                    return;
                }
                b'\n' => self.newline(),
                _ => self.i += 1,
            }
        }
    }

    /// `"…"`, where a backslash escapes the next character.
    fn double_quoted(&mut self) {
        self.i += 1;
        while let Some(b) = self.peek(self.i) {
            match b {
                b'\\' if self.peek(self.i + 1) == Some(b'\n') => {
                    self.i += 1;
                    self.newline();
                }
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return;
                }
                b'\n' => self.newline(),
                _ => self.i += 1,
            }
        }
    }

    /// The column of the node a block scalar header on the current line belongs to: the key
    /// before it, or the last `- ` when the scalar is a sequence item. `None` at the top level.
    fn parent_indent(&self) -> Option<usize> {
        let line = &self.s[self.line_start..self.i];
        let mut col = line.iter().take_while(|&&b| b == b' ').count();
        let mut dash = None;
        while line.get(col) == Some(&b'-') && line.get(col + 1).is_none_or(|&b| b == b' ') {
            dash = Some(col);
            col += 1;
            col += line[col..].iter().take_while(|&&b| b == b' ').count();
        }
        if col >= line.len() {
            // Nothing but dashes before the header: the item's sequence is the parent.
            return dash;
        }
        if line[col..].starts_with(b"---") {
            return None;
        }
        Some(col)
    }

    /// `|` or `>`, its header, and every following line indented more than its parent.
    fn block_scalar(&mut self) {
        let parent = self.parent_indent();
        self.i += 1;
        let mut explicit = None;
        while let Some(b) = self.peek(self.i) {
            match b {
                b'1'..=b'9' => explicit = Some(usize::from(b - b'0')),
                b'+' | b'-' => {}
                _ => break,
            }
            self.i += 1;
        }
        // The rest of the header line is blanks and a comment.
        self.skip_line();
        let mut content = explicit.map(|d| parent.map_or(d, |p| p + d));
        while self.peek(self.i) == Some(b'\n') {
            let next = self.i + 1;
            let spaces = self.s[next..].iter().take_while(|&&b| b == b' ').count();
            let after = self.peek(next + spaces);
            if after.is_none() {
                return;
            }
            if matches!(after, Some(b'\n' | b'\r')) {
                // A blank line belongs to the scalar.
                self.newline();
                self.skip_line();
                continue;
            }
            let inside = match content {
                Some(indent) => spaces >= indent,
                None if parent.is_none_or(|p| spaces > p) => {
                    content = Some(spaces);
                    true
                }
                None => false,
            };
            if !inside || (spaces == 0 && self.s[next..].starts_with(b"---")) {
                return;
            }
            self.newline();
            self.skip_line();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check, TooDeep, MAX_DEPTH};

    fn nested(depth: usize) -> String {
        format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn accepts_nesting_up_to_the_bound() {
        assert_eq!(check(&nested(MAX_DEPTH)), Ok(()));
        assert_eq!(
            check(&nested(MAX_DEPTH + 1)),
            Err(TooDeep {
                document: 1,
                line: 1
            })
        );
    }

    #[test]
    fn names_the_document_and_line() {
        let text = format!("---\na: 1\n---\n# c\nb: 2\n...\n---\nc:\n  {}", nested(200));
        assert_eq!(
            check(&text),
            Err(TooDeep {
                document: 3,
                line: 9
            })
        );
        // A leading marker and an empty document do not count as documents.
        let text = format!("---\n---\n{}", nested(200));
        assert_eq!(check(&text).map_err(|e| e.document), Err(1));
    }

    #[test]
    fn brackets_in_text_do_not_count() {
        let many = "[".repeat(300);
        let cases = [
            format!("expr: sum(rate(x{many}5m]))\n"),
            format!("a: '{many} it''s'\nb: [1]\n"),
            format!("a: \"{many} \\\" {many}\"\nb: [1]\n"),
            format!("a: 1 # {many}\n"),
            format!("a: |\n  {many}\n  'x\n\n  {many}\nb: [c, d]\n"),
            format!("- a: >-\n    {many}\n  b: |2\n      {many}\n- |\n  {many}\n"),
            format!("a: [b, 'c{many}', \"{many}\", {{d: e}}]\n"),
        ];
        for text in cases {
            assert_eq!(check(&text), Ok(()), "{text}");
        }
    }

    #[test]
    fn structure_after_text_still_counts() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        let cases = [
            format!("a: |\n  x\nb: {deep}\n"),
            format!("- a: |\n    x\n  b: {deep}\n"),
            format!("a: 'x'\nb: {deep}\n"),
            format!("a: \"x\\\"\"\nb: {deep}\n"),
            format!("a: don't\nb: {deep}\n"),
            format!("a: [x: y, 'z']\nb: {deep}\n"),
        ];
        for text in cases {
            assert!(check(&text).is_err(), "{text}");
        }
    }

    /// 100 000 nested brackets are rejected (the pass is linear; no time is asserted).
    #[test]
    fn rejects_a_very_deep_document() {
        let text = format!("a: {}", "[".repeat(100_000));
        assert_eq!(
            check(&text),
            Err(TooDeep {
                document: 1,
                line: 1
            })
        );
    }
}
