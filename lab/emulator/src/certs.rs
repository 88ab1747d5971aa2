//! Certificates: microcluster's self-signed member and cluster keypairs
//! (ECDSA P-384, CN and SAN = the name, trusted by sha256 fingerprint) and
//! the small CA-signed PKI MicroOVN gives OVN's databases and clients.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl Pair {
    pub fn der(&self) -> Result<CertificateDer<'static>> {
        CertificateDer::from_pem_slice(self.cert.as_bytes()).context("certificate is not PEM")
    }

    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key.as_bytes()).context("private key is not PEM")
    }

    /// The pair as the product's TLS configurations take it.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>> {
        Ok(microcloud::trust::tls::certified_key(
            vec![self.der()?],
            self.key_der()?,
        )?)
    }

    pub fn fingerprint(&self) -> Result<String> {
        Ok(fingerprint(&self.der()?))
    }

    /// Writes `<dir>/<name>.crt` and `<dir>/<name>.key` (0600).
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        crate::files::write(
            &dir.join(format!("{name}.crt")),
            self.cert.as_bytes(),
            0o644,
        )?;
        crate::files::write(&dir.join(format!("{name}.key")), self.key.as_bytes(), 0o600)
    }

    pub fn read(dir: &Path, name: &str) -> Result<Option<Pair>> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        Ok(Some(Pair {
            cert: std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key: std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?,
        }))
    }
}

/// Lowercase hex sha256 of the DER, as LXD's `CertFingerprint`.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub fn fingerprint_of_pem(pem: &str) -> Result<String> {
    Ok(fingerprint(
        &CertificateDer::from_pem_slice(pem.as_bytes()).context("certificate is not PEM")?,
    ))
}

/// The DNS names among a certificate's subject alternative names.
pub fn dns_sans(pem: &str) -> Result<Vec<String>> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).context("certificate is not PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|error| anyhow!("certificate does not parse: {error}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    Ok(names)
}

/// A member's server keypair or the cluster keypair: self-signed, CN and
/// the single DNS SAN are `name` (LXD's `KeyPairAndCA` with `CommonName`).
pub fn self_signed(name: &str, organization: &str) -> Result<Pair> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::DnsName(name.to_string().try_into()?)];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The distinguished name of the OVN CA. An issuer is rebuilt from it and
/// the stored key, so every member can sign with the one CA.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "MicroOVN (lab emulator)");
    dn.push(DnType::CommonName, "MicroOVN CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

pub fn new_ca() -> Result<Pair> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params().self_signed(&key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate signed by the CA `ca`, for both server and client use (as
/// MicroOVN issues them), with CN `common_name` and the given IP SANs.
pub fn signed_by_ca(ca: &Pair, common_name: &str, ips: &[IpAddr]) -> Result<Pair> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "MicroOVN (lab emulator)");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_certificate_names_itself() {
        let pair = self_signed("micro1", "MicroCeph").unwrap();
        assert_eq!(dns_sans(&pair.cert).unwrap(), ["micro1"]);
        let fingerprint = pair.fingerprint().unwrap();
        assert_eq!(fingerprint.len(), 64);
        assert_eq!(fingerprint_of_pem(&pair.cert).unwrap(), fingerprint);
        assert!(pair.key_der().is_ok());
    }

    #[test]
    fn ca_signed_certificates_chain_to_the_ca() {
        let ca = new_ca().unwrap();
        let leaf = signed_by_ca(&ca, "ovnnb", &["10.0.0.1".parse().unwrap()]).unwrap();
        let ca_der = ca.der().unwrap();
        let leaf_der = leaf.der().unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf_cert.issuer(), ca_cert.subject());
        assert!(ca_cert.is_ca());
        // A second leaf from a rebuilt issuer names the same CA.
        let other = signed_by_ca(&ca, "client", &[]).unwrap();
        let other_der = other.der().unwrap();
        let (_, other_cert) = x509_parser::parse_x509_certificate(&other_der).unwrap();
        assert_eq!(other_cert.issuer(), ca_cert.subject());
    }
}
