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

use std::str::FromStr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value as Json;
use sha1::Sha1;
use sha2::Sha256;

use super::scope::{describe, json_to_value, value_text, value_to_json, ScopeContext, SCOPE_HANDLE};
use super::{TemplateOptions, FILTERS};

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

fn cannot_convert(value: &Value, target: &str) -> Error {
    let hint = if value.is_undefined() || value.is_none() {
        format!("; use default(...) before {target} if the field may be empty")
    } else {
        String::new()
    };
    invalid(format!("cannot convert {} to {target}{hint}", describe(value)))
}

/// `int`: integers as they are, floats truncated toward zero, bools as 1/0,
/// numeric strings (surrounding whitespace allowed, `"12.00"` too).
pub(crate) fn to_int(value: &Value) -> Result<i64, Error> {
    match value.kind() {
        ValueKind::Bool => Ok(i64::from(value.is_true())),
        ValueKind::Number => {
            if let Ok(int) = i64::try_from(value.clone()) {
                return Ok(int);
            }
            let float = f64::try_from(value.clone()).map_err(|_| cannot_convert(value, "int"))?;
            float_to_int(float).ok_or_else(|| cannot_convert(value, "int"))
        }
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim();
            if let Ok(int) = text.parse::<i64>() {
                return Ok(int);
            }
            parse_decimal(text)
                .and_then(|decimal| i64::try_from(decimal.trunc()).ok())
                .ok_or_else(|| cannot_convert(value, "int"))
        }
        _ => Err(cannot_convert(value, "int")),
    }
}

fn float_to_int(float: f64) -> Option<i64> {
    // -2^63 and 2^63 are exact in f64, unlike i64::MAX.
    const BOUND: f64 = 9_223_372_036_854_775_808.0;
    let truncated = float.trunc();
    // NaN fails `contains`; inside the range the cast is exact.
    (-BOUND..BOUND).contains(&truncated).then_some(truncated as i64)
}

/// `float`: numbers, bools as 1.0/0.0, numeric strings (finite only).
pub(crate) fn to_float(value: &Value) -> Result<f64, Error> {
    let float = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        ValueKind::String => value.as_str().unwrap_or_default().trim().parse::<f64>().ok(),
        _ => None,
    };
    float
        .filter(|float| float.is_finite())
        .ok_or_else(|| cannot_convert(value, "float"))
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).ok()
}

/// `decimal(scale=2)`: a fixed-point STRING rounded half away from zero.
pub(crate) fn to_decimal(value: &Value, scale: u32) -> Result<String, Error> {
    const MAX_SCALE: u32 = 28;
    if scale > MAX_SCALE {
        return Err(invalid(format!(
            "decimal scale {scale} is too large; the maximum is {MAX_SCALE}"
        )));
    }
    let decimal = match value.kind() {
        ValueKind::Number => {
            if let Ok(int) = i64::try_from(value.clone()) {
                Some(Decimal::from(int))
            } else {
                // The shortest text that reads back as the same float, so 0.1 stays 0.1.
                f64::try_from(value.clone())
                    .ok()
                    .filter(|float| float.is_finite())
                    .and_then(|float| parse_decimal(&float.to_string()))
            }
        }
        ValueKind::String => parse_decimal(value.as_str().unwrap_or_default().trim()),
        _ => None,
    };
    let decimal = decimal.ok_or_else(|| cannot_convert(value, "decimal"))?;
    let mut rounded = decimal.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(scale);
    Ok(rounded.to_string())
}

/// `default(value, boolean=false)`.
fn default(value: Value, replacement: Option<Value>, boolean: Option<bool>, kwargs: Kwargs) -> Result<Value, Error> {
    let boolean = match kwargs.get::<Option<bool>>("boolean")? {
        Some(flag) => flag,
        None => boolean.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let missing = value.is_undefined() || value.is_none() || (boolean && !value.is_true());
    Ok(if missing {
        replacement.unwrap_or_else(|| Value::from(""))
    } else {
        value
    })
}

fn hash_input(value: &Value, name: &str) -> Result<String, Error> {
    if value.is_undefined() || value.is_none() {
        return Err(invalid(format!(
            "cannot {name} {}; use default(...) first if the field may be empty",
            describe(value)
        )));
    }
    value_text(value).map_err(invalid)
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
    let message = hash_input(&value, "hmac")?;
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

/// The key a value is looked up by in a value map.
fn map_key(value: &Value) -> Result<String, Error> {
    if value.is_undefined() {
        return Ok("null".to_owned());
    }
    if let Some(text) = value.as_str() {
        return Ok(text.to_owned());
    }
    value_to_json(value).map(|json| json.to_string()).map_err(invalid)
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
    let key = map_key(&value)?;
    match map.get(&key).or_else(|| map.get("default")) {
        Some(mapped) => Ok(json_to_value(mapped.clone())),
        None => Err(invalid(format!(
            "value {key:?} is not in value map {name:?} and the map has no default"
        ))),
    }
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
    env.add_filter("int", |value: Value| to_int(&value));
    env.add_filter("float", |value: Value| to_float(&value));
    env.add_filter(
        "decimal",
        |value: Value, scale: Option<u32>, kwargs: Kwargs| -> Result<String, Error> {
            let scale = match kwargs.get::<Option<u32>>("scale")? {
                Some(scale) => scale,
                None => scale.unwrap_or(2),
            };
            kwargs.assert_all_used()?;
            to_decimal(&value, scale)
        },
    );
    env.add_filter("string", |value: Value| value_text(&value).map_err(invalid));
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("md5", |value: Value| -> Result<String, Error> {
        Ok(hex::encode(Md5::digest(hash_input(&value, "md5")?.as_bytes())))
    });
    env.add_filter("sha256", |value: Value| -> Result<String, Error> {
        Ok(hex::encode(Sha256::digest(hash_input(&value, "sha256")?.as_bytes())))
    });
    env.add_filter("hmac", hmac_filter);
    env.add_filter("json", |value: Value| -> Result<String, Error> {
        value_to_json(&value).map(|json| json.to_string()).map_err(invalid)
    });
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

    #[test]
    fn int_conversions() {
        assert_eq!(to_int(&Value::from(" 42 ")).unwrap(), 42);
        assert_eq!(to_int(&Value::from("-7")).unwrap(), -7);
        assert_eq!(to_int(&Value::from("12.00")).unwrap(), 12);
        assert_eq!(to_int(&Value::from(3.9)).unwrap(), 3);
        assert_eq!(to_int(&Value::from(-3.9)).unwrap(), -3);
        assert_eq!(to_int(&Value::from(true)).unwrap(), 1);
        assert_eq!(to_int(&Value::from(false)).unwrap(), 0);
        let err = to_int(&Value::from("abc")).unwrap_err();
        assert_eq!(err.detail(), Some("cannot convert \"abc\" to int"));
        let err = to_int(&Value::from(())).unwrap_err();
        assert!(err
            .detail()
            .unwrap_or_default()
            .starts_with("cannot convert null to int; use default"));
        assert!(to_int(&Value::from(f64::NAN)).is_err());
        assert!(to_int(&Value::from(1e300)).is_err());
        assert!(to_int(&Value::from("")).is_err());
    }

    #[test]
    fn float_conversions() {
        assert_eq!(to_float(&Value::from(" 1.5\n")).unwrap(), 1.5);
        assert_eq!(to_float(&Value::from(2)).unwrap(), 2.0);
        assert_eq!(to_float(&Value::from(true)).unwrap(), 1.0);
        let err = to_float(&Value::from("1,5")).unwrap_err();
        assert_eq!(err.detail(), Some("cannot convert \"1,5\" to float"));
        assert!(to_float(&Value::from("inf")).is_err());
        assert!(to_float(&Value::from("NaN")).is_err());
    }

    #[test]
    fn decimal_rounds_half_away_from_zero_and_pads() {
        assert_eq!(to_decimal(&Value::from(12.3), 2).unwrap(), "12.30");
        assert_eq!(to_decimal(&Value::from(0.1 + 0.2), 2).unwrap(), "0.30");
        assert_eq!(to_decimal(&Value::from("2.345"), 2).unwrap(), "2.35");
        assert_eq!(to_decimal(&Value::from("-2.345"), 2).unwrap(), "-2.35");
        assert_eq!(to_decimal(&Value::from(" 7 "), 0).unwrap(), "7");
        assert_eq!(to_decimal(&Value::from(5), 3).unwrap(), "5.000");
        assert_eq!(to_decimal(&Value::from("1e-3"), 4).unwrap(), "0.0010");
        assert_eq!(to_decimal(&Value::from(0.125), 2).unwrap(), "0.13");
        let err = to_decimal(&Value::from("12,3"), 2).unwrap_err();
        assert_eq!(err.detail(), Some("cannot convert \"12,3\" to decimal"));
        assert!(to_decimal(&Value::from(true), 2).is_err());
        assert!(to_decimal(&Value::from(1), 29).is_err());
    }
}
