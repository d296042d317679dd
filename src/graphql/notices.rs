//! Publishing prefecture notices and subscribing to them.

use async_graphql::{Context, InputObject, Object, Subscription};
use futures::{Stream, StreamExt};

use super::{types::PrefectureNotice, ContextExt, ResultExt};
use crate::{auth::Role, error::Error, notices, prefectures::PrefectureCode};

/// Input of `publishPrefectureNotice`.
#[derive(InputObject)]
pub struct PublishPrefectureNoticeInput {
    /// JIS X 0401 code (1 to 47) of the prefecture.
    pub prefecture: i32,
    /// The notice text, 1 to 2000 characters.
    pub message: String,
}

#[derive(Default)]
pub struct NoticeMutation;

#[Object]
impl NoticeMutation {
    /// Publishes a notice for a prefecture and delivers it to its subscribers.
    /// Needs a SUPER_ADMIN access token.
    async fn publish_prefecture_notice(
        &self,
        context: &Context<'_>,
        input: PublishPrefectureNoticeInput,
    ) -> async_graphql::Result<PrefectureNotice> {
        let app = context.app();
        let (admin_id, role, _) = context.request().caller.require_admin().graphql(context)?;
        if role != Role::SuperAdmin {
            return Err(Error::Forbidden(
                "only a SUPER_ADMIN may publish notices".into(),
            ))
            .graphql(context);
        }
        let prefecture =
            PrefectureCode::parse(input.prefecture, "input.prefecture").graphql(context)?;
        notices::publish(
            &app.db,
            &app.notices,
            app.clock.now(),
            admin_id,
            prefecture,
            &input.message,
        )
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
