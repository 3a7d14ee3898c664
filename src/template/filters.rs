//! Ferry's non-time filters and functions: numbers, `default`, hashes, JSON,
//! value maps and `mapped_id`.
//!
//! Each one fails with a message that names the offending value rather than
//! guessing: `"abc" | int` is an error, never `0`. Text conversions follow one
//! rule everywhere: strings as they are, numbers and bools as their JSON text,
//! objects and arrays as compact JSON, null as the empty string.
//!
//! `int`, `float`, `string`, `default`/`d` and `map` replace minijinja's builtins
//! of the same name. `map` keeps the builtin behaviour when called with
//! `attribute=` or with the name of a filter that is not also a value map, so
//! `lines | map(attribute='qty') | sum` still works.
//!
//! # One implementation, two callers
//! The work of each filter is a plain function over a [`FilterInput`] (JSON or
//! undefined) returning JSON-shaped results and `String` errors: [`to_int`],
//! [`to_float`], [`to_decimal`], [`is_missing`], [`md5_hex`], [`sha256_hex`],
//! [`json_text_of`], [`map_entry`] and `input_text`. Argument handling that does
//! not depend on the value ([`decimal_scale`], [`default_boolean`]) is separate so
//! it can run once at compile time. The minijinja filters registered here are thin
//! adapters over these functions, and the native filter chains (`native.rs`) call
//! the very same functions, so the two paths cannot drift apart.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use minijinja::value::{Kwargs, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value as Json};
use sha1::Sha1;
use sha2::Sha256;

use super::scope::{
    describe, describe_input, forgive_missing, input_text, json_int, json_to_value, value_text, with_input,
    FilterInput, ScopeContext, SCOPE_HANDLE,
};
use super::{TemplateOptions, FILTERS};

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

fn cannot_convert(input: &FilterInput<'_>, target: &str) -> String {
    let hint = if is_null(input) {
        format!("; use default(...) before {target} if the field may be empty")
    } else {
        String::new()
    };
    format!("cannot convert {} to {target}{hint}", describe_input(input))
}

fn is_null(input: &FilterInput<'_>) -> bool {
    matches!(input, FilterInput::Undefined | FilterInput::Json(Json::Null))
}

/// `int`: integers as they are, floats truncated toward zero, bools as 1/0,
/// numeric strings (surrounding whitespace allowed, `"12.00"` too).
pub(crate) fn to_int(input: &FilterInput<'_>) -> Result<i64, String> {
    let int = match input {
        FilterInput::Json(Json::Bool(flag)) => Some(i64::from(*flag)),
        FilterInput::Json(Json::Number(number)) => json_int(number).or_else(|| number.as_f64().and_then(float_to_int)),
        FilterInput::Json(Json::String(text)) => {
            let text = text.trim();
            text.parse::<i64>()
                .ok()
                .or_else(|| parse_decimal(text).and_then(|decimal| i64::try_from(decimal.trunc()).ok()))
        }
        FilterInput::Foreign(foreign) => foreign.number.and_then(float_to_int),
        _ => None,
    };
    int.ok_or_else(|| cannot_convert(input, "int"))
}

fn float_to_int(float: f64) -> Option<i64> {
    // -2^63 and 2^63 are exact in f64, unlike i64::MAX.
    const BOUND: f64 = 9_223_372_036_854_775_808.0;
    let truncated = float.trunc();
    // NaN fails `contains`; inside the range the cast is exact.
    (-BOUND..BOUND).contains(&truncated).then_some(truncated as i64)
}

/// `float`: numbers, bools as 1.0/0.0, numeric strings (finite only).
pub(crate) fn to_float(input: &FilterInput<'_>) -> Result<f64, String> {
    let float = match input {
        FilterInput::Json(Json::Bool(flag)) => Some(if *flag { 1.0 } else { 0.0 }),
        FilterInput::Json(Json::Number(number)) => number.as_f64(),
        FilterInput::Json(Json::String(text)) => text.trim().parse::<f64>().ok(),
        FilterInput::Foreign(foreign) => foreign.number,
        _ => None,
    };
    float
        .filter(|float| float.is_finite())
        .ok_or_else(|| cannot_convert(input, "float"))
}

/// The decimal written by `f64::to_string`: the shortest text that reads back as
/// the same float, so 0.1 stays 0.1.
///
/// Formatting and re-parsing that text is the slow part of `decimal`, so common
/// floats are read without text: the first `s` (0 to 22) for which
/// `m = round(float × 10^s)` has at most 15 digits and `m / 10^s` (an exactly
/// rounded division, as `m < 2^53` and `10^s` are exact in f64) gives the float
/// back. Such an `m / 10^s` is a decimal of at most 15 significant digits that
/// reads as the float, and no two such decimals read as the same f64, so it is
/// the number `to_string` writes, and the smallest `s` has no trailing zero, as
/// `to_string` has none. Everything else takes the text route.
fn float_to_decimal(float: f64) -> Option<Decimal> {
    const LIMIT: f64 = 1e15;
    const POWERS: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    if float != 0.0 {
        for (scale, power) in (0u32..).zip(POWERS) {
            let scaled = (float * power).round();
            if scaled.abs() >= LIMIT {
                break;
            }
            if scaled / power == float {
                // |scaled| < 10^15, so the cast is exact.
                return Some(Decimal::new(scaled as i64, scale));
            }
        }
    }
    parse_decimal(&float.to_string())
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).ok()
}

/// The scale of `decimal(scale)` / `decimal(scale=…)`: the keyword wins, default 2.
pub(crate) fn decimal_scale(positional: Option<u32>, kwargs: &Kwargs) -> Result<u32, Error> {
    let scale = match kwargs.get::<Option<u32>>("scale")? {
        Some(scale) => scale,
        None => positional.unwrap_or(2),
    };
    kwargs.assert_all_used()?;
    Ok(scale)
}

/// `decimal(scale=2)`: a fixed-point STRING rounded half away from zero.
pub(crate) fn to_decimal(input: &FilterInput<'_>, scale: u32) -> Result<String, String> {
    const MAX_SCALE: u32 = 28;
    if scale > MAX_SCALE {
        return Err(format!(
            "decimal scale {scale} is too large; the maximum is {MAX_SCALE}"
        ));
    }
    let decimal = match input {
        FilterInput::Json(Json::Number(number)) => match json_int(number) {
            Some(int) => Some(Decimal::from(int)),
            None => number.as_f64().and_then(float_to_decimal),
        },
        FilterInput::Json(Json::String(text)) => parse_decimal(text.trim()),
        _ => None,
    };
    let decimal = decimal.ok_or_else(|| cannot_convert(input, "decimal"))?;
    let mut rounded = decimal.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(scale);
    Ok(decimal_text(&rounded))
}

/// The same text as `decimal.to_string()`, written directly: rust_decimal's
/// `Display` goes through the formatter and costs several times more.
fn decimal_text(decimal: &Decimal) -> String {
    // A 96-bit mantissa has at most 29 digits, and the scale is at most 28.
    let mut digits = [b'0'; 32];
    let mut start = digits.len();
    let mut rest = decimal.mantissa().unsigned_abs();
    while rest > u128::from(u64::MAX) {
        start -= 1;
        // `rest % 10` is a single digit.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // The loop above left at most 64 bits, and 64-bit division is much cheaper.
    let mut rest = rest as u64;
    while rest > 0 {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let scale = usize::try_from(decimal.scale()).unwrap_or(usize::MAX).min(28);
    // Like `Display`: at least `scale` digits, a "0" before a bare point, and
    // "0" for a zero with no scale.
    start = start.min(digits.len() - scale);
    // Only ASCII digits were written, so this cannot fail.
    let text = std::str::from_utf8(&digits[start..]).unwrap_or_default();
    let (whole, fraction) = text.split_at(text.len() - scale);
    let mut out = String::with_capacity(text.len() + 3);
    if decimal.is_sign_negative() {
        out.push('-');
    }
    out.push_str(if whole.is_empty() { "0" } else { whole });
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// A small stack buffer for formatting numbers without allocating.
#[derive(Default)]
struct ShortText {
    bytes: [u8; 32],
    len: usize,
}

impl ShortText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for ShortText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The `boolean` flag of `default(value, boolean)` / `default(…, boolean=…)`: the keyword wins.
pub(crate) fn default_boolean(positional: Option<bool>, kwargs: &Kwargs) -> Result<bool, Error> {
    let boolean = match kwargs.get::<Option<bool>>("boolean")? {
        Some(flag) => flag,
        None => positional.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    Ok(boolean)
}

/// Whether `default` replaces the input: undefined and null always; with
/// `boolean`, also everything falsy by minijinja's rules (`false`, `""`, `0`,
/// empty lists and maps).
pub(crate) fn is_missing(input: &FilterInput<'_>, boolean: bool) -> bool {
    let truthy = match input {
        FilterInput::Undefined | FilterInput::Json(Json::Null) => return true,
        FilterInput::Json(Json::Bool(flag)) => *flag,
        FilterInput::Json(Json::Number(number)) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => int != 0,
            (None, Some(int)) => int != 0,
            (None, None) => number.as_f64().is_some_and(|float| float != 0.0),
        },
        FilterInput::Json(Json::String(text)) => !text.is_empty(),
        FilterInput::Json(Json::Array(items)) => !items.is_empty(),
        FilterInput::Json(Json::Object(map)) => !map.is_empty(),
        FilterInput::Foreign(foreign) => foreign.truthy,
    };
    boolean && !truthy
}

/// `default(value, boolean=false)`. A missing field in `value` is handled here on
/// purpose, so its miss is forgiven; so is one in an unused replacement.
fn default(value: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    if args.len() > 2 {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    // Read raw: an `Option<Value>` argument would turn an undefined replacement into "none given".
    let replacement = args.first().filter(|v| !v.is_undefined()).cloned();
    let replacement_missing = args.first().is_some_and(Value::is_undefined);
    let boolean = match args.get(1) {
        Some(flag) if flag.is_none() || flag.is_undefined() => None,
        Some(flag) => Some(flag.is_true()),
        None => None,
    };
    let boolean = default_boolean(boolean, &kwargs)?;
    let replace = with_input(&value, |input| is_missing(input, boolean));
    if value.is_undefined() {
        // The value's lookup came before the replacement's.
        forgive_missing(usize::from(replacement_missing));
    } else if replacement_missing && !replace {
        forgive_missing(0);
    }
    Ok(if replace {
        replacement.unwrap_or_else(|| Value::from(""))
    } else {
        value
    })
}

/// `sql_list`: a list as the inside of an SQL `IN (…)`: text single-quoted with quotes
/// doubled, numbers as they are, joined by commas (`['a', "o'k", 3]` → `'a','o''k',3`).
pub(crate) fn sql_list(input: &FilterInput<'_>) -> Result<String, String> {
    let items = match input {
        FilterInput::Json(Json::Array(items)) => items,
        other => return Err(format!("sql_list needs a list, not {}", describe_input(other))),
    };
    let mut out = String::new();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match item {
            Json::Number(number) => out.push_str(&number.to_string()),
            Json::String(text) => {
                out.push('\'');
                out.push_str(&text.replace('\'', "''"));
                out.push('\'');
            }
            other => return Err(format!("sql_list takes text and numbers, not {other}")),
        }
    }
    if out.is_empty() {
        // `IN ()` is a syntax error in every SQL dialect; no key can equal NULL.
        out.push_str("NULL");
    }
    Ok(out)
}

/// `optional`: a field that may be absent reads as null instead of failing the record.
fn optional(value: Value) -> Value {
    if value.is_undefined() {
        forgive_missing(0);
        Value::from(())
    } else {
        value
    }
}

/// The `defined` and `undefined` tests: asking is handling, so a miss is forgiven.
fn is_defined(value: &Value) -> bool {
    if value.is_undefined() {
        forgive_missing(0);
        false
    } else {
        true
    }
}

fn hash_input(input: &FilterInput<'_>, name: &str) -> Result<String, String> {
    if is_null(input) {
        return Err(format!(
            "cannot {name} {}; use default(...) first if the field may be empty",
            describe_input(input)
        ));
    }
    input_text(input)
}

/// `md5`: lowercase hex of the text form.
pub(crate) fn md5_hex(input: &FilterInput<'_>) -> Result<String, String> {
    Ok(hex::encode(Md5::digest(hash_input(input, "md5")?.as_bytes())))
}

/// `sha256`: lowercase hex of the text form.
pub(crate) fn sha256_hex(input: &FilterInput<'_>) -> Result<String, String> {
    Ok(hex::encode(Sha256::digest(hash_input(input, "sha256")?.as_bytes())))
}

/// `json`: compact JSON text (undefined is `null`).
pub(crate) fn json_text_of(input: &FilterInput<'_>) -> Result<String, String> {
    match input {
        FilterInput::Undefined => Ok(Json::Null.to_string()),
        FilterInput::Json(json) => Ok(json.to_string()),
        FilterInput::Foreign(foreign) => Err(foreign.reason.clone()),
    }
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(key: &str, message: &str) -> Result<String, Error> {
    let mut mac =
        <M as Mac>::new_from_slice(key.as_bytes()).map_err(|err| invalid(format!("hmac rejected the key: {err}")))?;
    mac.update(message.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// `hmac(key, algo='sha256')`: lowercase hex.
fn hmac_filter(value: Value, key: Value, algo: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let algo = match kwargs.get::<Option<String>>("algo")? {
        Some(name) => name,
        None => algo.unwrap_or_else(|| "sha256".to_owned()),
    };
    kwargs.assert_all_used()?;
    let message = with_input(&value, |input| hash_input(input, "hmac")).map_err(invalid)?;
    if key.is_undefined() || key.is_none() {
        return Err(invalid("hmac needs a key, got null"));
    }
    let key = value_text(&key).map_err(invalid)?;
    match algo.to_ascii_lowercase().as_str() {
        "sha256" => hmac_hex::<Hmac<Sha256>>(&key, &message),
        "sha1" => hmac_hex::<Hmac<Sha1>>(&key, &message),
        "md5" => hmac_hex::<Hmac<Md5>>(&key, &message),
        other => Err(invalid(format!(
            "unknown hmac algorithm {other:?}; choose sha256, sha1 or md5"
        ))),
    }
}

fn from_json(value: Value) -> Result<Value, Error> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(format!("from_json needs a string, got {}", describe(&value))))?;
    let json: Json = serde_json::from_str(text)
        .map_err(|err| invalid(format!("from_json could not parse {}: {err}", describe(&value))))?;
    Ok(json_to_value(json))
}

/// `map('name')` with a value map: the entry for the input's key, else the map's
/// `default` entry, else an error. The key is the input's text: strings as they
/// are, undefined as `null`, anything else as its JSON text.
pub(crate) fn map_entry<'m>(
    map: &'m Map<String, Json>,
    name: &str,
    input: &FilterInput<'_>,
) -> Result<&'m Json, String> {
    let mut number_text = ShortText::default();
    let owned_text;
    let key = match input {
        FilterInput::Undefined => "null",
        FilterInput::Json(Json::String(text)) => text,
        // The same text as `json.to_string()`, without allocating.
        FilterInput::Json(Json::Number(number)) if write!(number_text, "{number}").is_ok() => number_text.as_str(),
        FilterInput::Json(json) => {
            owned_text = json.to_string();
            &owned_text
        }
        FilterInput::Foreign(foreign) => return Err(foreign.reason.clone()),
    };
    map.get(key)
        .or_else(|| map.get("default"))
        .ok_or_else(|| format!("value {key:?} is not in value map {name:?} and the map has no default"))
}

fn value_map(options: &TemplateOptions, state: &State, value: Value, args: Rest<Value>) -> Result<Value, Error> {
    let name = args.first().and_then(Value::as_str);
    let has_kwargs = args.iter().any(Value::is_kwargs);
    let is_builtin_use =
        has_kwargs || name.is_some_and(|name| !options.value_maps.contains_key(name) && FILTERS.contains(&name));
    if is_builtin_use {
        let mapped = minijinja::filters::map(state, value, args)?;
        return Ok(Value::from(mapped));
    }
    let (Some(name), 1) = (name, args.len()) else {
        return Err(invalid(
            "map needs exactly one argument: the name of a value map, e.g. map('status')",
        ));
    };
    let Some(map) = options.value_maps.get(name) else {
        return Err(invalid(unknown_value_map(options, name)));
    };
    with_input(&value, |input| map_entry(map, name, input))
        .map(|mapped| json_to_value(mapped.clone()))
        .map_err(invalid)
}

/// Message for a value map name that does not exist.
pub(crate) fn unknown_value_map(options: &TemplateOptions, name: &str) -> String {
    if options.value_maps.is_empty() {
        format!("unknown value map {name:?}; the scheme defines no value maps")
    } else {
        let known: Vec<&str> = options.value_maps.keys().map(String::as_str).collect();
        format!("unknown value map {name:?}; known maps: {}", known.join(", "))
    }
}

fn mapped_id(state: &State, object: &Value, source_id: &Value) -> Result<Value, Error> {
    let object = object.as_str().ok_or_else(|| {
        invalid(format!(
            "mapped_id needs an object name string, got {}",
            describe(object)
        ))
    })?;
    if source_id.is_undefined() || source_id.is_none() || source_id.as_str() == Some("") {
        return Err(invalid(format!(
            "mapped_id for {object} needs a source id, got {}",
            describe(source_id)
        )));
    }
    let source_id = value_text(source_id).map_err(invalid)?;
    let context = state
        .lookup(SCOPE_HANDLE)
        .and_then(|handle| handle.downcast_object::<ScopeContext>());
    let Some(service) = context.as_ref().and_then(|context| context.scope.mapped_ids.as_ref()) else {
        return Err(invalid(format!(
            "mapped_id({object:?}, {source_id:?}) needs the id-mapping store, which is not available here"
        )));
    };
    match service.mapped_id(object, &source_id) {
        Ok(Some(target_id)) => Ok(Value::from(target_id)),
        Ok(None) => Err(invalid(format!(
            "no mapping yet for {object} source id {source_id}; run the scheme that creates {object} first"
        ))),
        Err(message) => Err(invalid(format!(
            "mapped_id lookup for {object} source id {source_id} failed: {message}"
        ))),
    }
}

/// Adds the filters and functions of this module to `env`.
pub(crate) fn register(env: &mut Environment<'static>, options: &Arc<TemplateOptions>) {
    env.add_filter("int", |value: Value| with_input(&value, to_int).map_err(invalid));
    env.add_filter("float", |value: Value| with_input(&value, to_float).map_err(invalid));
    env.add_filter(
        "decimal",
        |value: Value, scale: Option<u32>, kwargs: Kwargs| -> Result<String, Error> {
            let scale = decimal_scale(scale, &kwargs)?;
            with_input(&value, |input| to_decimal(input, scale)).map_err(invalid)
        },
    );
    env.add_filter("string", |value: Value| with_input(&value, input_text).map_err(invalid));
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("optional", optional);
    env.add_filter("sql_list", |value: Value| with_input(&value, sql_list).map_err(invalid));
    env.add_test("defined", |value: &Value| is_defined(value));
    env.add_test("undefined", |value: &Value| !is_defined(value));
    env.add_filter("md5", |value: Value| with_input(&value, md5_hex).map_err(invalid));
    env.add_filter("sha256", |value: Value| with_input(&value, sha256_hex).map_err(invalid));
    env.add_filter("hmac", hmac_filter);
    env.add_filter("json", |value: Value| with_input(&value, json_text_of).map_err(invalid));
    env.add_filter("from_json", from_json);
    let map_options = options.clone();
    env.add_filter(
        "map",
        move |state: &State, value: Value, args: Rest<Value>| -> Result<Value, Error> {
            value_map(&map_options, state, value, args)
        },
    );
    env.add_filter(
        "mapped_id",
        |state: &State, source_id: Value, object: Value| -> Result<Value, Error> {
            mapped_id(state, &object, &source_id)
        },
    );
    env.add_function(
        "mapped_id",
        |state: &State, object: Value, source_id: Value| -> Result<Value, Error> {
            mapped_id(state, &object, &source_id)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(value: Value) -> Result<i64, String> {
        with_input(&value, to_int)
    }

    fn float(value: Value) -> Result<f64, String> {
        with_input(&value, to_float)
    }

    fn decimal(value: Value, scale: u32) -> Result<String, String> {
        with_input(&value, |input| to_decimal(input, scale))
    }

    #[test]
    fn sql_lists_quote_text_and_keep_numbers() {
        let list = |json: Json| with_input(&Value::from_serialize(&json), sql_list);
        assert_eq!(list(serde_json::json!(["a", "o'k", 3])).unwrap(), "'a','o''k',3");
        assert_eq!(list(serde_json::json!([])).unwrap(), "NULL");
        assert!(list(serde_json::json!("a")).is_err());
        assert!(list(serde_json::json!([{"a": 1}])).is_err());
    }

    #[test]
    fn int_conversions() {
        assert_eq!(int(Value::from(" 42 ")).unwrap(), 42);
        assert_eq!(int(Value::from("-7")).unwrap(), -7);
        assert_eq!(int(Value::from("12.00")).unwrap(), 12);
        assert_eq!(int(Value::from(3.9)).unwrap(), 3);
        assert_eq!(int(Value::from(-3.9)).unwrap(), -3);
        assert_eq!(int(Value::from(true)).unwrap(), 1);
        assert_eq!(int(Value::from(false)).unwrap(), 0);
        assert_eq!(int(Value::from("abc")).unwrap_err(), "cannot convert \"abc\" to int");
        let err = int(Value::from(())).unwrap_err();
        assert!(err.starts_with("cannot convert null to int; use default"), "{err}");
        assert_eq!(int(Value::from(f64::NAN)).unwrap_err(), "cannot convert NaN to int");
        assert!(int(Value::from(1e300)).is_err());
        assert!(int(Value::from("")).is_err());
        // minijinja reads 2^63 as a float that converts to i64::MAX and back unchanged.
        assert_eq!(int(Value::from(9_223_372_036_854_775_808.0)).unwrap(), i64::MAX);
        assert!(int(Value::from(u64::MAX)).is_err());
    }

    #[test]
    fn float_conversions() {
        assert_eq!(float(Value::from(" 1.5\n")).unwrap(), 1.5);
        assert_eq!(float(Value::from(2)).unwrap(), 2.0);
        assert_eq!(float(Value::from(true)).unwrap(), 1.0);
        assert_eq!(
            float(Value::from("1,5")).unwrap_err(),
            "cannot convert \"1,5\" to float"
        );
        assert!(float(Value::from("inf")).is_err());
        assert!(float(Value::from("NaN")).is_err());
        assert_eq!(
            float(Value::from(f64::INFINITY)).unwrap_err(),
            "cannot convert inf to float"
        );
    }

    #[test]
    fn decimal_rounds_half_away_from_zero_and_pads() {
        assert_eq!(decimal(Value::from(12.3), 2).unwrap(), "12.30");
        assert_eq!(decimal(Value::from(0.1 + 0.2), 2).unwrap(), "0.30");
        assert_eq!(decimal(Value::from("2.345"), 2).unwrap(), "2.35");
        assert_eq!(decimal(Value::from("-2.345"), 2).unwrap(), "-2.35");
        assert_eq!(decimal(Value::from(" 7 "), 0).unwrap(), "7");
        assert_eq!(decimal(Value::from(5), 3).unwrap(), "5.000");
        assert_eq!(decimal(Value::from("1e-3"), 4).unwrap(), "0.0010");
        assert_eq!(decimal(Value::from(0.125), 2).unwrap(), "0.13");
        assert_eq!(decimal(Value::from(-0.0), 2).unwrap(), "0.00");
        assert_eq!(
            decimal(Value::from("12,3"), 2).unwrap_err(),
            "cannot convert \"12,3\" to decimal"
        );
        assert!(decimal(Value::from(true), 2).is_err());
        assert!(decimal(Value::from(1), 29).is_err());
    }

    #[test]
    fn float_decimals_match_the_text_of_the_float() {
        for float in [
            0.1,
            0.2 + 0.1,
            12.345,
            -2.5,
            1e-7,
            123_456_789.012_345_6,
            5e-324,
            1e22,
            0.1 + 0.7,
        ] {
            let expected = parse_decimal(&float.to_string()).map(|decimal| decimal.to_string());
            assert_eq!(
                float_to_decimal(float).map(|decimal| decimal.to_string()),
                expected,
                "{float:e}"
            );
        }
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut checked = 0;
        while checked < 400_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Random bit patterns cover every magnitude; random fractions the common ones.
            let float = match checked % 4 {
                0 => f64::from_bits(state),
                1 => (state % 10_000_000) as f64 / 1000.0,
                2 => (state % (1 << 53)) as f64 / 10_f64.powi((state % 20) as i32),
                _ => (state % 1_000_000_000_000_000) as f64 * 10_f64.powi((state % 40) as i32 - 30),
            };
            if !float.is_finite() {
                continue;
            }
            let expected = parse_decimal(&float.to_string()).map(|decimal| decimal.to_string());
            assert_eq!(
                float_to_decimal(float).map(|decimal| decimal.to_string()),
                expected,
                "{float:e}"
            );
            checked += 1;
        }
    }

    #[test]
    fn decimal_text_matches_display() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cases = vec![Decimal::ZERO, Decimal::MAX, Decimal::MIN, Decimal::new(-1, 28)];
        for scale in 0..=28 {
            cases.push(Decimal::from_parts(0, 0, 0, true, scale));
            cases.push(Decimal::from_parts(0, 0, 0, false, scale));
            cases.push(Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, true, scale));
        }
        for _ in 0..100_000 {
            let (bits, sign) = (next(), next());
            let hi = if bits % 3 == 0 { (bits >> 32) as u32 } else { 0 };
            let mid = if bits % 2 == 0 { (bits >> 16) as u32 } else { 0 };
            cases.push(Decimal::from_parts(
                bits as u32,
                mid,
                hi,
                sign % 2 == 0,
                (sign >> 8) as u32 % 29,
            ));
        }
        for decimal in cases {
            assert_eq!(decimal_text(&decimal), decimal.to_string());
        }
    }

    #[test]
    fn missing_follows_minijinja_truthiness() {
        let missing = |json: &Json, boolean: bool| is_missing(&FilterInput::Json(json), boolean);
        assert!(is_missing(&FilterInput::Undefined, false));
        assert!(missing(&Json::Null, false));
        assert!(!missing(&json!(""), false));
        for falsy in [json!(false), json!(""), json!(0), json!(0.0), json!([]), json!({})] {
            assert!(missing(&falsy, true), "{falsy}");
            assert!(!json_to_value(falsy.clone()).is_true(), "{falsy}");
        }
        for truthy in [
            json!(true),
            json!(" "),
            json!(-1),
            json!(0.5),
            json!(u64::MAX),
            json!([0]),
            json!({"a": 0}),
        ] {
            assert!(!missing(&truthy, true), "{truthy}");
            assert!(json_to_value(truthy.clone()).is_true(), "{truthy}");
        }
    }

    use serde_json::json;
}
