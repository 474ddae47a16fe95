//! A certificate and its key as PEM, as the kubelet keeps them (one file holding the chain and
//! the key), and what podvisor reads off the certificate: its validity, its subject and the
//! names it carries. No IO besides reading the file it is given.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::rotation::Lifetime;
use crate::clock::Timestamp;

/// What a certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Validity.
    pub lifetime: Lifetime,
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: BTreeSet<String>,
    /// DNS names (subjectAltName).
    pub dns_names: BTreeSet<String>,
    /// IP addresses (subjectAltName).
    pub ips: BTreeSet<IpAddr>,
}

/// A certificate chain with its private key, both as PEM, checked to belong together.
#[derive(Clone)]
pub struct Pair {
    /// The chain, leaf first, as PEM.
    pub cert_pem: String,
    /// The key, as PEM.
    pub key_pem: String,
    /// The leaf's facts.
    pub facts: Facts,
    /// The chain and key ready for a TLS server.
    pub certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

fn timestamp(t: x509_parser::time::ASN1Time) -> Timestamp {
    Timestamp(t.timestamp().saturating_mul(1_000_000_000))
}

/// The facts of a DER certificate.
pub fn facts(der: &[u8]) -> Result<Facts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let validity = cert.validity();
    let subject = cert.subject();
    let text =
        |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_owned);
    let mut facts = Facts {
        lifetime: Lifetime {
            not_before: timestamp(validity.not_before),
            not_after: timestamp(validity.not_after),
        },
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(text)
            .unwrap_or_default(),
        organizations: subject.iter_organization().filter_map(text).collect(),
        dns_names: BTreeSet::new(),
        ips: BTreeSet::new(),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    facts.dns_names.insert((*d).to_owned());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    facts.ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    Ok(facts)
}

/// The certificates of a PEM text, leaf first.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(certs)
}

/// The PEM blocks of `text` whose label passes `keep`, in order.
fn blocks(text: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            inside = keep(label);
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END ") {
            inside = false;
        }
    }
    out
}

impl Pair {
    /// A pair from the certificate PEM and the key PEM, refused when either does not parse
    /// or the key is not the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Pair, String> {
        let chain = certificates(cert_pem.as_bytes())?;
        let facts = facts(chain[0].as_ref())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("private key: {e}"))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| e.to_string())?;
        Ok(Pair {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            facts,
            certified: Arc::new(certified),
        })
    }

    /// A pair from one file holding both (the kubelet's `kubelet-client-current.pem`).
    pub fn read(path: &Path) -> Result<Pair, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Pair::from_pem(
            &blocks(&text, |label| label == "CERTIFICATE"),
            &blocks(&text, |label| label.ends_with("PRIVATE KEY")),
        )
    }

    /// The pair as one file: the chain, then the key.
    pub fn combined_pem(&self) -> String {
        let mut out = self.cert_pem.trim_end().to_owned();
        out.push('\n');
        out.push_str(self.key_pem.trim_end());
        out.push('\n');
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A certificate for `cn` and `names` valid from `not_before` to `not_after` (Unix
    /// seconds), signed by a throwaway CA, and its key.
    pub(crate) fn issue(
        cn: &str,
        names: &[&str],
        not_before: i64,
        not_after: i64,
    ) -> (String, String) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params.not_before = time_at(not_before).into();
        params.not_after = time_at(not_after).into();
        let cert = params.signed_by(&key, &ca).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    fn time_at(unix: i64) -> std::time::SystemTime {
        let secs = std::time::Duration::from_secs(unix.unsigned_abs());
        std::time::UNIX_EPOCH + secs
    }

    #[test]
    fn a_pair_reads_its_validity_subject_and_names() {
        let (cert, key) = issue(
            "system:node:n1",
            &["n1", "192.0.2.7"],
            1_700_000_000,
            1_700_003_600,
        );
        let pair = Pair::from_pem(&cert, &key).expect("pair");
        assert_eq!(pair.facts.common_name, "system:node:n1");
        assert_eq!(
            pair.facts.organizations,
            BTreeSet::from(["system:nodes".to_owned()])
        );
        assert_eq!(pair.facts.dns_names, BTreeSet::from(["n1".to_owned()]));
        assert_eq!(
            pair.facts.ips,
            BTreeSet::from(["192.0.2.7".parse::<IpAddr>().expect("ip")])
        );
        assert_eq!(
            pair.facts.lifetime,
            Lifetime {
                not_before: Timestamp(1_700_000_000_000_000_000),
                not_after: Timestamp(1_700_003_600_000_000_000),
            }
        );
        let again = Pair::from_pem(&pair.combined_pem(), &pair.combined_pem()).expect("one file");
        assert_eq!(again.facts, pair.facts);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (cert, _) = issue("a", &[], 1_700_000_000, 1_700_003_600);
        let (_, other_key) = issue("b", &[], 1_700_000_000, 1_700_003_600);
        let err = Pair::from_pem(&cert, &other_key).expect_err("mismatch");
        assert!(err.contains("key"), "{err}");
        assert!(Pair::from_pem("", &other_key).is_err());
    }
}
