//! The public list of prefectures and their current notices.

use async_graphql::{Context, Object};

use super::{types::Prefecture, ResultExt};
use crate::prefectures::PrefectureCode;

#[derive(Default)]
pub struct PrefectureQuery;

#[Object]
impl PrefectureQuery {
    /// All 47 prefectures in code order. Needs no login.
    async fn prefectures(&self) -> Vec<Prefecture> {
        PrefectureCode::all().map(Prefecture).collect()
    }

    /// One prefecture by JIS X 0401 code (1 to 47). Needs no login.
    async fn prefecture(
        &self,
        context: &Context<'_>,
        code: i32,
    ) -> async_graphql::Result<Prefecture> {
        PrefectureCode::parse(code, "code")
            .map(Prefecture)
            .graphql(context)
    }
}
