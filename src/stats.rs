//! Daily statistics for the dashboard, by calendar day in Japan time.
//!
//! Counts are grouped in SQL by the Japan date of a timestamp. Upload figures of a day with
//! fewer than 10 uploads in a prefecture stay hidden until 48 hours after the day ends, so a
//! small count cannot single out a person.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::{
    sea_query::{Expr, SimpleExpr},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect,
};

use crate::{
    admins::CurrentAdmin,
    auth::{Action, Visibility},
    entity::{
        diagnosis_key_uploads::{self, UploadStatus},
        health_center_tokens, users,
    },
    error::{Error, Result},
    japan_time,
    prefectures::PrefectureCode,
};

/// Maximum number of days one request may cover.
pub const MAX_DAYS: i64 = 366;
/// Uploads a prefecture needs on a day before its upload figures show at once.
pub const MIN_UPLOADS_SHOWN: i64 = 10;
/// Time after a day ends before its small upload figures show.
pub const SMALL_COUNT_DELAY_HOURS: i64 = 48;

/// Upload figures of one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadFigures {
    pub pending: i64,
    pub verified: i64,
    pub rejected: i64,
    pub expired: i64,
    /// Keys of the day's verified uploads.
    pub keys_published: i64,
    /// Tokens redeemed that day; hidden with the uploads because each redemption is an upload.
    pub tokens_redeemed: i64,
}

/// Figures of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayStats {
    pub date: NaiveDate,
    pub devices_registered: i64,
    /// Users per prefecture (by their current profile) registered by the end of the day.
    pub profiles: Vec<(PrefectureCode, i64)>,
    /// `None` while the figures are withheld.
    pub uploads: Option<UploadFigures>,
    pub tokens_issued: i64,
    pub tokens_expired: i64,
}

/// Computes the figures of each day from `from` to `to` (inclusive) for one prefecture, or for
/// every prefecture the admin may see when `prefecture` is `None`.
pub async fn daily(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    prefecture: Option<PrefectureCode>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DayStats>> {
    for (field, date) in [("from", from), ("to", to)] {
        if !(1..=9999).contains(&date.year()) {
            return Err(Error::invalid(
                field,
                format!("invalid {field} {date}: the year must be from 1 to 9999"),
            ));
        }
    }
    if to < from {
        return Err(Error::invalid(
            "to",
            format!("invalid range: to {to} is before from {from}"),
        ));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(Error::invalid(
            "to",
            format!("invalid range: at most {MAX_DAYS} days at a time"),
        ));
    }
    let scope = match prefecture {
        Some(code) => {
            admin.caller.authorize(Action::ViewStats, Some(code))?;
            Some(code)
        }
        None => match admin.caller.visibility(Action::ViewStats)? {
            Visibility::Everything => None,
            Visibility::Prefecture(own) => Some(own),
        },
    };
    let start = japan_time::start_of(from);
    let end = japan_time::start_of(to + Duration::days(1));
    let backend = db.get_database_backend();

    let devices = count_users_by_day(db, backend, scope, start, end).await?;
    let (profiles_before, profiles_by_day) = count_profiles(db, backend, scope, start, end).await?;
    let uploads = count_uploads(db, backend, scope, start, end).await?;
    let tokens_issued = count_tokens(
        db,
        backend,
        scope,
        health_center_tokens::Column::CreatedAt,
        start,
        end,
        false,
    )
    .await?;
    let tokens_redeemed = count_tokens(
        db,
        backend,
        scope,
        health_center_tokens::Column::RedeemedAt,
        start,
        end,
        false,
    )
    .await?;
    let tokens_expired = count_tokens(
        db,
        backend,
        scope,
        health_center_tokens::Column::ExpiresAt,
        start,
        end.min(now),
        true,
    )
    .await?;

    let mut profiles = profiles_before;
    let mut days = Vec::new();
    let mut date = from;
    while date <= to {
        let key = date.to_string();
        for (code, count) in profiles_by_day.get(&key).into_iter().flatten() {
            *profiles.entry(*code).or_default() += count;
        }
        let day_end = japan_time::start_of(date + Duration::days(1));
        let released = now >= day_end + Duration::hours(SMALL_COUNT_DELAY_HOURS);
        let day_uploads = uploads.get(&key);
        let small = day_uploads.is_some_and(|by_prefecture| {
            by_prefecture.values().any(|figures| {
                let total = figures.pending + figures.verified + figures.rejected + figures.expired;
                (1..MIN_UPLOADS_SHOWN).contains(&total)
            })
        });
        let uploads_shown = (released || !small).then(|| {
            let mut sum = UploadFigures::default();
            for figures in day_uploads
                .into_iter()
                .flat_map(|by_prefecture| by_prefecture.values())
            {
                sum.pending += figures.pending;
                sum.verified += figures.verified;
                sum.rejected += figures.rejected;
                sum.expired += figures.expired;
                sum.keys_published += figures.keys_published;
            }
            sum.tokens_redeemed = tokens_redeemed.get(&key).copied().unwrap_or(0);
            sum
        });
        days.push(DayStats {
            date,
            devices_registered: devices.get(&key).copied().unwrap_or(0),
            profiles: profiles
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(code, count)| (*code, *count))
                .collect(),
            uploads: uploads_shown,
            tokens_issued: tokens_issued.get(&key).copied().unwrap_or(0),
            tokens_expired: tokens_expired.get(&key).copied().unwrap_or(0),
        });
        date += Duration::days(1);
    }
    Ok(days)
}

/// An SQL expression for the Japan date (`YYYY-MM-DD`) of a timestamp column.
fn japan_date(backend: DatabaseBackend, table: &str, column: &str) -> SimpleExpr {
    match backend {
        DatabaseBackend::Postgres => Expr::cust(format!(
            "to_char(\"{table}\".\"{column}\" AT TIME ZONE 'Asia/Tokyo', 'YYYY-MM-DD')"
        )),
        _ => Expr::cust(format!("date(\"{table}\".\"{column}\", '+9 hours')")),
    }
}

async fn count_users_by_day(
    db: &DatabaseConnection,
    backend: DatabaseBackend,
    scope: Option<PrefectureCode>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<HashMap<String, i64>> {
    let day = japan_date(backend, "users", "created_at");
    let mut query = users::Entity::find()
        .select_only()
        .column_as(day.clone(), "day")
        .column_as(Expr::col(users::Column::Id).count(), "count")
        .filter(users::Column::CreatedAt.gte(start))
        .filter(users::Column::CreatedAt.lt(end))
        .group_by(day);
    if let Some(code) = scope {
        query = query.filter(users::Column::Prefecture.eq(code.get()));
    }
    Ok(query
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// Returns users per prefecture registered before `start`, and those registered on each day.
async fn count_profiles(
    db: &DatabaseConnection,
    backend: DatabaseBackend,
    scope: Option<PrefectureCode>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(
    BTreeMap<PrefectureCode, i64>,
    HashMap<String, Vec<(PrefectureCode, i64)>>,
)> {
    let scoped = |query: sea_orm::Select<users::Entity>| match scope {
        Some(code) => query.filter(users::Column::Prefecture.eq(code.get())),
        None => query.filter(users::Column::Prefecture.is_not_null()),
    };
    let before: Vec<(Option<i16>, i64)> = scoped(users::Entity::find())
        .select_only()
        .column(users::Column::Prefecture)
        .column_as(Expr::col(users::Column::Id).count(), "count")
        .filter(users::Column::CreatedAt.lt(start))
        .group_by(users::Column::Prefecture)
        .into_tuple()
        .all(db)
        .await?;
    let day = japan_date(backend, "users", "created_at");
    let by_day: Vec<(String, Option<i16>, i64)> = scoped(users::Entity::find())
        .select_only()
        .column_as(day.clone(), "day")
        .column(users::Column::Prefecture)
        .column_as(Expr::col(users::Column::Id).count(), "count")
        .filter(users::Column::CreatedAt.gte(start))
        .filter(users::Column::CreatedAt.lt(end))
        .group_by(day)
        .group_by(users::Column::Prefecture)
        .into_tuple()
        .all(db)
        .await?;
    let before = before
        .into_iter()
        .filter_map(|(code, count)| Some((PrefectureCode::from_stored(code?)?, count)))
        .collect();
    let mut days: HashMap<String, Vec<(PrefectureCode, i64)>> = HashMap::new();
    for (day, code, count) in by_day {
        if let Some(code) = code.and_then(PrefectureCode::from_stored) {
            days.entry(day).or_default().push((code, count));
        }
    }
    Ok((before, days))
}

/// Japan date, prefecture, status, number of uploads and their keys.
type UploadCountRow = (String, Option<i16>, UploadStatus, i64, Option<i64>);

/// Returns upload figures per day and per prefecture (`None`: uploads without a prefecture).
async fn count_uploads(
    db: &DatabaseConnection,
    backend: DatabaseBackend,
    scope: Option<PrefectureCode>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<HashMap<String, HashMap<Option<i16>, UploadFigures>>> {
    use diagnosis_key_uploads::Column;
    let day = japan_date(backend, "diagnosis_key_uploads", "created_at");
    let mut query = diagnosis_key_uploads::Entity::find()
        .select_only()
        .column_as(day.clone(), "day")
        .column(Column::Prefecture)
        .column(Column::Status)
        .column_as(Expr::col(Column::Id).count(), "uploads")
        .column_as(
            Expr::col(Column::KeyCount)
                .sum()
                .cast_as(sea_orm::sea_query::Alias::new("bigint")),
            "keys",
        )
        .filter(Column::CreatedAt.gte(start))
        .filter(Column::CreatedAt.lt(end))
        .group_by(day)
        .group_by(Column::Prefecture)
        .group_by(Column::Status);
    if let Some(code) = scope {
        query = query.filter(Column::Prefecture.eq(code.get()));
    }
    let rows: Vec<UploadCountRow> = query.into_tuple().all(db).await?;
    let mut days: HashMap<String, HashMap<Option<i16>, UploadFigures>> = HashMap::new();
    for (day, prefecture, status, uploads, keys) in rows {
        let figures = days.entry(day).or_default().entry(prefecture).or_default();
        match status {
            UploadStatus::Pending => figures.pending += uploads,
            UploadStatus::Verified => {
                figures.verified += uploads;
                figures.keys_published += keys.unwrap_or(0);
            }
            UploadStatus::Rejected => figures.rejected += uploads,
            UploadStatus::Expired => figures.expired += uploads,
        }
    }
    Ok(days)
}

/// Counts tokens per day of `column`. With `unused_only`, only tokens never redeemed nor revoked.
async fn count_tokens(
    db: &DatabaseConnection,
    backend: DatabaseBackend,
    scope: Option<PrefectureCode>,
    column: health_center_tokens::Column,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    unused_only: bool,
) -> Result<HashMap<String, i64>> {
    use health_center_tokens::Column;
    let name = match column {
        Column::CreatedAt => "created_at",
        Column::RedeemedAt => "redeemed_at",
        Column::ExpiresAt => "expires_at",
        _ => {
            return Err(Error::Internal(anyhow::anyhow!(
                "tokens are not counted by {column:?}"
            )))
        }
    };
    let day = japan_date(backend, "health_center_tokens", name);
    let mut query = health_center_tokens::Entity::find()
        .select_only()
        .column_as(day.clone(), "day")
        .column_as(Expr::col(Column::Id).count(), "count")
        .filter(column.gte(start))
        .filter(column.lt(end))
        .group_by(day);
    if unused_only {
        query = query
            .filter(Column::RedeemedAt.is_null())
            .filter(Column::RevokedAt.is_null());
    }
    if let Some(code) = scope {
        query = query.filter(Column::Prefecture.eq(code.get()));
    }
    Ok(query
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}
