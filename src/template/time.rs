//! Date and time filters: `datetime`, `date`, `timestamp`, `timestamp_ms`, `iso`.
//!
//! Every filter reads its input into one instant, then formats it in a time zone.
//! The zone is the environment's (default `Asia/Shanghai`) unless the call passes
//! `tz='UTC'` (any IANA name). Naive input (no offset) is read in `from_tz` if
//! given, else in that same zone.
//!
//! Accepted input: RFC 3339 (`2024-03-01T08:00:00Z`, `…+08:00`), `YYYY-MM-DD HH:MM:SS`,
//! `YYYY-MM-DDTHH:MM:SS`, `YYYY/MM/DD HH:MM:SS` (each with optional fraction and
//! with or without seconds), `YYYY-MM-DD`, `YYYY/MM/DD`, and epoch numbers or digit
//! strings (seconds, or milliseconds from 1e11 up). `from='%d/%m/%Y'` replaces the
//! guessing with one explicit chrono format. Null, undefined and anything else
//! is an error that names the value, so a bad date never turns into a plausible one.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

use super::scope::describe;
use super::TemplateOptions;

/// Epoch numbers at or above this magnitude are milliseconds.
const EPOCH_MS_THRESHOLD: f64 = 1e11;

const NAIVE_DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M",
];
const NAIVE_DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%Y/%m/%d"];
const OFFSET_FORMATS: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];

/// Options shared by every time filter, read from keyword arguments.
struct TimeArgs {
    zone: Tz,
    from_zone: Tz,
    from_format: Option<String>,
}

impl TimeArgs {
    fn read(kwargs: &Kwargs, default_zone: Tz) -> Result<TimeArgs, Error> {
        let zone = match kwargs.get::<Option<&str>>("tz")? {
            Some(name) => parse_zone(name)?,
            None => default_zone,
        };
        let from_zone = match kwargs.get::<Option<&str>>("from_tz")? {
            Some(name) => parse_zone(name)?,
            None => zone,
        };
        let from_format = kwargs.get::<Option<String>>("from")?;
        Ok(TimeArgs {
            zone,
            from_zone,
            from_format,
        })
    }

    fn instant(&self, value: &Value) -> Result<DateTime<Utc>, Error> {
        parse_instant(value, self.from_zone, self.from_format.as_deref()).map_err(invalid)
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

fn parse_zone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| {
        invalid(format!(
            "unknown time zone {name:?}; use an IANA name such as \"Asia/Shanghai\" or \"UTC\""
        ))
    })
}

/// Reads one instant from a template value (see the module doc for the accepted forms).
pub(crate) fn parse_instant(value: &Value, naive_zone: Tz, from_format: Option<&str>) -> Result<DateTime<Utc>, String> {
    match value.kind() {
        ValueKind::Number => {
            let epoch = f64::try_from(value.clone()).map_err(|err| err.to_string())?;
            from_epoch(epoch, &describe(value))
        }
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim();
            match from_format {
                Some(format) => parse_with_format(text, format, naive_zone),
                None => parse_guessing(text, naive_zone),
            }
        }
        _ => Err(format!(
            "cannot read {} as a date/time; use default(...) first if the field may be empty",
            describe(value)
        )),
    }
}

fn from_epoch(epoch: f64, shown: &str) -> Result<DateTime<Utc>, String> {
    if !epoch.is_finite() {
        return Err(format!("cannot read {shown} as epoch time"));
    }
    let millis = if epoch.abs() >= EPOCH_MS_THRESHOLD {
        epoch.round()
    } else {
        (epoch * 1000.0).round()
    };
    // Range-checked by `from_timestamp_millis`; the cast saturates for absurd values.
    DateTime::from_timestamp_millis(millis as i64).ok_or_else(|| format!("epoch time {shown} is out of range"))
}

fn parse_guessing(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        let epoch: f64 = text
            .parse()
            .map_err(|_| format!("cannot read {text:?} as epoch time"))?;
        return from_epoch(epoch, &format!("{text:?}"));
    }
    if let Some(naive) = parse_common_naive(text) {
        return localize(naive, zone, text);
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    for format in OFFSET_FORMATS {
        if let Ok(instant) = DateTime::parse_from_str(text, format) {
            return Ok(instant.with_timezone(&Utc));
        }
    }
    for format in NAIVE_DATETIME_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return localize(naive, zone, text);
        }
    }
    for format in NAIVE_DATE_FORMATS {
        if let Ok(date) = NaiveDate::parse_from_str(text, format) {
            return localize(date.and_time(chrono::NaiveTime::MIN), zone, text);
        }
    }
    Err(format!(
        "cannot read {text:?} as a date/time; expected RFC 3339, \"YYYY-MM-DD HH:MM:SS\", \
         \"YYYY-MM-DD\", \"YYYY/MM/DD HH:MM:SS\" or epoch seconds/milliseconds \
         (or pass from='<chrono format>')"
    ))
}

/// Positional reader for the most common shapes, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`
/// and `YYYY-MM-DDTHH:MM:SS`, which skips chrono's format interpreter (several
/// times faster). Anything else returns `None` and takes the general route.
fn parse_common_naive(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes.get(range)?.iter().try_fold(0u32, |total, byte| {
            byte.is_ascii_digit().then(|| total * 10 + u32::from(byte - b'0'))
        })
    };
    if bytes.len() != 10 && bytes.len() != 19 {
        return None;
    }
    if bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i32::try_from(number(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    if bytes.len() == 10 {
        return Some(date.and_time(chrono::NaiveTime::MIN));
    }
    if !matches!(bytes[10], b' ' | b'T') || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    date.and_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)
}

fn parse_with_format(text: &str, format: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    check_format(format)?;
    if let Ok(instant) = DateTime::parse_from_str(text, format) {
        return Ok(instant.with_timezone(&Utc));
    }
    match NaiveDateTime::parse_from_str(text, format) {
        Ok(naive) => localize(naive, zone, text),
        Err(datetime_error) => match NaiveDate::parse_from_str(text, format) {
            Ok(date) => localize(date.and_time(chrono::NaiveTime::MIN), zone, text),
            Err(_) => Err(format!("cannot read {text:?} with format {format:?}: {datetime_error}")),
        },
    }
}

fn localize(naive: NaiveDateTime, zone: Tz, text: &str) -> Result<DateTime<Utc>, String> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(local) => Ok(local.with_timezone(&Utc)),
        LocalResult::Ambiguous(earliest, _) => Ok(earliest.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "{text:?} does not exist in time zone {zone} (skipped by a daylight-saving change)"
        )),
    }
}

fn check_format(format: &str) -> Result<(), String> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        Err(format!(
            "invalid date format {format:?}; see chrono's strftime syntax (e.g. \"%Y-%m-%d %H:%M:%S\")"
        ))
    } else {
        Ok(())
    }
}

/// Formats an instant in a zone with a strftime pattern, rejecting bad patterns
/// instead of panicking as chrono's `Display` would.
pub(crate) fn format_instant(instant: DateTime<Utc>, zone: Tz, format: &str) -> Result<String, String> {
    let local = instant.with_timezone(&zone);
    let mut out = String::with_capacity(24);
    let written = match format {
        // The two default formats, written directly (chrono's interpreter is slower).
        "%Y-%m-%d %H:%M:%S" | "%Y-%m-%d" if (0..=9999).contains(&local.year()) => {
            let written = write!(out, "{:04}-{:02}-{:02}", local.year(), local.month(), local.day());
            if format.len() > 8 {
                let time = (local.hour(), local.minute(), local.second());
                write!(out, " {:02}:{:02}:{:02}", time.0, time.1, time.2).and(written)
            } else {
                written
            }
        }
        _ => {
            check_format(format)?;
            write!(out, "{}", local.format_with_items(StrftimeItems::new(format)))
        }
    };
    written.map_err(|_| format!("cannot format a date with {format:?}"))?;
    Ok(out)
}

fn format_arg(positional: Option<String>, kwargs: &Kwargs, default: &str) -> Result<String, Error> {
    let keyword = kwargs.get::<Option<String>>("format")?;
    Ok(positional.or(keyword).unwrap_or_else(|| default.to_owned()))
}

/// Adds the time filters to `env`.
pub(crate) fn register(env: &mut Environment<'static>, options: &Arc<TemplateOptions>) {
    let zone = options.timezone;
    env.add_filter(
        "datetime",
        move |value: Value, format: Option<String>, kwargs: Kwargs| -> Result<String, Error> {
            let args = TimeArgs::read(&kwargs, zone)?;
            let format = format_arg(format, &kwargs, "%Y-%m-%d %H:%M:%S")?;
            kwargs.assert_all_used()?;
            format_instant(args.instant(&value)?, args.zone, &format).map_err(invalid)
        },
    );
    env.add_filter(
        "date",
        move |value: Value, format: Option<String>, kwargs: Kwargs| -> Result<String, Error> {
            let args = TimeArgs::read(&kwargs, zone)?;
            let format = format_arg(format, &kwargs, "%Y-%m-%d")?;
            kwargs.assert_all_used()?;
            format_instant(args.instant(&value)?, args.zone, &format).map_err(invalid)
        },
    );
    env.add_filter("timestamp", move |value: Value, kwargs: Kwargs| -> Result<i64, Error> {
        let args = TimeArgs::read(&kwargs, zone)?;
        kwargs.assert_all_used()?;
        Ok(args.instant(&value)?.timestamp())
    });
    env.add_filter(
        "timestamp_ms",
        move |value: Value, kwargs: Kwargs| -> Result<i64, Error> {
            let args = TimeArgs::read(&kwargs, zone)?;
            kwargs.assert_all_used()?;
            Ok(args.instant(&value)?.timestamp_millis())
        },
    );
    env.add_filter("iso", move |value: Value, kwargs: Kwargs| -> Result<String, Error> {
        let args = TimeArgs::read(&kwargs, zone)?;
        kwargs.assert_all_used()?;
        let instant = args.instant(&value)?.with_timezone(&args.zone);
        Ok(instant.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> Tz {
        chrono_tz::Asia::Shanghai
    }

    fn instant(text: &str) -> DateTime<Utc> {
        parse_instant(&Value::from(text), shanghai(), None).unwrap()
    }

    #[test]
    fn naive_text_is_read_in_the_zone() {
        let expected = Utc.with_ymd_and_hms(2024, 3, 1, 0, 30, 0).unwrap();
        assert_eq!(instant("2024-03-01 08:30:00"), expected);
        assert_eq!(instant("2024-03-01T08:30:00"), expected);
        assert_eq!(instant("2024/03/01 08:30:00"), expected);
        assert_eq!(instant("2024-03-01 08:30"), expected);
        assert_eq!(instant(" 2024-03-01 08:30:00.000 "), expected);
        let midnight = Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap();
        assert_eq!(instant("2024-03-01"), midnight);
        assert_eq!(instant("2024/03/01"), midnight);
    }

    #[test]
    fn offsets_and_epochs_are_absolute() {
        let expected = Utc.with_ymd_and_hms(2024, 3, 1, 0, 30, 0).unwrap();
        assert_eq!(instant("2024-03-01T00:30:00Z"), expected);
        assert_eq!(instant("2024-03-01T08:30:00+08:00"), expected);
        assert_eq!(instant("2024-03-01 08:30:00+08:00"), expected);
        assert_eq!(instant("2024-03-01T08:30:00.000+0800"), expected);
        let seconds = expected.timestamp();
        assert_eq!(instant(&seconds.to_string()), expected);
        assert_eq!(instant(&(seconds * 1000).to_string()), expected);
        let zone = shanghai();
        assert_eq!(parse_instant(&Value::from(seconds), zone, None).unwrap(), expected);
        assert_eq!(
            parse_instant(&Value::from(seconds * 1000), zone, None).unwrap(),
            expected
        );
        assert_eq!(
            parse_instant(&Value::from(seconds as f64 + 0.5), zone, None)
                .unwrap()
                .timestamp_millis(),
            seconds * 1000 + 500
        );
    }

    #[test]
    fn explicit_format() {
        let zone = shanghai();
        let parsed = parse_instant(&Value::from("01/03/2024"), zone, Some("%d/%m/%Y")).unwrap();
        assert_eq!(parsed, Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap());
        let err = parse_instant(&Value::from("2024-03-01"), zone, Some("%d/%m/%Y")).unwrap_err();
        assert!(err.contains("with format \"%d/%m/%Y\""), "{err}");
        let err = parse_instant(&Value::from("x"), zone, Some("%Q")).unwrap_err();
        assert!(err.contains("invalid date format"), "{err}");
    }

    #[test]
    fn bad_input_is_named() {
        let zone = shanghai();
        let err = parse_instant(&Value::from("next tuesday"), zone, None).unwrap_err();
        assert!(err.starts_with("cannot read \"next tuesday\" as a date/time"), "{err}");
        let err = parse_instant(&Value::from(()), zone, None).unwrap_err();
        assert!(err.starts_with("cannot read null as a date/time"), "{err}");
        let err = parse_instant(&Value::from(true), zone, None).unwrap_err();
        assert!(err.starts_with("cannot read true"), "{err}");
        let err = parse_instant(&Value::from("2024-13-01"), zone, None).unwrap_err();
        assert!(err.contains("2024-13-01"), "{err}");
    }

    #[test]
    fn common_shapes_agree_with_chrono() {
        for text in [
            "2024-03-01",
            "2024-03-01 08:30:05",
            "2024-03-01T08:30:05",
            "1999-12-31 23:59:59",
        ] {
            let fast = parse_common_naive(text).unwrap();
            let format = if text.len() == 10 {
                "%Y-%m-%d"
            } else {
                "%Y-%m-%dT%H:%M:%S"
            };
            let slow = NaiveDateTime::parse_from_str(&text.replace(' ', "T"), format)
                .or_else(|_| NaiveDate::parse_from_str(text, format).map(|d| d.and_time(chrono::NaiveTime::MIN)))
                .unwrap();
            assert_eq!(fast, slow, "{text}");
        }
        for text in [
            "2024-02-30",
            "2024-03-01 24:00:00",
            "2024-3-01",
            "2024-03-01x08:30:05",
            "20240301",
            "2024-03-01 08:3a:05",
        ] {
            assert_eq!(parse_common_naive(text), None, "{text}");
        }
        let at = Utc.with_ymd_and_hms(2024, 3, 1, 0, 30, 5).unwrap();
        for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"] {
            let expected = at.with_timezone(&shanghai()).format(format).to_string();
            assert_eq!(format_instant(at, shanghai(), format).unwrap(), expected);
        }
    }

    #[test]
    fn formatting_rejects_bad_patterns_without_panicking() {
        let at = Utc.with_ymd_and_hms(2024, 3, 1, 0, 30, 0).unwrap();
        assert_eq!(
            format_instant(at, shanghai(), "%Y-%m-%d %H:%M").unwrap(),
            "2024-03-01 08:30"
        );
        assert_eq!(format_instant(at, Tz::UTC, "%H:%M").unwrap(), "00:30");
        assert!(format_instant(at, Tz::UTC, "%Y-%").is_err());
    }
}
