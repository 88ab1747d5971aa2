//! Join tokens, as LXD and microcluster both write them: standard, padded
//! base64 of a JSON object. Decoding errors keep no source, because base64
//! and JSON errors quote their input, and the input holds a secret.

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenError {
    #[error("join token is not valid base64")]
    Base64,
    #[error("join token does not hold the expected fields")]
    Json,
}

pub fn encode<T: Serialize>(token: &T) -> String {
    let json = serde_json::to_vec(token).expect("token fields always serialize");
    base64::engine::general_purpose::STANDARD.encode(json)
}

pub fn decode<T: DeserializeOwned>(token: &str) -> Result<T, JoinTokenError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| JoinTokenError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|_| JoinTokenError::Json)
}
