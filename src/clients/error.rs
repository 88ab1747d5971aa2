//! Errors of REST calls, carrying what a person needs to act on them: which
//! service on which machine, the method and path, the HTTP status and the
//! server's own message.

/// An error and its causes on one line, for a warning or a detail.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A failed REST call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error envelope or a non-success status.
    #[error("{method} {path} on {target}: {message} (HTTP {status})")]
    Status {
        target: String,
        method: String,
        path: String,
        status: u16,
        /// The server's own message (LXD's `error` field), or a truncated body.
        message: String,
    },
    /// The request did not complete (connection refused, TLS failure, timeout).
    #[error("{method} {path} on {target}: request failed")]
    Transport {
        target: String,
        method: String,
        path: String,
        #[source]
        source: super::transport::BackendError,
    },
    /// The server answered, but not with what the API promises.
    #[error("{method} {path} on {target}: unexpected response")]
    Decode {
        target: String,
        method: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A background operation ended in failure.
    #[error("operation {operation} on {target} failed: {message}")]
    Operation {
        target: String,
        operation: String,
        message: String,
    },
}

impl ApiError {
    /// The HTTP status, when the server answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's own message, when there is one.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } | ApiError::Operation { message, .. } => Some(message),
            _ => None,
        }
    }
}
