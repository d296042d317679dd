//! Delivering notices to the subscribers of this process, each notice once.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use super::Notice;
use crate::prefectures::PrefectureCode;

/// Notices a slow subscriber may fall behind by before it skips the oldest.
const CHANNEL_CAPACITY: usize = 1_024;
/// Delivered notice ids remembered, so a notice announced twice reaches subscribers once.
const REMEMBERED_IDS: usize = 4_096;

/// Delivers published notices to the subscribers of this process.
#[derive(Clone)]
pub struct NoticeBus {
    sender: broadcast::Sender<Notice>,
    delivered: Arc<Mutex<DeliveredIds>>,
}

#[derive(Default)]
struct DeliveredIds {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Default for NoticeBus {
    fn default() -> Self {
        NoticeBus {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            delivered: Arc::default(),
        }
    }
}

impl NoticeBus {
    /// Returns a stream of the notices of `prefecture` delivered from now on.
    pub fn subscribe(
        &self,
        prefecture: PrefectureCode,
    ) -> impl Stream<Item = Notice> + Send + 'static {
        BroadcastStream::new(self.sender.subscribe()).filter_map(move |received| async move {
            match received {
                Ok(notice) if notice.prefecture == prefecture => Some(notice),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, %prefecture, "notice subscriber fell behind and skipped notices");
                    None
                }
            }
        })
    }

    /// Delivers a notice unless it was delivered already; returns whether it was new.
    pub fn deliver(&self, notice: Notice) -> bool {
        if !self.mark_delivered(notice.id) {
            return false;
        }
        // Sending fails only when nobody subscribes, which is not an error.
        let _ = self.sender.send(notice);
        true
    }

    /// Marks notices as delivered without sending them, such as those older than this process.
    pub fn remember(&self, ids: &[i64]) {
        for id in ids {
            self.mark_delivered(*id);
        }
    }

    fn mark_delivered(&self, id: i64) -> bool {
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !delivered.set.insert(id) {
            return false;
        }
        delivered.order.push_back(id);
        if delivered.order.len() > REMEMBERED_IDS {
            if let Some(oldest) = delivered.order.pop_front() {
                delivered.set.remove(&oldest);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn notice(id: i64) -> Notice {
        Notice {
            id,
            prefecture: PrefectureCode::from_stored(13).unwrap(),
            message: format!("notice {id}"),
            published_at: Utc::now(),
            withdrawn_at: None,
        }
    }

    #[tokio::test]
    async fn deliver_sends_each_notice_once() {
        let bus = NoticeBus::default();
        let mut stream = Box::pin(bus.subscribe(PrefectureCode::from_stored(13).unwrap()));
        assert!(bus.deliver(notice(1)));
        assert!(!bus.deliver(notice(1)));
        assert!(bus.deliver(notice(2)));
        assert_eq!(stream.next().await.unwrap().id, 1);
        assert_eq!(stream.next().await.unwrap().id, 2);
    }
}
