//! Time formats the seeds expect.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Go's `time.Time` JSON form (RFC 3339 with trailing-zero-trimmed
/// nanoseconds and the zone's offset; `Z` for UTC), as GORM models print it.
pub fn go_rfc3339(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    let mut s = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = local.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset = local.format("%:z").to_string();
    s.push_str(if offset == "+00:00" { "Z" } else { &offset });
    s
}

/// `YYYY-MM-DD HH:MM:SS` in the configured zone.
pub fn local_seconds(t: DateTime<Utc>, tz: Tz) -> String {
    // by hand: strftime's pattern parsing showed in read profiles
    use chrono::{Datelike, Timelike};
    let l = t.with_timezone(&tz);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        l.year(),
        l.month(),
        l.day(),
        l.hour(),
        l.minute(),
        l.second()
    )
}

/// RFC 3339 in UTC to the second, as seed 002 shows (`2026-02-12T10:00:00Z`).
pub fn rfc3339_utc(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// SillyTavern's `getMessageTimeStamp` (a message's `send_date`):
/// `September 21, 2025 3:33pm`, in `tz`.
pub fn sillytavern_send_date(t: DateTime<Utc>, tz: Tz) -> String {
    use chrono::{Datelike, Timelike};
    let l = t.with_timezone(&tz);
    let (pm, hour) = l.hour12();
    format!(
        "{} {}, {} {}:{:02}{}",
        MONTHS[l.month0() as usize],
        l.day(),
        l.year(),
        hour,
        l.minute(),
        if pm { "pm" } else { "am" }
    )
}

/// SillyTavern's `humanizedISO8601DateTime` (a card's `create_date`):
/// `2025-9-16 @21h 19m 03s 522ms`, in `tz` — month and day unpadded,
/// hours, minutes and seconds to two digits, milliseconds padded only
/// below ten, as SillyTavern's own code does.
pub fn sillytavern_create_date(t: DateTime<Utc>, tz: Tz) -> String {
    use chrono::{Datelike, Timelike};
    let l = t.with_timezone(&tz);
    let ms = l.timestamp_subsec_millis();
    format!(
        "{}-{}-{} @{:02}h {:02}m {:02}s {}ms",
        l.year(),
        l.month(),
        l.day(),
        l.hour(),
        l.minute(),
        l.second(),
        if ms < 10 {
            format!("0{ms}")
        } else {
            ms.to_string()
        }
    )
}

/// Why a SillyTavern date could not be read.
pub type UnreadDate = &'static str;

/// A date as SillyTavern has written it in chats (`send_date`, the header's
/// `create_date`) and cards (`create_date`) over the years, read as its
/// own `timestampToMoment` / `parseTimestamp` reads it — but with local
/// forms in `tz`, where they were written (SillyTavern reads its humanized
/// forms as UTC, which they are not):
/// - Unix milliseconds, a number or a string of digits (TavernAI, copies,
///   edited cards);
/// - ISO 8601 (`Date#toISOString`, since 1.15): with its offset, or local
///   without one;
/// - `July 13, 2023 11:21pm` (`getMessageTimeStamp`, 2023-06 to 1.14), local;
/// - the humanized forms, local: `2023-5-12 @21h 32m 29s 228ms` (spaced,
///   milliseconds padded only below ten), `2024-1-11@00h51m03s`,
///   `2024-09-17@22h51m47s` and `2026-01-16@18h26m30s330ms`.
pub fn parse_sillytavern_date(
    raw: &serde_json::Value,
    tz: Tz,
) -> Result<DateTime<Utc>, UnreadDate> {
    match raw {
        serde_json::Value::Number(n) => {
            let ms = match n.as_i64() {
                Some(ms) => ms,
                None => {
                    let f = n.as_f64().ok_or("not a number of milliseconds")?;
                    if !f.is_finite() || f.fract() != 0.0 || f.abs() > 1e15 {
                        return Err("not a whole number of milliseconds");
                    }
                    f as i64
                }
            };
            from_millis(ms)
        }
        serde_json::Value::String(s) => parse_date_text(s.trim(), tz),
        _ => Err("neither text nor a number"),
    }
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, UnreadDate> {
    if ms < 0 {
        return Err("milliseconds before 1970");
    }
    DateTime::from_timestamp_millis(ms)
        .filter(|t| chrono::Datelike::year(t) <= 9999)
        .ok_or("milliseconds out of range")
}

fn parse_date_text(s: &str, tz: Tz) -> Result<DateTime<Utc>, UnreadDate> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return from_millis(s.parse().map_err(|_| "milliseconds out of range")?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for form in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, form) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for form in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, form) {
            return local(n, tz);
        }
    }
    if s.contains('@') {
        return humanized(s, tz);
    }
    if s.contains(',') {
        return meridiem(s, tz);
    }
    Err("not a date SillyTavern writes")
}

/// A local wall-clock time in `tz` (in a gap of a clock change, the
/// instant just after it).
fn local(n: chrono::NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, UnreadDate> {
    use chrono::TimeZone;
    if !(1970..=9999).contains(&chrono::Datelike::year(&n)) {
        return Err("year out of range");
    }
    tz.from_local_datetime(&n)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(n + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or("a local time that does not exist")
}

/// `Y-M-D @Hh Mm Ss MSms` and its unspaced forms, with or without the
/// milliseconds.
fn humanized(s: &str, tz: Tz) -> Result<DateTime<Utc>, UnreadDate> {
    const BAD: UnreadDate = "not a SillyTavern humanized date (Y-M-D@HhMmSs)";
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    let (date, clock) = compact.split_once('@').ok_or(BAD)?;
    let mut ymd = date.split('-');
    let num = |part: Option<&str>, max_len: usize| -> Result<u32, UnreadDate> {
        let p = part.ok_or(BAD)?;
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        p.parse().map_err(|_| BAD)
    };
    let (y, mo, d) = (
        num(ymd.next(), 4)?,
        num(ymd.next(), 2)?,
        num(ymd.next(), 2)?,
    );
    if ymd.next().is_some() {
        return Err(BAD);
    }
    // 20h02m47s124ms: each number up to its unit
    fn unit(rest: &mut &str, u: &str, max_len: usize) -> Result<u32, UnreadDate> {
        const BAD: UnreadDate = "not a SillyTavern humanized date (Y-M-D@HhMmSs)";
        let end = rest.find(|c: char| !c.is_ascii_digit()).ok_or(BAD)?;
        let (n, tail) = rest.split_at(end);
        let tail = tail.strip_prefix(u).ok_or(BAD)?;
        if n.is_empty() || n.len() > max_len {
            return Err(BAD);
        }
        *rest = tail;
        n.parse().map_err(|_| BAD)
    }
    let mut rest = clock;
    let (h, m) = (unit(&mut rest, "h", 2)?, unit(&mut rest, "m", 2)?);
    let sec = unit(&mut rest, "s", 2)?;
    let ms = if rest.is_empty() {
        0
    } else {
        unit(&mut rest, "ms", 3)?
    };
    if !rest.is_empty() {
        return Err(BAD);
    }
    let n = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)
        .and_then(|d| d.and_hms_milli_opt(h, m, sec, ms))
        .ok_or("no such day or time")?;
    local(n, tz)
}

/// `September 21, 2025 3:33pm`: month day, year h:mm{am,pm}.
fn meridiem(s: &str, tz: Tz) -> Result<DateTime<Utc>, UnreadDate> {
    const BAD: UnreadDate = "not a SillyTavern date (Month D, YYYY h:mma)";
    let (month, rest) = s.split_once(' ').ok_or(BAD)?;
    let month = MONTHS
        .iter()
        .position(|m| {
            m.eq_ignore_ascii_case(month)
                || (month.len() == 3 && m[..3].eq_ignore_ascii_case(month))
        })
        .ok_or("an unknown month name")? as u32
        + 1;
    let (day, rest) = rest.split_once(',').ok_or(BAD)?;
    let (year, clock) = rest.trim().split_once(' ').ok_or(BAD)?;
    let clock = clock.trim().to_ascii_lowercase();
    let (clock, pm) = if let Some(c) = clock.strip_suffix("pm") {
        (c.to_owned(), true)
    } else {
        (clock.strip_suffix("am").ok_or(BAD)?.to_owned(), false)
    };
    let (h, m) = clock.trim().split_once(':').ok_or(BAD)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| BAD)?, m.parse().map_err(|_| BAD)?);
    if !(1..=12).contains(&h) || m > 59 {
        return Err("no such time");
    }
    let hour = (h % 12) + if pm { 12 } else { 0 };
    let n = chrono::NaiveDate::from_ymd_opt(
        year.parse().map_err(|_| BAD)?,
        month,
        day.trim().parse().map_err(|_| BAD)?,
    )
    .and_then(|d| d.and_hms_opt(hour, m, 0))
    .ok_or("no such day")?;
    local(n, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_go() {
        let t = Utc.with_ymd_and_hms(2024, 5, 7, 7, 23, 30).unwrap()
            + chrono::Duration::nanoseconds(807_247_900);
        assert_eq!(
            go_rfc3339(t, chrono_tz::Asia::Shanghai),
            "2024-05-07T15:23:30.8072479+08:00"
        );
        let whole = Utc.with_ymd_and_hms(2024, 5, 7, 7, 23, 30).unwrap();
        assert_eq!(go_rfc3339(whole, chrono_tz::UTC), "2024-05-07T07:23:30Z");
        assert_eq!(
            local_seconds(whole, chrono_tz::Asia::Shanghai),
            "2024-05-07 15:23:30"
        );
    }

    #[test]
    fn sillytavern_formats_as_its_own_code_writes_them() {
        let tz = chrono_tz::Asia::Shanghai;
        // 2025-09-21 15:33 in Shanghai
        let t = Utc.with_ymd_and_hms(2025, 9, 21, 7, 33, 5).unwrap();
        assert_eq!(sillytavern_send_date(t, tz), "September 21, 2025 3:33pm");
        let midnight = Utc.with_ymd_and_hms(2025, 9, 20, 16, 5, 0).unwrap();
        assert_eq!(
            sillytavern_send_date(midnight, tz),
            "September 21, 2025 12:05am"
        );
        let noon = Utc.with_ymd_and_hms(2025, 9, 21, 4, 0, 0).unwrap();
        assert_eq!(
            sillytavern_send_date(noon, tz),
            "September 21, 2025 12:00pm"
        );
        let c = Utc.with_ymd_and_hms(2025, 9, 16, 13, 19, 3).unwrap()
            + chrono::Duration::milliseconds(522);
        assert_eq!(
            sillytavern_create_date(c, tz),
            "2025-9-16 @21h 19m 03s 522ms"
        );
        let c5 =
            Utc.with_ymd_and_hms(2025, 1, 2, 1, 2, 3).unwrap() + chrono::Duration::milliseconds(5);
        assert_eq!(
            sillytavern_create_date(c5, tz),
            "2025-1-2 @09h 02m 03s 05ms"
        );
    }

    #[test]
    fn sillytavern_send_dates_parse_back() {
        let tz = chrono_tz::Asia::Shanghai;
        let t = Utc.with_ymd_and_hms(2025, 9, 21, 7, 33, 0).unwrap();
        let v = serde_json::json!(sillytavern_send_date(t, tz));
        assert_eq!(parse_sillytavern_date(&v, tz).ok(), Some(t));
        let v = serde_json::json!("September 21, 2025 12:05am");
        assert_eq!(
            parse_sillytavern_date(&v, tz).ok(),
            Some(Utc.with_ymd_and_hms(2025, 9, 20, 16, 5, 0).unwrap())
        );
        let ms = serde_json::json!(1_758_440_000_000i64);
        assert_eq!(
            parse_sillytavern_date(&ms, tz).ok(),
            DateTime::from_timestamp_millis(1_758_440_000_000)
        );
        assert_eq!(
            parse_sillytavern_date(&serde_json::json!("2025-09-21T07:33:00Z"), tz).ok(),
            Some(t)
        );
        for bad in [
            "",
            "yesterday",
            "Smarch 1, 2025 1:00pm",
            "September 21, 2025 13:00pm",
        ] {
            assert_eq!(
                parse_sillytavern_date(&serde_json::json!(bad), tz).ok(),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn every_date_form_sillytavern_has_written_is_read_local_ones_in_the_zone() {
        let tz = chrono_tz::Asia::Shanghai;
        let at = |y, mo, d, h, mi, s, ms| {
            tz.with_ymd_and_hms(y, mo, d, h, mi, s)
                .unwrap()
                .with_timezone(&Utc)
                + chrono::Duration::milliseconds(ms)
        };
        let cases = [
            // humanizedDateTime, 2023: spaced, ms padded only below ten
            (
                serde_json::json!("2023-4-21 @20h 02m 47s 124ms"),
                at(2023, 4, 21, 20, 2, 47, 124),
            ),
            (
                serde_json::json!("2025-1-2 @09h 02m 03s 05ms"),
                at(2025, 1, 2, 9, 2, 3, 5),
            ),
            (
                serde_json::json!("2023-5-12 @21h 32m 29s 76ms"),
                at(2023, 5, 12, 21, 32, 29, 76),
            ),
            // the chat header's forms since 1.10.8 and 1.12.4
            (
                serde_json::json!("2024-1-11@00h51m03s"),
                at(2024, 1, 11, 0, 51, 3, 0),
            ),
            (
                serde_json::json!("2024-09-17@22h51m47s"),
                at(2024, 9, 17, 22, 51, 47, 0),
            ),
            (
                serde_json::json!("2026-01-16@18h26m30s330ms"),
                at(2026, 1, 16, 18, 26, 30, 330),
            ),
            // getMessageTimeStamp
            (
                serde_json::json!("July 13, 2023 11:21pm"),
                at(2023, 7, 13, 23, 21, 0, 0),
            ),
            (
                serde_json::json!("September 17, 2025 12:43pm"),
                at(2025, 9, 17, 12, 43, 0, 0),
            ),
            // ISO 8601, with and without an offset
            (
                serde_json::json!("2026-01-14T14:02:18.776Z"),
                Utc.with_ymd_and_hms(2026, 1, 14, 14, 2, 18).unwrap()
                    + chrono::Duration::milliseconds(776),
            ),
            (
                serde_json::json!("2026-01-14T22:02:18+08:00"),
                at(2026, 1, 14, 22, 2, 18, 0),
            ),
            (
                serde_json::json!("2026-01-14T22:02:18.5"),
                at(2026, 1, 14, 22, 2, 18, 500),
            ),
            // Unix milliseconds, a number or digits
            (
                serde_json::json!(1_673_181_146_000i64),
                DateTime::from_timestamp_millis(1_673_181_146_000).unwrap(),
            ),
            (
                serde_json::json!("1674407315376"),
                DateTime::from_timestamp_millis(1_674_407_315_376).unwrap(),
            ),
            (
                serde_json::json!(1.674407315376e12),
                DateTime::from_timestamp_millis(1_674_407_315_376).unwrap(),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_sillytavern_date(&raw, tz), Ok(want), "{raw}");
        }
        for bad in [
            serde_json::json!("2023-13-1 @20h 02m 47s 124ms"),
            serde_json::json!("2023-4-21 @25h 02m 47s"),
            serde_json::json!("2023-4-21 @20h 02m"),
            serde_json::json!("2023-4-21 @20h 02m 47s 1245ms"),
            serde_json::json!("2023-4-21 @20h 02m 47s 12ms junk"),
            serde_json::json!("February 30, 2024 1:00pm"),
            serde_json::json!("-5"),
            serde_json::json!(-5),
            serde_json::json!(1.5),
            serde_json::json!(true),
            serde_json::json!("99999999999999999999"),
        ] {
            assert!(parse_sillytavern_date(&bad, tz).is_err(), "{bad}");
        }
    }
}
