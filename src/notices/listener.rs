//! Receiving notices published by any replica, through PostgreSQL LISTEN/NOTIFY.
//!
//! NOTIFY carries only the notice id; the listener loads the notice and delivers it to this
//! process's subscribers. When the listening connection drops, sqlx reconnects it, and the
//! listener reloads the latest notices so that those announced meanwhile still arrive, each once.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sea_orm::{
    sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Notice, NoticeBus};
use crate::entity::prefecture_notices;

/// The NOTIFY channel of published notices.
pub const CHANNEL: &str = "mamori_notices";
/// `application_name` of the listening connection, so operators can find it.
const APPLICATION_NAME: &str = "mamori-notice-listener";
/// Notice ids below the highest one seen that a reload still covers, because concurrent
/// transactions can commit out of id order.
const RELOAD_ID_SLACK: i64 = 1_000;
/// Wait before retrying after the listener failed to reconnect.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Starts the listener task of this replica; it runs until `shutdown` is cancelled.
pub async fn start_listener(
    database_url: &str,
    db: DatabaseConnection,
    bus: NoticeBus,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let options = PgConnectOptions::from_str(database_url)
        .context("invalid MAMORI_DATABASE_URL")?
        .application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool)
        .await
        .context("failed to start the notice listener")?;
    listener
        .listen(CHANNEL)
        .await
        .context("failed to LISTEN for notices")?;
    // Notices published before this replica started are not news to its subscribers.
    let known: Vec<i64> = prefecture_notices::Entity::find()
        .select_only()
        .column(prefecture_notices::Column::Id)
        .order_by_desc(prefecture_notices::Column::Id)
        .limit(RELOAD_ID_SLACK as u64)
        .into_tuple()
        .all(&db)
        .await
        .context("failed to read the latest notices")?;
    bus.remember(&known);
    Ok(tokio::spawn(async move {
        let mut highest_id = known.first().copied().unwrap_or(0);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                    Ok(id) => match load(&db, id).await {
                        Ok(Some(notice)) => {
                            highest_id = highest_id.max(notice.id);
                            bus.deliver(notice);
                        }
                        Ok(None) => {
                            tracing::debug!(notice_id = id, "announced notice no longer exists")
                        }
                        Err(error) => tracing::warn!(
                            notice_id = id,
                            error = format!("{error:#}"),
                            "failed to load an announced notice"
                        ),
                    },
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "ignored a malformed notice announcement"
                    ),
                },
                Ok(None) => {
                    tracing::warn!("notice listener lost its connection; reconnected, reloading recent notices");
                    highest_id = reload(&db, &bus, highest_id).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "notice listener failed; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                    highest_id = reload(&db, &bus, highest_id).await;
                }
            }
        }
        tracing::debug!("notice listener stopped");
    }))
}

async fn load(db: &DatabaseConnection, id: i64) -> anyhow::Result<Option<Notice>> {
    let model = prefecture_notices::Entity::find_by_id(id).one(db).await?;
    model
        .map(Notice::from_model)
        .transpose()
        .map_err(anyhow::Error::from)
}

/// Delivers the notices that may have been announced while disconnected; the bus skips those
/// already delivered. Returns the new highest id.
async fn reload(db: &DatabaseConnection, bus: &NoticeBus, highest_id: i64) -> i64 {
    let recent = prefecture_notices::Entity::find()
        .filter(prefecture_notices::Column::Id.gt(highest_id - RELOAD_ID_SLACK))
        .filter(prefecture_notices::Column::WithdrawnAt.is_null())
        .order_by_asc(prefecture_notices::Column::Id)
        .all(db)
        .await;
    match recent {
        Ok(models) => {
            let mut highest = highest_id;
            for model in models {
                highest = highest.max(model.id);
                let id = model.id;
                match Notice::from_model(model) {
                    Ok(notice) => {
                        if bus.deliver(notice) {
                            tracing::info!(
                                notice_id = id,
                                "delivered a notice announced while disconnected"
                            );
                        }
                    }
                    Err(error) => tracing::warn!(%error, "skipped an invalid notice"),
                }
            }
            highest
        }
        Err(error) => {
            tracing::warn!(%error, "failed to reload recent notices");
            highest_id
        }
    }
}
