//! rustls configurations for the LXD/microcluster trust model: certificates are
//! self-signed and trusted by fingerprint, never through a CA or a host name.
//!
//! * Client side, the server is accepted only if its certificate has the pinned
//!   fingerprint ([`ServerPin::Fingerprint`]), or, while joining, whatever
//!   certificate it presents is recorded so it can be shown to the user and
//!   pinned afterwards ([`ServerPin::Capture`]). Names and SANs are not checked:
//!   peers are dialled by IP and their certificates carry no IP SANs.
//! * Server side, a client certificate is requested but optional, and any is
//!   accepted at the TLS layer; handlers authorise each request by the client's
//!   fingerprint ([`super::PeerCertificate`]).
//!
//! Either way the handshake signatures are verified, so a fingerprint is proof
//! that the other side holds the matching private key. Only TLS 1.3 is offered,
//! as LXD and microcluster require by default, and the `ring` provider is
//! passed explicitly so nothing depends on a process-wide default.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};

use super::TrustError;
use super::identity::{Fingerprint, Identity};

/// How long [`https_client`] waits for a TCP connection and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Ceiling for one request made with [`https_client`]; long waits (LXD
/// operations) stay under it, and callers may set a shorter one per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The `ring` provider, shared by every configuration built here.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    Arc::clone(&PROVIDER)
}

/// Which server certificate a client accepts.
#[derive(Clone, Debug)]
pub enum ServerPin {
    /// Only the certificate with this fingerprint.
    Fingerprint(Fingerprint),
    /// Whichever certificate the server presents first, recorded in the
    /// [`CapturedCertificate`]. Later connections made with the same
    /// configuration must present that same certificate (trust on first use).
    Capture(Arc<CapturedCertificate>),
}

/// The server certificate seen by a [`ServerPin::Capture`] client.
#[derive(Debug, Default)]
pub struct CapturedCertificate(OnceLock<(CertificateDer<'static>, Fingerprint)>);

impl CapturedCertificate {
    /// An empty slot, to be passed in [`ServerPin::Capture`].
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The certificate, once a handshake has completed with a valid signature.
    pub fn get(&self) -> Option<(CertificateDer<'static>, Fingerprint)> {
        self.0.get().cloned()
    }
}

/// A client configuration presenting `identity` (if any) and accepting only
/// the server certificate described by `pin`.
pub fn client_config(
    identity: Option<&Identity>,
    pin: ServerPin,
) -> Result<ClientConfig, TrustError> {
    client_config_with_key(identity.map(Identity::certified_key), pin)
}

/// [`client_config`] for a certificate and key that are not an [`Identity`]
/// (made with [`certified_key`]; the lab's emulator keeps its own keypairs).
pub fn client_config_with_key(
    key: Option<Arc<CertifiedKey>>,
    pin: ServerPin,
) -> Result<ClientConfig, TrustError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        pin,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TrustError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Ok(match key {
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
        None => builder.with_no_client_auth(),
    })
}

/// A server configuration presenting `identity`, asking clients for a
/// certificate without requiring one, and accepting any at the TLS layer.
pub fn server_config(identity: &Identity) -> Result<ServerConfig, TrustError> {
    server_config_with_key(identity.certified_key())
}

/// [`server_config`] for a certificate and key that are not an [`Identity`].
pub fn server_config_with_key(key: Arc<CertifiedKey>) -> Result<ServerConfig, TrustError> {
    let provider = provider();
    let verifier = Arc::new(AnyClient {
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TrustError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key))))
}

/// A certificate chain and its private key, loaded with the provider every
/// configuration here uses. Fails if the key is unsupported or does not
/// belong to the first certificate.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    CertifiedKey::from_der(chain, key, &provider()).map(Arc::new)
}

/// An HTTPS-only [`reqwest::Client`] using [`client_config`].
///
/// It never goes through an `HTTPS_PROXY` (peers are on the local network and
/// a proxy would only see an opaque tunnel), gives up connecting after 10 s,
/// and bounds a request at 10 minutes; use `RequestBuilder::timeout` for less.
pub fn https_client(
    identity: Option<&Identity>,
    pin: ServerPin,
) -> Result<reqwest::Client, TrustError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(identity, pin)?)
        .https_only(true)
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(TrustError::HttpClient)
}

/// The presented certificate is not the pinned (or previously captured) one.
/// Carried inside the rustls error, so it reaches the caller's error chain.
#[derive(Debug, thiserror::Error)]
#[error("server certificate {presented} is not the expected {expected}")]
struct FingerprintMismatch {
    expected: Fingerprint,
    presented: Fingerprint,
}

fn mismatch(expected: &Fingerprint, presented: Fingerprint) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        FingerprintMismatch {
            expected: expected.clone(),
            presented,
        },
    ))))
}

/// Accepts the server by fingerprint only.
#[derive(Debug)]
struct PinnedServer {
    pin: ServerPin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity);
        let expected = match &self.pin {
            ServerPin::Fingerprint(fingerprint) => Some(fingerprint.clone()),
            ServerPin::Capture(captured) => captured.get().map(|(_, fingerprint)| fingerprint),
        };
        match expected {
            Some(expected) if expected != presented => Err(mismatch(&expected, presented)),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)?;
        // Record only now that the server has proven it holds the key.
        if let ServerPin::Capture(captured) = &self.pin {
            let presented = Fingerprint::of_der(cert);
            let (_, first) = captured
                .0
                .get_or_init(|| (cert.clone().into_owned(), presented.clone()));
            // A concurrent handshake may have captured a different certificate.
            if *first != presented {
                return Err(mismatch(first, presented));
            }
        }
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts any client certificate (or none); authorisation is per request.
#[derive(Debug)]
struct AnyClient {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
