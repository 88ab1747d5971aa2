//! The LXD-style response envelope microcluster answers with (spec §1.2),
//! and the error type every handler returns.
//!
//! A success is `type:"sync"`, `status:"Success"`, `status_code:200`,
//! `error_code:0`, `error:""` with the payload in `metadata`. An error has
//! the HTTP status as `error_code`, `type:"error"`, `status:""`,
//! `status_code:0` and `metadata:null`. The keys come in that order.

use serde::Serialize;
use serde_json::Value;

/// An error answer: the HTTP status (equal to `error_code`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// `response.BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// `response.InternalError` and SmartError's default.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// `response.NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// `response.Unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }

    /// `response.Forbidden(nil)` in the 2024 v3 branch.
    pub fn forbidden() -> Self {
        Self::new(403, "not authorized")
    }

    /// `response.NotImplemented(nil)`: the endpoint has no handler for the method.
    pub fn not_implemented() -> Self {
        Self::new(501, "not implemented")
    }

    /// Wraps the message like Go's `fmt.Errorf("<prefix>: %w", err)`: the
    /// status code is kept (SmartError looks through `%w`).
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        ApiError {
            code: self.code,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        // Anything the emulator itself fails at is what SmartError makes of
        // a plain error: a 500 with the chain of causes.
        ApiError::internal(format!("{error:#}"))
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    status_code: u16,
    operation: &'static str,
    error_code: u16,
    error: &'a str,
    metadata: &'a Value,
}

/// The JSON of a success's `metadata`, already serialized: a struct keeps
/// its fields in upstream's order (a `Value` object sorts its keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta(String);

impl Meta {
    pub fn of<T: Serialize>(value: &T) -> Meta {
        Meta(serde_json::to_string(value).expect("metadata always serializes"))
    }

    #[cfg(test)]
    pub fn empty() -> Meta {
        Meta("{}".into())
    }
}

impl From<Value> for Meta {
    fn from(value: Value) -> Meta {
        Meta::of(&value)
    }
}

/// The body of a sync success carrying `metadata`.
pub fn sync_body(metadata: &Meta) -> Vec<u8> {
    format!(
        r#"{{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":{}}}"#,
        metadata.0
    )
    .into_bytes()
}

/// The body of an error answer; send it with HTTP status `error.code`.
pub fn error_body(error: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        kind: "error",
        status: "",
        status_code: 0,
        operation: "",
        error_code: error.code,
        error: &error.message,
        metadata: &Value::Null,
    })
    .expect("an envelope always serializes")
}

/// Reads an envelope as microcluster's client does: an error envelope
/// becomes an [`ApiError`] with the HTTP status, a sync one its metadata.
/// A body that is not an envelope is an error quoting the status line.
pub fn parse(status: u16, body: &[u8], url: &str) -> Result<Value, ApiError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) => {
            return Err(ApiError::new(
                if status == 200 { 500 } else { status },
                format!("Failed to fetch {url:?}: \"{status}\""),
            ));
        }
    };
    if value.get("type").and_then(Value::as_str) == Some("error") {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return Err(ApiError::new(status, message));
    }
    Ok(value.get("metadata").cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sync_envelope_keys_and_order() {
        let body = String::from_utf8(sync_body(&Meta::empty())).unwrap();
        assert_eq!(
            body,
            r#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":{}}"#
        );
    }

    #[test]
    fn error_envelope_has_null_metadata_and_the_status_as_error_code() {
        let body = error_body(&ApiError::unavailable("Database is not yet initialized"));
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({"type":"error","status":"","status_code":0,"operation":"",
                   "error_code":503,"error":"Database is not yet initialized","metadata":null})
        );
    }

    #[test]
    fn parse_reads_errors_metadata_and_garbage() {
        let error = parse(404, &error_body(&ApiError::not_found("x")), "u").unwrap_err();
        assert_eq!(error, ApiError::not_found("x"));
        assert_eq!(
            parse(200, &sync_body(&json!([1]).into()), "u").unwrap(),
            json!([1])
        );
        let garbage = parse(502, b"<html>", "https://h/x").unwrap_err();
        assert_eq!(garbage.code, 502);
        assert_eq!(garbage.message, "Failed to fetch \"https://h/x\": \"502\"");
    }

    #[test]
    fn struct_metadata_keeps_its_field_order() {
        #[derive(Serialize)]
        struct Server {
            name: &'static str,
            address: &'static str,
        }
        let body = sync_body(&Meta::of(&Server {
            name: "m1",
            address: "",
        }));
        assert!(
            String::from_utf8(body)
                .unwrap()
                .ends_with(r#""metadata":{"name":"m1","address":""}}"#)
        );
    }

    #[test]
    fn context_keeps_the_code() {
        let error = ApiError::not_found("CoreTokenRecord not found").context("join");
        assert_eq!(error.code, 404);
        assert_eq!(error.message, "join: CoreTokenRecord not found");
    }
}
