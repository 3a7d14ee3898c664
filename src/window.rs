//! Incremental time windows (pure): from the last checkpoint (or the scheme's `start`) up to
//! `now - lag`, in steps of `window`, each re-read with a `lookback` overlap.
//!
//! The checkpoint is the nominal end of the last window whose records were all written or
//! parked in the failure ledger; the engine moves it, in order, never past an unfinished window.
//!
//! The runtime invariants of `incremental.field` live here too, as pure decisions: where a
//! record's change time lies relative to the window it was read in ([`place`]), and the
//! per-page tally the engine counts and warns with ([`PageTimes`], [`TimeTally`]). A record
//! outside its window, or in the future, means the window parameters or the filter are
//! wrong (a misspelt parameter, a filter the source ignores); a missing or unreadable field
//! means `incremental.field` names the wrong field. A wrong time zone shifts the filter and
//! the field alike and passes these checks; `ferry check` shows the newest change time
//! next to "now" in the source's zone for that ([`whole_hour_offset`]).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;

/// One window to read. `start` already includes the lookback overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Parses `1d`, `6h`, `30m`, `45s`, `250ms` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad =
        || format!("`{text}` is not a duration; write a number and a unit, e.g. 1d, 6h, 30m, 45s, 250ms or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::zero();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let amount: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "d" => Duration::try_days(amount),
            "h" => Duration::try_hours(amount),
            "m" => Duration::try_minutes(amount),
            "s" => Duration::try_seconds(amount),
            "ms" => Some(Duration::milliseconds(amount)),
            _ => None,
        }
        .ok_or_else(bad)?;
        total += part;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Same as [`parse_duration`], as a `std::time::Duration`.
pub fn parse_std_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text)?
        .to_std()
        .map_err(|_| format!("`{text}` must not be negative"))
}

/// Parses a point in time; naive forms are read in `tz`.
pub fn parse_time(text: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()))
        .map_err(|_| format!("`{text}` is not a time; write `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD` or RFC 3339"))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("`{text}` does not exist in time zone {tz}"))
}

/// Formats a time for the store and for templates: RFC 3339 in `tz`.
pub fn format_time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

/// The windows of one run.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    pub start: DateTime<Utc>,
    pub window: Duration,
    pub lookback: Duration,
    pub lag: Duration,
}

/// Lists the windows between the checkpoint (or `spec.start`) and `now - lag`.
/// `since`/`until` override both ends for backfills.
pub fn plan_windows(
    spec: &WindowSpec,
    checkpoint: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<Window> {
    let from = since.or(checkpoint).unwrap_or(spec.start);
    let to = until.unwrap_or(now - spec.lag);
    let step = if spec.window > Duration::zero() {
        spec.window
    } else {
        Duration::days(1)
    };
    let mut windows = Vec::new();
    let mut nominal = from;
    while nominal < to {
        let end = std::cmp::min(nominal + step, to);
        windows.push(Window {
            start: nominal - spec.lookback,
            end,
        });
        nominal = end;
    }
    windows
}

/// How far past "now" a record's change time may lie before it counts as in the future:
/// the source server's clock and ours may disagree by a little.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// How close to a whole number of hours the newest change must be (before or after now)
/// for `ferry check` to suspect a time-zone mistake.
pub const WHOLE_HOUR_SLACK: Duration = Duration::minutes(5);

/// Why a record's `incremental.field` gave no time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldTimeError {
    /// The path stops at `at` (the field path up to the step that is missing); `keys` are
    /// the keys of the object it stopped in.
    Missing { at: String, keys: Vec<String> },
    /// The value is there but is not a time.
    NotATime { value: String, reason: String },
}

/// Reads a record's `incremental.field`: a dotted path (`masterFieldVal.lastModifyTime`; a
/// key that itself contains dots is found too, and a numeric step indexes a list), whose
/// value is read like the time filters read theirs, naive values in `zone` (the source
/// server's zone).
pub fn field_time(record: &Value, field: &str, zone: Tz) -> Result<DateTime<Utc>, FieldTimeError> {
    let value = lookup(record, field)?;
    if value.is_null() {
        return Err(FieldTimeError::NotATime {
            value: "null".into(),
            reason: "it is empty".into(),
        });
    }
    crate::template::read_time(value, zone).map_err(|reason| FieldTimeError::NotATime {
        value: shorten(&value.to_string()),
        reason,
    })
}

fn lookup<'v>(record: &'v Value, field: &str) -> Result<&'v Value, FieldTimeError> {
    let mut current = record;
    let mut rest = field;
    let mut walked = String::new();
    loop {
        if let Some(value) = current.as_object().and_then(|map| map.get(rest)) {
            return Ok(value);
        }
        let (step, next) = match rest.split_once('.') {
            Some((step, next)) => (step, Some(next)),
            None => (rest, None),
        };
        let found = match current {
            Value::Object(map) => map.get(step),
            Value::Array(items) => step.parse::<usize>().ok().and_then(|index| items.get(index)),
            _ => None,
        };
        let path = if walked.is_empty() {
            step.to_string()
        } else {
            format!("{walked}.{step}")
        };
        match (found, next) {
            (None, _) => {
                let keys = current
                    .as_object()
                    .map(|map| map.keys().cloned().collect())
                    .unwrap_or_default();
                return Err(FieldTimeError::Missing { at: path, keys });
            }
            (Some(value), None) => return Ok(value),
            (Some(value), Some(next)) => {
                current = value;
                rest = next;
                walked = path;
            }
        }
    }
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 60;
    if text.chars().count() > LIMIT {
        format!("{}…", text.chars().take(LIMIT).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Where a record's change time lies relative to the window it was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In `[start, end)`.
    Inside,
    /// Before the window's start (which already includes `lookback`).
    Before,
    /// At or after the window's end (ends are exclusive), but not in the future.
    After,
    /// Later than `now` plus [`CLOCK_SKEW`].
    Future,
}

/// Places a change time: `[window.start, window.end)` is inside; later than `now` plus
/// [`CLOCK_SKEW`] is the future, whatever the window.
pub fn place(time: DateTime<Utc>, window: &Window, now: DateTime<Utc>) -> Placement {
    if time > now + CLOCK_SKEW {
        Placement::Future
    } else if time < window.start {
        Placement::Before
    } else if time >= window.end {
        Placement::After
    } else {
        Placement::Inside
    }
}

/// A change time as the record held it and as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeenTime {
    /// The value as the record held it.
    pub value: String,
    /// The instant it was read as.
    pub at: DateTime<Utc>,
}

/// The first example of each kind of problem (see [`TimeTally`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimeExamples {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_future: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_unreadable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_page: Option<String>,
}

/// What the `incremental.field` checks found on one page, or on many ([`TimeTally::absorb`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimeTally {
    /// Records checked.
    pub records: u64,
    /// Records whose change time lies before or after the window they were read in.
    pub outside_window: u64,
    /// Records whose change time lies in the future.
    pub in_future: u64,
    /// Records without the field, or whose field is not a time.
    pub field_unreadable: u64,
    /// Pages whose every record is older than the checkpoint the run resumed from.
    pub stale_pages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<SeenTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<SeenTime>,
    /// The (first) page's window, as `[start, end) zone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub examples: TimeExamples,
}

impl TimeTally {
    /// Whether every record checked lies outside its window (the future included).
    pub fn all_outside(&self) -> bool {
        self.records > 0 && self.outside_window + self.in_future == self.records
    }

    /// Adds a later page: counts add up, the first examples and window stay, and the
    /// oldest and newest times widen.
    pub fn absorb(&mut self, page: TimeTally) {
        self.records += page.records;
        self.outside_window += page.outside_window;
        self.in_future += page.in_future;
        self.field_unreadable += page.field_unreadable;
        self.stale_pages += page.stale_pages;
        if self.window.is_none() {
            self.window = page.window;
        }
        if let Some(oldest) = page.oldest {
            if self.oldest.as_ref().is_none_or(|seen| oldest.at < seen.at) {
                self.oldest = Some(oldest);
            }
        }
        if let Some(newest) = page.newest {
            if self.newest.as_ref().is_none_or(|seen| newest.at > seen.at) {
                self.newest = Some(newest);
            }
        }
        let examples = &mut self.examples;
        examples.outside_window = examples.outside_window.take().or(page.examples.outside_window);
        examples.in_future = examples.in_future.take().or(page.examples.in_future);
        examples.field_unreadable = examples.field_unreadable.take().or(page.examples.field_unreadable);
        examples.stale_page = examples.stale_page.take().or(page.examples.stale_page);
    }
}

/// The `incremental.field` checks of one page read in `window`.
pub struct PageTimes<'a> {
    /// `source.incremental.field`.
    pub field: &'a str,
    /// The source server's zone: naive values are read in it, and messages show times in it.
    pub zone: Tz,
    pub window: Window,
    pub now: DateTime<Utc>,
    /// The checkpoint the run resumed from, minus `lookback` (`None` on a first run or a
    /// backfill): a page whose records are all older was synced before.
    pub resume: Option<DateTime<Utc>>,
}

impl PageTimes<'_> {
    /// Checks every record of a page. `label` names a record in an example (e.g.
    /// ``record `SO-1` ``); it is called only for the examples.
    pub fn tally<'r>(
        &self,
        records: impl IntoIterator<Item = &'r Value>,
        label: impl Fn(&Value) -> String,
    ) -> TimeTally {
        let mut tally = TimeTally {
            window: Some(self.window_text()),
            ..TimeTally::default()
        };
        let mut all_stale = self.resume.is_some();
        let mut stale_example = None;
        // The records holding the oldest and newest times; their values are copied once, at the end.
        let mut oldest: Option<(DateTime<Utc>, &Value)> = None;
        let mut newest: Option<(DateTime<Utc>, &Value)> = None;
        let seen = |time: DateTime<Utc>, record: &Value| SeenTime {
            value: raw_text(record, self.field),
            at: time,
        };
        for record in records {
            tally.records += 1;
            let time = match field_time(record, self.field, self.zone) {
                Ok(time) => time,
                Err(problem) => {
                    all_stale = false;
                    tally.field_unreadable += 1;
                    if tally.examples.field_unreadable.is_none() {
                        tally.examples.field_unreadable = Some(self.unreadable(&label(record), &problem));
                    }
                    continue;
                }
            };
            if let Some(resume) = self.resume {
                if time >= resume {
                    all_stale = false;
                } else if stale_example.is_none() {
                    stale_example = Some(format!("{}: {}", label(record), self.shown(&seen(time, record))));
                }
            }
            match place(time, &self.window, self.now) {
                Placement::Inside => {}
                Placement::Before | Placement::After => {
                    tally.outside_window += 1;
                    if tally.examples.outside_window.is_none() {
                        let side = if time < self.window.start {
                            "is before the window it was read in"
                        } else {
                            "is at or after the end of the window it was read in (the end is exclusive)"
                        };
                        tally.examples.outside_window = Some(format!(
                            "{}: {} {side}, {}",
                            label(record),
                            self.shown(&seen(time, record)),
                            self.window_text()
                        ));
                    }
                }
                Placement::Future => {
                    tally.in_future += 1;
                    if tally.examples.in_future.is_none() {
                        tally.examples.in_future = Some(format!(
                            "{}: {} is {} in the future (now is {} {})",
                            label(record),
                            self.shown(&seen(time, record)),
                            describe_duration(time - self.now),
                            local_text(self.now, self.zone),
                            self.zone
                        ));
                    }
                }
            }
            if oldest.is_none_or(|(at, _)| time < at) {
                oldest = Some((time, record));
            }
            if newest.is_none_or(|(at, _)| time > at) {
                newest = Some((time, record));
            }
        }
        tally.oldest = oldest.map(|(time, record)| seen(time, record));
        tally.newest = newest.map(|(time, record)| seen(time, record));
        if all_stale && tally.records > 0 {
            tally.stale_pages = 1;
            tally.examples.stale_page = Some(format!(
                "a page of window {} holds only records older than the checkpoint this run resumed from \
                 ({} {}, lookback included), e.g. {}",
                self.window_text(),
                local_text(self.resume.unwrap_or(self.window.start), self.zone),
                self.zone,
                stale_example.unwrap_or_default()
            ));
        }
        tally
    }

    fn window_text(&self) -> String {
        format!(
            "[{}, {}) {}",
            local_text(self.window.start, self.zone),
            local_text(self.window.end, self.zone),
            self.zone
        )
    }

    /// ``field `value` `` plus its reading in the zone when that differs from the value.
    fn shown(&self, seen: &SeenTime) -> String {
        let local = local_text(seen.at, self.zone);
        if seen.value == local {
            format!("`{}` `{}`", self.field, seen.value)
        } else {
            format!("`{}` `{}` ({local} {})", self.field, seen.value, self.zone)
        }
    }

    fn unreadable(&self, label: &str, problem: &FieldTimeError) -> String {
        match problem {
            FieldTimeError::Missing { at, keys } => {
                const SHOWN: usize = 20;
                let inside = if at.contains('.') {
                    format!(
                        "`{}`",
                        at.rsplit_once('.').map(|(parent, _)| parent).unwrap_or_default()
                    )
                } else {
                    "the record".to_string()
                };
                let listed = match keys.len() {
                    0 => format!("{inside} has no fields"),
                    n if n > SHOWN => format!("{inside} has: {}, … ({n} fields)", keys[..SHOWN].join(", ")),
                    _ => format!("{inside} has: {}", keys.join(", ")),
                };
                format!(
                    "{label} has no `{at}` (source.incremental.field is `{}`); {listed}",
                    self.field
                )
            }
            FieldTimeError::NotATime { value, reason } => {
                format!("{label}: `{}` is {value}, not a time: {reason}", self.field)
            }
        }
    }
}

/// The field's value as the record held it (strings without quotes).
fn raw_text(record: &Value, field: &str) -> String {
    match lookup(record, field) {
        Ok(Value::String(text)) => shorten(text),
        Ok(other) => shorten(&other.to_string()),
        Err(_) => String::new(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in `zone`.
pub fn local_text(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration for people, e.g. `8h 0m 12s`, `3d 4h 5m`, `45s` (the sign is dropped).
pub fn describe_duration(d: Duration) -> String {
    let total = d.num_seconds().unsigned_abs();
    let (days, hours, minutes, seconds) = (total / 86_400, total / 3_600 % 24, total / 60 % 60, total % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m")
    } else if hours > 0 {
        format!("{hours}h {minutes}m {seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// When `now - newest` is within [`WHOLE_HOUR_SLACK`] of a whole, non-zero number of hours
/// (at most 26, the widest gap between two zones), that number (negative: the newest change
/// lies ahead of now). A tenant that changed a record moments ago but shows it hours away
/// has its times read in the wrong zone.
pub fn whole_hour_offset(since_newest: Duration) -> Option<i64> {
    let seconds = since_newest.num_seconds();
    let hours = (seconds as f64 / 3600.0).round() as i64;
    let slack = (seconds - hours * 3600).abs();
    (hours != 0 && hours.abs() <= 26 && slack <= WHOLE_HOUR_SLACK.num_seconds()).then_some(hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text, chrono_tz::Asia::Shanghai).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d").unwrap(), Duration::days(1));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::milliseconds(250));
        assert!(parse_duration("1 day").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn naive_times_use_the_zone() {
        assert_eq!(
            at("2024-01-01 08:00:00"),
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(at("2024-01-01"), Utc.with_ymd_and_hms(2023, 12, 31, 16, 0, 0).unwrap());
        assert_eq!(
            at("2024-01-01T00:00:00Z"),
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
        );
        assert!(parse_time("yesterday", chrono_tz::UTC).is_err());
    }

    #[test]
    fn windows_step_from_checkpoint_to_now_minus_lag() {
        let spec = WindowSpec {
            start: at("2024-01-01 00:00:00"),
            window: Duration::days(1),
            lookback: Duration::minutes(10),
            lag: Duration::minutes(1),
        };
        let now = at("2024-01-03 12:00:00");
        let w = plan_windows(&spec, None, now, None, None);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].start, at("2023-12-31 23:50:00"));
        assert_eq!(w[0].end, at("2024-01-02 00:00:00"));
        assert_eq!(w[2].end, at("2024-01-03 11:59:00"));
        let resumed = plan_windows(&spec, Some(at("2024-01-03 11:59:00")), now, None, None);
        assert!(resumed.is_empty());
        let backfill = plan_windows(
            &spec,
            Some(w[2].end),
            now,
            Some(at("2024-01-01 00:00:00")),
            Some(at("2024-01-01 12:00:00")),
        );
        assert_eq!(backfill.len(), 1);
        assert_eq!(backfill[0].end, at("2024-01-01 12:00:00"));
    }

    fn shanghai_window() -> Window {
        Window {
            start: at("2024-03-01 00:00:00"),
            end: at("2024-03-02 00:00:00"),
        }
    }

    #[test]
    fn field_times_read_like_the_time_filters_in_the_source_zone() {
        let zone = chrono_tz::Asia::Shanghai;
        let record = serde_json::json!({
            "modified": "2024-03-01 08:00:00",
            "rfc": "2024-03-01T00:00:00Z",
            "day": "2024-03-01",
            "ms": 1709251200000_i64,
            "s": 1709251200,
            "masterFieldVal": {"lastModifyTime": 1709251200000_i64, "a.b": "2024-03-01 08:00:00"},
            "rows": [{"t": "2024-03-01 08:00:00"}],
            "blank": null,
            "text": "soon",
        });
        let expected = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        for field in [
            "modified",
            "rfc",
            "ms",
            "s",
            "masterFieldVal.lastModifyTime",
            "masterFieldVal.a.b",
            "rows.0.t",
        ] {
            assert_eq!(field_time(&record, field, zone), Ok(expected), "{field}");
        }
        assert_eq!(field_time(&record, "day", zone), Ok(at("2024-03-01 00:00:00")));
        // The same naive text in UTC is eight hours later.
        assert_eq!(
            field_time(&record, "modified", chrono_tz::UTC),
            Ok(Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap())
        );
        match field_time(&record, "masterFieldVal.lastModifiedTime", zone) {
            Err(FieldTimeError::Missing { at, keys }) => {
                assert_eq!(at, "masterFieldVal.lastModifiedTime");
                assert_eq!(keys, vec!["lastModifyTime".to_string(), "a.b".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            field_time(&record, "modifyTime", zone),
            Err(FieldTimeError::Missing { at, .. }) if at == "modifyTime"
        ));
        assert!(matches!(
            field_time(&record, "blank", zone),
            Err(FieldTimeError::NotATime { .. })
        ));
        assert!(
            matches!(field_time(&record, "text", zone), Err(FieldTimeError::NotATime { value, .. }) if value == "\"soon\"")
        );
    }

    #[test]
    fn placement_allows_lookback_and_a_little_skew_and_ends_are_exclusive() {
        let window = shanghai_window();
        let now = at("2024-03-05 12:00:00");
        assert_eq!(place(at("2024-03-01 00:00:00"), &window, now), Placement::Inside);
        assert_eq!(place(at("2024-03-01 23:59:59"), &window, now), Placement::Inside);
        assert_eq!(place(at("2024-02-29 23:59:59"), &window, now), Placement::Before);
        assert_eq!(place(at("2024-03-02 00:00:00"), &window, now), Placement::After);
        assert_eq!(place(at("2024-03-05 12:05:00"), &window, now), Placement::After);
        assert_eq!(place(at("2024-03-05 12:05:01"), &window, now), Placement::Future);
        // The window's start already includes the lookback (see `plan_windows`).
        let spec = WindowSpec {
            start: at("2024-03-01 00:00:00"),
            window: Duration::days(1),
            lookback: Duration::minutes(10),
            lag: Duration::zero(),
        };
        let planned = plan_windows(&spec, None, at("2024-03-02 00:00:00"), None, None)[0];
        assert_eq!(place(at("2024-02-29 23:50:00"), &planned, now), Placement::Inside);
        assert_eq!(place(at("2024-02-29 23:49:59"), &planned, now), Placement::Before);
    }

    #[test]
    fn a_page_tally_counts_each_kind_with_one_example() {
        let zone = chrono_tz::Asia::Shanghai;
        let records = [
            serde_json::json!({"id": "A", "t": "2024-03-01 10:00:00"}),
            serde_json::json!({"id": "B", "t": "2023-01-01 00:00:00"}),
            serde_json::json!({"id": "C", "t": "2024-03-09 00:00:00"}),
            serde_json::json!({"id": "D", "when": "2024-03-01 10:00:00"}),
            serde_json::json!({"id": "E", "t": "later"}),
            serde_json::json!({"id": "F", "t": "2024-03-02 00:00:00"}),
        ];
        let page = PageTimes {
            field: "t",
            zone,
            window: shanghai_window(),
            now: at("2024-03-05 12:00:00"),
            resume: None,
        };
        let tally = page.tally(&records, |r| format!("record `{}`", r["id"].as_str().unwrap()));
        assert_eq!(
            (
                tally.records,
                tally.outside_window,
                tally.in_future,
                tally.field_unreadable,
                tally.stale_pages
            ),
            (6, 2, 1, 2, 0)
        );
        assert!(!tally.all_outside());
        assert_eq!(
            tally.examples.outside_window.as_deref(),
            Some(
                "record `B`: `t` `2023-01-01 00:00:00` is before the window it was read in, \
                 [2024-03-01 00:00:00, 2024-03-02 00:00:00) Asia/Shanghai"
            )
        );
        assert_eq!(
            tally.examples.in_future.as_deref(),
            Some("record `C`: `t` `2024-03-09 00:00:00` is 3d 12h 0m in the future (now is 2024-03-05 12:00:00 Asia/Shanghai)")
        );
        assert_eq!(
            tally.examples.field_unreadable.as_deref(),
            Some("record `D` has no `t` (source.incremental.field is `t`); the record has: id, when")
        );
        assert_eq!(
            tally.oldest.as_ref().map(|s| s.value.as_str()),
            Some("2023-01-01 00:00:00")
        );
        assert_eq!(
            tally.newest.as_ref().map(|s| s.value.as_str()),
            Some("2024-03-09 00:00:00")
        );

        // Epoch values are shown with their reading; a page all outside says so.
        let outside = [serde_json::json!({"id": "G", "t": 1577808000000_i64})];
        let tally = page.tally(&outside, |_| "a record".into());
        assert!(tally.all_outside());
        assert!(
            tally
                .examples
                .outside_window
                .as_deref()
                .unwrap()
                .contains("`t` `1577808000000` (2020-01-01 00:00:00 Asia/Shanghai)"),
            "{tally:?}"
        );
    }

    #[test]
    fn a_page_older_than_the_resumed_checkpoint_is_stale() {
        let records = [
            serde_json::json!({"t": "2024-02-01 00:00:00"}),
            serde_json::json!({"t": "2024-02-02 00:00:00"}),
        ];
        let mut page = PageTimes {
            field: "t",
            zone: chrono_tz::Asia::Shanghai,
            window: shanghai_window(),
            now: at("2024-03-05 12:00:00"),
            resume: Some(at("2024-03-01 00:00:00")),
        };
        let tally = page.tally(&records, |_| "a record".into());
        assert_eq!((tally.stale_pages, tally.outside_window), (1, 2));
        assert!(tally
            .examples
            .stale_page
            .unwrap()
            .contains("older than the checkpoint this run resumed from (2024-03-01 00:00:00 Asia/Shanghai"));
        // One record at or after the checkpoint, or no resumed checkpoint: not stale.
        let mixed = [records[0].clone(), serde_json::json!({"t": "2024-03-01 00:00:00"})];
        assert_eq!(page.tally(&mixed, |_| String::new()).stale_pages, 0);
        page.resume = None;
        assert_eq!(page.tally(&records, |_| String::new()).stale_pages, 0);
    }

    #[test]
    fn tallies_add_up_keeping_the_first_examples() {
        let page = PageTimes {
            field: "t",
            zone: chrono_tz::UTC,
            window: shanghai_window(),
            now: at("2024-03-05 12:00:00"),
            resume: None,
        };
        let one = page.tally(&[serde_json::json!({"t": "2020-01-01"})], |_| "first".into());
        let two = page.tally(
            &[
                serde_json::json!({"t": "2019-01-01"}),
                serde_json::json!({"t": "2024-03-01 12:00:00"}),
            ],
            |_| "second".into(),
        );
        let mut total = TimeTally::default();
        total.absorb(one);
        total.absorb(two);
        assert_eq!((total.records, total.outside_window), (3, 2));
        assert!(total.examples.outside_window.unwrap().starts_with("first:"));
        assert_eq!(total.oldest.unwrap().value, "2019-01-01");
        assert_eq!(total.newest.unwrap().value, "2024-03-01 12:00:00");
    }

    #[test]
    fn whole_hour_offsets_stand_out() {
        assert_eq!(whole_hour_offset(Duration::hours(8) + Duration::seconds(40)), Some(8));
        assert_eq!(whole_hour_offset(Duration::hours(-8) + Duration::minutes(3)), Some(-8));
        assert_eq!(whole_hour_offset(Duration::minutes(2)), None);
        assert_eq!(whole_hour_offset(Duration::hours(3) + Duration::minutes(20)), None);
        assert_eq!(whole_hour_offset(Duration::days(30)), None);
        assert_eq!(
            describe_duration(Duration::hours(8) + Duration::seconds(12)),
            "8h 0m 12s"
        );
        assert_eq!(describe_duration(Duration::seconds(-45)), "45s");
    }
}
