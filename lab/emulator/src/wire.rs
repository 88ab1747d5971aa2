//! Pure pieces of the microcluster wire protocol: member-name validation,
//! the join token codec, Go's time formats.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::envelope::ApiError;

/// microcluster's `utils.ValidateFQDN`: 1–255 characters, every label a
/// hostname as LXD's `validate.IsHostname` defines it. The error is the 400
/// upstream returns (callers add their own prefix).
pub fn validate_fqdn(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::bad_request("Name must be 1-255 characters long"));
    }
    for label in name.split('.') {
        validate_hostname(label).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

fn validate_hostname(label: &str) -> Result<(), &'static str> {
    if label.is_empty() || label.len() > 63 {
        return Err("Name must be 1-63 characters long");
    }
    if label.starts_with('-') {
        return Err("Name must not start with \"-\" character");
    }
    if label.ends_with('-') {
        return Err("Name must not end with \"-\" character");
    }
    if label.parse::<u64>().is_ok() {
        return Err("Name cannot be a number");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("Name can only contain alphanumeric and hyphen characters");
    }
    Ok(())
}

/// What a join token holds (base64 std, padded, of this JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub secret: String,
    pub fingerprint: String,
    pub join_addresses: Vec<String>,
}

impl JoinToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token always serializes");
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Decodes as Go's `base64.StdEncoding.DecodeString` then
    /// `json.Unmarshal`; the errors read like Go's.
    pub fn decode(text: &str) -> Result<JoinToken, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|error| match error {
                base64::DecodeError::InvalidByte(offset, _)
                | base64::DecodeError::InvalidLastSymbol(offset, _) => {
                    format!("illegal base64 data at input byte {offset}")
                }
                _ => format!("illegal base64 data at input byte {}", text.len()),
            })?;
        serde_json::from_slice(&bytes).map_err(|error| error.to_string())
    }
}

/// A fresh token secret: 32 random bytes as 64 hex characters (LXD's
/// `RandomCryptoString`).
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Go's zero `time.Time` as JSON writes it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// RFC 3339 with nanoseconds in UTC, as Go's `time.Time` marshals
/// (`2026-12-01T22:14:03.418205913Z`; trailing zeros of the fraction are
/// dropped, and so is an all-zero fraction).
pub fn rfc3339_nanos(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let frac = (nanos % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The host part of `ip:port` (`[v6]:port` too).
pub fn host_of(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_rules_and_texts() {
        assert!(validate_fqdn("micro1").is_ok());
        assert!(validate_fqdn("micro1.lab.example").is_ok());
        assert!(validate_fqdn("a-b").is_ok());
        let cases = [
            ("", "Name must be 1-255 characters long"),
            (
                "micro_1",
                "Name can only contain alphanumeric and hyphen characters",
            ),
            ("-m", "Name must not start with \"-\" character"),
            ("m-", "Name must not end with \"-\" character"),
            ("123", "Name cannot be a number"),
            ("a..b", "Name must be 1-63 characters long"),
        ];
        for (name, text) in cases {
            let error = validate_fqdn(name).unwrap_err();
            assert_eq!((error.code, error.message.as_str()), (400, text), "{name}");
        }
        assert!(validate_fqdn(&"a".repeat(64)).is_err());
        assert!(validate_fqdn(&["a"; 200].join(".")).is_err());
    }

    #[test]
    fn token_round_trip_is_padded_standard_base64_of_the_json() {
        let token = JoinToken {
            secret: random_secret(),
            fingerprint: "ab".repeat(32),
            join_addresses: vec!["10.0.0.1:7443".into(), "[fd00::1]:7443".into()],
        };
        assert_eq!(token.secret.len(), 64);
        let text = token.encode();
        let json = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        assert!(json.starts_with(br#"{"secret":""#));
        assert_eq!(JoinToken::decode(&text).unwrap(), token);
    }

    #[test]
    fn token_decode_errors_read_like_go() {
        assert_eq!(
            JoinToken::decode("ab!d").unwrap_err(),
            "illegal base64 data at input byte 2"
        );
        let not_json = base64::engine::general_purpose::STANDARD.encode(b"nope");
        assert!(
            JoinToken::decode(&not_json)
                .unwrap_err()
                .contains("expected")
        );
    }

    #[test]
    fn go_time_format() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_796_249_643_418_205_913),
            "2026-12-02T22:14:03.418205913Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_500_000_000),
            "2000-02-29T00:00:00.5Z"
        );
    }

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("10.0.0.1:7443"), "10.0.0.1");
        assert_eq!(host_of("[fd00::1]:7443"), "fd00::1");
    }
}
