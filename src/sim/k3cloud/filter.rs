//! The SQL-like `FilterString` of `ExecuteBillQuery` / `BillQuery` (reference §2: the string
//! form almost all clients send).
//!
//! Grammar (keywords in any case):
//! ```text
//! filter    := empty | or
//! or        := and ("OR" and)*
//! and       := primary ("AND" primary)*
//! primary   := "(" or ")" | predicate
//! predicate := field op literal                     op: = <> != > >= < <=
//!            | field ["NOT"] "LIKE" text            % and _ wildcards
//!            | field ["NOT"] "IN" "(" literal ("," literal)* ")"
//!            | field "IS" ["NOT"] "NULL"
//! literal   := 'text' (a doubled '' is a quote; N'text' too) | number
//! ```
//! Anything else is refused with the reason, so a query the simulator cannot understand never
//! silently returns every row. As in SQL, a comparison with a missing (NULL) value is false.
//!
//! Comparison follows the stored value's type: numbers compare numerically (a quoted number
//! too, as SQL Server converts it), text compares as date-times when both sides are
//! date-times (`2024-03-01 10:00:00` equals `2024-03-01T10:00:00`) and as text otherwise.

use std::cmp::Ordering;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;

use crate::sim::kit::like;

/// A parsed filter; [`Filter::All`] matches every row.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Filter {
    All,
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Compare {
        field: String,
        op: Op,
        value: Literal,
    },
    Like {
        field: String,
        pattern: String,
        negated: bool,
    },
    In {
        field: String,
        values: Vec<Literal>,
        negated: bool,
    },
    IsNull {
        field: String,
        negated: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let (text, next) = quoted(&chars, i)?;
                tokens.push(Token::Text(text));
                i = next;
            }
            '<' | '>' | '=' | '!' => {
                let mut op = String::from(c);
                if let Some(next) = chars.get(i + 1).filter(|next| matches!(next, '<' | '>' | '=')) {
                    op.push(*next);
                }
                i += op.chars().count();
                tokens.push(Token::Op(op));
            }
            _ if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Token::Number(chars[start..i].iter().collect()));
            }
            _ if c.is_alphanumeric() || c == '_' => {
                if matches!(c, 'N' | 'n') && chars.get(i + 1) == Some(&'\'') {
                    let (text, next) = quoted(&chars, i + 1)?;
                    tokens.push(Token::Text(text));
                    i = next;
                    continue;
                }
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            _ => return Err(format!("无法识别的字符“{c}”")),
        }
    }
    Ok(tokens)
}

/// The text of the quoted literal opening at `start`, and the index after it.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err("引号不成对".to_owned()),
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                out.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((out, i + 1)),
            Some(other) => {
                out.push(*other);
                i += 1;
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

fn is_keyword(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
}

const KEYWORDS: &[&str] = &["AND", "OR", "NOT", "IN", "LIKE", "IS", "NULL"];

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = is_keyword(self.peek(), keyword);
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut any = vec![self.and()?];
        while self.eat_keyword("OR") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 { any.remove(0) } else { Filter::Or(any) })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut all = vec![self.primary()?];
        while self.eat_keyword("AND") {
            all.push(self.primary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Filter::And(all)
        })
    }

    fn primary(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("括号不成对".to_owned()),
                }
            }
            Some(Token::Word(field)) if !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&field)) => {
                self.predicate(field)
            }
            None => Err("条件不完整".to_owned()),
            Some(other) => Err(format!("此处应为字段名或左括号，而不是{}", describe(&other))),
        }
    }

    fn predicate(&mut self, field: String) -> Result<Filter, String> {
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            if !self.eat_keyword("NULL") {
                return Err(format!("字段{field}的IS后应为NULL或NOT NULL"));
            }
            return Ok(Filter::IsNull { field, negated });
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("LIKE") {
            return match self.next() {
                Some(Token::Text(pattern)) => Ok(Filter::Like {
                    field,
                    pattern,
                    negated,
                }),
                _ => Err(format!("字段{field}的LIKE后应为'文本'")),
            };
        }
        if self.eat_keyword("IN") {
            if self.next() != Some(Token::Open) {
                return Err(format!("字段{field}的IN后应为括号中的取值列表"));
            }
            let mut values = Vec::new();
            loop {
                values.push(self.literal(&field)?);
                match self.next() {
                    Some(Token::Comma) => {}
                    Some(Token::Close) => break,
                    _ => return Err(format!("字段{field}的IN列表应以逗号分隔、以右括号结束")),
                }
            }
            return Ok(Filter::In { field, values, negated });
        }
        if negated {
            return Err(format!("字段{field}的NOT后应为IN或LIKE"));
        }
        let op = match self.next() {
            Some(Token::Op(op)) => match op.as_str() {
                "=" => Op::Eq,
                "<>" | "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                "<=" => Op::Le,
                other => return Err(format!("不支持的比较运算符“{other}”")),
            },
            _ => return Err(format!("字段{field}后应为比较运算符、LIKE、IN或IS")),
        };
        let value = self.literal(&field)?;
        Ok(Filter::Compare { field, op, value })
    }

    fn literal(&mut self, field: &str) -> Result<Literal, String> {
        match self.next() {
            Some(Token::Text(text)) => Ok(Literal::Text(text)),
            Some(Token::Number(number)) => number
                .parse::<f64>()
                .map(Literal::Number)
                .map_err(|_| format!("“{number}”不是有效的数字")),
            _ => Err(format!("字段{field}的比较值应为'文本'或数字")),
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("“{word}”"),
        Token::Text(text) => format!("'{text}'"),
        Token::Number(number) => number.clone(),
        Token::Op(op) => format!("“{op}”"),
        Token::Open => "“(”".to_owned(),
        Token::Close => "“)”".to_owned(),
        Token::Comma => "“,”".to_owned(),
    }
}

impl Filter {
    /// Parses a `FilterString`; blank text is [`Filter::All`].
    pub(super) fn parse(text: &str) -> Result<Filter, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(Filter::All);
        }
        let mut parser = Parser { tokens, at: 0 };
        let filter = parser.or()?;
        match parser.peek() {
            None => Ok(filter),
            Some(extra) => Err(format!("多余的内容：{}", describe(extra))),
        }
    }

    /// Every field key the filter reads.
    pub(super) fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::All => {}
            Filter::Or(parts) | Filter::And(parts) => parts.iter().for_each(|part| part.collect_fields(out)),
            Filter::Compare { field, .. }
            | Filter::Like { field, .. }
            | Filter::In { field, .. }
            | Filter::IsNull { field, .. } => out.push(field),
        }
    }

    /// Whether a row matches; `value_of` reads a field (`Null` when absent).
    pub(super) fn matches(&self, value_of: &dyn Fn(&str) -> Value) -> bool {
        match self {
            Filter::All => true,
            Filter::Or(parts) => parts.iter().any(|part| part.matches(value_of)),
            Filter::And(parts) => parts.iter().all(|part| part.matches(value_of)),
            Filter::Compare { field, op, value } => {
                let Some(ordering) = compare(&value_of(field), value) else {
                    return false;
                };
                match op {
                    Op::Eq => ordering.is_eq(),
                    Op::Ne => ordering.is_ne(),
                    Op::Gt => ordering.is_gt(),
                    Op::Ge => ordering.is_ge(),
                    Op::Lt => ordering.is_lt(),
                    Op::Le => ordering.is_le(),
                }
            }
            Filter::Like {
                field,
                pattern,
                negated,
            } => match scalar_text(&value_of(field)) {
                None => false,
                Some(text) => like(&text.chars().collect::<Vec<_>>(), &pattern.chars().collect::<Vec<_>>()) != *negated,
            },
            Filter::In { field, values, negated } => {
                let actual = value_of(field);
                if scalar_text(&actual).is_none() {
                    return false;
                }
                values
                    .iter()
                    .any(|value| compare(&actual, value).is_some_and(Ordering::is_eq))
                    != *negated
            }
            Filter::IsNull { field, negated } => value_of(field).is_null() != *negated,
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Parses the date-time spellings clients send and the server stores.
pub(super) fn parse_time(text: &str) -> Option<NaiveDateTime> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ];
    let text = text.trim();
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
        })
}

/// How a stored value compares with a literal; `None` when it cannot (NULL, objects, or a
/// number against text that is not a number).
fn compare(actual: &Value, literal: &Literal) -> Option<Ordering> {
    let actual_number = match actual {
        Value::Number(number) => Some(number.as_f64()?),
        Value::String(text) if matches!(literal, Literal::Number(_)) => text.trim().parse::<f64>().ok(),
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        Value::String(_) => None,
        _ => return None,
    };
    match (actual_number, literal) {
        (Some(a), Literal::Number(b)) => a.partial_cmp(b),
        (Some(a), Literal::Text(text)) => a.partial_cmp(&text.trim().parse::<f64>().ok()?),
        (None, Literal::Number(_)) => None,
        (None, Literal::Text(text)) => {
            let stored = actual.as_str()?;
            match (parse_time(stored), parse_time(text)) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => Some(stored.cmp(text.as_str())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(filter: &str, row: &Value) -> bool {
        let parsed = Filter::parse(filter).unwrap_or_else(|err| panic!("{filter}: {err}"));
        parsed.matches(&|field| row.get(field).cloned().unwrap_or(Value::Null))
    }

    #[test]
    fn comparisons_follow_the_stored_type() {
        let row = json!({"FCUSTID": 5, "FNumber": "CUST0005", "FCode": "001", "FModifyDate": "2024-03-01T10:30:00"});
        assert!(holds("FNumber = 'CUST0005'", &row));
        assert!(!holds("FNumber = 'CUST0006'", &row));
        assert!(holds(
            "FModifyDate >= '2024-03-01 10:30:00' and FModifyDate < '2024-03-02'",
            &row
        ));
        assert!(!holds("FModifyDate > '2024-03-01 10:30:00'", &row));
        assert!(holds("FCUSTID <= 5 AND FCUSTID = '5' AND FCUSTID > 4.5", &row));
        assert!(
            holds("FCode = '001'", &row) && !holds("FCode = '1'", &row),
            "text compares as text"
        );
        assert!(holds("FCode = 1", &row), "a numeric literal converts the text");
        assert!(holds("FNumber <> 'x' AND FNumber != 'y'", &row));
        assert!(
            !holds("FNope = 'x'", &row) && !holds("FNope <> 'x'", &row),
            "NULL compares false"
        );
        assert!(holds("FNope IS NULL AND FNumber IS NOT NULL", &row));
        assert!(holds("FNumber LIKE 'CUST%5' AND FNumber NOT LIKE 'X%'", &row));
        assert!(holds("FNumber LIKE N'CUST00_5'", &row));
        assert!(holds("FNumber = 'it''s' OR FCUSTID = -1 OR FCUSTID = 5", &row));
    }

    #[test]
    fn in_lists_and_parentheses() {
        let row = json!({"FCUSTID": 7, "FNumber": "B", "FDocumentStatus": "C"});
        assert!(holds("FNumber IN ('a','B','c')", &row));
        assert!(holds("FNumber in ( 'B' )", &row));
        assert!(!holds("FNumber IN ('a','b')", &row), "case matters in values");
        assert!(holds("FNumber NOT IN ('a','b')", &row));
        assert!(holds("FCUSTID IN (1, 7)", &row));
        assert!(!holds("FNope IN ('B')", &row) && !holds("FNope NOT IN ('B')", &row));
        // AND binds tighter than OR; parentheses change that.
        assert!(holds("FNumber = 'x' AND FCUSTID = 1 OR FDocumentStatus = 'C'", &row));
        assert!(!holds("FNumber = 'x' AND (FCUSTID = 1 OR FDocumentStatus = 'C')", &row));
        assert!(holds(
            "(FNumber IN ('B','Z') OR FCUSTID = 1) AND FDocumentStatus IN ('B','C')",
            &row
        ));
        assert!(holds("((FCUSTID = 7))", &row));
        assert!(holds("   ", &row));
    }

    #[test]
    fn what_cannot_be_parsed_is_refused() {
        for bad in [
            "FNumber 'x'",
            "FNumber = 'x' AND",
            "FNumber = 'unterminated",
            "FNumber = ",
            "FNumber IN ()",
            "FNumber IN ('a' 'b')",
            "FNumber IN 'a'",
            "FNumber IN ('a'",
            "(FNumber = 'a'",
            "FNumber = 'a')",
            "FNumber NOT = 'a'",
            "NOT FNumber = 'a'",
            "FNumber IS 'a'",
            "FNumber == 'a'",
            "FNumber = 'a' FName = 'b'",
            "FNumber = 'a'; DROP TABLE x",
            "FNumber BETWEEN 1 AND 2",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(like(&['a', 'b'], &['%']));
        assert!(!like(&['a'], &['_', '_']));
    }

    #[test]
    fn fields_are_listed() {
        let filter = Filter::parse("(FA = 1 OR FB IN ('x')) AND FC LIKE 'y%' AND FD IS NULL").unwrap();
        assert_eq!(filter.fields(), ["FA", "FB", "FC", "FD"]);
    }
}
