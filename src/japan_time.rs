//! Calendar days in Japan time (UTC+9, no daylight saving), as health authorities count them.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Offset, Utc};

/// Offset of Japan Standard Time from UTC, in seconds.
const JST_OFFSET_SECONDS: i32 = 9 * 3600;

fn jst() -> FixedOffset {
    // Nine hours is within the ±24 hours FixedOffset accepts, so the fallback never applies.
    FixedOffset::east_opt(JST_OFFSET_SECONDS).unwrap_or(Utc.fix())
}

/// Returns the date in Japan at time `at`.
pub fn date_of(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&jst()).date_naive()
}

/// Returns the UTC time at which `date` begins in Japan.
pub fn start_of(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(chrono::NaiveTime::MIN).and_utc()
        - Duration::seconds(i64::from(JST_OFFSET_SECONDS))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn japan_date_changes_at_15_utc() {
        let before = Utc.with_ymd_and_hms(2026, 12, 3, 14, 59, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 12, 3, 15, 0, 0).unwrap();
        assert_eq!(
            date_of(before),
            NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
        );
        assert_eq!(
            date_of(after),
            NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
        );
        assert_eq!(
            start_of(NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()),
            after
        );
    }
}
