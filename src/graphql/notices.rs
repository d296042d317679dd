//! Publishing, withdrawing and listing prefecture notices, and subscribing to new ones.

use async_graphql::{Context, InputObject, Object, Subscription, ID};
use futures::{Stream, StreamExt};

use super::{
    connection::{connection, Connection},
    types::{current_admin, PrefectureNotice},
    ContextExt, ResultExt,
};
use crate::{error::Error, notices, pagination::PageRequest, prefectures::PrefectureCode};

/// Input of `publishPrefectureNotice`.
#[derive(InputObject)]
pub struct PublishPrefectureNoticeInput {
    /// JIS X 0401 code (1 to 47) of the prefecture.
    pub prefecture: i32,
    /// The notice text, 1 to 2000 characters.
    pub message: String,
}

#[derive(Default)]
pub struct NoticeQuery;

#[Object]
impl NoticeQuery {
    /// Past notices of a prefecture, newest first, withdrawn ones included. Needs an admin of
    /// that prefecture or above.
    async fn prefecture_notice_history(
        &self,
        context: &Context<'_>,
        #[graphql(desc = "JIS X 0401 code (1 to 47) of the prefecture.")] prefecture: i32,
        #[graphql(desc = "Number of notices, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last notice of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<PrefectureNotice>> {
        let admin = current_admin(context).await?;
        let prefecture = PrefectureCode::parse(prefecture, "prefecture").graphql(context)?;
        let page = PageRequest::parse(first, after.as_deref()).graphql(context)?;
        let notices = notices::history(&context.app().db, &admin, prefecture, &page)
            .await
            .graphql(context)?;
        Ok(connection(
            notices,
            |notice| notice.id.to_string(),
            PrefectureNotice,
        ))
    }
}

#[derive(Default)]
pub struct NoticeMutation;

#[Object]
impl NoticeMutation {
    /// Publishes a notice for a prefecture and delivers it to its subscribers. Needs an admin of
    /// that prefecture or above.
    async fn publish_prefecture_notice(
        &self,
        context: &Context<'_>,
        input: PublishPrefectureNoticeInput,
    ) -> async_graphql::Result<PrefectureNotice> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let prefecture = PrefectureCode::parse(input.prefecture, "prefecture").graphql(context)?;
        notices::publish(
            &app.db,
            &app.notices,
            app.clock.now(),
            &admin,
            prefecture,
            &input.message,
        )
        .await
        .graphql(context)
        .map(PrefectureNotice)
    }

    /// Withdraws a notice, so it is no longer its prefecture's current notice. Needs an admin of
    /// that prefecture or above.
    async fn withdraw_prefecture_notice(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<PrefectureNotice> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let id: i64 = id
            .parse()
            .map_err(|_| Error::invalid("id", format!("invalid notice id {:?}", id.as_str())))
            .graphql(context)?;
        notices::withdraw(&app.db, app.clock.now(), &admin, id)
            .await
            .graphql(context)
            .map(PrefectureNotice)
    }
}

#[derive(Default)]
pub struct NoticeSubscription;

#[Subscription]
impl NoticeSubscription {
    /// Delivers each notice published for the prefecture from now on. Needs no login.
    async fn prefecture_notices(
        &self,
        context: &Context<'_>,
        prefecture: i32,
    ) -> async_graphql::Result<impl Stream<Item = PrefectureNotice>> {
        if let crate::auth::Caller::Invalid(message) = &context.request().caller {
            return Err(Error::Unauthenticated(message.clone())).graphql(context);
        }
        let prefecture = PrefectureCode::parse(prefecture, "prefecture").graphql(context)?;
        Ok(context
            .app()
            .notices
            .subscribe(prefecture)
            .map(PrefectureNotice))
    }
}
