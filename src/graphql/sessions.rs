//! Login, session refresh and the caller's profile.

use async_graphql::{Context, InputObject, MaybeUndefined, Object};

use super::{
    types::{current_user, Session, User},
    ContextExt, ResultExt,
};
use crate::{admins, auth, prefectures::PrefectureCode, profiles};

#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// The calling phone user. Needs a user's access token.
    async fn me(&self, context: &Context<'_>) -> async_graphql::Result<User> {
        current_user(context).await
    }
}

/// Input of `login`.
#[derive(InputObject, Default)]
pub struct LoginInput {
    /// JIS X 0401 code (1 to 47) of the user's prefecture, if known.
    pub prefecture: Option<i32>,
}

/// Input of `updateProfile`.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// JIS X 0401 code (1 to 47), or null to unset. Leave it out to keep the current value.
    pub prefecture: MaybeUndefined<i32>,
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Creates an anonymous phone user and returns its first session.
    async fn login(
        &self,
        context: &Context<'_>,
        input: Option<LoginInput>,
    ) -> async_graphql::Result<Session> {
        let app = context.app();
        let prefecture = input
            .and_then(|input| input.prefecture)
            .map(|code| PrefectureCode::parse(code, "prefecture"))
            .transpose()
            .graphql(context)?;
        auth::login(&app.db, &app.keys, app.clock.now(), prefecture)
            .await
            .graphql(context)
            .map(Session::from)
    }

    /// Spends a refresh token and returns a new session. Reusing a spent refresh token revokes
    /// every session of its login.
    async fn refresh_session(
        &self,
        context: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<Session> {
        let app = context.app();
        auth::refresh_session(&app.db, &app.keys, app.clock.now(), &refresh_token)
            .await
            .graphql(context)
            .map(Session::from)
    }

    /// Sets or clears the caller's prefecture. Needs a user's access token.
    async fn update_profile(
        &self,
        context: &Context<'_>,
        input: UpdateProfileInput,
    ) -> async_graphql::Result<User> {
        let app = context.app();
        let user_id = context.request().caller.require_user().graphql(context)?;
        let prefecture = match input.prefecture {
            MaybeUndefined::Undefined => return current_user(context).await,
            MaybeUndefined::Null => None,
            MaybeUndefined::Value(code) => {
                Some(PrefectureCode::parse(code, "prefecture").graphql(context)?)
            }
        };
        profiles::set_prefecture(&app.db, user_id, prefecture)
            .await
            .graphql(context)
            .map(User)
    }

    /// Logs a health-authority admin in with email and password.
    async fn admin_login(
        &self,
        context: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<Session> {
        let app = context.app();
        admins::login(
            &app.db,
            &app.keys,
            &app.login_attempts,
            app.clock.now(),
            context.request().client_address,
            &email,
            &password,
        )
        .await
        .graphql(context)
        .map(Session::from)
    }
}
