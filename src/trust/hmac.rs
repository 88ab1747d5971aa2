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
//! derivation takes a noticeable time and 64 MiB of memory, so
//! [`SessionKeys`] runs it on the blocking pool, admits only a few at once (a
//! burst of forged requests cannot exhaust memory), and derives each salt's
//! key once per session.
//!
//! Both sides of a session already derive the key of the joiner's salt: the
//! joiner to sign its intent, the initiator to check it. So the initiator
//! signs its confirmation under that salt ([`SessionKeys::sign_with_salt`]),
//! and the joiner checks it with the key it kept: a confirmation costs no
//! derivation at all, where it cost two. The header is the standard one: a
//! peer that keeps no keys (upstream's daemon) checks it with a derivation of
//! its own, and a confirmation under a salt we do not know is derived as usual.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// How many Argon2 derivations run at once in this process (64 MiB each).
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

/// The salt of a signed request. Not a secret: it travels in the header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Salt(Vec<u8>);

impl Salt {
    fn fresh() -> Salt {
        Salt(rand::random::<[u8; SALT_LEN]>().to_vec())
    }

    /// A salt for tests that build session values by hand.
    #[cfg(test)]
    pub fn of(bytes: &[u8]) -> Salt {
        Salt(bytes.to_vec())
    }
}

type Key = Zeroizing<[u8; KEY_LEN]>;

/// A session's passphrase and the keys derived from it so far, by salt.
pub struct SessionKeys {
    passphrase: Secret<String>,
    params: Params,
    /// Only keys of salts this session chose or verified a request under:
    /// forged requests add nothing.
    known: Mutex<HashMap<Salt, Key>>,
    /// How many derivations ran: what the requests checked so far cost.
    #[cfg(test)]
    derived: std::sync::atomic::AtomicUsize,
}

impl SessionKeys {
    pub fn new(passphrase: Secret<String>) -> SessionKeys {
        let params = Params::new(MEMORY_KIB, PASSES, LANES, Some(KEY_LEN))
            .expect("constant Argon2 parameters are valid");
        SessionKeys::with_params(passphrase, params)
    }

    /// Cheap parameters so behaviour tests run fast; the interop test
    /// exercises the real ones.
    #[cfg(test)]
    pub(crate) fn cheap(passphrase: &str) -> SessionKeys {
        let params = Params::new(8 * LANES, 1, LANES, Some(KEY_LEN)).unwrap();
        SessionKeys::with_params(Secret::new(passphrase.to_owned()), params)
    }

    fn with_params(passphrase: Secret<String>, params: Params) -> SessionKeys {
        SessionKeys {
            passphrase,
            params,
            known: Mutex::new(HashMap::new()),
            #[cfg(test)]
            derived: Default::default(),
        }
    }

    /// How many Argon2 derivations these keys ran.
    #[cfg(test)]
    pub(crate) fn derivations(&self) -> usize {
        self.derived.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `Authorization` header value for `body`, under a fresh salt.
    pub async fn sign(&self, body: &[u8]) -> Result<String, HmacError> {
        self.sign_with_salt(&Salt::fresh(), body).await
    }

    /// The `Authorization` header value for `body` under `salt`: the salt of a
    /// request [`SessionKeys::verify`] accepted, whose key is known.
    pub async fn sign_with_salt(&self, salt: &Salt, body: &[u8]) -> Result<String, HmacError> {
        let key = match self.known_key(salt) {
            Some(key) => key,
            None => {
                let key = self.derive(salt).await?;
                self.remember(salt, &key);
                key
            }
        };
        let mac = keyed_mac(&key, body).finalize().into_bytes();
        Ok(format_header(salt, &mac))
    }

    /// Checks an `Authorization` header value against `body` in constant
    /// time; returns the salt it was made under.
    pub async fn verify(&self, header: &str, body: &[u8]) -> Result<Salt, HmacError> {
        let (salt, mac) = parse_header(header)?;
        let key = match self.known_key(&salt) {
            Some(key) => key,
            None => self.derive(&salt).await?,
        };
        keyed_mac(&key, body)
            .verify_slice(&mac)
            .map_err(|_| HmacError::Invalid)?;
        self.remember(&salt, &key);
        Ok(salt)
    }

    fn known_key(&self, salt: &Salt) -> Option<Key> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(salt)
            .cloned()
    }

    fn remember(&self, salt: &Salt, key: &Key) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(salt.clone(), key.clone());
    }

    /// Argon2id of the passphrase under `salt`, on the blocking pool.
    async fn derive(&self, salt: &Salt) -> Result<Key, HmacError> {
        #[cfg(test)]
        self.derived
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slot = KDF_SLOTS
            .acquire()
            .await
            .expect("the semaphore is static and never closed");
        let (passphrase, params, salt) =
            (self.passphrase.clone(), self.params.clone(), salt.clone());
        // The slot moves into the task: if the caller goes away, the derivation
        // still runs to the end and keeps its memory until then.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut key = Key::default();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(passphrase.expose().as_bytes(), &salt.0, key.as_mut())
                .map_err(|e| HmacError::Derive(KdfError(e)))?;
            Ok(key)
        })
        .await
        .map_err(HmacError::Task)?
    }
}

/// The `MicroCloud-1.0 <hex salt>:<hex mac>` value of `salt` and `mac`, in
/// lowercase hex.
pub fn format_header(salt: &Salt, mac: &[u8]) -> String {
    format!(
        "{AUTH_SCHEME} {}:{}",
        hex::encode(&salt.0),
        hex::encode(mac)
    )
}

/// The salt and MAC of a `MicroCloud-1.0 <hex salt>:<hex mac>` value, as
/// received from anyone who can reach the session port: only its shape is
/// checked, [`SessionKeys::verify`] checks the MAC.
pub fn parse_header(header: &str) -> Result<(Salt, Vec<u8>), HmacError> {
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
    Ok((Salt(salt), mac))
}

/// HMAC-SHA256 keyed with a derived key, fed `body`.
fn keyed_mac(key: &Key, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_ref()).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(keys: &SessionKeys) -> usize {
        keys.known.lock().unwrap().len()
    }

    #[tokio::test]
    async fn round_trip() {
        let header = SessionKeys::cheap("alpha beta gamma delta")
            .sign(b"{}")
            .await
            .unwrap();
        assert!(header.starts_with("MicroCloud-1.0 "), "{header}");
        let (salt, mac) = header["MicroCloud-1.0 ".len()..].split_once(':').unwrap();
        assert_eq!((salt.len(), mac.len()), (2 * SALT_LEN, 64));
        let other = SessionKeys::cheap("alpha beta gamma delta");
        let verified = other.verify(&header, b"{}").await.unwrap();
        assert_eq!(hex::encode(&verified.0), salt);
    }

    #[tokio::test]
    async fn wrong_passphrase_or_body_is_invalid_and_leaves_no_key() {
        let header = SessionKeys::cheap("alpha beta gamma delta")
            .sign(b"{\"a\":1}")
            .await
            .unwrap();
        let stranger = SessionKeys::cheap("alpha beta gamma epsilon");
        let wrong = stranger.verify(&header, b"{\"a\":1}").await;
        assert!(matches!(wrong, Err(HmacError::Invalid)), "{wrong:?}");
        assert_eq!(known(&stranger), 0, "a forged request must not add a key");
        let peer = SessionKeys::cheap("alpha beta gamma delta");
        let tampered = peer.verify(&header, b"{\"a\":2}").await;
        assert!(matches!(tampered, Err(HmacError::Invalid)), "{tampered:?}");
        assert_eq!(tampered.unwrap_err().to_string(), "Invalid HMAC");
        assert_eq!(known(&peer), 0);
    }

    /// The confirmation is signed under the joiner's salt; both sides reuse
    /// the key they derived for the joiner's intent, and a peer that keeps no
    /// keys (upstream's daemon) still accepts the header.
    #[tokio::test]
    async fn a_reply_under_the_requests_salt_needs_no_derivation_and_checks_anywhere() {
        let joiner = SessionKeys::cheap("alpha beta gamma delta");
        let initiator = SessionKeys::cheap("alpha beta gamma delta");
        let intent = joiner.sign(b"joiner's intent").await.unwrap();
        let salt = initiator.verify(&intent, b"joiner's intent").await.unwrap();
        let confirmation = initiator
            .sign_with_salt(&salt, b"initiator's intent")
            .await
            .unwrap();
        assert_eq!(known(&initiator), 1, "no second key for the reply");
        assert_eq!(
            joiner
                .verify(&confirmation, b"initiator's intent")
                .await
                .unwrap(),
            salt
        );
        assert_eq!(known(&joiner), 1, "checked with the key it kept");
        let keeps_nothing = SessionKeys::cheap("alpha beta gamma delta");
        keeps_nothing
            .verify(&confirmation, b"initiator's intent")
            .await
            .unwrap();
        // A known salt does not make another body pass.
        let forged = joiner.verify(&confirmation, b"another intent").await;
        assert!(matches!(forged, Err(HmacError::Invalid)), "{forged:?}");
    }

    #[tokio::test]
    async fn malformed_headers() {
        let salt = "00".repeat(SALT_LEN);
        let mac = "00".repeat(32);
        let keys = SessionKeys::cheap("p");
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
            let result = keys.verify(&header, b"").await;
            assert!(
                matches!(result, Err(HmacError::Malformed(_))),
                "{header}: {result:?}"
            );
        }
    }

    #[test]
    fn a_parsed_header_formats_back_in_lowercase() {
        let header = "MicroCloud-1.0 00010203040506070809AbCd:FF00";
        let (salt, mac) = parse_header(header).unwrap();
        assert_eq!(salt, Salt::of(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xab, 0xcd]));
        assert_eq!(mac, [0xff, 0]);
        assert_eq!(
            format_header(&salt, &mac),
            "MicroCloud-1.0 00010203040506070809abcd:ff00"
        );
    }

    #[tokio::test]
    async fn errors_never_contain_the_passphrase() {
        let header = SessionKeys::cheap("hunter2").sign(b"x").await.unwrap();
        let err = SessionKeys::cheap("secret words")
            .verify(&header, b"x")
            .await
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret words"));
    }

    /// Vector from the reference Argon2 implementation (libargon2, which Go's
    /// `x/crypto/argon2` matches) with LXD's parameters, and HMAC-SHA256.
    /// One derivation at full cost: about 2 s in a debug build.
    #[tokio::test]
    async fn interop_vector_with_real_parameters() {
        let keys = SessionKeys::new(Secret::new("tofu quiver ample relic".to_owned()));
        let body = br#"{"name":"micro2","version":"2.1.0"}"#;
        let header = "MicroCloud-1.0 000102030405060708090a0b0c0d0e0f:\
                      33c275ae89301c53dcacfbed2cb226daa1824025cc83cba67beb21d50957f1ce";
        keys.verify(header, body).await.unwrap();
        // Signed again under that salt, with the key kept: the same header.
        let salt = Salt::of(&(0u8..16).collect::<Vec<_>>());
        assert_eq!(keys.sign_with_salt(&salt, body).await.unwrap(), header);
    }
}
