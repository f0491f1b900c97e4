//! PromQL parsing for every expression Vigil reads or writes: the user's own (`promql.expr`,
//! `anomaly.query`, SLI queries), checked by `vigil-operator check`, the `/validate` webhook
//! and the controllers' status, and every expression the renderers build, checked before a
//! rule file is written — so one bad expression never reaches a rule file that Prometheus
//! loads together with other namespaces' rules (a plain Prometheus refuses the whole reload).
//!
//! The parser is GreptimeTeam's `promql-parser`, a port of Prometheus' own grammar. It answers
//! most syntax errors with a generic "invalid promql query"; [`parse_error`] then finds the
//! first piece of the expression after which no completion parses, and names it.

use super::rules::{Rule, RuleFile};

/// What the SLI placeholder `{{.window}}` is replaced with before parsing.
const SAMPLE_WINDOW: &str = "5m";

/// The parser's message for any syntax error it does not describe further.
const GENERIC_ERROR: &str = "invalid promql query";

/// Why `expr` is not valid PromQL, or `None` when it parses. `{{.window}}` placeholders are
/// read as a range such as `5m`.
pub fn parse_error(expr: &str) -> Option<String> {
    let expr = expr.replace("{{.window}}", SAMPLE_WINDOW);
    let error = promql_parser::parser::parse(&expr).err()?;
    if error != GENERIC_ERROR {
        return Some(error);
    }
    Some(locate(&expr).unwrap_or(error))
}

/// Text appended to a prefix of an expression (then closed with the brackets it leaves open)
/// to see whether the prefix can still become valid.
const COMPLETIONS: [&str; 12] = [
    "",
    " x",
    " 1",
    " 5m",
    "=\"\"",
    "\"\"",
    " (x)",
    " (x) (y)",
    " x[5m]",
    "[5m]",
    " on() x",
    " by (x) (y)",
];

/// The closing brackets of every bracket `text` leaves open, innermost first.
fn closers(text: &str) -> String {
    let mut open = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' => open.push(')'),
            '[' => open.push(']'),
            '{' => open.push('}'),
            ')' | ']' | '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    let mut out: String = quote.map(String::from).unwrap_or_default();
    out.extend(open.iter().rev());
    out
}

/// The first piece of `expr` that no completion can follow, as `unexpected … "piece"`, or
/// `unexpected end of input` when every prefix could still be completed.
fn locate(expr: &str) -> Option<String> {
    let viable = |prefix: &str| {
        COMPLETIONS.iter().any(|tail| {
            let candidate = format!("{prefix}{tail}");
            let closed = format!("{candidate}{}", closers(&candidate));
            promql_parser::parser::parse(&closed).is_ok()
        })
    };
    let pieces = pieces(expr);
    if pieces.is_empty() {
        return None;
    }
    for (start, end) in pieces {
        if !viable(&expr[..end]) {
            let piece = &expr[start..end];
            let what = if piece.chars().all(|c| c.is_ascii_digit() || c == '.') {
                "number"
            } else if piece
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                "identifier"
            } else {
                "token"
            };
            return Some(format!(
                "unexpected {what} {piece:?} at character {}",
                start + 1
            ));
        }
    }
    Some("unexpected end of input".to_owned())
}

/// Byte ranges of the pieces of `expr`: words (names, numbers, durations), quoted strings, and
/// runs of other symbols, with brackets and commas each a piece of their own.
fn pieces(expr: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = expr.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(expr.len(), |(at, _)| *at);
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | ':' | '.');
    let single = |c: char| matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | ',');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let mut j = i + 1;
        if c.is_whitespace() {
            i = j;
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            while j < chars.len() && chars[j].1 != c {
                if chars[j].1 == '\\' && c != '`' {
                    j += 1;
                }
                j += 1;
            }
            j = (j + 1).min(chars.len());
        } else if word(c) {
            while j < chars.len() && word(chars[j].1) {
                j += 1;
            }
        } else if !single(c) {
            while j < chars.len() {
                let n = chars[j].1;
                if n.is_whitespace() || word(n) || single(n) || matches!(n, '"' | '\'' | '`') {
                    break;
                }
                j += 1;
            }
        }
        out.push((start, end_of(j)));
        i = j;
    }
    out
}

/// An expression a renderer built that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadExpression {
    /// The alert or recorded series whose expression it is.
    pub rule: String,
    /// What the parser said.
    pub message: String,
}

impl std::fmt::Display for BadExpression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rendered rule {} has an invalid expression: {}",
            self.rule, self.message
        )
    }
}

/// The first rule of `file` whose expression does not parse.
pub fn check_rule_file(file: &RuleFile) -> Result<(), BadExpression> {
    for rule in file.groups.iter().flat_map(|g| &g.rules) {
        let (name, expr) = match rule {
            Rule::Recording(r) => (&r.record, &r.expr),
            Rule::Alerting(a) => (&a.alert, &a.expr),
        };
        if let Some(message) = parse_error(expr) {
            return Err(BadExpression {
                rule: name.clone(),
                message,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_error;

    /// A trailing stray word is named with its position instead of the parser's generic error.
    #[test]
    fn stray_identifier_is_named() {
        assert_eq!(
            parse_error("sum(rate(errors_total[5m])) > bogus bogus").as_deref(),
            Some("unexpected identifier \"bogus\" at character 37")
        );
    }

    /// Valid expressions, including SLI templates and the shapes the renderers write, parse.
    #[test]
    fn valid_expressions_parse() {
        for expr in [
            "up",
            "sum(rate(jobs_total{result=\"ok\"}[{{.window}}]))",
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 1.5",
            "max without (alertstate) (max_over_time(ALERTS{a=\"b\"}[1h] offset 5m)) unless on () y",
        ] {
            assert_eq!(parse_error(expr), None, "{expr}");
        }
    }

    /// Other syntax errors keep a message that says what is wrong.
    #[test]
    fn other_errors_say_what_is_wrong() {
        assert_eq!(
            parse_error("rate(x[5m]").as_deref(),
            Some("unclosed left parenthesis")
        );
        assert_eq!(
            parse_error("foo +").as_deref(),
            Some("unexpected end of input")
        );
        assert_eq!(
            parse_error("foo ) bar").as_deref(),
            Some("unexpected right parenthesis ')'")
        );
    }
}
