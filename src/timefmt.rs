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
}
