//! Daily statistics for the dashboard.

use async_graphql::{
    Context, InputValueError, InputValueResult, Object, Scalar, ScalarType, SimpleObject, Value,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::{
    types::{current_admin, Prefecture},
    ContextExt, ResultExt,
};
use crate::{error::Error, exports, prefectures::PrefectureCode, stats};

/// A calendar date in ISO 8601 form, such as `2026-12-04`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

/// A calendar date in ISO 8601 form, such as `2026-12-04`.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => (text.len() == 10)
                .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .flatten()
                .filter(|date| (1..=9999).contains(&date.year()))
                .map(Date)
                .ok_or_else(|| {
                    InputValueError::custom(format!(
                        "invalid date {text:?}: expected YYYY-MM-DD with a year from 1 to 9999"
                    ))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// Users of one prefecture.
#[derive(SimpleObject)]
pub struct PrefectureCount {
    /// The prefecture.
    pub prefecture: Prefecture,
    /// Number of users whose profile names it.
    pub count: i64,
}

/// Figures of one calendar day in Japan time.
pub struct DayStats(stats::DayStats);

/// Figures of one calendar day in Japan time.
#[Object]
impl DayStats {
    /// The day, in Japan time.
    async fn date(&self) -> Date {
        Date(self.0.date)
    }

    /// Devices (anonymous users) registered that day.
    async fn devices_registered(&self) -> i64 {
        self.0.devices_registered
    }

    /// Users per prefecture registered by the end of the day, by their current profile.
    async fn profiles(&self) -> Vec<PrefectureCount> {
        self.0
            .profiles
            .iter()
            .map(|(code, count)| PrefectureCount {
                prefecture: Prefecture(*code),
                count: *count,
            })
            .collect()
    }

    /// True while the day's upload figures are withheld: a prefecture had fewer than 10 uploads
    /// that day and 48 hours have not passed since the day ended.
    async fn upload_figures_withheld(&self) -> bool {
        self.0.uploads.is_none()
    }

    /// Uploads of the day still pending verification; null while withheld.
    async fn uploads_pending(&self) -> Option<i64> {
        self.0.uploads.as_ref().map(|uploads| uploads.pending)
    }

    /// Uploads of the day that were verified; null while withheld.
    async fn uploads_verified(&self) -> Option<i64> {
        self.0.uploads.as_ref().map(|uploads| uploads.verified)
    }

    /// Uploads of the day that the health authority rejected; null while withheld.
    async fn uploads_rejected(&self) -> Option<i64> {
        self.0.uploads.as_ref().map(|uploads| uploads.rejected)
    }

    /// Uploads of the day that expired unverified; null while withheld.
    async fn uploads_expired(&self) -> Option<i64> {
        self.0.uploads.as_ref().map(|uploads| uploads.expired)
    }

    /// Keys of the day's verified uploads, which the export publishes; null while withheld.
    async fn keys_published(&self) -> Option<i64> {
        self.0
            .uploads
            .as_ref()
            .map(|uploads| uploads.keys_published)
    }

    /// Health-center tokens issued that day.
    async fn tokens_issued(&self) -> i64 {
        self.0.tokens_issued
    }

    /// Tokens redeemed that day; null while the upload figures are withheld.
    async fn tokens_redeemed(&self) -> Option<i64> {
        self.0
            .uploads
            .as_ref()
            .map(|uploads| uploads.tokens_redeemed)
    }

    /// Tokens that expired unused that day.
    async fn tokens_expired(&self) -> i64 {
        self.0.tokens_expired
    }
}

/// The latest published export.
#[derive(SimpleObject)]
pub struct LatestExport {
    /// When it was generated.
    pub generated_at: DateTime<Utc>,
    /// Total size of its files in bytes.
    pub size: i64,
    /// Number of keys it contains.
    pub key_count: i64,
}

/// Statistics over a range of days.
pub struct Stats {
    days: Vec<stats::DayStats>,
    latest_export: Option<exports::ExportIndex>,
}

/// Statistics over a range of days.
#[Object]
impl Stats {
    /// One entry per day of the range, in order.
    async fn days(&self) -> Vec<DayStats> {
        self.days.iter().cloned().map(DayStats).collect()
    }

    /// The latest published export, or null before the first.
    async fn latest_export(&self) -> Option<LatestExport> {
        self.latest_export.as_ref().map(|index| LatestExport {
            generated_at: index.generated_at,
            size: index.files.iter().map(|file| file.size as i64).sum(),
            key_count: index.files.iter().map(|file| file.key_count as i64).sum(),
        })
    }
}

#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// Figures per calendar day (Japan time) from `from` to `to`, inclusive, at most 366 days.
    /// Without `prefecture`, every prefecture the caller may see.
    async fn stats(
        &self,
        context: &Context<'_>,
        prefecture: Option<i32>,
        from: Date,
        to: Date,
    ) -> async_graphql::Result<Stats> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let prefecture = prefecture
            .map(|code| PrefectureCode::parse(code, "prefecture"))
            .transpose()
            .graphql(context)?;
        let days = stats::daily(&app.db, &admin, app.clock.now(), prefecture, from.0, to.0)
            .await
            .graphql(context)?;
        let latest_export = exports::read_index(&app.exports)
            .await
            .map_err(Error::Internal)
            .graphql(context)?;
        Ok(Stats {
            days,
            latest_export,
        })
    }
}
