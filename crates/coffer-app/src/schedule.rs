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
    #[error("{text:?} is not a time of day (use HH:MM, 00:00 to 23:59)")]
    InvalidTimeOfDay { text: String },
    #[error("a backup every {hours} hours is not possible (use 1 to 168 hours)")]
    InvalidInterval { hours: u32 },
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
            Schedule::EveryHours { hours } => Err(ScheduleError::InvalidInterval { hours }),
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
/// - never run: due at `now`;
/// - every N hours: N hours after the last attempt;
/// - daily at HH:MM: the first local HH:MM strictly after the last attempt
///   (if the computer was off then, the result is in the past: run at once);
/// - after a failed attempt, no later than [`RETRY_AFTER_FAILURE_SECS`] after it.
pub fn next_due(
    schedule: &Schedule,
    last_attempt: Option<i64>,
    last_attempt_failed: bool,
    now: i64,
    utc_offset_secs: i32,
) -> Option<i64> {
    let last = match (schedule, last_attempt) {
        (Schedule::Manual, _) => return None,
        (_, None) => return Some(now),
        (_, Some(t)) => t,
    };
    let regular = match *schedule {
        Schedule::Manual => return None,
        Schedule::EveryHours { hours } => last + i64::from(hours) * HOUR,
        Schedule::DailyAt { hour, minute } => {
            let off = i64::from(utc_offset_secs);
            let local = last + off;
            let mut candidate =
                local.div_euclid(DAY) * DAY + i64::from(hour) * HOUR + i64::from(minute) * 60;
            if candidate <= local {
                candidate += DAY;
            }
            candidate - off
        }
    };
    Some(if last_attempt_failed {
        regular.min(last + RETRY_AFTER_FAILURE_SECS)
    } else {
        regular
    })
}

/// Whether a set should start now.
pub fn is_due(
    schedule: &Schedule,
    last_attempt: Option<i64>,
    last_attempt_failed: bool,
    now: i64,
    utc_offset_secs: i32,
) -> bool {
    next_due(
        schedule,
        last_attempt,
        last_attempt_failed,
        now,
        utc_offset_secs,
    )
    .is_some_and(|t| t <= now)
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
    fn manual_sets_are_never_due() {
        assert_eq!(
            next_due(&Schedule::Manual, None, false, t(0, 5, 0), 0),
            None
        );
        assert!(!is_due(
            &Schedule::Manual,
            Some(t(-30, 0, 0)),
            true,
            t(0, 0, 0),
            0
        ));
    }

    #[test]
    fn a_set_never_run_is_due_now() {
        let s = Schedule::EveryHours { hours: 6 };
        assert_eq!(next_due(&s, None, false, t(0, 9, 0), 0), Some(t(0, 9, 0)));
        assert!(is_due(&s, None, false, t(0, 9, 0), 0));
    }

    #[test]
    fn every_n_hours_counts_from_the_last_attempt() {
        let s = Schedule::EveryHours { hours: 6 };
        let last = t(0, 9, 17);
        assert_eq!(next_due(&s, Some(last), false, last, 0), Some(t(0, 15, 17)));
        assert!(!is_due(&s, Some(last), false, t(0, 15, 16), 0));
        assert!(is_due(&s, Some(last), false, t(0, 15, 17), 0));
    }

    #[test]
    fn daily_runs_at_the_next_local_time_after_the_last_attempt() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        // Last run at 01:00 UTC, before today's 02:30: due today.
        assert_eq!(
            next_due(&s, Some(t(0, 1, 0)), false, t(0, 1, 0), 0),
            Some(t(0, 2, 30))
        );
        // Last run exactly at 02:30: tomorrow.
        assert_eq!(
            next_due(&s, Some(t(0, 2, 30)), false, t(0, 2, 30), 0),
            Some(t(1, 2, 30))
        );
        // Last run in the evening: tomorrow.
        assert_eq!(
            next_due(&s, Some(t(0, 22, 0)), false, t(0, 22, 0), 0),
            Some(t(1, 2, 30))
        );
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
        assert_eq!(
            next_due(&s, Some(t(0, 23, 0)), false, t(0, 23, 0), plus2),
            Some(t(1, 0, 30))
        );
        // UTC-5: 02:30 local is 07:30 UTC. Last run 03:00 UTC day 1 = 22:00
        // local day 0, so due 02:30 local day 1 = 07:30 UTC day 1.
        let minus5 = -5 * 3600;
        assert_eq!(
            next_due(&s, Some(t(1, 3, 0)), false, t(1, 3, 0), minus5),
            Some(t(1, 7, 30))
        );
    }

    #[test]
    fn a_computer_that_was_off_catches_up_at_once() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        let last = t(0, 3, 0);
        let now = t(3, 12, 0); // three days later
        assert_eq!(next_due(&s, Some(last), false, now, 0), Some(t(1, 2, 30)));
        assert!(is_due(&s, Some(last), false, now, 0));
    }

    #[test]
    fn a_failed_run_is_retried_after_half_an_hour() {
        let s = Schedule::DailyAt {
            hour: 2,
            minute: 30,
        };
        let last = t(0, 2, 30);
        assert_eq!(next_due(&s, Some(last), true, last, 0), Some(t(0, 3, 0)));
        // ... unless the schedule is sooner anyway.
        let hourly = Schedule::EveryHours { hours: 1 };
        assert_eq!(
            next_due(&hourly, Some(last), true, last, 0),
            Some(t(0, 3, 0))
        );
        let two = Schedule::EveryHours { hours: 2 };
        assert_eq!(next_due(&two, Some(last), true, last, 0), Some(t(0, 3, 0)));
        assert_eq!(
            next_due(&two, Some(last), false, last, 0),
            Some(t(0, 4, 30))
        );
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
