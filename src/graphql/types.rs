//! GraphQL output types shared by several domains.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{dataloader::Loader, Context, Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{ContextExt, ResultExt};
use crate::{
    app::AppState,
    entity::{diagnosis_key_uploads, users},
    notices::{self, Notice},
    prefectures::PrefectureCode,
};

/// A prefecture of Japan, by JIS X 0401 code.
pub struct Prefecture(pub PrefectureCode);

/// A prefecture of Japan, by JIS X 0401 code.
#[async_graphql::Object]
impl Prefecture {
    /// JIS X 0401 code, from 1 (Hokkaido) to 47 (Okinawa).
    async fn code(&self) -> i32 {
        i32::from(self.0.get())
    }

    /// Name in Japanese, such as 東京都.
    async fn name_ja(&self) -> &'static str {
        self.0.names().0
    }

    /// Name in English, such as Tokyo.
    async fn name_en(&self) -> &'static str {
        self.0.names().1
    }

    /// The latest notice of this prefecture that is not withdrawn, if any.
    async fn notice(
        &self,
        context: &Context<'_>,
    ) -> async_graphql::Result<Option<PrefectureNotice>> {
        let loader =
            context.data_unchecked::<async_graphql::dataloader::DataLoader<CurrentNoticeLoader>>();
        let notice = loader
            .load_one(self.0)
            .await
            .map_err(|error| error.as_ref().clone())?;
        Ok(notice.map(PrefectureNotice))
    }
}

/// Loads the current notices of many prefectures in one batch of queries.
pub struct CurrentNoticeLoader(pub Arc<AppState>);

impl Loader<PrefectureCode> for CurrentNoticeLoader {
    type Value = Notice;
    type Error = Arc<async_graphql::Error>;

    async fn load(
        &self,
        keys: &[PrefectureCode],
    ) -> Result<HashMap<PrefectureCode, Notice>, Self::Error> {
        notices::current_notices(&self.0.db, keys)
            .await
            .map_err(|error| Arc::new(error.into_graphql("dataloader")))
    }
}

/// A notice a health authority published for a prefecture.
pub struct PrefectureNotice(pub Notice);

/// A notice a health authority published for a prefecture.
#[async_graphql::Object]
impl PrefectureNotice {
    /// Identifier of the notice.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The prefecture the notice is for.
    async fn prefecture(&self) -> Prefecture {
        Prefecture(self.0.prefecture)
    }

    /// The text of the notice.
    async fn message(&self) -> &str {
        &self.0.message
    }

    /// When the notice was published.
    async fn published_at(&self) -> DateTime<Utc> {
        self.0.published_at
    }

    /// When the notice was withdrawn, or null while it is in force.
    async fn withdrawn_at(&self) -> Option<DateTime<Utc>> {
        self.0.withdrawn_at
    }
}

/// An anonymous phone user.
pub struct User(pub users::Model);

/// An anonymous phone user.
#[async_graphql::Object]
impl User {
    /// Identifier of the user.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The prefecture the user chose, or null while unset.
    async fn prefecture(&self) -> Option<Prefecture> {
        self.0
            .prefecture
            .and_then(PrefectureCode::from_stored)
            .map(Prefecture)
    }

    /// When the user first logged in.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Tokens returned at login and refresh.
#[derive(SimpleObject)]
pub struct Session {
    /// JWT to send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    /// Opaque token for `refreshSession`. It can be used once; each use returns a new one.
    pub refresh_token: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

impl From<crate::auth::Session> for Session {
    fn from(session: crate::auth::Session) -> Self {
        Session {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            expires_at: session.expires_at,
        }
    }
}

/// Verification state of an upload. Only VERIFIED uploads are exported.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    /// Waiting for the health authority to confirm the token.
    Pending,
    /// Confirmed; its keys are exported once their periods have ended.
    Verified,
    /// Refused by the health authority; its keys were deleted.
    Rejected,
    /// Not verified in time; its keys were deleted.
    Expired,
}

/// An accepted upload of diagnosis keys.
pub struct DiagnosisKeyUpload(pub diagnosis_key_uploads::Model);

/// An accepted upload of diagnosis keys.
#[async_graphql::Object]
impl DiagnosisKeyUpload {
    /// Identifier of the upload.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Number of keys stored.
    async fn key_count(&self) -> i32 {
        self.0.key_count
    }

    /// Verification state.
    async fn status(&self) -> UploadStatus {
        match self.0.status {
            diagnosis_key_uploads::UploadStatus::Pending => UploadStatus::Pending,
            diagnosis_key_uploads::UploadStatus::Verified => UploadStatus::Verified,
            diagnosis_key_uploads::UploadStatus::Rejected => UploadStatus::Rejected,
            diagnosis_key_uploads::UploadStatus::Expired => UploadStatus::Expired,
        }
    }

    /// When the upload was accepted.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Returns the user's profile, for resolvers of several domains.
pub(super) async fn current_user(context: &Context<'_>) -> async_graphql::Result<User> {
    let user_id = context.request().caller.require_user().graphql(context)?;
    crate::profiles::find(&context.app().db, user_id)
        .await
        .graphql(context)
        .map(User)
}

/// Returns the calling admin's current account, for resolvers of several domains.
pub(super) async fn current_admin(
    context: &Context<'_>,
) -> async_graphql::Result<crate::admins::CurrentAdmin> {
    let admin_id = context.request().caller.require_admin().graphql(context)?;
    crate::admins::current(&context.app().db, admin_id)
        .await
        .graphql(context)
}

/// Parses an ID argument as a UUID, naming the argument in the error.
pub(super) fn parse_uuid(id: &ID, field: &str) -> crate::error::Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        crate::error::Error::invalid(
            field,
            format!("invalid {field} {:?}: expected a UUID", id.as_str()),
        )
    })
}
