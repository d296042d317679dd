//! The one error type of the domain and its mapping to GraphQL errors.
//!
//! Domain functions return [`Error`]; resolvers turn it into a GraphQL error
//! with a stable `extensions.code`. An [`Error::Internal`] reaches the client
//! only as a generic message with the request id, and reaches the log with its
//! cause chain.

use async_graphql::ErrorExtensions;

/// A rejected operation, by the kind a client must react to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller is not logged in, or its token is invalid or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is logged in but its role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// An input value is invalid. `field` names the input path when one value is at fault.
    #[error("{message}")]
    BadUserInput {
        message: String,
        field: Option<String>,
        reason: Option<&'static str>,
    },
    /// The thing named does not exist or is not visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored, such as a spent token.
    #[error("{message}")]
    Conflict {
        message: String,
        reason: Option<&'static str>,
    },
    /// Too many attempts; the client may retry after the given number of seconds.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// A dependency such as the database cannot be reached right now.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Result of a domain function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds a `BAD_USER_INPUT` error about one input field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadUserInput {
            message: message.into(),
            field: Some(field.into()),
            reason: None,
        }
    }

    /// Returns the stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::BadUserInput { .. } => "BAD_USER_INPUT",
            Error::NotFound(_) => "NOT_FOUND",
            Error::Conflict { .. } => "CONFLICT",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// Converts into a GraphQL error, logging server-side failures with the request id.
    pub fn into_graphql(self, request_id: &str) -> async_graphql::Error {
        let code = self.code();
        let message = match &self {
            Error::Internal(cause) => {
                tracing::error!(request_id, error = ?cause, "request failed");
                format!("internal error; quote request id {request_id} when reporting it")
            }
            Error::Unavailable(cause) => {
                tracing::warn!(request_id, error = ?cause, "dependency unavailable");
                "service temporarily unavailable; retry later".to_owned()
            }
            other => {
                tracing::debug!(request_id, code, error = %other, "request rejected");
                other.to_string()
            }
        };
        async_graphql::Error::new(message).extend_with(|_, extensions| {
            extensions.set("code", code);
            match &self {
                Error::BadUserInput {
                    field: Some(field), ..
                } => extensions.set("field", field.as_str()),
                Error::RateLimited {
                    retry_after_seconds,
                    ..
                } => extensions.set("retryAfterSeconds", *retry_after_seconds),
                _ => {}
            }
            if let Error::BadUserInput {
                reason: Some(reason),
                ..
            }
            | Error::Conflict {
                reason: Some(reason),
                ..
            } = &self
            {
                extensions.set("reason", *reason);
            }
        })
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        use sea_orm::{sqlx, DbErr, RuntimeErr};
        let unreachable = match &error {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
            DbErr::Exec(RuntimeErr::SqlxError(cause))
            | DbErr::Query(RuntimeErr::SqlxError(cause)) => matches!(
                cause,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        };
        if unreachable {
            Error::Unavailable(error.into())
        } else {
            Error::Internal(error.into())
        }
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(error: sea_orm::TransactionError<Error>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(error) => error.into(),
            sea_orm::TransactionError::Transaction(error) => error,
        }
    }
}
