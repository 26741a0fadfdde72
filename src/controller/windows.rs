//! Sync windows: whether automated syncs may run now (`spec.sync.windows`).
//!
//! ```text
//!   spec.sync.windows ──Windows::parse──► Windows ──state_at(now)──► WindowState
//!   [{kind, schedule,                      kind, Schedule (bitsets),    Open
//!     duration, timeZone}]                 length, TimeZone             Closed { by, next_opening }
//! ```
//!
//! Pure: no clock and no I/O; the caller passes "now". Semantics are Argo CD's:
//!
//! - A window is active at `t` when one of its schedule's start times `s` has
//!   `s <= t < s + duration`. The duration is elapsed time (Go's
//!   `time.Time.Add`): a `62h` window that starts on Friday 18:00 in Berlin
//!   ends on Monday 07:00 when the clocks went back that weekend.
//! - An active `deny` window always wins. Once any `allow` window exists,
//!   syncs run only while at least one `allow` window is active. No windows:
//!   always open.
//!
//! Schedules are read as a Kubernetes CronJob reads them (robfig/cron's
//! standard parser): five fields `minute hour day-of-month month day-of-week`,
//! `*`, `?`, numbers, ranges `1-5`, steps `*/15` `1-10/2` `5/20` (from 5 to the
//! end), lists, case-insensitive names (`JAN`–`DEC`, `SUN`–`SAT`), the macros
//! `@yearly` `@annually` `@monthly` `@weekly` `@daily` `@midnight` `@hourly`.
//! Day-of-week `0` and `7` are both Sunday (robfig accepts only `0`). When
//! day-of-month and day-of-week are both restricted, a day matching either
//! one fires; when either is `*` (or `*/1`), both must match, so only the
//! restricted one counts. As in robfig, a stepped star (`*/2`) is a
//! restriction.
//!
//! Schedules name wall-clock times in the window's `timeZone` (IANA, default
//! `UTC`). Across daylight-saving changes:
//! - a time that does not exist (02:30 on the spring-forward day in
//!   Europe/Berlin) does not fire that day, as in robfig/cron (Kubernetes
//!   CronJobs, Argo CD);
//! - a time that occurs twice (02:30 on the fall-back day) fires once, at its
//!   first occurrence (robfig would fire at both).
//!
//! Cost: finding the start that covers `t` walks the calendar backwards over
//! at most `duration` (months and days by bitset tests, then hours and minutes
//! by bit scans), and the next opening jumps from one window boundary to the
//! next, never minute by minute.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};

use crate::spec::{SyncWindow, parse_duration};

/// How far ahead the next opening is searched for.
const SEARCH_HORIZON: SignedDuration = SignedDuration::from_hours(9 * 366 * 24);
/// At most this many window boundaries are visited while searching for the
/// next opening (a deny window that is always active never opens).
const SEARCH_STEPS: usize = 1000;
/// Go's longest duration (`time.Duration` is int64 nanoseconds).
const LONGEST_DURATION_HOURS: i64 = 2_562_047;

/// `spec.sync.windows` at `now`: the convenience of `Windows::parse` then
/// `Windows::state_at`.
pub fn evaluate(windows: &[SyncWindow], now: Timestamp) -> Result<WindowState, WindowError> {
    Ok(Windows::parse(windows)?.state_at(now))
}

/// A window of `spec.sync.windows` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.sync.windows[{index}].{field} `{value}`: {reason}")]
pub struct WindowError {
    pub index: usize,
    /// `kind`, `schedule`, `duration` or `timeZone`.
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Allow,
    Deny,
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowKind::Allow => "allow",
            WindowKind::Deny => "deny",
        })
    }
}

/// Whether automated syncs may run.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowState {
    Open,
    Closed(Closed),
}

impl WindowState {
    pub fn is_open(&self) -> bool {
        matches!(self, WindowState::Open)
    }
}

impl fmt::Display for WindowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowState::Open => f.write_str("sync window open"),
            WindowState::Closed(closed) => closed.fmt(f),
        }
    }
}

/// Why syncs may not run now, and when they may again.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub by: ClosedBy,
    pub next_opening: NextOpening,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.by {
            ClosedBy::Deny(window) => write!(f, "sync window closed by deny window {window}")?,
            ClosedBy::OutsideAllow(windows) => {
                let plural = if windows.len() == 1 { "" } else { "s" };
                write!(f, "sync window closed: outside allow window{plural} ")?;
                for (i, window) in windows.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{window}")?;
                }
            }
        }
        write!(f, "; {}", self.next_opening)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClosedBy {
    /// The first (by index) deny window active now.
    Deny(WindowSummary),
    /// Allow windows exist and none is active now: all of them.
    OutsideAllow(Vec<WindowSummary>),
}

/// A window as the user wrote it, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSummary {
    pub index: usize,
    pub kind: WindowKind,
    pub schedule: String,
    pub duration: String,
    /// The IANA name, `UTC` when none was given.
    pub time_zone: String,
}

impl fmt::Display for WindowSummary {
    /// "`0 18 * * 5` (62h, Europe/Berlin)"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({}, {})",
            self.schedule, self.duration, self.time_zone
        )
    }
}

/// The earliest time from now at which syncs may run, in the time zone of
/// the window that closes them.
#[derive(Debug, Clone, PartialEq)]
pub enum NextOpening {
    At(Zoned),
    /// None found up to this time (a deny window that never ends, or an
    /// allow window that never starts outside the deny windows).
    NotFoundBefore(Zoned),
}

impl NextOpening {
    /// The instant of the opening, if one was found.
    pub fn at(&self) -> Option<Timestamp> {
        match self {
            NextOpening::At(zoned) => Some(zoned.timestamp()),
            NextOpening::NotFoundBefore(_) => None,
        }
    }

    /// The opening, or the bound of the search, as RFC 3339 in the window's
    /// time zone: `2026-12-07T08:00:00+01:00`.
    pub fn time(&self) -> String {
        match self {
            NextOpening::At(zoned) | NextOpening::NotFoundBefore(zoned) => rfc3339(zoned),
        }
    }
}

impl fmt::Display for NextOpening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextOpening::At(at) => write!(f, "next opening {}", rfc3339(at)),
            NextOpening::NotFoundBefore(bound) => {
                write!(f, "no opening found before {}", rfc3339(bound))
            }
        }
    }
}

fn rfc3339(zoned: &Zoned) -> String {
    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// The windows of one Application, parsed and checked.
#[derive(Debug, Clone)]
pub struct Windows {
    windows: Vec<Window>,
}

#[derive(Debug, Clone)]
struct Window {
    summary: WindowSummary,
    schedule: Schedule,
    length: SignedDuration,
    zone: TimeZone,
}

impl Windows {
    pub fn parse(specs: &[SyncWindow]) -> Result<Windows, WindowError> {
        let windows = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| Window::parse(index, spec))
            .collect::<Result<_, _>>()?;
        Ok(Windows { windows })
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Whether syncs may run at `now`; when not, why and until when.
    pub fn state_at(&self, now: Timestamp) -> WindowState {
        let by = if let Some(deny) = self.active_deny(now) {
            ClosedBy::Deny(deny.summary.clone())
        } else if self.outside_allow(now) {
            ClosedBy::OutsideAllow(
                self.of_kind(WindowKind::Allow)
                    .map(|w| w.summary.clone())
                    .collect(),
            )
        } else {
            return WindowState::Open;
        };
        let zone = self
            .windows
            .iter()
            .find(|w| match &by {
                ClosedBy::Deny(summary) => w.summary.index == summary.index,
                ClosedBy::OutsideAllow(_) => w.summary.kind == WindowKind::Allow,
            })
            .map(|w| w.zone.clone())
            .unwrap_or(TimeZone::UTC);
        let next_opening = match self.next_opening(now) {
            Ok(at) => NextOpening::At(at.to_zoned(zone)),
            Err(bound) => NextOpening::NotFoundBefore(bound.to_zoned(zone)),
        };
        WindowState::Closed(Closed { by, next_opening })
    }

    fn of_kind(&self, kind: WindowKind) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter(move |w| w.summary.kind == kind)
    }

    fn active_deny(&self, t: Timestamp) -> Option<&Window> {
        self.of_kind(WindowKind::Deny)
            .find(|w| w.active_until(t).is_some())
    }

    fn outside_allow(&self, t: Timestamp) -> bool {
        let mut allows = self.of_kind(WindowKind::Allow).peekable();
        allows.peek().is_some() && allows.all(|w| w.active_until(t).is_none())
    }

    /// The earliest time `>= now` that is open, or the bound of the search.
    ///
    /// Each step jumps to a time before which it cannot open: past the end
    /// of every deny window active now (they stay active until then), or, with
    /// no deny active and outside every allow window, to the next allow start.
    fn next_opening(&self, now: Timestamp) -> Result<Timestamp, Timestamp> {
        let horizon = later(now, SEARCH_HORIZON);
        let mut t = now;
        for _ in 0..SEARCH_STEPS {
            if t > horizon {
                return Err(horizon);
            }
            let deny_end = self
                .of_kind(WindowKind::Deny)
                .filter_map(|w| w.active_until(t))
                .max();
            if let Some(end) = deny_end {
                t = end;
                continue;
            }
            if !self.outside_allow(t) {
                return Ok(t);
            }
            match self
                .of_kind(WindowKind::Allow)
                .filter_map(|w| w.first_start_at_or_after(t, horizon))
                .min()
            {
                Some(start) => t = start,
                None => return Err(horizon),
            }
        }
        Err(t)
    }
}

impl Window {
    fn parse(index: usize, spec: &SyncWindow) -> Result<Window, WindowError> {
        let error = |field: &'static str, value: &str, reason: String| WindowError {
            index,
            field,
            value: value.to_string(),
            reason,
        };
        let kind = match spec.kind.as_str() {
            "allow" => WindowKind::Allow,
            "deny" => WindowKind::Deny,
            other => {
                return Err(error(
                    "kind",
                    other,
                    "must be `allow` or `deny`".to_string(),
                ));
            }
        };
        let schedule = Schedule::parse(&spec.schedule)
            .map_err(|reason| error("schedule", &spec.schedule, reason))?;
        let length = parse_duration(&spec.duration)
            .map_err(|e| error("duration", &spec.duration, e.reason))?;
        if length.is_zero() {
            return Err(error(
                "duration",
                &spec.duration,
                "a window must last longer than 0 (examples: 30m, 1h30m, 62h)".to_string(),
            ));
        }
        let length = SignedDuration::try_from(length)
            .ok()
            .filter(|d| *d <= SignedDuration::from_hours(LONGEST_DURATION_HOURS))
            .ok_or_else(|| {
                error(
                    "duration",
                    &spec.duration,
                    format!("longer than Go's longest duration ({LONGEST_DURATION_HOURS}h)"),
                )
            })?;
        let (zone, time_zone) = match spec.time_zone.as_deref() {
            None => (TimeZone::UTC, "UTC".to_string()),
            Some(name) => {
                let zone = TimeZone::get(name).map_err(|_| {
                    error(
                        "timeZone",
                        name,
                        "not a known IANA time zone (examples: UTC, Europe/Berlin, America/New_York)"
                            .to_string(),
                    )
                })?;
                (zone, name.to_string())
            }
        };
        Ok(Window {
            summary: WindowSummary {
                index,
                kind,
                schedule: spec.schedule.clone(),
                duration: spec.duration.clone(),
                time_zone,
            },
            schedule,
            length,
            zone,
        })
    }

    /// When the window is active at `t`: the end of the run that covers `t`
    /// (of the latest start; later starts may extend it).
    fn active_until(&self, t: Timestamp) -> Option<Timestamp> {
        let start = self.last_start_at_or_before(t, earlier(t, self.length))?;
        let end = later(start, self.length);
        (end > t).then_some(end)
    }

    /// The latest start `s` with `earliest <= s <= t`.
    ///
    /// Start instants grow with wall-clock time (gap times are skipped, fold
    /// times take their first occurrence), so walking wall times downwards
    /// the first start `<= t` is the latest one. The walk begins at the wall
    /// time of `t` read with the earlier offset, which in a fold is later
    /// than `t`'s own wall time (02:45 CEST comes before 02:30 CET).
    fn last_start_at_or_before(&self, t: Timestamp, earliest: Timestamp) -> Option<Timestamp> {
        let wall = self.zone.to_datetime(t);
        let mut from = match self.zone.to_ambiguous_timestamp(wall).offset() {
            AmbiguousOffset::Fold { before, .. } => before.to_datetime(t),
            _ => wall,
        };
        let lowest_date = self.zone.to_datetime(earliest).date().yesterday().ok()?;
        loop {
            let candidate = self.schedule.last_match_at_or_before(from, lowest_date)?;
            match first_instant(&self.zone, candidate) {
                Some(start) if start <= t => return (start >= earliest).then_some(start),
                _ => from = candidate.checked_sub(SignedDuration::from_mins(1)).ok()?,
            }
        }
    }

    /// The earliest start `s` with `t <= s <= latest`.
    fn first_start_at_or_after(&self, t: Timestamp, latest: Timestamp) -> Option<Timestamp> {
        let mut from = self.zone.to_datetime(t);
        let highest_date = self.zone.to_datetime(latest).date().tomorrow().ok()?;
        loop {
            let candidate = self.schedule.first_match_at_or_after(from, highest_date)?;
            match first_instant(&self.zone, candidate) {
                Some(start) if start >= t => return (start <= latest).then_some(start),
                _ => from = candidate.checked_add(SignedDuration::from_mins(1)).ok()?,
            }
        }
    }
}

fn later(t: Timestamp, by: SignedDuration) -> Timestamp {
    t.checked_add(by).unwrap_or(Timestamp::MAX)
}

fn earlier(t: Timestamp, by: SignedDuration) -> Timestamp {
    t.checked_sub(by).unwrap_or(Timestamp::MIN)
}

/// The instant a wall-clock time first occurs in `zone`; `None` in a gap.
fn first_instant(zone: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    let offset = match zone.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { .. } => return None,
        AmbiguousOffset::Fold { before, .. } => before,
    };
    offset.to_timestamp(wall).ok()
}

/// A five-field cron schedule as bitsets: bit `n` set = value `n` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bit 0 is Sunday (a `7` is folded into it).
    days_of_week: u64,
    /// Day-of-month was `*` (or `?`, `*/1`): then both day fields must match.
    any_day_of_month: bool,
    any_day_of_week: bool,
}

/// One cron field: its name, its range, and its names for values.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Where `*` and `N/step` end (day-of-week: 6, though `7` is accepted).
    open_max: u32,
    /// Names for `min`, `min + 1`, ...
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    open_max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    open_max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    open_max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    open_max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    open_max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// The longest each month can be (February in a leap year).
const MONTH_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl Schedule {
    /// Parses a schedule; the error says what is wrong, for a user.
    fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            lower if lower.starts_with("@every") => {
                return Err(
                    "`@every` is not supported: use five cron fields (`*/30 * * * *`)".to_string(),
                );
            }
            lower if lower.starts_with('@') => {
                return Err("unknown macro: use @yearly, @monthly, @weekly, @daily or @hourly, or five cron fields".to_string());
            }
            lower if lower.starts_with("tz=") || lower.starts_with("cron_tz=") => {
                return Err("set the time zone in `timeZone`, not in the schedule".to_string());
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(format!(
                "expected five fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        };
        let (minutes, _) = parse_field(minute, &MINUTE)?;
        let (hours, _) = parse_field(hour, &HOUR)?;
        let (days_of_month, any_day_of_month) = parse_field(day_of_month, &DAY_OF_MONTH)?;
        let (months, _) = parse_field(month, &MONTH)?;
        let (mut days_of_week, any_day_of_week) = parse_field(day_of_week, &DAY_OF_WEEK)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        let schedule = Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            any_day_of_month,
            any_day_of_week,
        };
        // Only day-of-month AND month can miss each other (`0 0 30 2 *`).
        let meets = (1..=12u32).any(|month| {
            schedule.months & (1 << month) != 0
                && (1..=MONTH_DAYS[month as usize - 1])
                    .any(|d| schedule.days_of_month & (1 << d) != 0)
        });
        if any_day_of_week && !any_day_of_month && !meets {
            return Err("never fires: no month in the schedule has those days".to_string());
        }
        Ok(schedule)
    }

    fn month_matches(&self, date: Date) -> bool {
        self.months & (1 << date.month()) != 0
    }

    fn day_matches(&self, date: Date) -> bool {
        let day_of_month = self.days_of_month & (1 << date.day()) != 0;
        let day_of_week = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day_of_month || self.any_day_of_week {
            day_of_month && day_of_week
        } else {
            day_of_month || day_of_week
        }
    }

    /// The first matching wall-clock minute at or after `from` (rounded up
    /// to its minute), on or before `last_date`.
    fn first_match_at_or_after(&self, from: DateTime, last_date: Date) -> Option<DateTime> {
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour() as u32, from.minute() as u32);
        if from.second() != 0 || from.subsec_nanosecond() != 0 {
            minute += 1; // 60 finds no minute: the search moves to the next hour
        }
        while date <= last_date {
            if !self.month_matches(date) {
                date = date.last_of_month().tomorrow().ok()?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some(h) = first_bit_at_or_after(self.hours, hour)
            {
                let from_minute = if h == hour { minute } else { 0 };
                if let Some(m) = first_bit_at_or_after(self.minutes, from_minute) {
                    return Some(date.at(h as i8, m as i8, 0, 0));
                }
                if h < 23 {
                    (hour, minute) = (h + 1, 0);
                    continue;
                }
            }
            date = date.tomorrow().ok()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    /// The last matching wall-clock minute at or before `from`, on or after
    /// `first_date`.
    fn last_match_at_or_before(&self, from: DateTime, first_date: Date) -> Option<DateTime> {
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour() as u32, from.minute() as u32);
        while date >= first_date {
            if !self.month_matches(date) {
                date = date.first_of_month().yesterday().ok()?;
                (hour, minute) = (23, 59);
                continue;
            }
            if self.day_matches(date)
                && let Some(h) = last_bit_at_or_before(self.hours, hour)
            {
                let from_minute = if h == hour { minute } else { 59 };
                if let Some(m) = last_bit_at_or_before(self.minutes, from_minute) {
                    return Some(date.at(h as i8, m as i8, 0, 0));
                }
                if h > 0 {
                    (hour, minute) = (h - 1, 59);
                    continue;
                }
            }
            date = date.yesterday().ok()?;
            (hour, minute) = (23, 59);
        }
        None
    }
}

/// One field: its bitset, and whether it is a plain `*` (`?`, `*/1`).
fn parse_field(text: &str, field: &Field) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = number(step).filter(|step| *step > 0).ok_or_else(|| {
                    format!("{}: step `{step}` must be a number from 1", field.name)
                })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star |= step.unwrap_or(1) == 1;
            (field.min, field.open_max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, field)?, value(high, field)?)
        } else {
            let start = value(range, field)?;
            // `5/20`: from 5 to the end, every 20.
            (
                start,
                if step.is_some() {
                    field.open_max
                } else {
                    start
                },
            )
        };
        if start > end {
            return Err(format!("{}: `{item}` starts after it ends", field.name));
        }
        for v in (start..=end).step_by(step.unwrap_or(1) as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

/// A number or a name, in the field's range.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    let found = number(text).or_else(|| {
        let lower = text.to_ascii_lowercase();
        let position = field.names.iter().position(|name| *name == lower)?;
        Some(field.min + position as u32)
    });
    match found {
        Some(v) if (field.min..=field.max).contains(&v) => Ok(v),
        Some(v) => Err(format!(
            "{} {v} is out of range {}-{}",
            field.name, field.min, field.max
        )),
        None if field.names.is_empty() => Err(format!("{}: `{text}` is not a number", field.name)),
        None => Err(format!(
            "{}: `{text}` is not a number or a name ({}-{})",
            field.name,
            field.names[0].to_ascii_uppercase(),
            field.names[field.names.len() - 1].to_ascii_uppercase()
        )),
    }
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn first_bit_at_or_after(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

fn last_bit_at_or_before(bits: u64, upto: u32) -> Option<u32> {
    let rest = if upto >= 63 {
        bits
    } else {
        bits & ((1u64 << (upto + 1)) - 1)
    };
    (rest != 0).then(|| 63 - rest.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kind: &str, schedule: &str, duration: &str, time_zone: Option<&str>) -> SyncWindow {
        SyncWindow {
            kind: kind.to_string(),
            schedule: schedule.to_string(),
            duration: duration.to_string(),
            time_zone: time_zone.map(str::to_string),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn state(windows: &[SyncWindow], now: &str) -> WindowState {
        evaluate(windows, at(now)).unwrap()
    }

    /// The next opening as an RFC 3339 string in the closing window's zone.
    fn next_opening(windows: &[SyncWindow], now: &str) -> String {
        match state(windows, now) {
            WindowState::Open => panic!("open at {now}"),
            WindowState::Closed(closed) => match closed.next_opening {
                NextOpening::At(zoned) => rfc3339(&zoned),
                other => panic!("{other}"),
            },
        }
    }

    fn schedule(text: &str) -> Schedule {
        Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The first `n` start times from `from` (UTC), as wall-clock strings.
    fn starts(text: &str, from: &str, n: usize) -> Vec<String> {
        let schedule = schedule(text);
        let mut from: DateTime = from.parse().unwrap();
        let last: Date = "2040-01-01".parse().unwrap();
        (0..n)
            .map(|_| {
                let found = schedule.first_match_at_or_after(from, last).unwrap();
                from = found.checked_add(SignedDuration::from_mins(1)).unwrap();
                found.strftime("%a %Y-%m-%d %H:%M").to_string()
            })
            .collect()
    }

    /// The days of December 2026 (a Tuesday the 1st) on which `text` fires.
    fn december_days(text: &str) -> Vec<i8> {
        let schedule = schedule(text);
        (1..=31)
            .filter(|d| schedule.day_matches(Date::new(2026, 12, *d).unwrap()))
            .collect()
    }

    #[test]
    fn one_to_five_is_monday_to_friday() {
        assert_eq!(
            starts("0 9 * * 1-5", "2026-12-04T10:00", 3),
            [
                "Mon 2026-12-07 09:00",
                "Tue 2026-12-08 09:00",
                "Wed 2026-12-09 09:00"
            ]
        );
        assert_eq!(
            december_days("0 9 * * 1-5"),
            [
                1, 2, 3, 4, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 28, 29, 30, 31
            ]
        );
    }

    #[test]
    fn zero_and_seven_are_both_sunday() {
        assert_eq!(december_days("0 0 * * 0"), [6, 13, 20, 27]);
        assert_eq!(december_days("0 0 * * 7"), [6, 13, 20, 27]);
        assert_eq!(december_days("0 0 * * SUN"), [6, 13, 20, 27]);
        assert_eq!(schedule("0 0 * * 7"), schedule("0 0 * * 0"));
        // Friday to Sunday.
        assert_eq!(
            december_days("0 0 * * 5-7"),
            [4, 5, 6, 11, 12, 13, 18, 19, 20, 25, 26, 27]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, and every Friday.
        assert_eq!(december_days("0 0 13 * 5"), [4, 11, 13, 18, 25]);
        // A stepped star is a restriction (robfig): odd days, or Mondays.
        assert_eq!(
            december_days("0 0 */2 * 1"),
            [
                1, 3, 5, 7, 9, 11, 13, 14, 15, 17, 19, 21, 23, 25, 27, 28, 29, 31
            ]
        );
    }

    #[test]
    fn a_star_day_field_leaves_only_the_other() {
        assert_eq!(december_days("0 0 13 * *"), [13]);
        assert_eq!(december_days("0 0 13 * ?"), [13]);
        assert_eq!(december_days("0 0 * * 5"), [4, 11, 18, 25]);
        assert_eq!(december_days("0 0 ? * 5"), [4, 11, 18, 25]);
        // `*/1` is still a star: the 13th only if it is a Friday (it is not).
        assert_eq!(december_days("0 0 13 * */1"), [13]);
        assert_eq!(december_days("0 0 13 * 5,*"), [13]);
        assert_eq!(december_days("0 0 * * *").len(), 31);
    }

    #[test]
    fn steps_ranges_and_lists() {
        let every_15 = schedule("*/15 * * * *");
        assert_eq!(
            every_15.minutes,
            (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45)
        );
        let odd = schedule("1-10/2 * * * *");
        assert_eq!(
            odd.minutes,
            (1 << 1) | (1 << 3) | (1 << 5) | (1 << 7) | (1 << 9)
        );
        let from_five = schedule("5/20 * * * *");
        assert_eq!(from_five.minutes, (1 << 5) | (1 << 25) | (1 << 45));
        let list = schedule("0,30 8-10,17 * * *");
        assert_eq!(list.minutes, 1 | (1 << 30));
        assert_eq!(list.hours, (1 << 8) | (1 << 9) | (1 << 10) | (1 << 17));
        assert_eq!(
            starts("0,30 8-10,17 * * *", "2026-12-04T10:15", 3),
            [
                "Fri 2026-12-04 10:30",
                "Fri 2026-12-04 17:00",
                "Fri 2026-12-04 17:30"
            ]
        );
        // Seconds round up to the next minute.
        assert_eq!(
            starts("*/15 * * * *", "2026-12-04T10:15:01", 1),
            ["Fri 2026-12-04 10:30"]
        );
        assert_eq!(
            starts("*/15 * * * *", "2026-12-04T23:59:30", 1),
            ["Sat 2026-12-05 00:00"]
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(schedule("0 0 * JAN,jul mon-FRI"), schedule("0 0 * 1,7 1-5"));
        assert_eq!(schedule("0 0 * Dec Sat"), schedule("0 0 * 12 6"));
        assert_eq!(
            starts("0 0 1 jan *", "2026-12-04T00:00", 2),
            ["Fri 2027-01-01 00:00", "Sat 2028-01-01 00:00"]
        );
    }

    #[test]
    fn macros_are_five_field_schedules() {
        assert_eq!(schedule("@yearly"), schedule("0 0 1 1 *"));
        assert_eq!(schedule("@annually"), schedule("0 0 1 1 *"));
        assert_eq!(schedule("@monthly"), schedule("0 0 1 * *"));
        assert_eq!(schedule("@weekly"), schedule("0 0 * * 0"));
        assert_eq!(schedule("@daily"), schedule("0 0 * * *"));
        assert_eq!(schedule("@midnight"), schedule("0 0 * * *"));
        assert_eq!(schedule("@hourly"), schedule("0 * * * *"));
    }

    #[test]
    fn rare_schedules_are_found() {
        assert_eq!(
            starts("0 0 29 2 *", "2026-12-04T00:00", 2),
            ["Tue 2028-02-29 00:00", "Sun 2032-02-29 00:00"]
        );
        assert_eq!(
            starts("0 12 31 * *", "2026-12-31T12:01", 2),
            ["Sun 2027-01-31 12:00", "Wed 2027-03-31 12:00"]
        );
    }

    #[test]
    fn invalid_schedules_say_what_is_wrong() {
        let cases = [
            (
                "",
                "expected five fields (minute hour day-of-month month day-of-week), found 0",
            ),
            (
                "0 18 * *",
                "expected five fields (minute hour day-of-month month day-of-week), found 4",
            ),
            (
                "0 0 18 * * 5",
                "expected five fields (minute hour day-of-month month day-of-week), found 6",
            ),
            ("60 * * * *", "minute 60 is out of range 0-59"),
            ("* 24 * * *", "hour 24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month 0 is out of range 1-31"),
            ("* * 32 * *", "day-of-month 32 is out of range 1-31"),
            ("* * * 13 *", "month 13 is out of range 1-12"),
            ("* * * 0 *", "month 0 is out of range 1-12"),
            ("* * * * 8", "day-of-week 8 is out of range 0-7"),
            ("*/0 * * * *", "minute: step `0` must be a number from 1"),
            ("*/x * * * *", "minute: step `x` must be a number from 1"),
            ("5-1 * * * *", "minute: `5-1` starts after it ends"),
            ("1-2-3 * * * *", "minute: `2-3` is not a number"),
            ("a * * * *", "minute: `a` is not a number"),
            ("-1 * * * *", "minute: `` is not a number"),
            ("1,,2 * * * *", "minute: `` is not a number"),
            (
                "* * * * MONDAY",
                "day-of-week: `MONDAY` is not a number or a name (SUN-SAT)",
            ),
            (
                "* * * * JAN",
                "day-of-week: `JAN` is not a number or a name (SUN-SAT)",
            ),
            ("* * MON * *", "day-of-month: `MON` is not a number"),
            (
                "0 0 30 2 *",
                "never fires: no month in the schedule has those days",
            ),
            (
                "0 0 31 4,6 *",
                "never fires: no month in the schedule has those days",
            ),
            (
                "@every 1h",
                "`@every` is not supported: use five cron fields (`*/30 * * * *`)",
            ),
            (
                "@often",
                "unknown macro: use @yearly, @monthly, @weekly, @daily or @hourly, or five cron fields",
            ),
            (
                "TZ=UTC 0 0 * * *",
                "set the time zone in `timeZone`, not in the schedule",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(Schedule::parse(text), Err(reason.to_string()), "{text}");
        }
        // February 30 never comes, but with a weekday the OR still fires.
        assert!(Schedule::parse("0 0 30 2 1").is_ok());
        assert!(Schedule::parse("0 0 29 2 *").is_ok());
    }

    #[test]
    fn invalid_windows_name_the_index_and_the_field() {
        let good = window("deny", "0 18 * * 5", "62h", Some("Europe/Berlin"));
        let cases = [
            (
                window("maybe", "0 18 * * 5", "62h", None),
                "spec.sync.windows[1].kind `maybe`: must be `allow` or `deny`",
            ),
            (
                window("deny", "0 18 * * 8", "62h", None),
                "spec.sync.windows[1].schedule `0 18 * * 8`: day-of-week 8 is out of range 0-7",
            ),
            (
                window("deny", "0 18 * * 5", "5d", None),
                "spec.sync.windows[1].duration `5d`: unknown unit `d`",
            ),
            (
                window("deny", "0 18 * * 5", "0", None),
                "spec.sync.windows[1].duration `0`: a window must last longer than 0 (examples: 30m, 1h30m, 62h)",
            ),
            (
                window("deny", "0 18 * * 5", "9999999h", None),
                "spec.sync.windows[1].duration `9999999h`: longer than Go's longest duration (2562047h)",
            ),
            (
                window("deny", "0 18 * * 5", "62h", Some("Europe/Berln")),
                "spec.sync.windows[1].timeZone `Europe/Berln`: not a known IANA time zone (examples: UTC, Europe/Berlin, America/New_York)",
            ),
            (
                window("deny", "0 18 * * 5", "62h", Some("")),
                "spec.sync.windows[1].timeZone ``: not a known IANA time zone (examples: UTC, Europe/Berlin, America/New_York)",
            ),
        ];
        for (bad, message) in cases {
            let error = evaluate(&[good.clone(), bad], at("2026-12-04T12:00:00Z")).unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.index, 1);
        }
    }

    #[test]
    fn the_binary_carries_a_time_zone_database() {
        // Used when the machine has no /usr/share/zoneinfo (no tzdata).
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        for name in ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"] {
            assert!(bundled.get(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn no_windows_is_always_open() {
        assert_eq!(state(&[], "2026-12-04T12:00:00Z"), WindowState::Open);
    }

    #[test]
    fn weekend_deny_window_in_berlin() {
        let windows = [window("deny", "0 18 * * 5", "62h", Some("Europe/Berlin"))];
        assert!(state(&windows, "2026-12-04T17:59:59+01:00").is_open());
        let closed = state(&windows, "2026-12-04T18:00:00+01:00");
        assert_eq!(
            closed.to_string(),
            "sync window closed by deny window `0 18 * * 5` (62h, Europe/Berlin); \
             next opening 2026-12-07T08:00:00+01:00"
        );
        let WindowState::Closed(closed) = closed else {
            unreachable!()
        };
        assert_eq!(closed.next_opening.at(), Some(at("2026-12-07T07:00:00Z")));
        assert!(!state(&windows, "2026-12-06T12:00:00Z").is_open());
        assert!(!state(&windows, "2026-12-07T07:59:59.999+01:00").is_open());
        assert!(state(&windows, "2026-12-07T08:00:00+01:00").is_open());
        assert!(state(&windows, "2026-12-09T12:00:00+01:00").is_open());
    }

    #[test]
    fn time_zone_defaults_to_utc() {
        let windows = [window("deny", "0 18 * * 5", "1h", None)];
        assert!(!state(&windows, "2026-12-04T18:30:00Z").is_open());
        assert!(state(&windows, "2026-12-04T18:30:00+01:00").is_open());
        assert_eq!(
            state(&windows, "2026-12-04T18:30:00Z").to_string(),
            "sync window closed by deny window `0 18 * * 5` (1h, UTC); \
             next opening 2026-12-04T19:00:00+00:00"
        );
    }

    #[test]
    fn a_window_is_active_from_its_start_until_before_its_end() {
        let windows = [window("deny", "30 9 * * *", "90m", None)];
        assert!(state(&windows, "2026-12-04T09:29:59.999Z").is_open());
        assert!(!state(&windows, "2026-12-04T09:30:00Z").is_open());
        assert!(!state(&windows, "2026-12-04T10:59:59.999Z").is_open());
        assert!(state(&windows, "2026-12-04T11:00:00Z").is_open());
    }

    #[test]
    fn spring_forward_gap_time_does_not_fire_in_berlin() {
        // 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST.
        let windows = [window("deny", "30 2 * * *", "1h", Some("Europe/Berlin"))];
        assert!(!state(&windows, "2026-03-28T02:45:00+01:00").is_open());
        // Where a shifted 02:30 would be (03:30 CEST), and everything between.
        assert!(state(&windows, "2026-03-29T01:59:00+01:00").is_open());
        assert!(state(&windows, "2026-03-29T03:00:00+02:00").is_open());
        assert!(state(&windows, "2026-03-29T03:45:00+02:00").is_open());
        assert!(!state(&windows, "2026-03-30T02:45:00+02:00").is_open());
        let w = &Windows::parse(&windows).unwrap().windows[0];
        let horizon = at("2027-01-01T00:00:00Z");
        assert_eq!(
            w.first_start_at_or_after(at("2026-03-28T03:00:00+01:00"), horizon),
            Some(at("2026-03-30T02:30:00+02:00"))
        );
        // A schedule across the gap keeps the hours that exist.
        let hourly = [window("deny", "30 * * * *", "10m", Some("Europe/Berlin"))];
        let w = &Windows::parse(&hourly).unwrap().windows[0];
        assert_eq!(
            w.first_start_at_or_after(at("2026-03-29T01:31:00+01:00"), horizon),
            Some(at("2026-03-29T03:30:00+02:00"))
        );
        assert_eq!(
            w.last_start_at_or_before(at("2026-03-29T03:29:00+02:00"), at("2026-03-28T00:00:00Z")),
            Some(at("2026-03-29T01:30:00+01:00"))
        );
    }

    #[test]
    fn spring_forward_gap_time_does_not_fire_in_new_york() {
        // 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT.
        let windows = [window("allow", "0 2 * * *", "2h", Some("America/New_York"))];
        assert!(state(&windows, "2026-03-07T03:00:00-05:00").is_open());
        assert!(!state(&windows, "2026-03-08T03:30:00-04:00").is_open());
        assert_eq!(
            state(&windows, "2026-03-08T03:30:00-04:00").to_string(),
            "sync window closed: outside allow window `0 2 * * *` (2h, America/New_York); \
             next opening 2026-03-09T02:00:00-04:00"
        );
    }

    #[test]
    fn fall_back_overlap_fires_once_in_berlin() {
        // 2026-10-25: Berlin goes back from 03:00 CEST to 02:00 CET.
        let windows = [window("deny", "30 2 * * *", "20m", Some("Europe/Berlin"))];
        assert!(!state(&windows, "2026-10-25T02:35:00+02:00").is_open());
        assert!(state(&windows, "2026-10-25T02:50:00+02:00").is_open());
        // The second 02:30 (CET) does not start it again.
        assert!(state(&windows, "2026-10-25T02:35:00+01:00").is_open());
        assert!(!state(&windows, "2026-10-26T02:35:00+01:00").is_open());
        // Searching from inside the second occurrence finds the first one,
        // and the next start is the next day's.
        let w = &Windows::parse(&windows).unwrap().windows[0];
        assert_eq!(
            w.last_start_at_or_before(at("2026-10-25T02:10:00+01:00"), at("2026-10-24T00:00:00Z")),
            Some(at("2026-10-25T02:30:00+02:00"))
        );
        assert_eq!(
            w.first_start_at_or_after(at("2026-10-25T02:10:00+01:00"), at("2027-01-01T00:00:00Z")),
            Some(at("2026-10-26T02:30:00+01:00"))
        );
        // Every quarter hour: the repeated wall times fire once, so from
        // 02:45 CEST the next start is 03:00 CET, an hour and a quarter later.
        let quarters = [window("deny", "*/15 * * * *", "1m", Some("Europe/Berlin"))];
        let w = &Windows::parse(&quarters).unwrap().windows[0];
        assert_eq!(
            w.first_start_at_or_after(at("2026-10-25T02:46:00+02:00"), at("2027-01-01T00:00:00Z")),
            Some(at("2026-10-25T03:00:00+01:00"))
        );
        assert_eq!(
            w.last_start_at_or_before(at("2026-10-25T02:59:00+01:00"), at("2026-10-24T00:00:00Z")),
            Some(at("2026-10-25T02:45:00+02:00"))
        );
    }

    #[test]
    fn fall_back_overlap_fires_once_in_new_york() {
        // 2026-11-01: New York goes back from 02:00 EDT to 01:00 EST.
        let windows = [window(
            "deny",
            "30 1 * * *",
            "20m",
            Some("America/New_York"),
        )];
        assert!(!state(&windows, "2026-11-01T01:35:00-04:00").is_open());
        assert!(state(&windows, "2026-11-01T01:35:00-05:00").is_open());
        assert!(!state(&windows, "2026-11-02T01:35:00-05:00").is_open());
    }

    #[test]
    fn duration_is_elapsed_time_across_a_dst_change() {
        // Friday 2026-10-23 18:00 CEST + 62h: the clocks go back on Sunday,
        // so the window ends on Monday at 07:00 CET, not 08:00.
        let windows = [window("deny", "0 18 * * 5", "62h", Some("Europe/Berlin"))];
        assert_eq!(
            next_opening(&windows, "2026-10-24T12:00:00+02:00"),
            "2026-10-26T07:00:00+01:00"
        );
        assert!(!state(&windows, "2026-10-26T06:59:59+01:00").is_open());
        assert!(state(&windows, "2026-10-26T07:00:00+01:00").is_open());
        // And in spring it ends at 09:00 CEST.
        assert_eq!(
            next_opening(&windows, "2026-03-28T12:00:00+01:00"),
            "2026-03-30T09:00:00+02:00"
        );
        // New York, same idea: Friday 18:00 EDT + 62h = Monday 07:00 EST.
        let windows = [window(
            "deny",
            "0 18 * * FRI",
            "62h",
            Some("America/New_York"),
        )];
        assert_eq!(
            next_opening(&windows, "2026-10-31T12:00:00-04:00"),
            "2026-11-02T07:00:00-05:00"
        );
    }

    #[test]
    fn deny_wins_over_allow() {
        let windows = [
            window("allow", "0 0 * * *", "24h", None),
            window("deny", "0 12 * * *", "1h", None),
        ];
        assert!(state(&windows, "2026-12-04T11:59:00Z").is_open());
        assert_eq!(
            state(&windows, "2026-12-04T12:30:00Z").to_string(),
            "sync window closed by deny window `0 12 * * *` (1h, UTC); \
             next opening 2026-12-04T13:00:00+00:00"
        );
        assert!(state(&windows, "2026-12-04T13:00:00Z").is_open());
    }

    #[test]
    fn allow_windows_close_outside_them() {
        let windows = [window("allow", "0 8 * * 1-5", "10h", Some("Europe/Berlin"))];
        assert!(state(&windows, "2026-12-04T17:59:00+01:00").is_open());
        assert!(!state(&windows, "2026-12-04T18:00:00+01:00").is_open());
        assert_eq!(
            state(&windows, "2026-12-05T12:00:00+01:00").to_string(),
            "sync window closed: outside allow window `0 8 * * 1-5` (10h, Europe/Berlin); \
             next opening 2026-12-07T08:00:00+01:00"
        );
        // With two, either one opens.
        let windows = [
            window("allow", "0 8 * * 1-5", "10h", Some("Europe/Berlin")),
            window("allow", "0 10 * * 6", "2h", Some("Europe/Berlin")),
        ];
        assert!(state(&windows, "2026-12-05T11:00:00+01:00").is_open());
        assert_eq!(
            state(&windows, "2026-12-05T09:00:00+01:00").to_string(),
            "sync window closed: outside allow windows `0 8 * * 1-5` (10h, Europe/Berlin), \
             `0 10 * * 6` (2h, Europe/Berlin); next opening 2026-12-05T10:00:00+01:00"
        );
    }

    #[test]
    fn next_opening_skips_allow_starts_covered_by_a_deny() {
        let allow_half_hours = window("allow", "0 * * * *", "30m", None);
        // The deny ends at 12:00, when an allow window starts.
        let windows = [
            allow_half_hours.clone(),
            window("deny", "0 9 * * *", "3h", None),
        ];
        assert_eq!(
            next_opening(&windows, "2026-12-04T09:10:00Z"),
            "2026-12-04T12:00:00+00:00"
        );
        // The deny ends at 11:30, when the 11:00 allow window has just ended.
        let windows = [
            allow_half_hours.clone(),
            window("deny", "0 9 * * *", "150m", None),
        ];
        assert_eq!(
            next_opening(&windows, "2026-12-04T09:10:00Z"),
            "2026-12-04T12:00:00+00:00"
        );
        // The deny ends at 11:15, inside the 11:00 allow window.
        let windows = [allow_half_hours, window("deny", "0 9 * * *", "135m", None)];
        assert_eq!(
            next_opening(&windows, "2026-12-04T09:10:00Z"),
            "2026-12-04T11:15:00+00:00"
        );
    }

    #[test]
    fn overlapping_deny_windows_open_after_the_last() {
        let windows = [
            window("deny", "0 9 * * *", "2h", None),
            window("deny", "0 10 * * *", "2h", None),
            window("deny", "30 11 * * *", "1h", None),
        ];
        assert_eq!(
            next_opening(&windows, "2026-12-04T09:10:00Z"),
            "2026-12-04T12:30:00+00:00"
        );
        // The same deny repeating before it ends: every 2h for 3h.
        let windows = [window("deny", "0 */2 * * *", "3h", None)];
        assert!(matches!(
            state(&windows, "2026-12-04T09:10:00Z"),
            WindowState::Closed(Closed {
                next_opening: NextOpening::NotFoundBefore(_),
                ..
            })
        ));
        let windows = [window("deny", "0 8,10 * * *", "3h", None)];
        assert_eq!(
            next_opening(&windows, "2026-12-04T09:10:00Z"),
            "2026-12-04T13:00:00+00:00"
        );
    }

    #[test]
    fn a_deny_window_that_never_ends_reports_the_search_bound() {
        let windows = [window("deny", "* * * * *", "1m", None)];
        let closed = state(&windows, "2026-12-04T12:00:30Z");
        assert_eq!(
            closed.to_string(),
            "sync window closed by deny window `* * * * *` (1m, UTC); \
             no opening found before 2026-12-05T04:40:00+00:00"
        );
    }

    #[test]
    fn long_and_rare_windows() {
        // A window longer than the gap between starts is always active.
        let windows = [window("allow", "0 0 * * 1", "200h", None)];
        assert!(state(&windows, "2026-12-04T12:00:00Z").is_open());
        // Leap days: the next allow window is more than a year away.
        let windows = [window("allow", "0 0 29 2 *", "24h", None)];
        assert_eq!(
            next_opening(&windows, "2026-12-04T12:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
        assert!(state(&windows, "2028-02-29T23:59:00Z").is_open());
        // A deny of 350 days, started last January.
        let windows = [window("deny", "@yearly", "8400h", Some("Europe/Berlin"))];
        assert_eq!(
            next_opening(&windows, "2026-12-04T12:00:00Z"),
            "2026-12-17T00:00:00+01:00"
        );
        // A yearly deny of a year or more never ends.
        let windows = [window("deny", "@yearly", "8784h", Some("Europe/Berlin"))];
        assert_eq!(
            state(&windows, "2026-12-04T12:00:00Z").to_string(),
            "sync window closed by deny window `@yearly` (8784h, Europe/Berlin); \
             no opening found before 2035-12-11T13:00:00+01:00"
        );
    }
}
