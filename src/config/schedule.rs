//! Durations (humantime) and schedules (`every <duration>` or 5-field cron) as written in the config.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// When a recurring job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `every 15m`: a fixed interval from the previous run.
    Every(Duration),
    /// A 5-field cron expression (minute hour day-of-month month day-of-week),
    /// already validated, evaluated in the host's local time zone like cron.
    Cron(String),
}

impl Schedule {
    /// The first run strictly after `t`, evaluating cron expressions in the
    /// host's local time zone. `None` when no such time exists.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after_in(t, &Local)
    }

    /// As [`Schedule::next_after`], evaluating cron expressions in `tz`.
    pub fn next_after_in<Tz: TimeZone>(&self, t: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => t.checked_add_signed(chrono::TimeDelta::from_std(*d).ok()?),
            Schedule::Cron(expr) => {
                let cron = parse_cron(expr).ok()?;
                cron.find_next_occurrence(&t.with_timezone(tz), false)
                    .ok()
                    .map(|next| next.with_timezone(&Utc))
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(expr) => f.write_str(expr),
        }
    }
}

fn parse_cron(expr: &str) -> Result<Cron, croner::errors::CronError> {
    // Seconds and years would make `0 9 1 */3 *` style expressions ambiguous
    // with 6- and 7-field dialects; the config speaks plain 5-field cron.
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
}

/// Parses a humantime duration (`90s`, `15m`, `8h`, `7d`, `1h 30m`); zero is refused
/// because every duration in the config is an interval or a limit.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?}: {e}; expected a duration such as \"90s\", \"15m\", \"8h\" or \"7d\"")
    })?;
    if d.is_zero() {
        return Err(format!(
            "invalid duration {text:?}: must be greater than zero"
        ));
    }
    Ok(d)
}

pub(crate) fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let trimmed = text.trim();
    if let Some(rest) = trimmed.strip_prefix("every") {
        if rest.starts_with(char::is_whitespace) {
            return parse_duration(rest)
                .map(Schedule::Every)
                .map_err(|e| format!("invalid schedule {text:?}: {e}"));
        }
    }
    let expected = "expected \"every <duration>\" (e.g. \"every 15m\") or a 5-field cron expression (e.g. \"0 9 * * 1\")";
    let fields = trimmed.split_whitespace().count();
    if !trimmed.starts_with('@') && fields != 5 {
        return Err(format!(
            "invalid schedule {text:?}: {fields} fields; {expected}"
        ));
    }
    match parse_cron(trimmed) {
        Ok(_) => Ok(Schedule::Cron(
            trimmed.split_whitespace().collect::<Vec<_>>().join(" "),
        )),
        Err(e) => Err(format!("invalid schedule {text:?}: {e}; {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        let e = parse_duration("8 hourz").expect_err("bad unit");
        assert!(e.starts_with("invalid duration \"8 hourz\": "), "{e}");
    }

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("every 15m"),
            Ok(Schedule::Every(Duration::from_secs(900)))
        );
        assert_eq!(
            parse_schedule(" 0  9 1 */3 * "),
            Ok(Schedule::Cron("0 9 1 */3 *".into()))
        );
        assert!(parse_schedule("@daily").is_ok());
        assert!(parse_schedule("every").is_err());
        assert!(parse_schedule("every fortnight").is_err());
        assert!(parse_schedule("0 0 9 * * *").is_err());
        assert!(parse_schedule("61 * * * *").is_err());
        assert!(parse_schedule("* * *").is_err());
    }

    #[test]
    fn next_after() {
        let t = Utc
            .with_ymd_and_hms(2026, 1, 1, 8, 30, 0)
            .single()
            .expect("valid");
        let every = Schedule::Every(Duration::from_secs(900));
        assert_eq!(
            every.next_after(t),
            t.checked_add_signed(chrono::TimeDelta::minutes(15))
        );
        let cron = Schedule::Cron("0 9 * * *".into());
        let next = cron.next_after_in(t, &Utc).expect("next");
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
                .single()
                .expect("valid")
        );
        // strictly after: at 09:00 exactly the next run is tomorrow
        let again = cron.next_after_in(next, &Utc).expect("next");
        assert_eq!(
            again,
            Utc.with_ymd_and_hms(2026, 1, 2, 9, 0, 0)
                .single()
                .expect("valid")
        );
    }
}
