//! Issuing, listing and revoking health-center tokens.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{
    connection::{connection, Connection},
    types::{current_admin, parse_uuid, Prefecture},
    ContextExt, ResultExt,
};
use crate::{
    entity,
    error::Error,
    health_center_tokens::{self, TokenStatus},
    pagination::PageRequest,
    prefectures::PrefectureCode,
};

/// The state of a health-center token.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum HealthCenterTokenStatus {
    /// Usable for one upload until it expires.
    Issued,
    /// Spent by an upload.
    Redeemed,
    /// Expired before anyone used it.
    Expired,
    /// Revoked before anyone used it.
    Revoked,
}

impl From<TokenStatus> for HealthCenterTokenStatus {
    fn from(status: TokenStatus) -> Self {
        match status {
            TokenStatus::Issued => HealthCenterTokenStatus::Issued,
            TokenStatus::Redeemed => HealthCenterTokenStatus::Redeemed,
            TokenStatus::Expired => HealthCenterTokenStatus::Expired,
            TokenStatus::Revoked => HealthCenterTokenStatus::Revoked,
        }
    }
}

impl From<HealthCenterTokenStatus> for TokenStatus {
    fn from(status: HealthCenterTokenStatus) -> Self {
        match status {
            HealthCenterTokenStatus::Issued => TokenStatus::Issued,
            HealthCenterTokenStatus::Redeemed => TokenStatus::Redeemed,
            HealthCenterTokenStatus::Expired => TokenStatus::Expired,
            HealthCenterTokenStatus::Revoked => TokenStatus::Revoked,
        }
    }
}

/// An issued health-center token. Its code is shown only once, when issued.
pub struct HealthCenterToken {
    model: entity::health_center_tokens::Model,
    status: TokenStatus,
}

/// An issued health-center token. Its code is shown only once, when issued.
#[Object]
impl HealthCenterToken {
    /// Identifier of the token, for `revokeHealthCenterToken`.
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }

    /// The prefecture whose health center issued it.
    async fn prefecture(&self) -> Option<Prefecture> {
        PrefectureCode::from_stored(self.model.prefecture).map(Prefecture)
    }

    /// The token's state now.
    async fn status(&self) -> HealthCenterTokenStatus {
        self.status.into()
    }

    /// When it was issued.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }

    /// When it expires or expired.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.model.expires_at
    }

    /// When an upload spent it, if one did.
    async fn redeemed_at(&self) -> Option<DateTime<Utc>> {
        self.model.redeemed_at
    }

    /// When it was revoked, if it was.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.model.revoked_at
    }
}

/// Freshly issued codes, shown this once and never again.
#[derive(SimpleObject)]
pub struct IssuedHealthCenterTokens {
    /// The one-time codes, such as `K7QM-3XRT-WP9C`, to hand to positive persons.
    pub codes: Vec<String>,
    /// When the codes expire.
    pub expires_at: DateTime<Utc>,
}

/// Input of `issueHealthCenterTokens`.
#[derive(InputObject)]
pub struct IssueHealthCenterTokensInput {
    /// JIS X 0401 code (1 to 47) of the health center's prefecture.
    pub prefecture: i32,
    /// Number of codes, 1 to 100.
    pub count: i32,
    /// Hours the codes stay valid, 1 to 2160 (90 days).
    pub valid_for_hours: i32,
}

#[derive(Default)]
pub struct HealthCenterTokenQuery;

#[Object]
impl HealthCenterTokenQuery {
    /// Issued tokens, newest first, without their codes. Without `prefecture`, every
    /// prefecture the caller may see.
    async fn health_center_tokens(
        &self,
        context: &Context<'_>,
        #[graphql(desc = "JIS X 0401 code (1 to 47); leave out for every visible prefecture.")]
        prefecture: Option<i32>,
        #[graphql(desc = "Only tokens in this state; leave out for all.")] status: Option<
            HealthCenterTokenStatus,
        >,
        #[graphql(desc = "Number of tokens, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last token of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<HealthCenterToken>> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let prefecture = prefecture
            .map(|code| PrefectureCode::parse(code, "prefecture"))
            .transpose()
            .graphql(context)?;
        let page = PageRequest::parse(first, after.as_deref()).graphql(context)?;
        let now = app.clock.now();
        let tokens = health_center_tokens::list(
            &app.db,
            &admin,
            now,
            prefecture,
            status.map(TokenStatus::from),
            &page,
        )
        .await
        .graphql(context)?;
        Ok(connection(
            tokens,
            |token| token.id.to_string(),
            |model| HealthCenterToken {
                status: TokenStatus::of(&model, now),
                model,
            },
        ))
    }
}

#[derive(Default)]
pub struct HealthCenterTokenMutation;

#[Object]
impl HealthCenterTokenMutation {
    /// Issues one-time codes for a prefecture, at most 100 a call and within its daily quota.
    /// Needs an admin of that prefecture or above.
    async fn issue_health_center_tokens(
        &self,
        context: &Context<'_>,
        input: IssueHealthCenterTokensInput,
    ) -> async_graphql::Result<IssuedHealthCenterTokens> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let prefecture = PrefectureCode::parse(input.prefecture, "prefecture").graphql(context)?;
        // A negative count fails the same check as zero, with the value the client sent.
        let count = u32::try_from(input.count)
            .map_err(|_| {
                Error::invalid(
                    "count",
                    format!(
                        "invalid count {}: issue from 1 to {} codes at a time",
                        input.count,
                        health_center_tokens::MAX_CODES_PER_CALL
                    ),
                )
            })
            .graphql(context)?;
        let valid_for = chrono::Duration::hours(i64::from(input.valid_for_hours));
        let (codes, expires_at) = health_center_tokens::issue_by(
            &app.db,
            &app.code_hasher,
            &admin,
            app.clock.now(),
            prefecture,
            count,
            valid_for,
            app.config.token_daily_quota,
        )
        .await
        .graphql(context)?;
        Ok(IssuedHealthCenterTokens { codes, expires_at })
    }

    /// Revokes an unused token so no upload can spend it. Needs an admin of its prefecture or
    /// above.
    async fn revoke_health_center_token(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<HealthCenterToken> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let id = parse_uuid(&id, "id").graphql(context)?;
        let now = app.clock.now();
        let model = health_center_tokens::revoke(&app.db, &admin, now, id)
            .await
            .graphql(context)?;
        Ok(HealthCenterToken {
            status: TokenStatus::of(&model, now),
            model,
        })
    }
}
