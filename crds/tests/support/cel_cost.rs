//! A conservative model of the static cost a Kubernetes API server gives a CEL rule of a CRD
//! (`x-kubernetes-validations`) when the CRD is created or updated.
//!
//! What the real thing does: the API server type-checks each rule against the CRD's schema and
//! asks cel-go's cost estimator (`checker/cost.go`), with Kubernetes' size estimator
//! (`apiextensions-apiserver/pkg/apiserver/schema/cel`) and library costs
//! (`apiserver/pkg/cel/library/cost.go`), for the worst case. Strings cost 0.1 per byte they are
//! traversed, a string with `maxLength: n` counts as `4n` bytes (a code point may take four),
//! a string, list or map without a bound counts as large as a 3 MiB request allows, and
//! comprehensions (`all`, `exists`, `filter`…) cost their list's size times their body.
//!
//! What this model does not do, and why that errs on the safe side: it has no type checker, so
//! `startsWith`/`endsWith` are charged for the target string as well as the prefix, every field
//! selection costs 1 even where cel-go charges 0, and a function it has no figure for is an
//! error rather than a guess. It never returns less than the server's figure for the rules it
//! accepts; `cel_budget.rs` checks it against the figures a v1.28 server reported.

use serde_json::Value;

/// The request size the server assumes when a schema gives no bound (`DefaultMaxRequestSizeBytes`).
pub const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;
/// Per-rule limit on estimated cost times cardinality (`StaticEstimatedCostLimit`).
pub const RULE_LIMIT: u64 = 10_000_000;
/// Limit on the sum over one CRD version's schema (`StaticEstimatedCRDCostLimit`).
pub const CRD_LIMIT: u64 = 100_000_000;

/// cel-go's `StringTraversalCostFactor`.
const STRING_TRAVERSAL: f64 = 0.1;
/// cel-go's `RegexStringLengthCostFactor`.
const REGEX_LENGTH: f64 = 0.25;
/// cel-go's `ListCreateBaseCost`.
const LIST_CREATE: u64 = 10;
/// cel-go's `MapCreateBaseCost`.
const MAP_CREATE: u64 = 30;
/// Per-iteration cost of a comprehension's accumulator (loop condition, step and list append,
/// at most 14 in cel-go's macros), rounded up.
const COMPREHENSION_STEP: u64 = 16;
/// A comprehension's accumulator initialisation and result (at most 11 in cel-go), rounded up.
const COMPREHENSION_FIXED: u64 = 12;

/// The estimated worst-case cost of `rule` evaluated with `self` bound to `node`, a schema
/// node of a CRD; an error names what the model cannot cost.
pub fn rule_cost(rule: &str, node: &Value) -> Result<u64, String> {
    let expr = Parser::new(rule)?.parse()?;
    let mut scope = vec![
        ("self".to_owned(), Ty::Schema(node)),
        ("oldSelf".to_owned(), Ty::Schema(node)),
    ];
    Ok(cost(&expr, &mut scope)?.0)
}

/// The greatest size (CEL `size()`: bytes of a string, items of a list, entries of a map) the
/// server assumes for values of `schema`.
pub fn max_size(schema: &Value) -> u64 {
    let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
    if is_int_or_string(schema) {
        // Kubernetes ignores maxLength here: int-or-string is `dyn` sized by the request.
        return MAX_REQUEST_BYTES - 2;
    }
    match type_of(schema) {
        "string" => match schema.get("format").and_then(Value::as_str) {
            Some("date-time" | "date" | "duration") => 1,
            _ => bound("maxLength").map_or(MAX_REQUEST_BYTES - 2, |n| n.saturating_mul(4)),
        },
        "array" => bound("maxItems").unwrap_or_else(|| {
            let item = schema.get("items").map_or(1, min_serialized_size);
            (MAX_REQUEST_BYTES - 2) / (item + 1)
        }),
        "object" if map_values(schema).is_some() => bound("maxProperties").unwrap_or_else(|| {
            let value = map_values(schema).map_or(1, min_serialized_size);
            (MAX_REQUEST_BYTES - 2) / (value + 6)
        }),
        "boolean" | "integer" | "number" => 1,
        _ => u64::MAX,
    }
}

/// How many times a node could appear in one object when an enclosing list or map has no
/// bound: as many of its smallest serialisation as fit in a request (`MaxCardinality`).
pub fn unbounded_cardinality(node: &Value) -> u64 {
    MAX_REQUEST_BYTES / (min_serialized_size(node) + 1)
}

/// The fewest bytes a value of `schema` takes in JSON, as the server counts it; never more
/// than the server's figure (smaller sizes mean more repetitions, so a higher estimate).
pub fn min_serialized_size(schema: &Value) -> u64 {
    if is_int_or_string(schema) {
        return 1;
    }
    match type_of(schema) {
        "string" | "array" => 2,
        "object" if map_values(schema).is_some() => 2,
        "object" => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let properties = schema.get("properties").and_then(Value::as_object);
            2 + properties
                .into_iter()
                .flatten()
                .filter(|(name, prop)| {
                    required.contains(&name.as_str()) && prop.get("default").is_none()
                })
                .map(|(name, prop)| name.len() as u64 + min_serialized_size(prop) + 4)
                .sum::<u64>()
        }
        _ => 1,
    }
}

/// The schema of a map's values (`additionalProperties`), if `schema` is a map.
pub fn map_values(schema: &Value) -> Option<&Value> {
    schema.get("additionalProperties").filter(|a| a.is_object())
}

/// Whether `schema` is `x-kubernetes-int-or-string`.
pub fn is_int_or_string(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
}

fn type_of(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

// ---- types -------------------------------------------------------------------------------

/// What the model knows about a value: a schema node, or the size of a value the rule built.
#[derive(Clone, Debug)]
enum Ty<'a> {
    Schema(&'a Value),
    /// A string of at most this many bytes.
    Str(u64),
    /// A list or map of at most this many entries, with entries of this type.
    List(u64, Box<Ty<'a>>),
    /// Booleans, numbers, null, timestamps: size 1.
    Scalar,
    /// Size unknown: cel-go then assumes the largest possible.
    Unknown,
}

impl<'a> Ty<'a> {
    fn size(&self) -> u64 {
        match self {
            Ty::Schema(s) => max_size(s),
            Ty::Str(n) | Ty::List(n, _) => *n,
            Ty::Scalar => 1,
            Ty::Unknown => u64::MAX,
        }
    }

    fn is_string(&self) -> bool {
        match self {
            Ty::Schema(s) => type_of(s) == "string" || is_int_or_string(s),
            Ty::Str(_) => true,
            _ => false,
        }
    }

    fn is_list(&self) -> bool {
        match self {
            Ty::Schema(s) => type_of(s) == "array",
            Ty::List(..) => true,
            _ => false,
        }
    }

    /// The field `name` of an object, or a map's value.
    fn field(&self, name: &str) -> Result<Ty<'a>, String> {
        match self {
            Ty::Schema(s) => {
                if let Some(prop) = s.get("properties").and_then(|p| p.get(name)) {
                    Ok(Ty::Schema(prop))
                } else if let Some(values) = map_values(s) {
                    Ok(Ty::Schema(values))
                } else {
                    Err(format!("no field {name:?} in the schema"))
                }
            }
            Ty::List(_, entry) => Ok((**entry).clone()),
            _ => Ok(Ty::Unknown),
        }
    }

    /// What a comprehension's variable ranges over: a list's items or a map's keys.
    fn element(&self) -> Ty<'a> {
        match self {
            Ty::Schema(s) if type_of(s) == "array" => {
                s.get("items").map_or(Ty::Unknown, Ty::Schema)
            }
            // Map keys have no bound in a structural schema.
            Ty::Schema(s) if map_values(s).is_some() => Ty::Str(MAX_REQUEST_BYTES - 2),
            Ty::List(_, entry) => (**entry).clone(),
            _ => Ty::Unknown,
        }
    }

    /// A type covering both (the larger size).
    fn union(self, other: Ty<'a>) -> Ty<'a> {
        match (self, other) {
            (Ty::Scalar, Ty::Scalar) => Ty::Scalar,
            (a, b) if a.is_string() && b.is_string() => Ty::Str(a.size().max(b.size())),
            (Ty::Schema(a), Ty::Schema(b)) if std::ptr::eq(a, b) => Ty::Schema(a),
            _ => Ty::Unknown,
        }
    }
}

/// `ceil(size × factor)`, as cel-go's `multiplyByCostFactor`.
fn factor(size: u64, per_unit: f64) -> u64 {
    let cost = (size as f64 * per_unit).ceil();
    if cost >= u64::MAX as f64 {
        u64::MAX
    } else {
        cost as u64
    }
}

// ---- cost --------------------------------------------------------------------------------

type Scope<'a> = Vec<(String, Ty<'a>)>;

fn cost<'a>(expr: &Expr, scope: &mut Scope<'a>) -> Result<(u64, Ty<'a>), String> {
    Ok(match expr {
        Expr::Str(len) => (0, Ty::Str(*len)),
        Expr::Scalar => (0, Ty::Scalar),
        Expr::Ident(name) => {
            let ty = scope
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| format!("unknown variable {name:?}"))?;
            (1, ty)
        }
        Expr::Select(operand, name) => {
            let (c, ty) = cost(operand, scope)?;
            (c.saturating_add(1), ty.field(name)?)
        }
        Expr::Has(operand) => match &**operand {
            Expr::Select(object, name) => {
                let (c, ty) = cost(object, scope)?;
                ty.field(name)?;
                (c.saturating_add(1), Ty::Scalar)
            }
            _ => return Err("has() needs a field selection".into()),
        },
        Expr::List(items) => {
            let mut sum = LIST_CREATE;
            let mut entry: Option<Ty<'a>> = None;
            for item in items {
                let (c, ty) = cost(item, scope)?;
                sum = sum.saturating_add(c);
                entry = Some(match entry {
                    None => ty,
                    Some(e) => e.union(ty),
                });
            }
            let entry = entry.unwrap_or(Ty::Unknown);
            (sum, Ty::List(items.len() as u64, Box::new(entry)))
        }
        Expr::Map(entries) => {
            let mut sum = MAP_CREATE;
            for (k, v) in entries {
                sum = sum
                    .saturating_add(cost(k, scope)?.0)
                    .saturating_add(cost(v, scope)?.0);
            }
            (sum, Ty::List(entries.len() as u64, Box::new(Ty::Unknown)))
        }
        Expr::Index(operand, index) => {
            let (c, ty) = cost(operand, scope)?;
            let (ci, _) = cost(index, scope)?;
            let entry = if ty.is_list() {
                ty.element()
            } else {
                ty.field("")?
            };
            (c.saturating_add(ci).saturating_add(1), entry)
        }
        Expr::Cond(test, then, otherwise) => {
            let (c, _) = cost(test, scope)?;
            let (ca, ta) = cost(then, scope)?;
            let (cb, tb) = cost(otherwise, scope)?;
            (c.saturating_add(ca.max(cb)), ta.union(tb))
        }
        Expr::Comprehension {
            range,
            macro_name,
            vars,
            body,
        } => {
            let (c, ty) = cost(range, scope)?;
            let n = ty.size();
            let element = ty.element();
            for v in vars {
                scope.push((v.clone(), element.clone()));
            }
            let mut per_item = COMPREHENSION_STEP;
            let mut result = Ty::Scalar;
            for b in body {
                let (cb, tb) = cost(b, scope)?;
                per_item = per_item.saturating_add(cb);
                result = tb;
            }
            for _ in vars {
                scope.pop();
            }
            let result = match macro_name.as_str() {
                "map" => Ty::List(n, Box::new(result)),
                "filter" => Ty::List(n, Box::new(element)),
                _ => Ty::Scalar,
            };
            let total = c
                .saturating_add(COMPREHENSION_FIXED)
                .saturating_add(n.saturating_mul(per_item));
            (total, result)
        }
        Expr::Call(target, function, args) => {
            let mut sum = 0u64;
            let target = match target {
                Some(t) => {
                    let (c, ty) = cost(t, scope)?;
                    sum = sum.saturating_add(c);
                    Some(ty)
                }
                None => None,
            };
            let mut arg_types = Vec::new();
            for a in args {
                let (c, ty) = cost(a, scope)?;
                sum = sum.saturating_add(c);
                arg_types.push(ty);
            }
            let (c, ty) = call_cost(function, target.as_ref(), &arg_types)?;
            (sum.saturating_add(c), ty)
        }
    })
}

/// The cost of one call, without its arguments', and the type of its result.
fn call_cost<'a>(
    function: &str,
    target: Option<&Ty<'a>>,
    args: &[Ty<'a>],
) -> Result<(u64, Ty<'a>), String> {
    // The string a member function works on, or a global function's first argument.
    let (subject, rest) = match target {
        Some(t) => (Some(t), args),
        None => (args.first(), args.get(1..).unwrap_or_default()),
    };
    let subject_size = subject.map_or(u64::MAX, Ty::size);
    let arg_size = rest.first().map_or(u64::MAX, Ty::size);
    Ok(match function {
        "_&&_" | "_||_" => (0, Ty::Scalar),
        "!_" | "-_" | "_-_" | "_*_" | "_/_" | "_%_" | "size" | "int" | "uint" | "double"
        | "bool" | "type" | "dyn" => (1, Ty::Scalar),
        "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" => {
            let smallest = subject_size.min(arg_size);
            (factor(smallest, STRING_TRAVERSAL).max(1), Ty::Scalar)
        }
        "@in" => (arg_size, Ty::Scalar),
        "_+_" => {
            let (a, b) = (
                subject.cloned().unwrap_or(Ty::Unknown),
                rest.first().cloned().unwrap_or(Ty::Unknown),
            );
            let total = a.size().saturating_add(b.size());
            if a.is_string() && b.is_string() {
                (factor(total, STRING_TRAVERSAL), Ty::Str(total))
            } else if a.is_list() && b.is_list() {
                (1, Ty::List(total, Box::new(a.element().union(b.element()))))
            } else {
                (1, Ty::Scalar)
            }
        }
        "matches" => {
            let text = factor(subject_size.saturating_add(1), STRING_TRAVERSAL);
            (
                text.saturating_mul(factor(arg_size, REGEX_LENGTH)),
                Ty::Scalar,
            )
        }
        "contains" => (
            factor(subject_size, STRING_TRAVERSAL)
                .saturating_mul(factor(arg_size, STRING_TRAVERSAL)),
            Ty::Scalar,
        ),
        // cel-go charges the prefix only; charging the whole target errs on the safe side.
        "startsWith" | "endsWith" => (
            factor(subject_size.max(arg_size), STRING_TRAVERSAL).max(1),
            Ty::Scalar,
        ),
        "lowerAscii" | "upperAscii" | "trim" => (
            factor(subject_size, STRING_TRAVERSAL).max(1),
            Ty::Str(subject_size),
        ),
        "string" => (
            factor(subject_size, STRING_TRAVERSAL).max(1),
            Ty::Str(subject_size),
        ),
        // cel-go charges a conversion a constant 1; parsing the (bounded) text is charged
        // like a traversal here, which errs on the safe side.
        "timestamp" => (factor(subject_size, STRING_TRAVERSAL).max(1), Ty::Scalar),
        other => return Err(format!("no cost model for the function {other}(); add one")),
    })
}

// ---- parsing -----------------------------------------------------------------------------

/// The parts of CEL the model costs.
#[derive(Debug)]
enum Expr {
    /// A string literal of this many bytes.
    Str(u64),
    /// Any other literal.
    Scalar,
    Ident(String),
    Select(Box<Expr>, String),
    Has(Box<Expr>),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Index(Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `range.all(x, body)` and the other macros; `body` holds the macro's expressions.
    Comprehension {
        range: Box<Expr>,
        macro_name: String,
        vars: Vec<String>,
        body: Vec<Expr>,
    },
    /// A function or operator (`_==_`, `!_`, `@in`…), with its receiver for member calls.
    Call(Option<Box<Expr>>, String, Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    /// A string literal and its length in bytes (escapes counted as written: never fewer).
    Str(u64),
    Number,
    Punct(&'static str),
}

const PUNCTUATION: [&str; 24] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".", ",",
    "(", ")", "[", "]", "{", "}",
];

const MACROS: [&str; 5] = ["all", "exists", "exists_one", "map", "filter"];

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\''
            || c == '"'
            || ((c == 'r' || c == 'R') && matches!(chars.get(i + 1), Some('\'' | '"')))
        {
            let raw = c == 'r' || c == 'R';
            let quote = if raw { chars[i + 1] } else { c };
            i += if raw { 2 } else { 1 };
            let start = i;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && !raw {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err("unterminated string literal".into());
            }
            let bytes: usize = chars[start..i].iter().map(|c| c.len_utf8()).sum();
            tokens.push(Token::Str(bytes as u64));
            i += 1;
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let punct = PUNCTUATION
                .iter()
                .find(|p| rest.starts_with(**p))
                .ok_or_else(|| format!("unexpected character {c:?}"))?;
            tokens.push(Token::Punct(punct));
            i += punct.chars().count();
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, String> {
        Ok(Self {
            tokens: tokenize(text)?,
            at: 0,
        })
    }

    fn parse(mut self) -> Result<Expr, String> {
        let expr = self.expr()?;
        match self.tokens.get(self.at) {
            None => Ok(expr),
            Some(t) => Err(format!("unexpected {t:?} after the expression")),
        }
    }

    fn peek_punct(&self, p: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Punct(q)) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        let found = self.peek_punct(p);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!("expected {p:?} at token {}", self.at))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.tokens.get(self.at) {
            Some(Token::Ident(name)) => {
                self.at += 1;
                Ok(name.clone())
            }
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let test = self.binary(0)?;
        if self.eat("?") {
            let then = self.binary(0)?;
            self.expect(":")?;
            let otherwise = self.expr()?;
            return Ok(Expr::Cond(
                Box::new(test),
                Box::new(then),
                Box::new(otherwise),
            ));
        }
        Ok(test)
    }

    /// Binary operators by CEL precedence: `||`, `&&`, relations, `+ -`, `* / %`.
    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        const LEVELS: [&[&str]; 5] = [
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">=", "in"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        loop {
            let op = match self.tokens.get(self.at) {
                Some(Token::Punct(p)) if LEVELS[level].contains(p) => *p,
                Some(Token::Ident(i)) if i == "in" && level == 2 => "in",
                _ => break,
            };
            self.at += 1;
            let right = self.binary(level + 1)?;
            let name = if op == "in" {
                "@in".to_owned()
            } else {
                format!("_{op}_")
            };
            left = Expr::Call(None, name, vec![left, right]);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        for op in ["!", "-"] {
            if self.eat(op) {
                let operand = self.unary()?;
                return Ok(Expr::Call(None, format!("{op}_"), vec![operand]));
            }
        }
        self.member()
    }

    fn member(&mut self) -> Result<Expr, String> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(".") {
                let name = self.ident()?;
                if self.eat("(") {
                    let args = self.list_until(")")?;
                    expr = if MACROS.contains(&name.as_str()) {
                        macro_call(expr, name, args)?
                    } else {
                        Expr::Call(Some(Box::new(expr)), name, args)
                    };
                } else {
                    expr = Expr::Select(Box::new(expr), name);
                }
            } else if self.eat("[") {
                let index = self.expr()?;
                self.expect("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("unexpected end of the rule")?;
        self.at += 1;
        match token {
            Token::Str(len) => Ok(Expr::Str(len)),
            Token::Number => Ok(Expr::Scalar),
            Token::Ident(name) if matches!(name.as_str(), "true" | "false" | "null") => {
                Ok(Expr::Scalar)
            }
            Token::Ident(name) => {
                if self.eat("(") {
                    let mut args = self.list_until(")")?;
                    if name == "has" {
                        return match args.pop() {
                            Some(arg) if args.is_empty() => Ok(Expr::Has(Box::new(arg))),
                            _ => Err("has() takes one argument".into()),
                        };
                    }
                    Ok(Expr::Call(None, name, args))
                } else {
                    Ok(Expr::Ident(name))
                }
            }
            Token::Punct("(") => {
                let inner = self.expr()?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Punct("[") => Ok(Expr::List(self.list_until("]")?)),
            Token::Punct("{") => {
                let mut entries = Vec::new();
                while !self.eat("}") {
                    let key = self.expr()?;
                    self.expect(":")?;
                    entries.push((key, self.expr()?));
                    if !self.eat(",") {
                        self.expect("}")?;
                        break;
                    }
                }
                Ok(Expr::Map(entries))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    /// Comma-separated expressions up to `close` (consumed); a trailing comma is allowed.
    fn list_until(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(self.expr()?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        Ok(items)
    }
}

fn macro_call(range: Expr, name: String, mut args: Vec<Expr>) -> Result<Expr, String> {
    let arity_ok = match name.as_str() {
        "map" => matches!(args.len(), 2 | 3),
        _ => args.len() == 2,
    };
    if !arity_ok {
        return Err(format!(
            "{name}() with {} arguments is not modelled",
            args.len()
        ));
    }
    let var = match args.remove(0) {
        Expr::Ident(v) => v,
        other => return Err(format!("{name}() needs a variable name, found {other:?}")),
    };
    Ok(Expr::Comprehension {
        range: Box::new(range),
        macro_name: name,
        vars: vec![var],
        body: args,
    })
}
