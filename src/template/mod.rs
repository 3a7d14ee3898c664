//! Field templates: `<< expr >>` over a record, pure (no IO).
//!
//! # What this module owns and promises
//! * [`TemplateEnv`] is built once per scheme (time zone, value maps) and
//!   [`TemplateEnv::compile`] turns each template string into a [`Template`].
//!   Compiling finds every syntax error (with its byte offset) and every unknown
//!   filter, test, function or literal value-map name (with a did-you-mean hint),
//!   so `ferry validate` reports them before any run.
//! * [`Template::render`] evaluates against a [`Scope`] and never does IO, except
//!   through the [`MappedIds`] service the caller puts in the scope.
//!
//! # Three shapes
//! * No `<<`, `<%` or `<#` in the string: a literal. Rendering clones the
//!   stored string. (Blocks count too, so `<% if a %>x<% endif %>` is never
//!   silently taken as literal text.)
//! * Exactly one `<< expr >>` (surrounding whitespace allowed): a typed value. The
//!   result keeps its JSON type (number, bool, null, object, array, string);
//!   undefined becomes `null`.
//! * Anything else: text. Each `<< expr >>` is written as text (strings as they
//!   are, null and undefined as nothing, other values as compact JSON). Blocks
//!   `<% if %>…<% endif %>` and comments `<# … #>` are allowed; a template with
//!   blocks is rendered by minijinja as a whole.
//!
//! # Fast paths
//! Plain dotted names (`name`, `window.start`, `record.lines`) skip minijinja and
//! read the JSON directly. This fast path gives the same results as minijinja's
//! lenient rules: a missing key is undefined (`null`), an attribute of a scalar is
//! undefined, and reading from an undefined value is an error.
//!
//! A dotted name followed by filters with constant arguments (`qty | int`,
//! `created | datetime(tz='UTC')`, `status | map('status')`, `note | default('')`)
//! also skips minijinja when every filter is one of [`native::NATIVE_FILTERS`]: the
//! chain is recognised at compile time and evaluated by the same Rust functions
//! the registered filters call, so results and errors are the same (see
//! `native.rs`). Anything else (other filters, variable arguments, operators,
//! tests, calls) renders through minijinja. A render through minijinja costs
//! about 1–2 µs (a fresh state and a captured output per expression); the native
//! chains cost a small fraction of that.
//!
//! # Names a template sees
//! Top-level names resolve from `locals`, then `vars`, then `record` (the whole
//! record), then the record's fields. See [`Scope`].
//!
//! # Filters and functions
//! Time filters read RFC 3339, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`,
//! `YYYY/MM/DD HH:MM:SS`, `YYYY-MM-DD`, `YYYY/MM/DD`, or epoch seconds/milliseconds
//! (numbers or digit strings; 1e11 and up means milliseconds). Naive input is
//! read in the environment's zone (default `Asia/Shanghai`) and output is written
//! in it. Every time filter takes `tz='UTC'` (zone for reading naive input and for
//! output), `from_tz='UTC'` (zone for naive input only) and `from='%d/%m/%Y'`
//! (explicit chrono parse format). In the examples the zone is Asia/Shanghai.
//!
//! | call | result |
//! |---|---|
//! | `<< "2024-03-01T00:30:00Z" \| datetime >>` | `"2024-03-01 08:30:00"` |
//! | `<< created \| datetime('%Y%m%d%H%M%S') >>`, `datetime(format=…)` | string in the zone |
//! | `<< "2024-03-01 08:30:00" \| datetime(tz='UTC') >>` | `"2024-03-01 08:30:00"` (naive read in UTC) |
//! | `<< "2024-03-01 08:30:00" \| datetime(from_tz='UTC') >>` | `"2024-03-01 16:30:00"` |
//! | `<< "01/03/2024" \| date(from='%d/%m/%Y') >>` | `"2024-03-01"` (default format `%Y-%m-%d`) |
//! | `<< "2024-03-01 08:30:00" \| timestamp >>` | `1709253000` (int) |
//! | `<< 1709253000 \| timestamp_ms >>` | `1709253000000` (int) |
//! | `<< 1709253000000 \| iso >>` | `"2024-03-01T08:30:00+08:00"` |
//! | `<< " 42 " \| int >>`, `<< 3.9 \| int >>`, `<< true \| int >>` | `42`, `3` (toward zero), `1`; `"abc" \| int` is an error |
//! | `<< "1.5" \| float >>` | `1.5` |
//! | `<< 12.3 \| decimal >>`, `<< "2.345" \| decimal(scale=2) >>` | `"12.30"`, `"2.35"`: a string, rounded half away from zero |
//! | `<< 42 \| string >>` | `"42"`; null becomes `""` |
//! | `<< remark \| default('n/a') >>` | replaces undefined and null |
//! | `<< remark \| default('n/a', boolean=true) >>` | also replaces `false`, `""`, `0`, empty lists/maps |
//! | `<< "abc" \| md5 >>`, `<< "abc" \| sha256 >>` | lowercase hex of the UTF-8 text |
//! | `<< body \| hmac(secret) >>`, `hmac(secret, algo='sha1')` | lowercase hex; `sha256` (default), `sha1`, `md5` |
//! | `<< record \| json >>` | compact JSON text |
//! | `<< '{"a": 1}' \| from_json >>` | `{"a": 1}` |
//! | `<< status \| map('status') >>` | `value_maps.status[status]` (numbers looked up by their JSON text), else its `default` key, else an error |
//! | `<< lines \| map(attribute='qty') \| sum >>` | minijinja's builtin `map` (also `map('upper')` for a filter name that is not a value map) |
//! | `<< owner \| field_map('employee') >>`, `field_map('employee', reverse=true)` | the ERP value of a CRM value in the store-backed table the scheme declares under `field_mappings` (reverse: ERP → CRM); no row is an error naming table and value; null stays null |
//! | `<< customer_id \| mapped_id('customer') >>`, `<< mapped_id('customer', customer_id) >>` | the target id another scheme stored; an error when there is none yet |
//!
//! minijinja's builtins stay available: `upper`, `lower`, `trim`, `replace`,
//! `length`, `join`, `first`, `last`, `round`, `abs`, `items`, `selectattr`,
//! `sum`, `tojson`, … (see [`FILTERS`], [`TESTS`], [`FUNCTIONS`]). There is no
//! `now()`: the engine passes `now` as a var so a run uses one clock.
//!
//! # Errors
//! Render errors say what went wrong and quote the template, e.g.
//! ``cannot convert "abc" to int (in template `<< qty | int >>`)``, with the byte
//! offset in the template when minijinja knows it.
//!
//! # Why each template owns a copy of the environment
//! minijinja's compiled templates borrow their `Environment`. Each [`Template`]
//! therefore holds a clone of the scheme's base environment (cheap: its tables
//! are `Arc`s) that owns only that template's code, so a `Template` is `'static`,
//! `Send + Sync` and shares no lock with other templates. Rejected: one shared
//! environment behind a lock (contention on every render) and a self-referential
//! struct with `unsafe`. Typed values come from compiling `<% set v = expr %>`
//! and reading `v` back from the captured state.

mod check;
mod field_maps;
mod filters;
mod native;
mod scope;
mod time;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use chrono_tz::Tz;
use minijinja::machinery::{self, Token, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use serde_json::{Map, Value as Json};

pub use self::check::Shape;
use self::check::{Read, Usage};
pub use self::field_maps::{parse_unmapped, unmapped_message, FieldMapTable, FieldMaps, Unmapped};
use self::native::{FastExpr, Outcome};
use self::scope::{
    json_text, missing_mark, push_json_text, value_text, value_to_json, MissLog, ScopeContext, SCOPE_HANDLE,
};
pub use self::scope::{MappedIds, PlaceholderIds, Scope, RECORD};
pub use self::time::read_time;

/// Every filter name a Ferry template may use: minijinja's builtins plus Ferry's own.
pub const FILTERS: &[&str] = &[
    // Ferry's own (some replace a builtin of the same name).
    "datetime",
    "date",
    "timestamp",
    "timestamp_ms",
    "iso",
    "int",
    "float",
    "decimal",
    "string",
    "default",
    "d",
    "optional",
    "sql_list",
    "md5",
    "sha256",
    "hmac",
    "json",
    "from_json",
    "map",
    "mapped_id",
    "field_map",
    // minijinja builtins.
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "dictsort",
    "e",
    "escape",
    "first",
    "format",
    "groupby",
    "indent",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "zip",
];

/// Every function name a Ferry template may call.
pub const FUNCTIONS: &[&str] = &["mapped_id", "range", "dict", "namespace", "debug"];

/// Every test name (`x is number`) a Ferry template may use (minijinja's builtins).
pub const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// The variable a typed expression is stored into; must match [`EXPR_PREFIX`].
const RESULT: &str = "__ferry_value";
const EXPR_PREFIX: &str = "<% set __ferry_value = ";
const EXPR_SUFFIX: &str = " %>";
/// minijinja name of a template rendered as a whole.
const FULL_NAME: &str = "template";
/// Names that are constants, not variables, so they never take the fast path.
const KEYWORDS: &[&str] = &["true", "false", "none", "True", "False", "None"];

/// Scheme-level settings every template of the scheme shares.
#[derive(Debug, Clone)]
pub struct TemplateOptions {
    /// Zone time filters write in, and read naive times in unless `naive_zone` says
    /// otherwise (default `Asia/Shanghai`).
    pub timezone: Tz,
    /// Zone for reading times without an offset, when it differs from `timezone`: a
    /// record's fields are in its source's zone while its row is written in the target's.
    pub naive_zone: Option<Tz>,
    /// Named value maps for the `map('name')` filter.
    pub value_maps: BTreeMap<String, Map<String, Json>>,
    /// The field mapping tables the scheme declares (`field_mappings`): the names
    /// `field_map('name')` may use. Their rows come with the [`Scope`] ([`FieldMaps`]).
    pub field_tables: BTreeSet<String>,
    /// Whether reading a name that is not there fails the render (the scheme's
    /// `undefined: strict`, the default) or reads as null (`undefined: lenient`).
    pub strict: bool,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        TemplateOptions {
            timezone: chrono_tz::Asia::Shanghai,
            naive_zone: None,
            value_maps: BTreeMap::new(),
            field_tables: BTreeSet::new(),
            strict: true,
        }
    }
}

/// A template that failed to compile or render.
///
/// `message` says what is wrong (render errors quote the template); `offset` is a
/// byte offset into the template source, for line:col reporting; `hint` is a
/// suggestion such as "did you mean `datetime`?".
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub offset: Option<usize>,
    pub hint: Option<String>,
    /// The names the template read that were not there (a strict render's missing fields).
    pub missing: Vec<String>,
}

impl From<TemplateError> for crate::error::Error {
    fn from(e: TemplateError) -> Self {
        if e.missing.is_empty() {
            crate::error::Error::transform(e.message)
        } else {
            crate::error::Error::missing_field(e.message, e.missing)
        }
    }
}

impl TemplateError {
    /// 1-based line and column (in characters) of `offset` within `source`.
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        let offset = self.offset?;
        let before = source.get(..offset)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before[line_start..].chars().count() + 1;
        Some((line, column))
    }
}

/// Compiles templates for one scheme. Cheap to clone and share.
#[derive(Clone)]
pub struct TemplateEnv {
    shared: Arc<Shared>,
}

struct Shared {
    base: Environment<'static>,
    options: Arc<TemplateOptions>,
    syntax: SyntaxConfig,
    /// Whether expressions may skip minijinja (off only in tests that compare paths).
    fast_paths: bool,
}

impl fmt::Debug for TemplateEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateEnv")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Default for TemplateEnv {
    fn default() -> Self {
        TemplateEnv::new(TemplateOptions::default())
    }
}

fn ferry_syntax() -> SyntaxConfig {
    SyntaxConfig::builder()
        .block_delimiters("<%", "%>")
        .variable_delimiters("<<", ">>")
        .comment_delimiters("<#", "#>")
        .build()
        // The delimiters are distinct constants, which is all `build` checks;
        // every test in this module exercises this configuration.
        .expect("Ferry's template delimiters are valid")
}

fn whitespace() -> WhitespaceConfig {
    WhitespaceConfig {
        keep_trailing_newline: true,
        lstrip_blocks: false,
        trim_blocks: false,
    }
}

/// Writes values into text output by Ferry's rules (null and undefined as nothing).
fn write_value(out: &mut Output, _state: &State, value: &Value) -> Result<(), Error> {
    let written = match value.as_str() {
        Some(text) => out.write_str(text),
        None => {
            let text = value_text(value).map_err(|message| Error::new(ErrorKind::InvalidOperation, message))?;
            out.write_str(&text)
        }
    };
    written.map_err(|_| Error::new(ErrorKind::WriteFailure, "could not write template output"))
}

impl TemplateEnv {
    /// Builds the environment: custom syntax, Ferry's filters, lenient undefined.
    pub fn new(options: TemplateOptions) -> TemplateEnv {
        TemplateEnv::build(options, true)
    }

    /// An environment whose templates always render through minijinja, to check
    /// the fast paths against.
    #[cfg(test)]
    pub(crate) fn minijinja_only(options: TemplateOptions) -> TemplateEnv {
        TemplateEnv::build(options, false)
    }

    fn build(options: TemplateOptions, fast_paths: bool) -> TemplateEnv {
        let options = Arc::new(options);
        let syntax = ferry_syntax();
        let mut base = Environment::new();
        base.set_syntax(syntax.clone());
        base.set_keep_trailing_newline(true);
        base.set_undefined_behavior(UndefinedBehavior::Lenient);
        base.set_auto_escape_callback(|_| AutoEscape::None);
        base.set_formatter(write_value);
        base.set_debug(false);
        time::register(&mut base, &options);
        filters::register(&mut base, &options);
        base.add_filter("field_map", field_maps::field_map);
        TemplateEnv {
            shared: Arc::new(Shared {
                base,
                options,
                syntax,
                fast_paths,
            }),
        }
    }

    /// The options this environment was built with.
    pub fn options(&self) -> &TemplateOptions {
        &self.shared.options
    }

    /// Compiles one template string, checking syntax and every called name.
    pub fn compile(&self, source: &str) -> Result<Template, TemplateError> {
        if !has_template_markers(source) {
            return Ok(Template::literal(source));
        }
        let syntax = self.shared.syntax.clone();
        let ast = machinery::parse(source, FULL_NAME, syntax.clone(), whitespace())
            .map_err(|err| compile_error(&err, None))?;
        let usage = Usage::collect(&ast);
        usage.validate(&self.shared.options)?;

        let mut env = self.shared.base.clone();
        let body = match split_parts(source, syntax)? {
            None => {
                env.add_template_owned(FULL_NAME, source.to_owned())
                    .map_err(|err| compile_error(&err, None))?;
                Body::Full
            }
            Some(raw_parts) => {
                let mut parts = Vec::with_capacity(raw_parts.len());
                for raw in raw_parts {
                    match raw {
                        RawPart::Text(text) => parts.push(Part::Text(text)),
                        RawPart::Expr(range) => {
                            let part = ExprPart::compile(&mut env, &self.shared, source, range, parts.len())?;
                            parts.push(Part::Expr(part));
                        }
                    }
                }
                into_body(parts)
            }
        };

        let called: BTreeSet<&str> = usage.functions.iter().map(|used| used.name.as_str()).collect();
        let mut variables = BTreeSet::new();
        for (_, template) in env.templates() {
            for name in template.undeclared_variables(false) {
                if !called.contains(name.as_str()) && name != SCOPE_HANDLE {
                    variables.insert(name);
                }
            }
        }
        let mut first_reads: BTreeMap<String, usize> = BTreeMap::new();
        for used in &usage.names {
            first_reads.entry(used.name.clone()).or_insert(used.offset);
        }
        let calls = usage
            .filters
            .iter()
            .chain(&usage.tests)
            .chain(&usage.functions)
            .map(|used| used.name.clone())
            .collect();
        Ok(Template {
            inner: Arc::new(Inner {
                source: source.to_owned(),
                body,
                env: Some(env),
                variables,
                calls,
                strict: self.shared.options.strict,
                reads: usage.reads,
                first_reads,
            }),
        })
    }
}

/// `<<`, `<%` or `<#` anywhere makes the string a template.
fn has_template_markers(source: &str) -> bool {
    source.contains("<<") || source.contains("<%") || source.contains("<#")
}

/// A piece of a template source before compilation.
enum RawPart {
    Text(String),
    /// Byte range of the expression between `<<` and `>>`.
    Expr(Range<usize>),
}

/// Splits a template into text and `<< >>` expressions; `None` if it has blocks.
fn split_parts(source: &str, syntax: SyntaxConfig) -> Result<Option<Vec<RawPart>>, TemplateError> {
    let mut parts = Vec::new();
    let mut expr_start = None;
    for token in machinery::tokenize(source, false, syntax, whitespace()) {
        let (token, span) = token.map_err(|err| compile_error(&err, None))?;
        match token {
            Token::TemplateData(text) => match parts.last_mut() {
                Some(RawPart::Text(previous)) => previous.push_str(text),
                _ => parts.push(RawPart::Text(text.to_owned())),
            },
            Token::VariableStart => expr_start = Some(to_usize(span.end_offset)),
            Token::VariableEnd => {
                let start = expr_start.take().unwrap_or(0);
                parts.push(RawPart::Expr(start..to_usize(span.start_offset)));
            }
            Token::BlockStart | Token::BlockEnd => return Ok(None),
            _ => {}
        }
    }
    Ok(Some(parts))
}

fn to_usize(offset: u32) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

fn into_body(mut parts: Vec<Part>) -> Body {
    let mut expressions = parts
        .iter()
        .enumerate()
        .filter(|(_, part)| matches!(part, Part::Expr(_)))
        .map(|(index, _)| index);
    let only_expression = match (expressions.next(), expressions.next()) {
        (Some(index), None) => Some(index),
        _ => None,
    };
    let blank_text = parts.iter().all(|part| match part {
        Part::Text(text) => text.trim().is_empty(),
        Part::Expr(_) => true,
    });
    if let (Some(index), true) = (only_expression, blank_text) {
        match parts.swap_remove(index) {
            Part::Expr(expr) => return Body::Typed(expr),
            text => parts.push(text),
        }
    }
    Body::Parts(parts)
}

fn compile_error(err: &Error, expr_start: Option<usize>) -> TemplateError {
    let detail = err.detail().map_or_else(|| err.kind().to_string(), str::to_owned);
    TemplateError {
        message: format!("{}: {detail}", err.kind()),
        offset: source_offset(err, expr_start),
        hint: None,
        missing: Vec::new(),
    }
}

/// Maps a minijinja error position back to the Ferry source.
fn source_offset(err: &Error, expr_start: Option<usize>) -> Option<usize> {
    let start = err.range()?.start;
    match expr_start {
        None => Some(start),
        Some(expr_start) => wrapped_to_source(start, expr_start),
    }
}

/// Maps an offset in `<% set __ferry_value = expr %>` to the Ferry source, where
/// the expression starts at `expr_start`.
fn wrapped_to_source(offset: usize, expr_start: usize) -> Option<usize> {
    offset.checked_sub(EXPR_PREFIX.len()).map(|inner| expr_start + inner)
}

/// A compiled template. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Template {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    body: Body,
    /// This template's own copy of the scheme environment (`None` for literals).
    env: Option<Environment<'static>>,
    variables: BTreeSet<String>,
    calls: BTreeSet<String>,
    /// Whether a name that is not there fails the render (see [`TemplateOptions::strict`]).
    strict: bool,
    /// Constant member chains read from top-level names, for [`Template::unknown_members`].
    reads: Vec<Read>,
    /// Byte offset of the first read of each top-level name.
    first_reads: BTreeMap<String, usize>,
}

enum Body {
    Literal(Json),
    Typed(ExprPart),
    Parts(Vec<Part>),
    Full,
}

enum Part {
    Text(String),
    Expr(ExprPart),
}

struct ExprPart {
    /// minijinja template name holding `<% set __ferry_value = expr %>`.
    name: String,
    /// Byte offset of the expression in the Ferry source.
    start: usize,
    /// A dotted path with native filters, evaluated without minijinja.
    fast: Option<FastExpr>,
}

impl ExprPart {
    fn compile(
        env: &mut Environment<'static>,
        shared: &Shared,
        source: &str,
        range: Range<usize>,
        index: usize,
    ) -> Result<ExprPart, TemplateError> {
        let start = range.start;
        let expr = source.get(range).unwrap_or_default();
        let name = format!("expr{index}");
        let wrapped = format!("{EXPR_PREFIX}{expr}{EXPR_SUFFIX}");
        let fast = if shared.fast_paths {
            FastExpr::recognise(&wrapped, shared.syntax.clone(), &shared.options, start)
        } else {
            None
        };
        env.add_template_owned(name.clone(), wrapped)
            .map_err(|err| compile_error(&err, Some(start)))?;
        Ok(ExprPart { name, start, fast })
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl Template {
    fn literal(source: &str) -> Template {
        Template {
            inner: Arc::new(Inner {
                source: source.to_owned(),
                body: Body::Literal(Json::String(source.to_owned())),
                env: None,
                variables: BTreeSet::new(),
                calls: BTreeSet::new(),
                strict: false,
                reads: Vec::new(),
                first_reads: BTreeMap::new(),
            }),
        }
    }

    /// Renders to a JSON value: typed for a single `<< expr >>`, a string otherwise.
    pub fn render(&self, scope: &Scope) -> Result<Json, TemplateError> {
        self.checked(|| match &self.inner.body {
            Body::Literal(json) => Ok(json.clone()),
            Body::Typed(part) => self.eval(part, scope, &mut None).map(Cow::into_owned),
            Body::Parts(parts) => self.render_parts(parts, scope).map(Json::String),
            Body::Full => self.render_full(scope).map(Json::String),
        })
    }

    /// [`Template::render`] that borrows the value when the template is one plain
    /// lookup (`<< rows >>`), so large values are not copied to be serialized.
    pub fn render_cow<'s>(&'s self, scope: &'s Scope) -> Result<Cow<'s, Json>, TemplateError> {
        self.checked(|| match &self.inner.body {
            Body::Literal(json) => Ok(Cow::Borrowed(json)),
            Body::Typed(part) => self.eval(part, scope, &mut None),
            Body::Parts(parts) => self
                .render_parts(parts, scope)
                .map(|text| Cow::Owned(Json::String(text))),
            Body::Full => self.render_full(scope).map(|text| Cow::Owned(Json::String(text))),
        })
    }

    /// Renders to text: strings as they are, null as `""`, other values as compact JSON.
    pub fn render_string(&self, scope: &Scope) -> Result<String, TemplateError> {
        self.checked(|| match &self.inner.body {
            Body::Literal(json) => Ok(json_text(json)),
            Body::Typed(part) => Ok(match self.eval(part, scope, &mut None)? {
                Cow::Owned(Json::String(text)) => text,
                other => json_text(&other),
            }),
            Body::Parts(parts) => self.render_parts(parts, scope),
            Body::Full => self.render_full(scope),
        })
    }

    /// Runs a render; in strict mode a name read and not found fails it, whatever
    /// else the render did with the undefined value.
    fn checked<T>(&self, render: impl FnOnce() -> Result<T, TemplateError>) -> Result<T, TemplateError> {
        if !self.inner.strict {
            return render();
        }
        let log = MissLog::start();
        let result = render();
        let missing = log.finish();
        if missing.is_empty() {
            return result;
        }
        let offset = result.as_ref().err().and_then(|e| e.offset);
        Err(self.missing_error(missing, offset))
    }

    fn missing_error(&self, mut missing: Vec<String>, offset: Option<usize>) -> TemplateError {
        missing.dedup();
        let names: Vec<String> = missing.iter().map(|name| format!("`{name}`")).collect();
        let what = if names.len() == 1 {
            format!("missing field {}", names[0])
        } else {
            format!("missing fields {}", names.join(", "))
        };
        TemplateError {
            message: format!("{what} (in template `{}`)", self.inner.source),
            offset,
            hint: Some(format!(
                "if it may be absent, write `{}` or `| optional`; `undefined: lenient` reads every missing field as null",
                default_advice(&missing[0])
            )),
            missing,
        }
    }

    /// The template text as written in the scheme.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// True when the source has no `<<`, `<%` or `<#` and renders to itself.
    pub fn is_literal(&self) -> bool {
        matches!(self.inner.body, Body::Literal(_))
    }

    /// Top-level names the template reads (e.g. `window` for `window.start | datetime`).
    pub fn variables(&self) -> BTreeSet<String> {
        self.inner.variables.clone()
    }

    /// Byte offset of the first place the template reads the top-level name `name`.
    pub fn name_offset(&self, name: &str) -> Option<usize> {
        self.inner.first_reads.get(name).copied()
    }

    /// Every member the template reads that its value cannot have, such as
    /// `page.sise`: `shape_of` says what each top-level name holds, and names it
    /// returns `None` for (record fields) are not checked. Each error carries the
    /// byte offset of the member and a did-you-mean hint.
    pub fn unknown_members(&self, shape_of: &dyn Fn(&str) -> Option<Shape>) -> Vec<TemplateError> {
        check::unknown_members(&self.inner.reads, shape_of)
    }

    /// Filters, functions and tests the template uses.
    pub fn calls(&self) -> BTreeSet<String> {
        self.inner.calls.clone()
    }

    fn env(&self) -> Result<&Environment<'static>, TemplateError> {
        self.inner
            .env
            .as_ref()
            .ok_or_else(|| self.error("internal: template has no compiled code".to_owned(), None))
    }

    fn eval<'s>(
        &self,
        part: &ExprPart,
        scope: &'s Scope,
        context: &mut Option<Value>,
    ) -> Result<Cow<'s, Json>, TemplateError> {
        if let Some(fast) = &part.fast {
            match fast.eval(scope) {
                Outcome::Value(value) => return Ok(value),
                Outcome::Undefined => return self.undefined(part),
                Outcome::Failed { message, offset } => return Err(self.error(message, offset)),
                Outcome::SlowPath => {}
            }
        }
        let template = self
            .env()?
            .get_template(&part.name)
            .map_err(|err| self.render_error(&err, Some(part.start)))?;
        let context = context.get_or_insert_with(|| ScopeContext::value(scope)).clone();
        let captured = template
            .render_captured(context)
            .map_err(|err| self.render_error(&err, Some(part.start)))?;
        let value = captured.state().lookup(RESULT).unwrap_or(Value::UNDEFINED);
        if value.is_undefined() {
            return self.undefined(part);
        }
        value_to_json(&value)
            .map(Cow::Owned)
            .map_err(|message| self.error(message, Some(part.start)))
    }

    /// An expression gave undefined: null when lenient. When strict, a missing field
    /// was noted (and [`Template::checked`] reports it), or the expression read an
    /// attribute of something that has none.
    fn undefined<'s>(&self, part: &ExprPart) -> Result<Cow<'s, Json>, TemplateError> {
        if self.inner.strict && missing_mark() == 0 {
            return Err(self.error(
                "the expression gives an undefined value (it reads an attribute of a text, number or list, which has none)"
                    .to_owned(),
                Some(part.start),
            ));
        }
        Ok(Cow::Owned(Json::Null))
    }

    fn render_parts(&self, parts: &[Part], scope: &Scope) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut context = None;
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => {
                    let value = self.eval(expr, scope, &mut context)?;
                    push_json_text(&mut out, &value);
                }
            }
        }
        Ok(out)
    }

    fn render_full(&self, scope: &Scope) -> Result<String, TemplateError> {
        self.env()?
            .get_template(FULL_NAME)
            .and_then(|template| template.render(ScopeContext::value(scope)))
            .map_err(|err| self.render_error(&err, None))
    }

    fn render_error(&self, err: &Error, expr_start: Option<usize>) -> TemplateError {
        let detail = err.detail().map_or_else(|| err.kind().to_string(), str::to_owned);
        TemplateError {
            message: format!("{detail} (in template `{}`)", self.inner.source),
            offset: source_offset(err, expr_start),
            hint: None,
            missing: Vec::new(),
        }
    }

    fn error(&self, detail: String, offset: Option<usize>) -> TemplateError {
        TemplateError {
            message: format!("{detail} (in template `{}`)", self.inner.source),
            offset,
            hint: None,
            missing: Vec::new(),
        }
    }
}

/// How to default one missing name, for hints: `<< code | default('') >>`.
fn default_advice(name: &str) -> String {
    format!("<< {name} | default('') >>")
}

#[cfg(test)]
mod tests;
