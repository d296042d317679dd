//! Admin accounts and the audit log, for the health-authority dashboard.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{
    connection::{connection, Connection},
    types::{current_admin, parse_uuid, Prefecture},
    ContextExt, ResultExt,
};
use crate::{
    admins, audit,
    auth::{Action, Role},
    entity,
    pagination::PageRequest,
    prefectures::PrefectureCode,
};

/// The role of an admin account.
// The variant names are the dashboard's contract, suffix included.
#[allow(clippy::enum_variant_names)]
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// Every permission.
    SuperAdmin,
    /// Every prefecture; may create national and prefecture admins.
    NationalAdmin,
    /// One prefecture's notices, tokens and statistics; may create admins of that prefecture.
    PrefectureAdmin,
}

impl AdminRole {
    fn role(self) -> Role {
        match self {
            AdminRole::SuperAdmin => Role::SuperAdmin,
            AdminRole::NationalAdmin => Role::NationalAdmin,
            AdminRole::PrefectureAdmin => Role::PrefectureAdmin,
        }
    }
}

/// A health-authority admin account.
pub struct Admin(pub entity::admins::Model);

/// A health-authority admin account.
#[Object]
impl Admin {
    /// Identifier of the account.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Email address the admin logs in with.
    async fn email(&self) -> &str {
        &self.0.email
    }

    /// The account's role.
    async fn role(&self) -> AdminRole {
        match Role::parse(&self.0.role) {
            Some(Role::SuperAdmin) => AdminRole::SuperAdmin,
            Some(Role::NationalAdmin) => AdminRole::NationalAdmin,
            _ => AdminRole::PrefectureAdmin,
        }
    }

    /// The prefecture of a PREFECTURE_ADMIN; null for the other roles.
    async fn prefecture(&self) -> Option<Prefecture> {
        self.0
            .prefecture
            .and_then(PrefectureCode::from_stored)
            .map(Prefecture)
    }

    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One recorded admin action.
#[derive(SimpleObject)]
pub struct AuditLogEntry {
    /// Identifier of the entry.
    pub id: ID,
    /// The admin who acted.
    pub admin_id: ID,
    /// That admin's email at the time.
    pub admin_email: String,
    /// What was done: CREATE_ADMIN, DELETE_ADMIN, CHANGE_PASSWORD, PUBLISH_NOTICE,
    /// WITHDRAW_NOTICE, ISSUE_TOKENS or REVOKE_TOKEN.
    pub action: String,
    /// JIS X 0401 code of the prefecture concerned, if any.
    pub prefecture: Option<i32>,
    /// Identifier of the thing acted on, if any.
    pub target: Option<String>,
    /// Further facts, such as the number of tokens issued.
    pub detail: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl From<entity::audit_log::Model> for AuditLogEntry {
    fn from(model: entity::audit_log::Model) -> Self {
        AuditLogEntry {
            id: ID(model.id.to_string()),
            admin_id: ID(model.admin_id.to_string()),
            admin_email: model.admin_email,
            action: model.action,
            prefecture: model.prefecture.map(i32::from),
            target: model.target,
            detail: model.detail,
            created_at: model.created_at,
        }
    }
}

/// Input of `createAdmin`.
#[derive(InputObject)]
pub struct CreateAdminInput {
    /// Email address to log in with.
    pub email: String,
    /// Password, 12 to 256 characters.
    pub password: String,
    /// Role of the new account, at most the caller's own.
    pub role: AdminRole,
    /// JIS X 0401 code (1 to 47), required for PREFECTURE_ADMIN and absent otherwise.
    pub prefecture: Option<i32>,
}

/// Input of `changePassword`.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The caller's current password.
    pub current_password: String,
    /// The new password, 12 to 256 characters.
    pub new_password: String,
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The calling admin. Needs an admin access token.
    async fn viewer(&self, context: &Context<'_>) -> async_graphql::Result<Admin> {
        let admin = current_admin(context).await?;
        admins::find(&context.app().db, &admin.caller, admin.caller.id)
            .await
            .graphql(context)
            .map(Admin)
    }

    /// Admin accounts the caller may see, oldest first: all of them for national and super
    /// admins, those of their prefecture for a prefecture admin.
    async fn admins(
        &self,
        context: &Context<'_>,
        #[graphql(desc = "Number of accounts, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last account of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<Admin>> {
        let admin = current_admin(context).await?;
        let page = PageRequest::parse(first, after.as_deref()).graphql(context)?;
        let accounts = admins::list(&context.app().db, &admin.caller, &page)
            .await
            .graphql(context)?;
        Ok(connection(
            accounts,
            |account| account.id.to_string(),
            Admin,
        ))
    }

    /// One admin account the caller may see.
    async fn admin(&self, context: &Context<'_>, id: ID) -> async_graphql::Result<Admin> {
        let admin = current_admin(context).await?;
        let id = parse_uuid(&id, "id").graphql(context)?;
        admins::find(&context.app().db, &admin.caller, id)
            .await
            .graphql(context)
            .map(Admin)
    }

    /// Recorded admin actions, newest first: all of them for national and super admins, those
    /// concerning their prefecture for a prefecture admin.
    async fn audit_log(
        &self,
        context: &Context<'_>,
        #[graphql(desc = "Number of entries, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last entry of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<AuditLogEntry>> {
        let admin = current_admin(context).await?;
        let visibility = admin
            .caller
            .visibility(Action::ViewAuditLog)
            .graphql(context)?;
        let page = PageRequest::parse(first, after.as_deref()).graphql(context)?;
        let entries = audit::list(&context.app().db, visibility, &page)
            .await
            .graphql(context)?;
        Ok(connection(
            entries,
            |entry| entry.id.to_string(),
            AuditLogEntry::from,
        ))
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Creates an admin account with a role at most the caller's own, within the caller's
    /// prefecture for a prefecture admin.
    async fn create_admin(
        &self,
        context: &Context<'_>,
        input: CreateAdminInput,
    ) -> async_graphql::Result<Admin> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let prefecture = input
            .prefecture
            .map(|code| PrefectureCode::parse(code, "prefecture"))
            .transpose()
            .graphql(context)?;
        admins::create_by(
            &app.db,
            &admin,
            app.clock.now(),
            &input.email,
            &input.password,
            input.role.role(),
            prefecture,
        )
        .await
        .graphql(context)
        .map(Admin)
    }

    /// Deletes an admin account the caller may manage, ends its sessions and returns it.
    async fn delete_admin(&self, context: &Context<'_>, id: ID) -> async_graphql::Result<Admin> {
        let app = context.app();
        let admin = current_admin(context).await?;
        let id = parse_uuid(&id, "id").graphql(context)?;
        admins::delete(&app.db, &admin, app.clock.now(), id)
            .await
            .graphql(context)
            .map(Admin)
    }

    /// Changes the caller's password and revokes every refresh token of the account, the
    /// caller's included; access tokens stay valid until they expire.
    async fn change_password(
        &self,
        context: &Context<'_>,
        input: ChangePasswordInput,
    ) -> async_graphql::Result<bool> {
        let app = context.app();
        let admin = current_admin(context).await?;
        admins::change_password(
            &app.db,
            &admin,
            app.clock.now(),
            &input.current_password,
            &input.new_password,
        )
        .await
        .graphql(context)?;
        Ok(true)
    }
}
