//! Native evaluation of simple expressions: a dotted path, optionally followed by
//! a chain of filters with constant arguments, such as `qty | int`,
//! `window.start | datetime(tz='UTC')` or `status | map('status') | upper`.
//!
//! # What this module owns and promises
//! * [`FastExpr::recognise`] reads the expression's minijinja AST once, at compile
//!   time. It accepts only the shape above, with filters from [`NATIVE_FILTERS`]
//!   whose arguments are constants (string, number, bool, none, or anything
//!   minijinja folds to a constant). The arguments are converted by minijinja's
//!   own argument types and resolved by the same functions the registered filters
//!   use (`decimal_scale`, `default_boolean`, `TimeCall::prepare`); if that fails
//!   (an unknown keyword, a bad zone, a wrong type) the expression is left to
//!   minijinja, which then reports the error as it always has.
//! * [`FastExpr::eval`] walks the scope's JSON and calls the filters' Rust cores
//!   directly, with no minijinja state, context or value conversion. Results and
//!   error messages are the slow path's: the cores are shared, and each error
//!   carries the offset minijinja would report (the filter's position).
//! * Whatever it cannot reproduce exactly it hands back ([`Outcome::SlowPath`]):
//!   reading through an undefined value, and `upper`/`lower`/`trim` on a list or
//!   map. Every filter here is pure, so starting over on the slow path is safe.
//!
//! `upper`, `lower` and `trim` are minijinja builtins; they are called through
//! minijinja's public filter functions and its `StringInput` argument type, so
//! even their text conversions (`none` → `"none"`, `true` → `"True"`) match.
//!
//! Converting constants uses `ArgType::from_value`, which minijinja keeps public
//! but hidden from its docs; like the `unstable_machinery` AST it is pinned by
//! Cargo.lock, and the equivalence tests in `tests.rs` catch a change.
//!
//! Expressions that span several lines stay on the slow path: minijinja reports
//! an error position only when a filter starts on the line its chain starts on,
//! and matching that rule is not worth the code.

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::machinery::{self, Span};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{ArgType, Kwargs, StringInput, Value};
use serde_json::Value as Json;

use super::filters::{
    decimal_scale, default_boolean, is_missing, json_text_of, map_entry, md5_hex, sha256_hex, to_decimal, to_float,
    to_int,
};
use super::scope::{
    forgive_missing, input_text, lookup_path, missing_mark, rewind_missing, scalar_to_value, value_to_json, FastLookup,
    FilterInput, Scope, SCOPE_HANDLE,
};
use super::time::{TimeCall, TimeFilter};
use super::{TemplateOptions, FUNCTIONS, KEYWORDS};

/// Filters [`FastExpr`] evaluates natively; any other filter sends the whole
/// expression to minijinja.
pub(crate) const NATIVE_FILTERS: &[&str] = &[
    "int",
    "float",
    "decimal",
    "string",
    "default",
    "d",
    "optional",
    "md5",
    "sha256",
    "json",
    "map",
    "datetime",
    "date",
    "timestamp",
    "timestamp_ms",
    "iso",
    "upper",
    "lower",
    "trim",
];

/// A compiled simple expression: where to read, then what to apply.
pub(crate) struct FastExpr {
    /// The dotted path, already split (`["window", "start"]`).
    pub(crate) path: Vec<String>,
    /// Filters in the order they apply; empty for a plain path.
    pub(crate) steps: Vec<Step>,
}

/// One filter of the chain and where minijinja would report its errors.
pub(crate) struct Step {
    filter: NativeFilter,
    /// Byte offset in the Ferry source.
    offset: Option<usize>,
}

/// A filter with its arguments resolved at compile time.
enum NativeFilter {
    Int,
    Float,
    Decimal(u32),
    Text,
    Default {
        replacement: Json,
        boolean: bool,
    },
    Optional,
    Md5,
    Sha256,
    Json,
    ValueMap {
        options: Arc<TemplateOptions>,
        name: String,
    },
    Time(TimeCall),
    Upper,
    Lower,
    Trim(Option<String>),
}

/// What evaluating a [`FastExpr`] gave.
pub(crate) enum Outcome<'s> {
    Value(Cow<'s, Json>),
    /// The expression read something that is not there (see `MissLog`).
    Undefined,
    /// A filter failed; the message is the filter's own, without the template.
    Failed {
        message: String,
        offset: Option<usize>,
    },
    /// Only minijinja can give the exact answer (or error) here.
    SlowPath,
}

/// The value flowing through the chain.
enum Current<'s> {
    Undefined,
    Borrowed(&'s Json),
    Owned(Json),
}

impl Current<'_> {
    fn input(&self) -> FilterInput<'_> {
        match self {
            Current::Undefined => FilterInput::Undefined,
            Current::Borrowed(json) => FilterInput::Json(json),
            Current::Owned(json) => FilterInput::Json(json),
        }
    }
}

/// What one step did to the current value.
enum Applied {
    Replace(Json),
    Keep,
    SlowPath,
}

impl FastExpr {
    /// Recognises `wrapped` (`<% set __ferry_value = expr %>`, as compiled for
    /// minijinja) when `expr` has the supported shape. `expr_start` is the byte
    /// offset of `expr` in the Ferry source.
    pub(crate) fn recognise(
        wrapped: &str,
        syntax: SyntaxConfig,
        options: &Arc<TemplateOptions>,
        expr_start: usize,
    ) -> Option<FastExpr> {
        let ast = machinery::parse(wrapped, "fast", syntax, super::whitespace()).ok()?;
        let Stmt::Template(template) = &ast else {
            return None;
        };
        let [Stmt::Set(set)] = template.children.as_slice() else {
            return None;
        };
        let mut steps = Vec::new();
        let mut expr = &set.expr;
        while let Expr::Filter(filter) = expr {
            let span = filter.span();
            if span.start_line != span.end_line || span.start_line != 1 {
                return None;
            }
            let native = NativeFilter::compile(filter.name, &filter.args, options)?;
            steps.push(Step {
                filter: native,
                offset: filter_offset(span, expr_start),
            });
            expr = filter.expr.as_ref()?;
        }
        steps.reverse();
        let path = dotted_path(expr)?;
        Some(FastExpr { path, steps })
    }

    /// Evaluates the expression against `scope`.
    #[inline]
    pub(crate) fn eval<'s>(&self, scope: &'s Scope) -> Outcome<'s> {
        let mark = missing_mark();
        let found = lookup_path(scope, &self.path);
        if self.steps.is_empty() {
            // A plain path, the most common expression: no chain to run.
            return match found {
                FastLookup::Found(json) => Outcome::Value(Cow::Borrowed(json)),
                FastLookup::Undefined => Outcome::Undefined,
                FastLookup::NeedsSlowPath => Outcome::SlowPath,
            };
        }
        let mut current = match found {
            FastLookup::Found(json) => Current::Borrowed(json),
            FastLookup::Undefined => Current::Undefined,
            FastLookup::NeedsSlowPath => return Outcome::SlowPath,
        };
        for step in &self.steps {
            if matches!(current, Current::Undefined) && step.filter.handles_absence() {
                forgive_missing(0);
            }
            match step.filter.apply(&current.input()) {
                Ok(Applied::Replace(json)) => current = Current::Owned(json),
                Ok(Applied::Keep) => {}
                Ok(Applied::SlowPath) => {
                    // The slow path reads the names again.
                    rewind_missing(mark);
                    return Outcome::SlowPath;
                }
                Err(message) => {
                    return Outcome::Failed {
                        message,
                        offset: step.offset,
                    }
                }
            }
        }
        match current {
            Current::Undefined => Outcome::Undefined,
            Current::Borrowed(json) => Outcome::Value(Cow::Borrowed(json)),
            Current::Owned(json) => Outcome::Value(Cow::Owned(json)),
        }
    }
}

/// The offset minijinja reports for an error raised by a filter: the start of its
/// span in the wrapped source, moved back to the Ferry source.
fn filter_offset(span: Span, expr_start: usize) -> Option<usize> {
    let start = usize::try_from(span.start_offset).ok()?;
    super::wrapped_to_source(start, expr_start)
}

/// `["window", "start"]` for `window.start`; `None` for anything else, and for
/// names that are not plain variables (constants, functions, the scope handle).
fn dotted_path(expr: &Expr<'_>) -> Option<Vec<String>> {
    let mut segments = Vec::new();
    let mut expr = expr;
    loop {
        match expr {
            Expr::GetAttr(attr) => {
                segments.push(attr.name.to_owned());
                expr = &attr.expr;
            }
            Expr::Var(var) => {
                let name = var.id;
                if KEYWORDS.contains(&name) || FUNCTIONS.contains(&name) || name == SCOPE_HANDLE {
                    return None;
                }
                segments.push(name.to_owned());
                segments.reverse();
                return Some(segments);
            }
            _ => return None,
        }
    }
}

/// Positional and keyword arguments as minijinja would pass them, when all are constants.
struct ConstArgs {
    positional: Vec<Value>,
    kwargs: Kwargs,
    has_kwargs: bool,
}

impl ConstArgs {
    fn read(args: &[CallArg<'_>]) -> Option<ConstArgs> {
        let mut positional = Vec::new();
        let mut keywords = Vec::new();
        for arg in args {
            match arg {
                CallArg::Pos(expr) => positional.push(expr.as_const()?),
                CallArg::Kwarg(name, expr) => keywords.push((*name, expr.as_const()?)),
                CallArg::PosSplat(_) | CallArg::KwargSplat(_) => return None,
            }
        }
        Some(ConstArgs {
            positional,
            has_kwargs: !keywords.is_empty(),
            kwargs: keywords.into_iter().collect(),
        })
    }

    /// No arguments at all (the filter's signature takes only the value).
    fn none(&self) -> bool {
        self.positional.is_empty() && !self.has_kwargs
    }

    /// Positional argument `index` converted by minijinja's argument type `T`;
    /// `None` when there are more than `count` positional arguments or it does not convert.
    fn positional<'a, T: ArgType<'a>>(&'a self, index: usize, count: usize) -> Option<T::Output> {
        if self.positional.len() > count {
            return None;
        }
        T::from_value(self.positional.get(index)).ok()
    }
}

impl NativeFilter {
    fn compile(name: &str, args: &[CallArg<'_>], options: &Arc<TemplateOptions>) -> Option<NativeFilter> {
        if !NATIVE_FILTERS.contains(&name) {
            return None;
        }
        let args = ConstArgs::read(args)?;
        let simple = |filter: NativeFilter| args.none().then_some(filter);
        match name {
            "int" => simple(NativeFilter::Int),
            "float" => simple(NativeFilter::Float),
            "string" => simple(NativeFilter::Text),
            "md5" => simple(NativeFilter::Md5),
            "sha256" => simple(NativeFilter::Sha256),
            "json" => simple(NativeFilter::Json),
            "optional" => simple(NativeFilter::Optional),
            "upper" => simple(NativeFilter::Upper),
            "lower" => simple(NativeFilter::Lower),
            "trim" if !args.has_kwargs => {
                let chars = args.positional::<Option<Cow<'_, str>>>(0, 1)?;
                Some(NativeFilter::Trim(chars.map(Cow::into_owned)))
            }
            "decimal" => {
                let scale = args.positional::<Option<u32>>(0, 1)?;
                decimal_scale(scale, &args.kwargs).ok().map(NativeFilter::Decimal)
            }
            "default" | "d" => {
                let boolean = args.positional::<Option<bool>>(1, 2)?;
                let boolean = default_boolean(boolean, &args.kwargs).ok()?;
                // An explicit `none` replaces with null; no replacement means "".
                let replacement = match args.positional.first() {
                    Some(value) => value_to_json(value).ok()?,
                    None => Json::String(String::new()),
                };
                Some(NativeFilter::Default { replacement, boolean })
            }
            "map" => {
                // Only a literal value-map name; `attribute=` and filter names are
                // minijinja's builtin `map`.
                let [name] = args.positional.as_slice() else {
                    return None;
                };
                let name = name.as_str()?;
                (!args.has_kwargs && options.value_maps.contains_key(name)).then(|| NativeFilter::ValueMap {
                    options: options.clone(),
                    name: name.to_owned(),
                })
            }
            other => {
                let filter = TimeFilter::named(other)?;
                let count = usize::from(filter.default_format().is_some());
                let format = args.positional::<Option<String>>(0, count)?;
                TimeCall::prepare(filter, format, &args.kwargs, super::time::Zones::of(options))
                    .ok()
                    .map(NativeFilter::Time)
            }
        }
    }

    /// Whether the filter handles a missing input on purpose (its miss is forgiven).
    fn handles_absence(&self) -> bool {
        matches!(self, NativeFilter::Default { .. } | NativeFilter::Optional)
    }

    fn apply(&self, input: &FilterInput<'_>) -> Result<Applied, String> {
        let json = match self {
            NativeFilter::Int => Json::from(to_int(input)?),
            NativeFilter::Float => Json::from(to_float(input)?),
            NativeFilter::Decimal(scale) => Json::String(to_decimal(input, *scale)?),
            NativeFilter::Text => Json::String(input_text(input)?),
            NativeFilter::Default { replacement, boolean } => {
                return Ok(if is_missing(input, *boolean) {
                    Applied::Replace(replacement.clone())
                } else {
                    Applied::Keep
                })
            }
            NativeFilter::Optional => {
                return Ok(match input {
                    FilterInput::Undefined => Applied::Replace(Json::Null),
                    _ => Applied::Keep,
                })
            }
            NativeFilter::Md5 => Json::String(md5_hex(input)?),
            NativeFilter::Sha256 => Json::String(sha256_hex(input)?),
            NativeFilter::Json => Json::String(json_text_of(input)?),
            NativeFilter::ValueMap { options, name } => match options.value_maps.get(name) {
                Some(map) => map_entry(map, name, input)?.clone(),
                None => return Ok(Applied::SlowPath),
            },
            NativeFilter::Time(call) => call.apply(input)?,
            NativeFilter::Upper => return Ok(builtin_text(input, minijinja::filters::upper)),
            NativeFilter::Lower => return Ok(builtin_text(input, minijinja::filters::lower)),
            NativeFilter::Trim(chars) => {
                return Ok(builtin_text(input, |text| {
                    minijinja::filters::trim(text, chars.as_deref().map(Cow::Borrowed))
                }))
            }
        };
        Ok(Applied::Replace(json))
    }
}

/// Runs a minijinja string builtin on a scalar or undefined input, converting it
/// to text exactly as minijinja's `StringInput` argument does. Lists and maps go
/// to the slow path (their text comes from minijinja's object rendering).
fn builtin_text(input: &FilterInput<'_>, filter: impl FnOnce(StringInput<'_>) -> Value) -> Applied {
    let value = match input {
        FilterInput::Undefined => Value::UNDEFINED,
        FilterInput::Json(Json::Array(_) | Json::Object(_)) | FilterInput::Foreign(_) => return Applied::SlowPath,
        FilterInput::Json(scalar) => scalar_to_value(scalar),
    };
    let Ok(text) = <StringInput<'_> as ArgType<'_>>::from_value(Some(&value)) else {
        return Applied::SlowPath;
    };
    match value_to_json(&filter(text)) {
        Ok(json) => Applied::Replace(json),
        Err(_) => Applied::SlowPath,
    }
}
