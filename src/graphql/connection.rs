//! Cursor-paginated lists: a page of nodes and where it ends.

use async_graphql::{OutputType, SimpleObject};

use super::{
    admins::Admin, admins::AuditLogEntry, health_center_tokens::HealthCenterToken,
    types::PrefectureNotice,
};
use crate::pagination::{cursor, Page};

/// One page of a list. Pass `pageInfo.endCursor` as `after` to get the next page.
#[derive(SimpleObject)]
#[graphql(concrete(name = "AdminConnection", params(Admin)))]
#[graphql(concrete(name = "AuditLogEntryConnection", params(AuditLogEntry)))]
#[graphql(concrete(name = "PrefectureNoticeConnection", params(PrefectureNotice)))]
#[graphql(concrete(name = "HealthCenterTokenConnection", params(HealthCenterToken)))]
pub struct Connection<T: OutputType> {
    /// The items of this page, in list order.
    pub nodes: Vec<T>,
    /// End cursor of this page and whether more follow.
    pub page_info: PageInfo,
}

/// End cursor of a page and whether more follow.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// True when a further page exists.
    pub has_next_page: bool,
    /// Cursor of the last item of this page, to pass as `after`; null for an empty page.
    pub end_cursor: Option<String>,
}

/// Builds a connection from a page of rows.
pub fn connection<T, N: OutputType>(
    page: Page<T>,
    sort_key: impl Fn(&T) -> String,
    node: impl Fn(T) -> N,
) -> Connection<N> {
    let end_cursor = page.items.last().map(|item| cursor(sort_key(item)));
    let nodes = page.items.into_iter().map(node).collect();
    Connection {
        nodes,
        page_info: PageInfo {
            has_next_page: page.has_next_page,
            end_cursor,
        },
    }
}
