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

/// A `send_date` as SillyTavern chat files hold it: its own format
/// (`June 19, 2023 2:20pm`, read in `tz`), Unix milliseconds, or RFC 3339.
pub fn parse_sillytavern_send_date(raw: &serde_json::Value, tz: Tz) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    match raw {
        serde_json::Value::Number(n) => {
            let ms = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?;
            DateTime::from_timestamp_millis(ms)
        }
        serde_json::Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            // "September 21, 2025 3:33pm": month day, year h:mm{am,pm}
            let (month, rest) = s.split_once(' ')?;
            let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
            let (day, rest) = rest.split_once(", ")?;
            let (year, clock) = rest.trim().split_once(' ')?;
            let clock = clock.trim().to_ascii_lowercase();
            let (clock, pm) = if let Some(c) = clock.strip_suffix("pm") {
                (c.to_owned(), true)
            } else {
                (clock.strip_suffix("am")?.to_owned(), false)
            };
            let (h, m) = clock.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            if !(1..=12).contains(&h) || m > 59 {
                return None;
            }
            let hour = (h % 12) + if pm { 12 } else { 0 };
            let naive = chrono::NaiveDate::from_ymd_opt(
                year.parse().ok()?,
                month,
                day.trim().parse().ok()?,
            )?
            .and_hms_opt(hour, m, 0)?;
            tz.from_local_datetime(&naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        }
        _ => None,
    }
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
        assert_eq!(parse_sillytavern_send_date(&v, tz), Some(t));
        let v = serde_json::json!("September 21, 2025 12:05am");
        assert_eq!(
            parse_sillytavern_send_date(&v, tz),
            Some(Utc.with_ymd_and_hms(2025, 9, 20, 16, 5, 0).unwrap())
        );
        let ms = serde_json::json!(1_758_440_000_000i64);
        assert_eq!(
            parse_sillytavern_send_date(&ms, tz),
            DateTime::from_timestamp_millis(1_758_440_000_000)
        );
        assert_eq!(
            parse_sillytavern_send_date(&serde_json::json!("2025-09-21T07:33:00Z"), tz),
            Some(t)
        );
        for bad in [
            "",
            "yesterday",
            "Smarch 1, 2025 1:00pm",
            "September 21, 2025 13:00pm",
        ] {
            assert_eq!(
                parse_sillytavern_send_date(&serde_json::json!(bad), tz),
                None,
                "{bad}"
            );
        }
    }
}
