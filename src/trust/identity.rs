//! This machine's identity: a self-signed certificate, its private key, and
//! the fingerprint peers know it by.
//!
//! The identity is created once and then reused for the life of the machine:
//! peers remember the fingerprint, so regenerating it would silently break
//! trust. That is why creation is atomic (a crash never leaves a half-written
//! file that a later run would mistake for a valid one) and why a key file
//! that other users can read is refused rather than "fixed": it may already
//! have leaked, and the operator should decide.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::secret::Secret;
use super::tls::certified_key;
use super::{CertificateError, TrustError};
use crate::files::Existing;

/// File names inside the identity directory (the names LXD and microcluster use).
const CERT_FILE: &str = "server.crt";
const KEY_FILE: &str = "server.key";

/// How long a new certificate is valid; peers pin it, so it should outlive the cluster.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Lowercase hex SHA-256 of a certificate's DER bytes, as LXD and microcluster
/// compute it. This, not a name or an address, is what a peer is trusted by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

/// Length of [`Fingerprint::short`], what humans compare on both screens.
const SHORT_LEN: usize = 12;

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(hex::encode(Sha256::digest(der)))
    }

    /// The full 64-character hex form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, shown to humans to cross-check.
    pub fn short(&self) -> &str {
        &self.0[..SHORT_LEN]
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not 64 hexadecimal characters.
#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 fingerprint (expected 64 hexadecimal characters)")]
pub struct InvalidFingerprint;

/// Accepts either case (fingerprints get copied by hand) and stores lowercase,
/// so that equality is plain string equality.
impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Fingerprint(s.to_ascii_lowercase()))
        } else {
            Err(InvalidFingerprint)
        }
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = InvalidFingerprint;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(fingerprint: Fingerprint) -> String {
        fingerprint.0
    }
}

/// Decodes the first certificate in `pem` (for example a joiner's certificate
/// from its join intent) and checks that it is well-formed X.509.
pub fn certificate_from_pem(
    pem: &str,
) -> Result<(CertificateDer<'static>, Fingerprint), TrustError> {
    parse_certificate(pem).map_err(TrustError::Certificate)
}

fn parse_certificate(
    pem: &str,
) -> Result<(CertificateDer<'static>, Fingerprint), CertificateError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(CertificateError::Pem)?;
    x509_parser::parse_x509_certificate(&der).map_err(|e| {
        CertificateError::X509(match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => {
                x509_parser::error::X509Error::InvalidCertificate
            }
        })
    })?;
    let fingerprint = Fingerprint::of_der(&der);
    Ok((der, fingerprint))
}

/// This machine's certificate and private key.
///
/// The key is parsed once into the TLS provider's signing key; the raw key
/// bytes are wiped as soon as that is done.
pub struct Identity {
    name: String,
    cert_pem: String,
    fingerprint: Fingerprint,
    certified: Arc<CertifiedKey>,
}

impl Identity {
    /// Loads `<dir>/server.crt` and `<dir>/server.key`, or creates them once
    /// (ECDSA P-384, self-signed, CN and DNS SAN = `name`, valid 10 years).
    ///
    /// The directory is created with mode 0700 and the key written with mode
    /// 0600, each file atomically. An existing key readable by group or others
    /// is an error. An existing identity is kept even if `name` has changed
    /// since: peers know it by fingerprint, not by name.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Identity, TrustError> {
        let cert = dir.join(CERT_FILE);
        let key = dir.join(KEY_FILE);
        let exists = |path: &Path| {
            path.try_exists().map_err(|source| TrustError::Read {
                path: path.to_owned(),
                source,
            })
        };
        match (exists(&cert)?, exists(&key)?) {
            (true, true) => {}
            (true, false) => return Err(TrustError::KeyMissing { cert, key }),
            // The key is written first, so a key alone is an interrupted creation.
            (false, _) => create(dir, &cert, &key, name)?,
        }
        load(&cert, &key, name)
    }

    /// The machine name this identity was loaded for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate in PEM form, as sent to peers in a join intent.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate in DER form.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.certified.cert[0]
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Certificate plus signing key, ready for a rustls resolver.
    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn load(cert_path: &Path, key_path: &Path, name: &str) -> Result<Identity, TrustError> {
    let mode = fs::metadata(key_path)
        .map_err(|source| TrustError::Read {
            path: key_path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TrustError::KeyPermissions {
            path: key_path.to_owned(),
            mode: mode & 0o7777,
        });
    }

    let cert_pem = fs::read_to_string(cert_path).map_err(|source| TrustError::Read {
        path: cert_path.to_owned(),
        source,
    })?;
    let (cert_der, fingerprint) =
        parse_certificate(&cert_pem).map_err(|source| TrustError::CertificateFile {
            path: cert_path.to_owned(),
            source,
        })?;

    let key_pem = Secret::new(fs::read(key_path).map_err(|source| TrustError::Read {
        path: key_path.to_owned(),
        source,
    })?);
    let key_der =
        PrivateKeyDer::from_pem_slice(key_pem.expose()).map_err(|source| TrustError::KeyPem {
            path: key_path.to_owned(),
            source,
        })?;
    // Also checks that the key belongs to the certificate.
    let certified = certified_key(vec![cert_der], key_der).map_err(|source| TrustError::Key {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })?;

    Ok(Identity {
        name: name.to_owned(),
        cert_pem,
        fingerprint,
        certified,
    })
}

fn create(dir: &Path, cert_path: &Path, key_path: &Path, name: &str) -> Result<(), TrustError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TrustError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;

    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .map_err(TrustError::Generate)?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(TrustError::Generate)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + VALIDITY).into();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    // One certificate serves both directions of mutual TLS.
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .self_signed(&key_pair)
        .map_err(TrustError::Generate)?;

    let key_pem = Secret::new(key_pair.serialize_pem());
    write_atomically(key_path, key_pem.expose().as_bytes(), 0o600)?;
    write_atomically(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(
        path = %cert_path.display(),
        fingerprint = %Fingerprint::of_der(cert.der()),
        "created a new machine identity"
    );
    Ok(())
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TrustError> {
    crate::files::write_atomic(path, contents, mode, Existing::Replace).map_err(|source| {
        TrustError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_once_then_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/identity");
        let first = Identity::load_or_create(&dir, "micro1").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(first.name(), "micro1");
        assert_eq!(first.fingerprint(), &Fingerprint::of_der(first.cert_der()));

        let again = Identity::load_or_create(&dir, "micro1").unwrap();
        assert_eq!(again.fingerprint(), first.fingerprint());
        assert_eq!(again.cert_pem(), first.cert_pem());

        // Only the two files remain: no temporary files left behind.
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, [CERT_FILE, KEY_FILE]);
    }

    #[test]
    fn certificate_names_the_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(tmp.path(), "micro1").unwrap();
        let (der, fingerprint) = certificate_from_pem(identity.cert_pem()).unwrap();
        assert_eq!(&fingerprint, identity.fingerprint());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "micro1");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            [x509_parser::extensions::GeneralName::DNSName("micro1")]
        );
        let validity = cert.validity().time_to_expiration().unwrap();
        assert!(validity > Duration::from_secs(9 * 365 * 24 * 3600));
    }

    #[test]
    fn loose_key_permissions_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        Identity::load_or_create(tmp.path(), "micro1").unwrap();
        let key = tmp.path().join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load_or_create(tmp.path(), "micro1").unwrap_err();
        assert!(matches!(
            err,
            TrustError::KeyPermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn certificate_without_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(tmp.path(), "micro1").unwrap();
        fs::remove_file(tmp.path().join(KEY_FILE)).unwrap();
        let err = Identity::load_or_create(tmp.path(), "micro1").unwrap_err();
        assert!(matches!(err, TrustError::KeyMissing { .. }), "{err}");

        // A key without a certificate is an interrupted creation: start over.
        fs::remove_file(tmp.path().join(CERT_FILE)).unwrap();
        fs::write(tmp.path().join(KEY_FILE), "partial").unwrap();
        let second = Identity::load_or_create(tmp.path(), "micro1").unwrap();
        assert_ne!(second.fingerprint(), first.fingerprint());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Identity::load_or_create(a.path(), "a").unwrap();
        Identity::load_or_create(b.path(), "b").unwrap();
        fs::copy(b.path().join(KEY_FILE), a.path().join(KEY_FILE)).unwrap();
        let err = Identity::load_or_create(a.path(), "a").unwrap_err();
        assert!(matches!(err, TrustError::Key { .. }), "{err}");
    }

    #[test]
    fn fingerprint_parsing_and_serde() {
        let fp = Fingerprint::of_der(b"not really a certificate");
        assert_eq!(fp.as_str().len(), 64);
        assert_eq!(fp.short(), &fp.as_str()[..12]);
        assert_eq!(
            fp.as_str().to_uppercase().parse::<Fingerprint>().unwrap(),
            fp
        );
        assert!("abc".parse::<Fingerprint>().is_err());

        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"{fp}\""));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        assert!(serde_json::from_str::<Fingerprint>("\"zz\"").is_err());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(certificate_from_pem("hello").is_err());
        let bogus = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        let err = certificate_from_pem(bogus).unwrap_err();
        assert!(
            matches!(err, TrustError::Certificate(CertificateError::X509(_))),
            "{err}"
        );
    }
}
