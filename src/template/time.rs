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
//!
//! A call is prepared once from its arguments ([`TimeCall::prepare`], which reads
//! the zone, `from` and the output format) and then applied to inputs
//! ([`TimeCall::apply`]). The minijinja filters prepare per call; the native filter
//! chains (`native.rs`) prepare at compile time and apply per render. Both run
//! this same code.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;

use super::scope::{describe_input, json_to_value, with_input, FilterInput};
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

/// The five time filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeFilter {
    Datetime,
    Date,
    Timestamp,
    TimestampMs,
    Iso,
}

impl TimeFilter {
    /// Every time filter with its template name.
    pub(crate) const ALL: [(&'static str, TimeFilter); 5] = [
        ("datetime", TimeFilter::Datetime),
        ("date", TimeFilter::Date),
        ("timestamp", TimeFilter::Timestamp),
        ("timestamp_ms", TimeFilter::TimestampMs),
        ("iso", TimeFilter::Iso),
    ];

    /// The filter of this name, if it is a time filter.
    pub(crate) fn named(name: &str) -> Option<TimeFilter> {
        TimeFilter::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, filter)| *filter)
    }

    /// The output format when none is given; `None` for filters that take no format.
    pub(crate) fn default_format(self) -> Option<&'static str> {
        match self {
            TimeFilter::Datetime => Some("%Y-%m-%d %H:%M:%S"),
            TimeFilter::Date => Some("%Y-%m-%d"),
            TimeFilter::Timestamp | TimeFilter::TimestampMs | TimeFilter::Iso => None,
        }
    }
}

/// One time filter call with its arguments resolved.
#[derive(Debug, Clone)]
pub(crate) struct TimeCall {
    filter: TimeFilter,
    args: TimeArgs,
    /// The output format (`datetime` and `date` only).
    format: String,
}

impl TimeCall {
    /// Resolves the arguments: `format` (positional wins over `format=`) for
    /// `datetime`/`date`, and `tz`, `from_tz`, `from` for all. Unknown keywords
    /// and unknown zones are errors.
    pub(crate) fn prepare(
        filter: TimeFilter,
        format: Option<String>,
        kwargs: &Kwargs,
        zones: Zones,
    ) -> Result<TimeCall, Error> {
        let args = TimeArgs::read(kwargs, zones)?;
        let format = match filter.default_format() {
            Some(default) => format_arg(format, kwargs, default)?,
            None => String::new(),
        };
        kwargs.assert_all_used()?;
        Ok(TimeCall { filter, args, format })
    }

    /// Reads the input as an instant and writes it as this filter does.
    pub(crate) fn apply(&self, input: &FilterInput<'_>) -> Result<Json, String> {
        let reading = read_instant(input, self.args.from_zone, self.args.from_format.as_deref())?;
        let instant = reading.instant;
        Ok(match self.filter {
            TimeFilter::Datetime | TimeFilter::Date => {
                // Naive input read in the output zone: its wall-clock time is the
                // output's, so the round trip through UTC can be skipped.
                let wall = reading.wall.filter(|_| self.args.from_zone == self.args.zone);
                match wall.and_then(|wall| format_default(&wall, &self.format)) {
                    Some(text) => Json::String(text),
                    None => Json::String(format_instant(instant, self.args.zone, &self.format)?),
                }
            }
            TimeFilter::Timestamp => Json::from(instant.timestamp()),
            TimeFilter::TimestampMs => Json::from(instant.timestamp_millis()),
            TimeFilter::Iso => Json::String(
                instant
                    .with_timezone(&self.args.zone)
                    .to_rfc3339_opts(SecondsFormat::AutoSi, false),
            ),
        })
    }

    fn apply_value(&self, value: &Value) -> Result<Value, Error> {
        with_input(value, |input| self.apply(input))
            .map(json_to_value)
            .map_err(invalid)
    }
}

/// Options shared by every time filter, read from keyword arguments.
#[derive(Debug, Clone)]
struct TimeArgs {
    zone: Tz,
    from_zone: Tz,
    from_format: Option<String>,
}

/// The zones a time filter uses when its call names none: `output` for writing, and
/// `naive` for reading input that carries no offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Zones {
    pub(crate) output: Tz,
    pub(crate) naive: Tz,
}

impl Zones {
    pub(crate) fn of(options: &super::TemplateOptions) -> Zones {
        Zones {
            output: options.timezone,
            naive: options.naive_zone.unwrap_or(options.timezone),
        }
    }
}

impl TimeArgs {
    fn read(kwargs: &Kwargs, zones: Zones) -> Result<TimeArgs, Error> {
        let explicit = kwargs.get::<Option<&str>>("tz")?;
        let zone = match explicit {
            Some(name) => parse_zone(name)?,
            None => zones.output,
        };
        // `tz=` alone names the zone of naive input too, as it always has.
        let from_zone = match kwargs.get::<Option<&str>>("from_tz")? {
            Some(name) => parse_zone(name)?,
            None if explicit.is_some() => zone,
            None => zones.naive,
        };
        let from_format = kwargs.get::<Option<String>>("from")?;
        Ok(TimeArgs {
            zone,
            from_zone,
            from_format,
        })
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

/// An instant as read from the input.
struct Reading {
    instant: DateTime<Utc>,
    /// The input's wall-clock time when it had no offset (read in the naive zone).
    wall: Option<NaiveDateTime>,
}

impl From<DateTime<Utc>> for Reading {
    fn from(instant: DateTime<Utc>) -> Reading {
        Reading { instant, wall: None }
    }
}

/// Reads a JSON value as an instant with the filters' lenient rules (see the module doc):
/// RFC 3339, `YYYY-MM-DD HH:MM:SS` and its relatives, dates, epoch seconds or milliseconds.
/// Naive values are read in `naive_zone`. Used outside templates, e.g. for the record's
/// `incremental.field`, so that it reads exactly as `<< field | datetime >>` would.
pub fn read_time(value: &Json, naive_zone: Tz) -> Result<DateTime<Utc>, String> {
    read_instant(&FilterInput::Json(value), naive_zone, None).map(|reading| reading.instant)
}

/// Reads one instant from a filter input (see the module doc for the accepted forms).
fn read_instant(input: &FilterInput<'_>, naive_zone: Tz, from_format: Option<&str>) -> Result<Reading, String> {
    let epoch = match input {
        FilterInput::Json(Json::Number(number)) => number.as_f64(),
        FilterInput::Foreign(foreign) => foreign.number,
        FilterInput::Json(Json::String(text)) => {
            let text = text.trim();
            return match from_format {
                Some(format) => parse_with_format(text, format, naive_zone),
                None => parse_guessing(text, naive_zone),
            };
        }
        _ => None,
    };
    match epoch {
        Some(epoch) => from_epoch(epoch, &describe_input(input)).map(Reading::from),
        None => Err(format!(
            "cannot read {} as a date/time; use default(...) first if the field may be empty",
            describe_input(input)
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

fn parse_guessing(text: &str, zone: Tz) -> Result<Reading, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        let epoch: f64 = text
            .parse()
            .map_err(|_| format!("cannot read {text:?} as epoch time"))?;
        return from_epoch(epoch, &format!("{text:?}")).map(Reading::from);
    }
    if let Some(naive) = parse_common_naive(text) {
        return localize(naive, zone, text);
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc).into());
    }
    for format in OFFSET_FORMATS {
        if let Ok(instant) = DateTime::parse_from_str(text, format) {
            return Ok(instant.with_timezone(&Utc).into());
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

fn parse_with_format(text: &str, format: &str, zone: Tz) -> Result<Reading, String> {
    check_format(format)?;
    if let Ok(instant) = DateTime::parse_from_str(text, format) {
        return Ok(instant.with_timezone(&Utc).into());
    }
    match NaiveDateTime::parse_from_str(text, format) {
        Ok(naive) => localize(naive, zone, text),
        Err(datetime_error) => match NaiveDate::parse_from_str(text, format) {
            Ok(date) => localize(date.and_time(chrono::NaiveTime::MIN), zone, text),
            Err(_) => Err(format!("cannot read {text:?} with format {format:?}: {datetime_error}")),
        },
    }
}

/// Reads a wall-clock time in `zone`; an ambiguous one (a daylight-saving fold)
/// is the earlier instant, which shows the same wall-clock time in `zone`.
fn localize(naive: NaiveDateTime, zone: Tz, text: &str) -> Result<Reading, String> {
    let local = match zone.from_local_datetime(&naive) {
        LocalResult::Single(local) | LocalResult::Ambiguous(local, _) => local,
        LocalResult::None => {
            return Err(format!(
                "{text:?} does not exist in time zone {zone} (skipped by a daylight-saving change)"
            ))
        }
    };
    Ok(Reading {
        instant: local.with_timezone(&Utc),
        wall: Some(naive),
    })
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
    if let Some(text) = format_default(&local.naive_local(), format) {
        return Ok(text);
    }
    check_format(format)?;
    let mut out = String::with_capacity(24);
    write!(out, "{}", local.format_with_items(StrftimeItems::new(format)))
        .map_err(|_| format!("cannot format a date with {format:?}"))?;
    Ok(out)
}

/// The two default formats (`%Y-%m-%d %H:%M:%S`, `%Y-%m-%d`) written digit by
/// digit, as chrono would write them: its format interpreter and even `write!`
/// cost several times more. `None` for other formats and years outside 0–9999.
fn format_default(local: &NaiveDateTime, format: &str) -> Option<String> {
    let with_time = match format {
        "%Y-%m-%d %H:%M:%S" => true,
        "%Y-%m-%d" => false,
        _ => return None,
    };
    let year = u32::try_from(local.year()).ok().filter(|year| *year <= 9999)?;
    let mut out = String::with_capacity(19);
    push_two_digits(&mut out, year / 100);
    push_two_digits(&mut out, year % 100);
    out.push('-');
    push_two_digits(&mut out, local.month());
    out.push('-');
    push_two_digits(&mut out, local.day());
    if with_time {
        out.push(' ');
        push_two_digits(&mut out, local.hour());
        out.push(':');
        push_two_digits(&mut out, local.minute());
        out.push(':');
        // A leap second reads as second 59 plus a second of nanoseconds; chrono writes it as 60.
        push_two_digits(&mut out, local.second() + local.nanosecond() / 1_000_000_000);
    }
    Some(out)
}

/// Appends `value` (below 100) as two digits.
fn push_two_digits(out: &mut String, value: u32) {
    for digit in [value / 10 % 10, value % 10] {
        out.push(char::from_digit(digit, 10).unwrap_or('0'));
    }
}

fn format_arg(positional: Option<String>, kwargs: &Kwargs, default: &str) -> Result<String, Error> {
    let keyword = kwargs.get::<Option<String>>("format")?;
    Ok(positional.or(keyword).unwrap_or_else(|| default.to_owned()))
}

/// Adds the time filters to `env`.
pub(crate) fn register(env: &mut Environment<'static>, options: &Arc<TemplateOptions>) {
    let zone = Zones::of(options);
    for (name, filter) in TimeFilter::ALL {
        if filter.default_format().is_some() {
            env.add_filter(
                name,
                move |value: Value, format: Option<String>, kwargs: Kwargs| -> Result<Value, Error> {
                    TimeCall::prepare(filter, format, &kwargs, zone)?.apply_value(&value)
                },
            );
        } else {
            env.add_filter(name, move |value: Value, kwargs: Kwargs| -> Result<Value, Error> {
                TimeCall::prepare(filter, None, &kwargs, zone)?.apply_value(&value)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> Tz {
        chrono_tz::Asia::Shanghai
    }

    fn parse(value: Value, zone: Tz, from_format: Option<&str>) -> Result<DateTime<Utc>, String> {
        with_input(&value, |input| read_instant(input, zone, from_format)).map(|reading| reading.instant)
    }

    fn instant(text: &str) -> DateTime<Utc> {
        parse(Value::from(text), shanghai(), None).unwrap()
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
        assert_eq!(parse(Value::from(seconds), zone, None).unwrap(), expected);
        assert_eq!(parse(Value::from(seconds * 1000), zone, None).unwrap(), expected);
        assert_eq!(
            parse(Value::from(seconds as f64 + 0.5), zone, None)
                .unwrap()
                .timestamp_millis(),
            seconds * 1000 + 500
        );
    }

    #[test]
    fn explicit_format() {
        let zone = shanghai();
        let parsed = parse(Value::from("01/03/2024"), zone, Some("%d/%m/%Y")).unwrap();
        assert_eq!(parsed, Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap());
        let err = parse(Value::from("2024-03-01"), zone, Some("%d/%m/%Y")).unwrap_err();
        assert!(err.contains("with format \"%d/%m/%Y\""), "{err}");
        let err = parse(Value::from("x"), zone, Some("%Q")).unwrap_err();
        assert!(err.contains("invalid date format"), "{err}");
    }

    #[test]
    fn bad_input_is_named() {
        let zone = shanghai();
        let err = parse(Value::from("next tuesday"), zone, None).unwrap_err();
        assert!(err.starts_with("cannot read \"next tuesday\" as a date/time"), "{err}");
        let err = parse(Value::from(()), zone, None).unwrap_err();
        assert!(err.starts_with("cannot read null as a date/time"), "{err}");
        let err = parse(Value::from(true), zone, None).unwrap_err();
        assert!(err.starts_with("cannot read true"), "{err}");
        let err = parse(Value::from("2024-13-01"), zone, None).unwrap_err();
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
        let leap = DateTime::parse_from_rfc3339("2016-12-31T23:59:60Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut instants = vec![leap, Utc.with_ymd_and_hms(9999, 12, 31, 15, 59, 59).unwrap()];
        let mut at = Utc.with_ymd_and_hms(1899, 12, 31, 23, 59, 59).unwrap();
        while at.year() < 2100 {
            instants.push(at);
            at += chrono::Duration::seconds(7_919_993);
        }
        for at in instants {
            for zone in [shanghai(), Tz::UTC, chrono_tz::America::New_York] {
                for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"] {
                    let expected = at.with_timezone(&zone).format(format).to_string();
                    assert_eq!(format_instant(at, zone, format).unwrap(), expected, "{at}");
                }
            }
        }
    }

    #[test]
    fn wall_clock_shortcut_matches_the_round_trip() {
        let calls: Vec<(TimeCall, Tz)> = ["Asia/Shanghai", "America/New_York", "Europe/London", "UTC"]
            .into_iter()
            .flat_map(|zone| {
                [TimeFilter::Datetime, TimeFilter::Date].map(|filter| {
                    let kwargs = Kwargs::from_iter([("tz", Value::from(zone))]);
                    let call = TimeCall::prepare(
                        filter,
                        None,
                        &kwargs,
                        Zones {
                            output: Tz::UTC,
                            naive: Tz::UTC,
                        },
                    )
                    .unwrap();
                    (call, zone.parse::<Tz>().unwrap())
                })
            })
            .collect();
        let mut at = NaiveDate::from_ymd_opt(1960, 1, 1)
            .unwrap()
            .and_time(chrono::NaiveTime::MIN);
        let mut texts: Vec<String> = vec!["2024-11-03 01:30:00".into(), "2024-03-10 02:30:00".into()];
        while at.year() < 2060 {
            texts.push(at.format("%Y-%m-%d %H:%M:%S").to_string());
            texts.push(at.format("%Y/%m/%d %H:%M").to_string());
            at += chrono::Duration::seconds(1_234_567);
        }
        for text in &texts {
            let json = Json::from(text.as_str());
            for (call, zone) in &calls {
                let expected = read_instant(&FilterInput::Json(&json), *zone, None)
                    .and_then(|reading| format_instant(reading.instant, *zone, &call.format))
                    .map(Json::String);
                assert_eq!(call.apply(&FilterInput::Json(&json)), expected, "{text} in {zone}");
            }
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
