//! Schema assembly and the per-request context. One module per domain contains its resolvers.

mod admins;
mod connection;
mod diagnosis_keys;
mod exports;
mod health_center_tokens;
mod notices;
mod prefectures;
mod sessions;
mod stats;
mod types;

use std::{net::IpAddr, sync::Arc};

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use crate::{app::AppState, auth::Caller, error::Error};

/// The served schema.
pub type MamoriSchema = Schema<Query, Mutation, Subscription>;

/// Root query type.
#[derive(MergedObject, Default)]
pub struct Query(
    sessions::SessionQuery,
    prefectures::PrefectureQuery,
    exports::ExportQuery,
    admins::AdminQuery,
    notices::NoticeQuery,
    health_center_tokens::HealthCenterTokenQuery,
    stats::StatsQuery,
);

/// Root mutation type.
#[derive(MergedObject, Default)]
pub struct Mutation(
    sessions::SessionMutation,
    diagnosis_keys::DiagnosisKeyMutation,
    notices::NoticeMutation,
    admins::AdminMutation,
    health_center_tokens::HealthCenterTokenMutation,
);

/// Root subscription type.
#[derive(MergedSubscription, Default)]
pub struct Subscription(notices::NoticeSubscription);

/// Maximum depth of a query, so nested selections cannot make one request expensive.
const MAX_DEPTH: usize = 12;
/// Maximum complexity (roughly, the number of fields) of a query.
const MAX_COMPLEXITY: usize = 500;

/// Builds the schema with the application state attached.
pub fn build_schema(app: Arc<AppState>) -> MamoriSchema {
    let notice_loader = async_graphql::dataloader::DataLoader::new(
        types::CurrentNoticeLoader(app.clone()),
        tokio::spawn,
    );
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(app)
    .data(notice_loader)
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .finish()
}

/// Returns the SDL of the schema, as stored in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}

/// Facts about one request, attached by the HTTP or WebSocket handler.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub caller: Caller,
    pub client_address: Option<IpAddr>,
    pub request_id: String,
}

/// Access to the state and the request from a resolver.
pub(crate) trait ContextExt {
    fn app(&self) -> &Arc<AppState>;
    fn request(&self) -> &RequestContext;
}

impl ContextExt for Context<'_> {
    fn app(&self) -> &Arc<AppState> {
        self.data_unchecked::<Arc<AppState>>()
    }

    fn request(&self) -> &RequestContext {
        self.data_unchecked::<RequestContext>()
    }
}

/// Converts domain results into GraphQL results, logging internal errors with the request id.
pub(crate) trait ResultExt<T> {
    fn graphql(self, context: &Context<'_>) -> async_graphql::Result<T>;
}

impl<T> ResultExt<T> for Result<T, Error> {
    fn graphql(self, context: &Context<'_>) -> async_graphql::Result<T> {
        self.map_err(|error| error.into_graphql(&context.request().request_id))
    }
}
