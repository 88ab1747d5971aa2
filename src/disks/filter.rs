//! The disk filter language of `storage.local[].find` and `storage.ceph[].find`.
//!
//! Upstream MicroCloud hands the expression to LXD's `shared/filter` with this operator set:
//! `&&`, `||`, `==`, `!=`, `!`, `<`, `>`, `<=`, `>=`, and `"`/`'` quotes. A comparison is
//! `<field> <operator> <value>`, where `<field>` is a JSON field of one entry of LXD's
//! `GET /1.0/resources` → `storage.disks[]`, for example
//! `size > 10GiB && type == nvme && model == 'Samsung %'`.
//!
//! Differences from upstream, all in the direction of failing early instead of surprising:
//! - Everything is checked when the filter is parsed: field names, operators that make no sense
//!   for a field (`model < x`), and values (`size > 10G`, `mounted == maybe`).
//! - Parentheses group, and `!` may negate a group. `&&` binds tighter than `||`. Upstream has
//!   no grouping and evaluates strictly left to right, so `a || b && c` means `(a || b) && c`
//!   there. The two readings differ exactly when `&&` follows `||` without parentheses, so that
//!   form is rejected with a request for parentheses: one file never selects different disks
//!   (that may then be wiped) in the two implementations.
//! - Operators need no surrounding spaces (`size>10GiB`).
//! - Text comparison is case-insensitive like upstream. `%` matches any run of characters;
//!   upstream compares text through a regular expression, which this clone does not implement.

use std::cmp::Ordering;
use std::fmt;

use super::Disk;

/// A parsed disk filter, ready to match disks.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskFilter {
    source: String,
    expr: Expr,
}

/// Why a filter expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at column {column})")]
pub struct FilterError {
    message: String,
    column: usize,
}

impl FilterError {
    fn new(column: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            message: message.into(),
            column,
        }
    }

    /// What is wrong, without the column.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 1-based character column in the expression where the problem starts.
    pub fn column(&self) -> usize {
        self.column
    }
}

impl DiskFilter {
    /// Parses and type-checks a filter expression.
    pub fn parse(expr: &str) -> Result<DiskFilter, FilterError> {
        let tokens = lex(expr)?;
        let mut parser = Parser {
            tokens: &tokens,
            next: 0,
            depth: 0,
            end_column: expr.chars().count() + 1,
        };
        let parsed = parser.parse_or()?;
        if let Some(token) = parser.peek() {
            return Err(FilterError::new(
                token.column,
                format!(
                    "unexpected {} after a complete condition; join conditions with `&&` or `||` \
                     and quote values that contain spaces",
                    token.kind
                ),
            ));
        }
        Ok(DiskFilter {
            source: expr.to_owned(),
            expr: parsed,
        })
    }

    /// Whether `disk` matches. A field LXD leaves out counts as its zero value (`""`, `0`,
    /// `false`), as in upstream where the JSON is decoded into a Go struct first; `mounted`
    /// is also true when the machine itself reports the disk in use.
    pub fn matches(&self, disk: &Disk) -> bool {
        self.expr.eval(disk)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for DiskFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The type of a disk field, which decides its operators and how its value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Text,
    Bool,
    Uint,
    /// A byte count; the value accepts suffixes such as `GiB`.
    Size,
}

/// The fields of LXD's `ResourcesStorageDisk` that filters may use (spec §2.1), each with
/// how to read it from a [`Disk`].
const FIELDS: &[(&str, FieldType, Accessor)] = &[
    ("id", FieldType::Text, |d| FieldValue::Text(&d.id)),
    ("device", FieldType::Text, |d| FieldValue::Text(&d.device)),
    ("model", FieldType::Text, |d| FieldValue::Text(&d.model)),
    ("type", FieldType::Text, |d| FieldValue::Text(&d.kind)),
    ("read_only", FieldType::Bool, |d| {
        FieldValue::Bool(d.read_only)
    }),
    ("mounted", FieldType::Bool, |d| {
        FieldValue::Bool(d.is_mounted())
    }),
    ("size", FieldType::Size, |d| FieldValue::Uint(d.size)),
    ("removable", FieldType::Bool, |d| {
        FieldValue::Bool(d.removable)
    }),
    ("wwn", FieldType::Text, |d| FieldValue::Text(&d.wwn)),
    ("numa_node", FieldType::Uint, |d| {
        FieldValue::Uint(d.numa_node)
    }),
    ("device_path", FieldType::Text, |d| {
        FieldValue::Text(&d.device_path)
    }),
    ("block_size", FieldType::Uint, |d| {
        FieldValue::Uint(d.block_size)
    }),
    ("firmware_version", FieldType::Text, |d| {
        FieldValue::Text(&d.firmware_version)
    }),
    ("rpm", FieldType::Uint, |d| FieldValue::Uint(d.rpm)),
    ("serial", FieldType::Text, |d| FieldValue::Text(&d.serial)),
    ("device_id", FieldType::Text, |d| {
        FieldValue::Text(&d.device_id)
    }),
    ("pci_address", FieldType::Text, |d| {
        FieldValue::Text(&d.pci_address)
    }),
    ("used_by", FieldType::Text, |d| FieldValue::Text(&d.used_by)),
];

type Accessor = for<'a> fn(&'a Disk) -> FieldValue<'a>;

enum FieldValue<'a> {
    Text(&'a str),
    Bool(bool),
    Uint(u64),
}

/// Byte suffixes of LXD's `units.ParseByteSizeString`.
const SIZE_SUFFIXES: &[(&str, u64)] = &[
    ("B", 1),
    ("kB", 1000),
    ("MB", 1000u64.pow(2)),
    ("GB", 1000u64.pow(3)),
    ("TB", 1000u64.pow(4)),
    ("PB", 1000u64.pow(5)),
    ("EB", 1000u64.pow(6)),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
    ("EiB", 1 << 60),
];

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Comparison),
}

#[derive(Debug, Clone, PartialEq)]
struct Comparison {
    /// Index into [`FIELDS`].
    field: usize,
    op: CompareOp,
    operand: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl CompareOp {
    fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Gt => ">",
            CompareOp::Le => "<=",
            CompareOp::Ge => ">=",
        }
    }

    fn is_equality(self) -> bool {
        matches!(self, CompareOp::Eq | CompareOp::Ne)
    }

    /// For `==` / `!=`: whether the comparison holds given whether the values are equal.
    fn equality_holds(self, equal: bool) -> bool {
        equal == (self == CompareOp::Eq)
    }

    fn ordering_holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering.is_eq(),
            CompareOp::Ne => ordering.is_ne(),
            CompareOp::Lt => ordering.is_lt(),
            CompareOp::Gt => ordering.is_gt(),
            CompareOp::Le => ordering.is_le(),
            CompareOp::Ge => ordering.is_ge(),
        }
    }
}

/// A comparison's right-hand side, already converted to the field's type.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Text(Pattern),
    Bool(bool),
    Uint(u64),
}

impl Expr {
    fn eval(&self, disk: &Disk) -> bool {
        match self {
            Expr::Or(left, right) => left.eval(disk) || right.eval(disk),
            Expr::And(left, right) => left.eval(disk) && right.eval(disk),
            Expr::Not(inner) => !inner.eval(disk),
            Expr::Compare(comparison) => comparison.eval(disk),
        }
    }
}

impl Comparison {
    fn eval(&self, disk: &Disk) -> bool {
        // The parser only lets `==` and `!=` through for text and booleans, and
        // checks each operand against the field's type.
        match (&self.operand, (FIELDS[self.field].2)(disk)) {
            (Operand::Text(pattern), FieldValue::Text(text)) => {
                self.op.equality_holds(pattern.matches(text))
            }
            (Operand::Bool(wanted), FieldValue::Bool(actual)) => {
                self.op.equality_holds(actual == *wanted)
            }
            (Operand::Uint(wanted), FieldValue::Uint(actual)) => {
                self.op.ordering_holds(actual.cmp(wanted))
            }
            _ => false,
        }
    }
}

/// A case-insensitive text pattern where `%` matches any run of characters.
#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    /// The lowercased text before the first `%`.
    prefix: String,
    /// The lowercased pieces after each `%`; empty when the pattern has no `%`.
    pieces: Vec<String>,
}

impl Pattern {
    fn new(pattern: &str) -> Pattern {
        let lowered = pattern.to_lowercase();
        let mut split = lowered.split('%').map(str::to_owned);
        Pattern {
            prefix: split.next().unwrap_or_default(),
            pieces: split.collect(),
        }
    }

    fn matches(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        let Some(mut remaining) = text.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        let Some((last, middle)) = self.pieces.split_last() else {
            return remaining.is_empty();
        };
        // Taking the earliest occurrence of each middle piece leaves the most room for the
        // rest, so this greedy scan needs no backtracking.
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    LeftParen,
    RightParen,
    And,
    Or,
    Not,
    Compare(CompareOp),
    Word(String),
    Quoted(String),
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::LeftParen => f.write_str("`(`"),
            TokenKind::RightParen => f.write_str("`)`"),
            TokenKind::And => f.write_str("`&&`"),
            TokenKind::Or => f.write_str("`||`"),
            TokenKind::Not => f.write_str("`!`"),
            TokenKind::Compare(op) => write!(f, "`{}`", op.symbol()),
            TokenKind::Word(word) => write!(f, "`{word}`"),
            TokenKind::Quoted(text) => write!(f, "quoted text {text:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokenKind,
    /// 1-based character column.
    column: usize,
}

/// Characters that end an unquoted word.
fn is_special(c: char) -> bool {
    c.is_whitespace() || "()&|!=<>\"'".contains(c)
}

fn lex(expr: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let column = i + 1;
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (kind, width) = match (c, next) {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('(', _) => (TokenKind::LeftParen, 1),
            (')', _) => (TokenKind::RightParen, 1),
            ('&', Some('&')) => (TokenKind::And, 2),
            ('|', Some('|')) => (TokenKind::Or, 2),
            ('&' | '|', _) => {
                return Err(FilterError::new(
                    column,
                    format!("single `{c}`; use `{c}{c}`"),
                ));
            }
            ('!', Some('=')) => (TokenKind::Compare(CompareOp::Ne), 2),
            ('!', _) => (TokenKind::Not, 1),
            ('=', Some('=')) => (TokenKind::Compare(CompareOp::Eq), 2),
            ('=', Some('~')) => {
                // Upstream matches text by regular expression; this clone by `%` only.
                return Err(FilterError::new(
                    column,
                    "`=~` is not an operator; the operators are ==, !=, <, >, <= and >=, and \
                     == matches text with % as a wildcard, such as model == 'Samsung%'",
                ));
            }
            ('=', _) => {
                return Err(FilterError::new(column, "single `=`; use `==` to compare"));
            }
            ('<', Some('=')) => (TokenKind::Compare(CompareOp::Le), 2),
            ('<', _) => (TokenKind::Compare(CompareOp::Lt), 1),
            ('>', Some('=')) => (TokenKind::Compare(CompareOp::Ge), 2),
            ('>', _) => (TokenKind::Compare(CompareOp::Gt), 1),
            ('"' | '\'', _) => {
                let Some(length) = chars[i + 1..].iter().position(|&d| d == c) else {
                    return Err(FilterError::new(
                        column,
                        format!("unterminated quote; close it with {c}"),
                    ));
                };
                let text = chars[i + 1..i + 1 + length].iter().collect();
                (TokenKind::Quoted(text), length + 2)
            }
            _ => {
                let length = chars[i..]
                    .iter()
                    .position(|&d| is_special(d))
                    .unwrap_or(chars.len() - i);
                let word = chars[i..i + length].iter().collect();
                (TokenKind::Word(word), length)
            }
        };
        tokens.push(Token { kind, column });
        i += width;
    }
    Ok(tokens)
}

/// Nesting deeper than this is certainly a mistake; the limit keeps recursion bounded.
const MAX_DEPTH: usize = 32;

/// Recursive descent over: `or := and ("||" and)*`, `and := unary ("&&" unary)*`,
/// `unary := "!"* primary`, `primary := "(" or ")" | field op value`.
struct Parser<'a> {
    tokens: &'a [Token],
    next: usize,
    depth: usize,
    /// Column just past the expression, for "expected ... at the end" errors.
    end_column: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.next)
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        let found = self.peek().is_some_and(|token| &token.kind == kind);
        if found {
            self.next += 1;
        }
        found
    }

    /// Takes the next token, or fails with "expected `what`" at the end of the expression.
    fn take(&mut self, what: &str) -> Result<&'a Token, FilterError> {
        let token = self.tokens.get(self.next).ok_or_else(|| {
            FilterError::new(
                self.end_column,
                format!("expected {what} at the end of the filter"),
            )
        })?;
        self.next += 1;
        Ok(token)
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let (mut expr, _) = self.parse_and()?;
        while self.eat(&TokenKind::Or) {
            let (right, first_and) = self.parse_and()?;
            if let Some(column) = first_and {
                return Err(FilterError::new(
                    column,
                    "`&&` after `||` needs parentheses: upstream MicroCloud evaluates filters \
                     left to right, so write `(a || b) && c` or `a || (b && c)`",
                ));
            }
            expr = Expr::Or(Box::new(expr), Box::new(right));
        }
        Ok(expr)
    }

    /// Also returns the column of the first `&&` consumed, for the ambiguity check in
    /// [`Parser::parse_or`].
    fn parse_and(&mut self) -> Result<(Expr, Option<usize>), FilterError> {
        let mut expr = self.parse_unary()?;
        let mut first_and = None;
        while let Some(token) = self.peek().filter(|token| token.kind == TokenKind::And) {
            first_and = first_and.or(Some(token.column));
            self.next += 1;
            let right = self.parse_unary()?;
            expr = Expr::And(Box::new(expr), Box::new(right));
        }
        Ok((expr, first_and))
    }

    fn parse_unary(&mut self) -> Result<Expr, FilterError> {
        // Counted in a loop rather than recursion so `!!!!…` cannot exhaust the stack.
        let mut negations = 0;
        while self.eat(&TokenKind::Not) {
            negations += 1;
        }
        let expr = self.parse_primary()?;
        Ok(if negations % 2 == 1 {
            Expr::Not(Box::new(expr))
        } else {
            expr
        })
    }

    fn parse_primary(&mut self) -> Result<Expr, FilterError> {
        let token = self.take("a condition such as `type == nvme`")?;
        match &token.kind {
            TokenKind::LeftParen => {
                if self.depth == MAX_DEPTH {
                    return Err(FilterError::new(
                        token.column,
                        format!("parentheses nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let open_column = token.column;
                self.depth += 1;
                let inner = self.parse_or()?;
                self.depth -= 1;
                if !self.eat(&TokenKind::RightParen) {
                    let column = self.peek().map_or(self.end_column, |token| token.column);
                    return Err(FilterError::new(
                        column,
                        format!("expected `)` to close the `(` at column {open_column}"),
                    ));
                }
                Ok(inner)
            }
            TokenKind::Word(field) => self.parse_comparison(field, token.column),
            other => Err(FilterError::new(
                token.column,
                format!("expected a condition such as `type == nvme`, found {other}"),
            )),
        }
    }

    /// `<field> <operator> <value>`, after the field's word.
    fn parse_comparison(&mut self, field: &str, field_column: usize) -> Result<Expr, FilterError> {
        let (index, name, field_type) = lookup_field(field, field_column)?;
        let op = match self.take(&format!("a comparison operator after `{name}`"))? {
            Token {
                kind: TokenKind::Compare(op),
                ..
            } => *op,
            other => {
                return Err(FilterError::new(
                    other.column,
                    format!(
                        "expected a comparison operator (==, !=, <, >, <=, >=) after \
                         `{name}`, found {}",
                        other.kind
                    ),
                ));
            }
        };
        if !op.is_equality() && !matches!(field_type, FieldType::Uint | FieldType::Size) {
            let kind = if field_type == FieldType::Bool {
                "true/false"
            } else {
                "text"
            };
            return Err(FilterError::new(
                field_column,
                format!(
                    "`{name}` cannot be compared with `{}`; only `==` and `!=` work on \
                     {kind} fields",
                    op.symbol()
                ),
            ));
        }
        let value_token = self.take(&format!("a value after `{name} {}`", op.symbol()))?;
        let (TokenKind::Word(value) | TokenKind::Quoted(value)) = &value_token.kind else {
            return Err(FilterError::new(
                value_token.column,
                format!(
                    "expected a value after `{name} {}`, found {}",
                    op.symbol(),
                    value_token.kind
                ),
            ));
        };
        let operand = typed_operand(name, field_type, op, value)
            .map_err(|message| FilterError::new(value_token.column, message))?;
        Ok(Expr::Compare(Comparison {
            field: index,
            op,
            operand,
        }))
    }
}

fn lookup_field(
    name: &str,
    column: usize,
) -> Result<(usize, &'static str, FieldType), FilterError> {
    FIELDS
        .iter()
        .position(|(field, _, _)| *field == name)
        .map(|index| (index, FIELDS[index].0, FIELDS[index].1))
        .ok_or_else(|| {
            let valid: Vec<&str> = FIELDS.iter().map(|(field, _, _)| *field).collect();
            FilterError::new(
                column,
                format!(
                    "unknown disk field `{name}`; valid fields are {}",
                    valid.join(", ")
                ),
            )
        })
}

/// Converts a comparison's value to the field's type.
fn typed_operand(
    name: &str,
    field_type: FieldType,
    op: CompareOp,
    value: &str,
) -> Result<Operand, String> {
    match field_type {
        FieldType::Text => Ok(Operand::Text(Pattern::new(value))),
        FieldType::Bool => parse_go_bool(value)
            .map(Operand::Bool)
            .ok_or_else(|| format!("`{name}` is true or false, not `{value}`")),
        FieldType::Uint => value.parse().map(Operand::Uint).map_err(|_| {
            format!(
                "`{name} {}` needs a whole number such as 512, not `{value}`",
                op.symbol()
            )
        }),
        FieldType::Size => parse_byte_size(value).map(Operand::Uint).ok_or_else(|| {
            let suffixes: Vec<&str> = SIZE_SUFFIXES.iter().map(|(suffix, _)| *suffix).collect();
            format!(
                "invalid size `{value}`; use a whole number of bytes with an optional suffix \
                 ({}), such as 10GiB",
                suffixes.join(", ")
            )
        }),
    }
}

/// The spellings Go's `strconv.ParseBool` accepts, which is what upstream uses.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `10GiB`, `512`, `1TB`, ... into bytes; `None` on a bad number, suffix or overflow.
fn parse_byte_size(value: &str) -> Option<u64> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    if digits == 0 {
        return None;
    }
    let number: u64 = value[..digits].parse().ok()?;
    let multiplier = match &value[digits..] {
        "" => 1,
        suffix => SIZE_SUFFIXES
            .iter()
            .find(|(known, _)| *known == suffix)
            .map(|(_, multiplier)| *multiplier)?,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn disk() -> Disk {
        serde_json::from_value(json!({
            "id": "nvme0n1",
            "device": "259:0",
            "model": "Samsung SSD 970 EVO Plus 1TB",
            "type": "nvme",
            "read_only": false,
            "mounted": false,
            "size": 1_000_204_886_016u64,
            "removable": false,
            "numa_node": 0,
            "device_path": "pci-0000:05:00.0-nvme-1",
            "block_size": 512,
            "rpm": 0,
            "serial": "S4EWNX0N123456",
            "device_id": "nvme-eui.0025385b71b0e3a2",
            "partitions": []
        }))
        .unwrap()
    }

    fn matches(expr: &str) -> bool {
        DiskFilter::parse(expr)
            .unwrap_or_else(|err| panic!("{expr:?}: {err}"))
            .matches(&disk())
    }

    fn error(expr: &str) -> FilterError {
        DiskFilter::parse(expr).expect_err(expr)
    }

    #[test]
    fn comparisons_on_each_field_type() {
        assert!(matches("type == nvme"));
        assert!(matches("type != ssd"));
        assert!(matches("size > 10GiB"));
        assert!(matches("size >= 1000204886016"));
        assert!(matches("size <= 1000204886016B"));
        assert!(!matches("size < 1TB"));
        assert!(matches("size < 1TiB"));
        assert!(matches("block_size == 512"));
        assert!(matches("mounted == false"));
        assert!(matches("read_only == F"));
        assert!(!matches("removable == 1"));
        assert!(matches("rpm < 1"));
    }

    #[test]
    fn text_is_case_insensitive_with_percent_wildcards() {
        assert!(matches("model == 'samsung %'"));
        assert!(matches("model == \"%970 EVO%\""));
        assert!(matches("model == %1tb"));
        assert!(matches("model == Samsung%EVO%TB"));
        assert!(!matches("model == 'Samsung'"));
        assert!(!matches("model == 'Intel %'"));
        assert!(matches("model != 'Intel %'"));
        assert!(matches("device_path == 'pci-0000:05:00.0-nvme-1'"));
        assert!(matches("id == %"));
        assert!(!matches("model == %EVO"));
        assert!(matches("model == %%"));
    }

    #[test]
    fn absent_fields_are_zero_values() {
        // LXD omits empty `wwn`, `pci_address` and `used_by`.
        assert!(matches("wwn == ''"));
        assert!(matches("used_by != bcache"));
        assert!(!matches("pci_address == %0%"));
    }

    #[test]
    fn mounted_is_also_what_the_machine_reports() {
        let filter = DiskFilter::parse("mounted == false").unwrap();
        let mut disk = disk();
        disk.mounted = None;
        assert!(filter.matches(&disk));
        disk.in_use = vec!["mounted at /".into()];
        assert!(!filter.matches(&disk));
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        // `a && b || c` means the same left to right and with precedence.
        assert!(matches(
            "type == sata && size > 1GiB || model == 'Samsung %'"
        ));
        assert!(matches("type == nvme || (type == sata && size > 100TiB)"));
        assert!(!matches("(type == nvme || type == sata) && size > 100TiB"));
        assert!(matches("!(type == sata || mounted == true)"));
        assert!(!matches("!type == nvme"));
        assert!(matches("!!type == nvme"));
        assert!(matches("((type == nvme))"));
    }

    #[test]
    fn and_after_or_without_parentheses_is_rejected() {
        let err = error("type == nvme || type == sata && size > 1GiB");
        assert!(err.message().contains("needs parentheses"), "{err}");
        assert_eq!(err.column(), 30);
    }

    #[test]
    fn operators_need_no_spaces() {
        assert!(matches("size>10GiB&&type==nvme"));
        assert!(matches("(mounted==false)||(read_only==true)"));
    }

    #[test]
    fn size_suffixes() {
        assert_eq!(parse_byte_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_byte_size("5kB"), Some(5000));
        assert_eq!(parse_byte_size("2PB"), Some(2 * 1000u64.pow(5)));
        assert_eq!(parse_byte_size("1EiB"), Some(1 << 60));
        assert_eq!(parse_byte_size("7"), Some(7));
        assert_eq!(parse_byte_size("7B"), Some(7));
        assert_eq!(parse_byte_size("16EiB"), None);
        assert_eq!(parse_byte_size("10gib"), None);
        assert_eq!(parse_byte_size("1.5GiB"), None);
        assert_eq!(parse_byte_size("GiB"), None);
        assert_eq!(parse_byte_size(""), None);
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        let cases = [
            (
                "sise > 10GiB",
                1,
                "unknown disk field `sise`; valid fields are id, device",
            ),
            ("size > 10G", 8, "invalid size `10G`"),
            ("rpm > fast", 7, "needs a whole number"),
            ("mounted == maybe", 12, "true or false"),
            ("model < x", 1, "only `==` and `!=` work on text fields"),
            ("mounted >= true", 1, "true/false fields"),
            ("type = nvme", 6, "use `==`"),
            ("type == nvme & size > 1", 14, "use `&&`"),
            ("type == nvme | size > 1", 14, "use `||`"),
            ("model == 'Samsung", 10, "unterminated quote"),
            ("type ==", 8, "expected a value after `type ==` at the end"),
            (
                "type",
                5,
                "expected a comparison operator after `type` at the end",
            ),
            ("type nvme", 6, "expected a comparison operator"),
            ("type == nvme ssd", 14, "unexpected `ssd`"),
            ("type == nvme &&", 16, "expected a condition"),
            (
                "(type == nvme",
                14,
                "expected `)` to close the `(` at column 1",
            ),
            ("type == nvme)", 13, "unexpected `)`"),
            ("== nvme", 1, "expected a condition"),
            ("'type' == nvme", 1, "expected a condition"),
            ("type == (", 9, "expected a value"),
            ("", 1, "expected a condition"),
            ("   ", 4, "expected a condition"),
        ];
        for (expr, column, expected) in cases {
            let err = error(expr);
            assert!(
                err.message().contains(expected),
                "{expr:?}: {err} does not contain {expected:?}"
            );
            assert_eq!(err.column(), column, "{expr:?}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}type == nvme{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(error(&deep).message().contains("nested deeper"));
        let negations = format!("{}type == nvme", "!".repeat(10_001));
        assert!(!matches(&negations));
    }

    #[test]
    fn display_is_the_source() {
        let filter = DiskFilter::parse("size > 10GiB && type == nvme").unwrap();
        assert_eq!(filter.to_string(), "size > 10GiB && type == nvme");
        assert_eq!(filter.as_str(), "size > 10GiB && type == nvme");
    }
}
