//! Who this machine is, and how machines come to trust each other.
//!
//! MicroCloud has no certificate authority. Every machine owns a self-signed
//! certificate ([`Identity`]) and is known to the others by the SHA-256
//! [`Fingerprint`] of that certificate, like LXD and microcluster. Trust is built
//! in two steps (spec `microcloud.md` §4.2):
//!
//! 1. During the trust session both sides prove they know the same passphrase
//!    by signing each request body with an Argon2id-derived HMAC ([`hmac`]).
//!    The joiner does not yet know the initiator's certificate, so it connects
//!    in [`ServerPin::Capture`] mode and learns it from the handshake.
//! 2. From then on every connection is mutual TLS pinned to fingerprints
//!    ([`client_config`], [`server_config`], [`serve_tls`]); host names and IP
//!    SANs play no part, because certificates name machines, not addresses.
//!
//! Secrets (the passphrase, private keys) are wrapped in [`Secret`] so they
//! never reach logs or error messages. All TLS uses the `ring` provider
//! explicitly; the process-wide default provider is never installed or read.

pub mod hmac;
pub mod identity;
pub mod passphrase;
pub mod secret;
pub mod serve;
pub mod tls;

use std::io;
use std::path::PathBuf;

pub use hmac::HmacError;
pub use identity::{Fingerprint, Identity, InvalidFingerprint, certificate_from_pem};
pub use secret::Secret;
pub use serve::{Limits, PeerCertificate, serve_tls};
pub use tls::{CapturedCertificate, ServerPin, client_config, https_client, server_config};

/// Why an identity could not be loaded or created, or a TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("creating directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "private key {path} is accessible by other users (mode {mode:04o}); \
         restrict it with `chmod 600 {path}`"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "certificate {cert} exists without its private key {key}; restore the key, \
         or remove the certificate to create a new identity"
    )]
    KeyMissing { cert: PathBuf, key: PathBuf },
    #[error("reading the certificate in {path}")]
    CertificateFile {
        path: PathBuf,
        #[source]
        source: CertificateError,
    },
    #[error("reading a PEM certificate")]
    Certificate(#[source] CertificateError),
    #[error("decoding private key {path}")]
    KeyPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("loading private key {key} for certificate {cert}")]
    Key {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("generating a self-signed certificate")]
    Generate(#[source] rcgen::Error),
    #[error("building the TLS configuration")]
    Tls(#[source] rustls::Error),
    #[error("building the HTTPS client")]
    HttpClient(#[source] reqwest::Error),
}

/// Why bytes that should hold a certificate do not.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("decoding PEM")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("parsing X.509")]
    X509(#[source] x509_parser::error::X509Error),
}
