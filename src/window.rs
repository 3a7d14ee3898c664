//! Incremental time windows (pure): from the last checkpoint (or the scheme's `start`) up to
//! `now - lag`, in steps of `window`, each re-read with a `lookback` overlap.
//!
//! The checkpoint is the nominal end of the last window whose records were all written or
//! parked in the failure ledger; the engine moves it, in order, never past an unfinished window.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

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
}
