//! Backup schedules as pure functions of time.
//!
//! Times are unix seconds (UTC). "Daily at HH:MM" is a local wall-clock time,
//! so the functions that need it take the local UTC offset in seconds as a
//! parameter ([`local_utc_offset_secs`] reads the system's); everything here is
//! deterministic and tested with fixed times.

use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Every code this module can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &["CF-A035", "CF-A036"];

/// Longest interval of an "every N hours" schedule (one week).
pub const MAX_INTERVAL_HOURS: u32 = 168;

/// After a failed run, try again this much later (unless the schedule says
/// sooner).
pub const RETRY_AFTER_FAILURE_SECS: i64 = 30 * 60;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// When a backup set runs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Only when the user presses "Back up now".
    Manual,
    /// Every `hours` hours after the previous run.
    EveryHours { hours: u32 },
    /// Once a day at this local time.
    DailyAt { hour: u8, minute: u8 },
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::DailyAt {
            hour: 12,
            minute: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{} is not a time of day (use HH:MM, 00:00 to 23:59)", typed(text))]
    InvalidTimeOfDay { text: String },
    #[error("{} is not a number of hours from 1 to 168", typed(text))]
    InvalidInterval { text: String },
}

/// What was typed, quoted; an empty field says so.
fn typed(text: &str) -> String {
    if text.trim().is_empty() {
        "An empty field".into()
    } else {
        format!("{text:?}")
    }
}

impl UserFacing for ScheduleError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
    fn code(&self) -> &'static str {
        match self {
            ScheduleError::InvalidTimeOfDay { .. } => "CF-A035",
            ScheduleError::InvalidInterval { .. } => "CF-A036",
        }
    }
    fn next_step(&self) -> String {
        match self {
            ScheduleError::InvalidTimeOfDay { .. } => {
                "Enter the time as hours and minutes on a 24-hour clock, e.g. 02:30 or 18:00."
                    .into()
            }
            ScheduleError::InvalidInterval { .. } => {
                "Choose an interval between 1 and 168 hours, or a daily time.".into()
            }
        }
    }
}

/// A schedule as the form has it: the text typed, parsed here and only
/// here (the UI never turns "noon" or an empty field into a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleInput {
    Manual,
    /// The number of hours as typed.
    EveryHours {
        hours: String,
    },
    /// The time of day as typed (HH:MM, 24-hour clock).
    DailyAt {
        time: String,
    },
}

impl ScheduleInput {
    /// The schedule, or why the text is not one.
    pub fn parse(&self) -> Result<Schedule, ScheduleError> {
        match self {
            ScheduleInput::Manual => Ok(Schedule::Manual),
            ScheduleInput::DailyAt { time } => Schedule::daily_at(time),
            ScheduleInput::EveryHours { hours } => {
                let t = hours.trim();
                let bad = || ScheduleError::InvalidInterval {
                    text: t.chars().take(16).collect(),
                };
                if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let s = Schedule::EveryHours {
                    hours: t.parse().map_err(|_| bad())?,
                };
                s.validate().map_err(|_| bad())?;
                Ok(s)
            }
        }
    }
}

impl From<Schedule> for ScheduleInput {
    fn from(s: Schedule) -> Self {
        match s {
            Schedule::Manual => ScheduleInput::Manual,
            Schedule::EveryHours { hours } => ScheduleInput::EveryHours {
                hours: hours.to_string(),
            },
            Schedule::DailyAt { hour, minute } => ScheduleInput::DailyAt {
                time: format!("{hour:02}:{minute:02}"),
            },
        }
    }
}

impl Schedule {
    /// "Daily at HH:MM" from text such as `02:30`.
    pub fn daily_at(text: &str) -> Result<Self, ScheduleError> {
        let bad = || ScheduleError::InvalidTimeOfDay {
            text: text.chars().take(16).collect(),
        };
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        let ok_digits =
            |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !ok_digits(h) || m.len() != 2 || !ok_digits(m) {
            return Err(bad());
        }
        let s = Schedule::DailyAt {
            hour: h.parse().map_err(|_| bad())?,
            minute: m.parse().map_err(|_| bad())?,
        };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        match *self {
            Schedule::Manual => Ok(()),
            Schedule::EveryHours { hours } if (1..=MAX_INTERVAL_HOURS).contains(&hours) => Ok(()),
            Schedule::EveryHours { hours } => Err(ScheduleError::InvalidInterval {
                text: hours.to_string(),
            }),
            Schedule::DailyAt { hour, minute } if hour < 24 && minute < 60 => Ok(()),
            Schedule::DailyAt { hour, minute } => Err(ScheduleError::InvalidTimeOfDay {
                text: format!("{hour:02}:{minute:02}"),
            }),
        }
    }

    /// The longest regular gap between two runs; `None` for manual sets.
    pub fn interval_secs(&self) -> Option<i64> {
        match *self {
            Schedule::Manual => None,
            Schedule::EveryHours { hours } => Some(i64::from(hours) * HOUR),
            Schedule::DailyAt { .. } => Some(DAY),
        }
    }

    /// How much later than the interval a backup may be before it is called
    /// stale: a quarter of the interval, at least an hour (a laptop asleep
    /// over lunch is not an emergency).
    pub fn grace_secs(&self) -> Option<i64> {
        self.interval_secs().map(|i| (i / 4).max(HOUR))
    }

    /// The oldest a last good backup may be before the UI warns.
    pub fn allowed_age_secs(&self) -> Option<i64> {
        Some(self.interval_secs()? + self.grace_secs()?)
    }

    /// "every 6 hours", "daily at 02:30", "manual only".
    pub fn describe(&self) -> String {
        match *self {
            Schedule::Manual => "manual only".into(),
            Schedule::EveryHours { hours: 1 } => "every hour".into(),
            Schedule::EveryHours { hours } => format!("every {hours} hours"),
            Schedule::DailyAt { hour, minute } => format!("daily at {hour:02}:{minute:02}"),
        }
    }
}

/// When a set should run next, in unix seconds; `None` for manual sets.
///
/// `anchor` is the start of the last attempt, or the set's creation when it
/// never ran: a new set waits for its first regular time, so nothing starts
/// unasked the moment it is saved (the user has "Back up now" for that).
///
/// - every N hours: N hours after the anchor;
/// - daily at HH:MM: the first local HH:MM strictly after the anchor
///   (if the computer was off then, the result is in the past: run at once);
/// - after a failed attempt, no later than [`RETRY_AFTER_FAILURE_SECS`] after it.
pub fn next_due(
    schedule: &Schedule,
    anchor: i64,
    last_attempt_failed: bool,
    utc_offset_secs: i32,
) -> Option<i64> {
    let regular = match *schedule {
        Schedule::Manual => return None,
        Schedule::EveryHours { hours } => anchor + i64::from(hours) * HOUR,
        Schedule::DailyAt { hour, minute } => {
            let off = i64::from(utc_offset_secs);
            let local = anchor + off;
            let mut candidate =
                local.div_euclid(DAY) * DAY + i64::from(hour) * HOUR + i64::from(minute) * 60;
            if candidate <= local {
                candidate += DAY;
            }
            candidate - off
        }
    };
    Some(if last_attempt_failed {
        regular.min(anchor + RETRY_AFTER_FAILURE_SECS)
    } else {
        regular
    })
}

/// Whether a set should start now.
pub fn is_due(
    schedule: &Schedule,
    anchor: i64,
    last_attempt_failed: bool,
    now: i64,
    utc_offset_secs: i32,
) -> bool {
    next_due(schedule, anchor, last_attempt_failed, utc_offset_secs).is_some_and(|t| t <= now)
}

/// How old the last good backup of a set is, measured against its schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Freshness {
    /// A manual set: never called stale.
    Manual { age_secs: Option<i64> },
    /// Scheduled, never backed up yet, but created recently enough.
    NotYet,
    /// The last good backup is within what the schedule allows.
    Fresh { age_secs: i64 },
    /// Older than the schedule allows (or never succeeded, for longer than
    /// the schedule allows): the UI shows a warning.
    Stale {
        /// `None` when there never was a good backup.
        age_secs: Option<i64>,
        allowed_secs: i64,
    },
}

impl Freshness {
    pub fn is_stale(&self) -> bool {
        matches!(self, Freshness::Stale { .. })
    }
}

/// Judges the last good backup (`last_success`, unix seconds) of a set that
/// exists since `created_at`. A time in the future (clock moved back) counts
/// as age zero.
pub fn freshness(
    schedule: &Schedule,
    last_success: Option<i64>,
    created_at: i64,
    now: i64,
) -> Freshness {
    let age = last_success.map(|t| (now - t).max(0));
    let Some(allowed) = schedule.allowed_age_secs() else {
        return Freshness::Manual { age_secs: age };
    };
    match age {
        Some(a) if a <= allowed => Freshness::Fresh { age_secs: a },
        Some(a) => Freshness::Stale {
            age_secs: Some(a),
            allowed_secs: allowed,
        },
        None if now - created_at <= allowed => Freshness::NotYet,
        None => Freshness::Stale {
            age_secs: None,
            allowed_secs: allowed,
        },
    }
}

/// "3 days ago", "1 hour ago", "less than a minute ago".
pub fn humanize_age(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = if secs < 60 {
        return "less than a minute ago".into();
    } else if secs < HOUR {
        (secs / 60, "minute")
    } else if secs < DAY {
        (secs / HOUR, "hour")
    } else {
        (secs / DAY, "day")
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// The sentence the UI shows under a backup set.
pub fn freshness_sentence(schedule: &Schedule, freshness: &Freshness) -> String {
    let when = schedule.describe();
    match freshness {
        Freshness::Manual { age_secs: Some(a) } => {
            format!("Last good backup {} (manual backups only).", humanize_age(*a))
        }
        Freshness::Manual { age_secs: None } => "No backup yet (manual backups only).".into(),
        Freshness::NotYet => format!("No backup yet; this set is scheduled {when}."),
        Freshness::Fresh { age_secs } => {
            format!("Last good backup {} (scheduled {when}).", humanize_age(*age_secs))
        }
        Freshness::Stale {
            age_secs: Some(a), ..
        } => format!(
            "Warning: the last good backup was {}, but this set should back up {when}. Run it now and check the last error.",
            humanize_age(*a)
        ),
        Freshness::Stale { age_secs: None, .. } => format!(
            "Warning: this set has never been backed up successfully, although it should back up {when}. Run it now and check the last error."
        ),
    }
}

/// The system's UTC offset (seconds east of UTC) at the instant `at`.
pub fn local_utc_offset_secs(at: i64) -> i32 {
    use chrono::{Local, Offset, TimeZone};
    match Local.timestamp_opt(at, 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.offset().fix().local_minus_utc()
        }
        chrono::LocalResult::None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-10 00:00:00 UTC
    const DAY0: i64 = 1_773_100_800;

    fn t(day: i64, h: i64, m: i64) -> i64 {
        DAY0 + day * DAY + h * HOUR + m * 60
    }

    #[test]
    fn the_fixed_epoch_is_midnight_utc() {
        assert_eq!(DAY0 % DAY, 0);
    }

    #[test]
    fn daily_at_parses_and_rejects() {
        assert_eq!(
            Schedule::daily_at("02:30").unwrap(),
            Schedule::DailyAt {
                hour: 2,
                minute: 30
            }
        );
        assert_eq!(
            Schedule::daily_at(" 7:05 ").unwrap(),
            Schedule::DailyAt { hour: 7, minute: 5 }
        );
        for bad in [
            "24:00", "12:60", "1230", "12:5", "-1:00", "ab:cd", "", "12:30:00",
        ] {
            let e = Schedule::daily_at(bad).unwrap_err();
            assert_eq!(e.code(), "CF-A035", "{bad:?}");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn intervals_are_bounded() {
        assert!(Schedule::EveryHours { hours: 1 }.validate().is_ok());
        assert!(Schedule::EveryHours { hours: 168 }.validate().is_ok());
        for hours in [0, 169, u32::MAX] {
            let e = Schedule::EveryHours { hours }.validate().unwrap_err();
            assert_eq!(e.code(), "CF-A036");
        }
        assert!(Schedule::DailyAt {
            hour: 23,
            minute: 59
        }
        .validate()
        .is_ok());
        assert!(Schedule::DailyAt {
            hour: 24,
            minute: 0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn typed_schedules_parse_or_say_why_not() {
        let p = |i: ScheduleInput| i.parse();
        let daily = |t: &str| ScheduleInput::DailyAt { time: t.into() };
        let hours = |t: &str| ScheduleInput::EveryHours { hours: t.into() };
        assert_eq!(p(ScheduleInput::Manual), Ok(Schedule::Manual));
        assert_eq!(
            p(daily("14:05")),
            Ok(Schedule::DailyAt {
                hour: 14,
                minute: 5
            })
        );
        assert_eq!(p(hours(" 6 ")), Ok(Schedule::EveryHours { hours: 6 }));
        // What the old form saved as "daily at 00:00" or "every 0 hours".
        for bad in ["noon", "", "12", "12:00 pm"] {
            assert_eq!(p(daily(bad)).unwrap_err().code(), "CF-A035", "{bad:?}");
        }
        for bad in ["", "six", "0", "169", "2.5", "-1", "99999999999"] {
            assert_eq!(p(hours(bad)).unwrap_err().code(), "CF-A036", "{bad:?}");
        }
        // A saved schedule comes back as the text the form shows.
        for s in [
            Schedule::Manual,
            Schedule::EveryHours { hours: 12 },
            Schedule::DailyAt { hour: 7, minute: 0 },
        ] {
            assert_eq!(ScheduleInput::from(s).parse(), Ok(s));
        }
    }

    #[test]
    fn manual_sets_are_never_due() {
        assert_eq!(next_due(&Schedule::Manual, t(0, 5, 0), false, 0), None);
        assert!(!is_due(
            &Schedule::Manual,
            t(-30, 0, 0),
            true,
            t(0, 0, 0),
            0
        ));
    }

    #[test]
    fn a_new_set_waits_for_its_first_regular_time() {
        // Created at 09:00 (the anchor): nothing starts the moment it is saved.
        let s = Schedule::EveryHours { hours: 6 };
        assert_eq!(next_due(&s, t(0, 9, 0), false, 0), Some(t(0, 15, 0)));
        assert!(!is_due(&s, t(0, 9, 0), false, t(0, 9, 0), 0));
        let d = Schedule::DailyAt {
            hour: 12,
            minute: 0,
        };
        assert_eq!(next_due(&d, t(0, 9, 0), false, 0), Some(t(0, 12, 0)));
        assert!(!is_due(&d, t(0, 9, 0), false, t(0, 9, 1), 0));
    }

    #[test]
    fn every_n_hours_counts_from_the_last_attempt() {
        let s = Schedule::EveryHours { hours: 6 };
        let last = t(0, 9, 17);
        assert_eq!(next_due(&s, last, false, 0), Some(t(0, 15, 17)));
        assert!(!is_due(&s, last, false, t(0, 15, 16), 0));
        assert!(is_due(&s, last, false, t(0, 15, 17), 0));
    }

    #[test]
    fn daily_runs_at_the_next_local_time_after_the_last_attempt() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        // Last run at 01:00 UTC, before today's 02:30: due today.
        assert_eq!(next_due(&s, t(0, 1, 0), false, 0), Some(t(0, 2, 30)));
        // Last run exactly at 02:30: tomorrow.
        assert_eq!(next_due(&s, t(0, 2, 30), false, 0), Some(t(1, 2, 30)));
        // Last run in the evening: tomorrow.
        assert_eq!(next_due(&s, t(0, 22, 0), false, 0), Some(t(1, 2, 30)));
    }

    #[test]
    fn daily_uses_local_wall_clock_time() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        // UTC+2: 02:30 local is 00:30 UTC. Last run at 23:00 UTC on day 0 =
        // 01:00 local on day 1, so due at 02:30 local on day 1 = 00:30 UTC day 1.
        let plus2 = 2 * 3600;
        assert_eq!(next_due(&s, t(0, 23, 0), false, plus2), Some(t(1, 0, 30)));
        // UTC-5: 02:30 local is 07:30 UTC. Last run 03:00 UTC day 1 = 22:00
        // local day 0, so due 02:30 local day 1 = 07:30 UTC day 1.
        let minus5 = -5 * 3600;
        assert_eq!(next_due(&s, t(1, 3, 0), false, minus5), Some(t(1, 7, 30)));
    }

    #[test]
    fn a_computer_that_was_off_catches_up_at_once() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        let last = t(0, 3, 0);
        let now = t(3, 12, 0); // three days later
        assert_eq!(next_due(&s, last, false, 0), Some(t(1, 2, 30)));
        assert!(is_due(&s, last, false, now, 0));
    }

    #[test]
    fn a_failed_run_is_retried_after_half_an_hour() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        let last = t(0, 2, 30);
        assert_eq!(next_due(&s, last, true, 0), Some(t(0, 3, 0)));
        // ... unless the schedule is sooner anyway.
        let hourly = Schedule::EveryHours { hours: 1 };
        assert_eq!(next_due(&hourly, last, true, 0), Some(t(0, 3, 0)));
        let two = Schedule::EveryHours { hours: 2 };
        assert_eq!(next_due(&two, last, true, 0), Some(t(0, 3, 0)));
        assert_eq!(next_due(&two, last, false, 0), Some(t(0, 4, 30)));
    }

    #[test]
    fn staleness_allows_a_grace_period() {
        let daily = Schedule::DailyAt { hour: 2, minute: 0 };
        assert_eq!(daily.allowed_age_secs(), Some(30 * HOUR));
        let hourly = Schedule::EveryHours { hours: 1 };
        assert_eq!(hourly.allowed_age_secs(), Some(2 * HOUR));
        let last = t(0, 2, 0);
        assert_eq!(
            freshness(&daily, Some(last), t(-10, 0, 0), t(1, 8, 0)),
            Freshness::Fresh {
                age_secs: 30 * HOUR
            }
        );
        let f = freshness(&daily, Some(last), t(-10, 0, 0), t(1, 8, 1));
        assert!(f.is_stale());
        assert_eq!(
            f,
            Freshness::Stale {
                age_secs: Some(30 * HOUR + 60),
                allowed_secs: 30 * HOUR
            }
        );
    }

    #[test]
    fn never_backed_up_is_stale_only_after_the_allowance() {
        let s = Schedule::EveryHours { hours: 6 };
        let created = t(0, 0, 0);
        assert_eq!(freshness(&s, None, created, t(0, 7, 30)), Freshness::NotYet);
        assert_eq!(
            freshness(&s, None, created, t(0, 7, 31)),
            Freshness::Stale {
                age_secs: None,
                allowed_secs: 7 * HOUR + 30 * 60
            }
        );
    }

    #[test]
    fn manual_sets_are_never_stale_and_future_times_count_as_now() {
        let f = freshness(
            &Schedule::Manual,
            Some(t(-400, 0, 0)),
            t(-500, 0, 0),
            t(0, 0, 0),
        );
        assert_eq!(
            f,
            Freshness::Manual {
                age_secs: Some(400 * DAY)
            }
        );
        assert!(!f.is_stale());
        let s = Schedule::EveryHours { hours: 1 };
        assert_eq!(
            freshness(&s, Some(t(0, 5, 0)), t(-1, 0, 0), t(0, 4, 0)),
            Freshness::Fresh { age_secs: 0 }
        );
    }

    #[test]
    fn sentences_say_what_is_wrong() {
        let daily = Schedule::DailyAt { hour: 2, minute: 0 };
        let f = freshness(&daily, Some(t(0, 2, 0)), t(-5, 0, 0), t(3, 2, 0));
        assert_eq!(
            freshness_sentence(&daily, &f),
            "Warning: the last good backup was 3 days ago, but this set should back up daily at 02:00. Run it now and check the last error."
        );
        let six = Schedule::EveryHours { hours: 6 };
        let f = freshness(&six, Some(t(0, 2, 0)), t(-5, 0, 0), t(0, 3, 0));
        assert_eq!(
            freshness_sentence(&six, &f),
            "Last good backup 1 hour ago (scheduled every 6 hours)."
        );
        let f = freshness(&six, None, t(-5, 0, 0), t(0, 0, 0));
        assert!(freshness_sentence(&six, &f).contains("never been backed up"));
        assert_eq!(
            freshness_sentence(&six, &Freshness::NotYet),
            "No backup yet; this set is scheduled every 6 hours."
        );
        assert_eq!(
            freshness_sentence(&Schedule::Manual, &Freshness::Manual { age_secs: None }),
            "No backup yet (manual backups only)."
        );
        assert_eq!(Schedule::EveryHours { hours: 1 }.describe(), "every hour");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(humanize_age(-5), "less than a minute ago");
        assert_eq!(humanize_age(59), "less than a minute ago");
        assert_eq!(humanize_age(60), "1 minute ago");
        assert_eq!(humanize_age(2 * HOUR + 5), "2 hours ago");
        assert_eq!(humanize_age(DAY), "1 day ago");
        assert_eq!(humanize_age(10 * DAY + 3), "10 days ago");
    }

    #[test]
    fn local_offset_is_a_plausible_timezone() {
        let off = local_utc_offset_secs(DAY0);
        assert!((-14 * 3600..=14 * 3600).contains(&off), "{off}");
        assert_eq!(off % 60, 0);
    }

    #[test]
    fn schedules_serialize_with_a_kind_tag() {
        let j = serde_json::to_string(&Schedule::DailyAt { hour: 2, minute: 5 }).unwrap();
        assert_eq!(j, r#"{"kind":"daily_at","hour":2,"minute":5}"#);
        let back: Schedule = serde_json::from_str(r#"{"kind":"every_hours","hours":4}"#).unwrap();
        assert_eq!(back, Schedule::EveryHours { hours: 4 });
        assert_eq!(
            serde_json::to_string(&Schedule::Manual).unwrap(),
            r#"{"kind":"manual"}"#
        );
    }
}
