//! Passphrase-derived request authentication for the trust session.
//!
//! Before two machines trust each other's certificates, each proves it knows
//! the session passphrase by signing the exact request body. The scheme is
//! LXD's `shared/trust` `HMACArgon2`, so a Go MicroCloud peer can check our
//! requests and we can check its:
//!
//! ```text
//! key    = Argon2id(passphrase, 16-byte random salt, t=3, m=64 MiB, p=4, 32 bytes)
//! mac    = HMAC-SHA256(key, body)
//! header = "MicroCloud-1.0 <hex salt>:<hex mac>"
//! ```
//!
//! The passphrase has only about 41 bits of entropy, so the expensive Argon2
//! step is what makes guessing it from an intercepted request impractical. The
//! cost is deliberate and must not be lowered (interop). It also means a
//! derivation takes a noticeable time and 64 MiB of memory: async callers use
//! [`sign_async`] and [`verify_async`], which run it on the blocking pool and
//! admit only a few derivations at once, so a burst of forged requests cannot
//! exhaust memory.

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::secret::Secret;

/// The scheme (LXD calls it the HMAC version) at the start of the header value.
pub const AUTH_SCHEME: &str = "MicroCloud-1.0";

/// Salt length for headers we sign (Go: 128 bits).
const SALT_LEN: usize = 16;
/// Argon2id parameters fixed by LXD `shared/trust`: 64 MiB, 3 passes, 4 lanes.
const MEMORY_KIB: u32 = 64 * 1024;
const PASSES: u32 = 3;
const LANES: u32 = 4;
const KEY_LEN: usize = 32;

/// How many Argon2 derivations the async wrappers run at once (64 MiB each).
static KDF_SLOTS: Semaphore = Semaphore::const_new(2);

/// Why a request's `Authorization` header was not accepted, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HmacError {
    /// Well-formed, but not made with this passphrase over this body.
    #[error("Invalid HMAC")]
    Invalid,
    /// Not a `MicroCloud-1.0 <hex salt>:<hex mac>` value.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("deriving the HMAC key from the passphrase")]
    Derive(#[source] KdfError),
    #[error("running the passphrase key derivation")]
    Task(#[source] tokio::task::JoinError),
}

/// An Argon2 failure; wraps `argon2::Error`, which (without argon2's `std`
/// feature) does not implement `std::error::Error` itself.
#[derive(Debug)]
pub struct KdfError(argon2::Error);

impl std::fmt::Display for KdfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for KdfError {}

/// Returns the `Authorization` header value for `body`, with a fresh salt.
/// Slow (Argon2); prefer [`sign_async`] on async threads.
pub fn sign(passphrase: &Secret<String>, body: &[u8]) -> Result<String, HmacError> {
    sign_with(&interop_params(), passphrase, body)
}

/// Checks an `Authorization` header value against `body` in constant time.
/// Slow (Argon2); prefer [`verify_async`] on async threads.
pub fn verify(passphrase: &Secret<String>, header: &str, body: &[u8]) -> Result<(), HmacError> {
    verify_with(&interop_params(), passphrase, header, body)
}

/// [`sign`] on the blocking thread pool.
pub async fn sign_async(passphrase: &Secret<String>, body: &[u8]) -> Result<String, HmacError> {
    let (passphrase, body) = (passphrase.clone(), body.to_vec());
    on_blocking_pool(move || sign(&passphrase, &body)).await
}

/// [`verify`] on the blocking thread pool.
pub async fn verify_async(
    passphrase: &Secret<String>,
    header: &str,
    body: &[u8],
) -> Result<(), HmacError> {
    let (passphrase, header, body) = (passphrase.clone(), header.to_owned(), body.to_vec());
    on_blocking_pool(move || verify(&passphrase, &header, &body)).await
}

async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HmacError> + Send + 'static,
) -> Result<T, HmacError> {
    let slot = KDF_SLOTS
        .acquire()
        .await
        .expect("the semaphore is static and never closed");
    // The slot moves into the task: if the caller goes away, the derivation
    // still runs to the end and keeps its memory until then.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(HmacError::Task)?
}

fn interop_params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, Some(KEY_LEN))
        .expect("constant Argon2 parameters are valid")
}

fn sign_with(
    params: &Params,
    passphrase: &Secret<String>,
    body: &[u8],
) -> Result<String, HmacError> {
    let salt: [u8; SALT_LEN] = rand::random();
    let mac = keyed_mac(params, passphrase, &salt, body)?
        .finalize()
        .into_bytes();
    Ok(format!(
        "{AUTH_SCHEME} {}:{}",
        hex::encode(salt),
        hex::encode(mac)
    ))
}

fn verify_with(
    params: &Params,
    passphrase: &Secret<String>,
    header: &str,
    body: &[u8],
) -> Result<(), HmacError> {
    let (scheme, value) = header
        .split_once(' ')
        .ok_or(HmacError::Malformed("expected \"<scheme> <salt>:<hmac>\""))?;
    if scheme != AUTH_SCHEME {
        return Err(HmacError::Malformed(
            "unsupported scheme, expected MicroCloud-1.0",
        ));
    }
    let (salt, mac) = value
        .split_once(':')
        .ok_or(HmacError::Malformed("salt or HMAC is missing"))?;
    let salt = hex::decode(salt).map_err(|_| HmacError::Malformed("salt is not hexadecimal"))?;
    let mac = hex::decode(mac).map_err(|_| HmacError::Malformed("HMAC is not hexadecimal"))?;
    if salt.len() < argon2::MIN_SALT_LEN {
        // Go accepts any non-empty salt, but Argon2 itself needs 8 bytes.
        return Err(HmacError::Malformed("salt is shorter than 8 bytes"));
    }
    if mac.is_empty() {
        return Err(HmacError::Malformed("HMAC is empty"));
    }
    keyed_mac(params, passphrase, &salt, body)?
        .verify_slice(&mac)
        .map_err(|_| HmacError::Invalid)
}

/// HMAC-SHA256 keyed with the Argon2id derivation of `passphrase`, fed `body`.
fn keyed_mac(
    params: &Params,
    passphrase: &Secret<String>,
    salt: &[u8],
    body: &[u8],
) -> Result<Hmac<Sha256>, HmacError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into(passphrase.expose().as_bytes(), salt, key.as_mut())
        .map_err(|e| HmacError::Derive(KdfError(e)))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_ref()).expect("HMAC accepts keys of any length");
    mac.update(body);
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the behaviour tests run fast; the interop test below
    /// exercises the real ones once.
    fn cheap() -> Params {
        Params::new(8 * LANES, 1, LANES, Some(KEY_LEN)).unwrap()
    }

    fn pass(s: &str) -> Secret<String> {
        Secret::new(s.to_owned())
    }

    #[test]
    fn round_trip() {
        let header = sign_with(&cheap(), &pass("alpha beta gamma delta"), b"{}").unwrap();
        assert!(header.starts_with("MicroCloud-1.0 "), "{header}");
        let (salt, mac) = header["MicroCloud-1.0 ".len()..].split_once(':').unwrap();
        assert_eq!((salt.len(), mac.len()), (2 * SALT_LEN, 64));
        verify_with(&cheap(), &pass("alpha beta gamma delta"), &header, b"{}").unwrap();
    }

    #[test]
    fn wrong_passphrase_or_body_is_invalid() {
        let header = sign_with(&cheap(), &pass("alpha beta gamma delta"), b"{\"a\":1}").unwrap();
        let wrong = verify_with(
            &cheap(),
            &pass("alpha beta gamma epsilon"),
            &header,
            b"{\"a\":1}",
        );
        assert!(matches!(wrong, Err(HmacError::Invalid)), "{wrong:?}");
        let tampered = verify_with(
            &cheap(),
            &pass("alpha beta gamma delta"),
            &header,
            b"{\"a\":2}",
        );
        assert!(matches!(tampered, Err(HmacError::Invalid)), "{tampered:?}");
        assert_eq!(tampered.unwrap_err().to_string(), "Invalid HMAC");
    }

    #[test]
    fn malformed_headers() {
        let salt = "00".repeat(SALT_LEN);
        let mac = "00".repeat(32);
        for header in [
            String::new(),
            format!("MicroCloud-1.0{salt}:{mac}"),
            format!("LXD1.0 {salt}:{mac}"),
            format!("MicroCloud-1.0 {salt}{mac}"),
            format!("MicroCloud-1.0 zz:{mac}"),
            format!("MicroCloud-1.0 {salt}:xyz"),
            format!("MicroCloud-1.0 {salt}:"),
            format!("MicroCloud-1.0 0011:{mac}"),
        ] {
            let result = verify_with(&cheap(), &pass("p"), &header, b"");
            assert!(
                matches!(result, Err(HmacError::Malformed(_))),
                "{header}: {result:?}"
            );
        }
    }

    #[test]
    fn errors_never_contain_the_passphrase() {
        let header = sign_with(&cheap(), &pass("hunter2"), b"x").unwrap();
        let err = verify_with(&cheap(), &pass("secret words"), &header, b"x").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret words"));
    }

    /// Vector from the reference Argon2 implementation (libargon2, which Go's
    /// `x/crypto/argon2` matches) with LXD's parameters, and HMAC-SHA256.
    /// One derivation at full cost: about 2 s in a debug build.
    #[tokio::test]
    async fn interop_vector_with_real_parameters() {
        let passphrase = pass("tofu quiver ample relic");
        let body = br#"{"name":"micro2","version":"2.1.0"}"#;
        let header = "MicroCloud-1.0 000102030405060708090a0b0c0d0e0f:\
                      33c275ae89301c53dcacfbed2cb226daa1824025cc83cba67beb21d50957f1ce";
        verify_async(&passphrase, header, body).await.unwrap();
    }
}
