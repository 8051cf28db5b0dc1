//! Months of seed 001: `YYYYMM` (or `YYYY-MM`) in the configured zone.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A month that is not `YYYYMM` or `YYYY-MM` (from 1970): the text says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadMonth(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn parse(raw: &str) -> Result<Self, BadMonth> {
        let bad = || BadMonth(format!("month {raw:?} 格式错误，应为 YYYYMM 或 YYYY-MM"));
        let digits = match raw.len() {
            6 => raw.to_owned(),
            7 if raw.as_bytes()[4] == b'-' => format!("{}{}", &raw[..4], &raw[5..]),
            _ => return Err(bad()),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = digits[..4].parse().map_err(|_| bad())?;
        let month: u32 = digits[4..].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || year < 1970 {
            return Err(bad());
        }
        Ok(Self { year, month })
    }

    /// The given month, or the current one when absent or empty.
    pub fn parse_or_current(
        raw: Option<&str>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Self, BadMonth> {
        match raw.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => Self::parse(m),
            None => Ok(Self::of(now, tz)),
        }
    }

    pub fn of(t: DateTime<Utc>, tz: Tz) -> Self {
        let local = t.with_timezone(&tz);
        Self {
            year: local.year(),
            month: local.month(),
        }
    }

    pub fn label(self) -> String {
        format!("{:04}{:02}", self.year, self.month)
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month")
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `[start, end)` of the month as instants.
    pub fn span(self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let at = |d: NaiveDate| {
            tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
                .earliest()
                .expect("a zone's midnight exists or is shifted")
                .with_timezone(&Utc)
        };
        (at(self.first_day()), at(self.next().first_day()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_and_nonsense_does_not() {
        assert_eq!(
            Month::parse("202605").unwrap(),
            Month {
                year: 2026,
                month: 5
            }
        );
        assert_eq!(
            Month::parse("2026-05").unwrap(),
            Month {
                year: 2026,
                month: 5
            }
        );
        for bad in [
            "2026-5", "202613", "202600", "abcdef", "2026/05", "20265", "1969-12",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Month {
                year: 2026,
                month: 12
            }
            .next(),
            Month {
                year: 2027,
                month: 1
            }
        );
    }
}
