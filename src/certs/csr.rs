//! What podvisor asks the API server to sign, as the kubelet asks it: an ECDSA P-256 key, a
//! PKCS #10 request for `CN=system:node:<name>, O=system:nodes` (with the node's names for a
//! serving certificate), the key usages for that key type, and the signer. Pure apart from
//! drawing the key.

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine;
use rcgen::{KeyPair, PublicKeyData};
use sha2::Digest;

use super::Kind;
use super::pair::Facts;

/// What a certificate is requested for: its subject and names (client-go's template).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// `CN`.
    pub common_name: String,
    /// `O`.
    pub organizations: Vec<String>,
    /// DNS subjectAltNames.
    pub dns_names: BTreeSet<String>,
    /// IP subjectAltNames.
    pub ips: BTreeSet<IpAddr>,
}

/// The Kubernetes group of nodes.
pub const NODES_GROUP: &str = "system:nodes";

impl Template {
    /// The client certificate of node `node`.
    pub fn client(node: &str) -> Template {
        Template {
            common_name: format!("system:node:{node}"),
            organizations: vec![NODES_GROUP.to_owned()],
            dns_names: BTreeSet::new(),
            ips: BTreeSet::new(),
        }
    }

    /// The serving certificate of node `node` for its host names and addresses; `None`
    /// without an IP address, which the kubelet will not request without either (its
    /// `AllowDNSOnlyNodeCSR` gate is off by default).
    pub fn serving(node: &str, hostnames: &[String], ips: &[IpAddr]) -> Option<Template> {
        if ips.is_empty() {
            return None;
        }
        Some(Template {
            dns_names: hostnames
                .iter()
                .filter(|h| !h.is_empty())
                .cloned()
                .collect(),
            ips: ips.iter().copied().collect(),
            ..Template::client(node)
        })
    }

    /// Whether a certificate has everything this asks for (extra names do not matter), as
    /// client-go's `certSatisfiesTemplate` judges.
    pub fn satisfied_by(&self, facts: &Facts) -> bool {
        facts.common_name == self.common_name
            && self.dns_names.is_subset(&facts.dns_names)
            && self.ips.is_subset(&facts.ips)
            && self
                .organizations
                .iter()
                .all(|o| facts.organizations.contains(o))
    }
}

/// The key usages requested with an ECDSA key (the kubelet adds `key encipherment` for RSA
/// keys only; podvisor's keys are never RSA).
pub fn usages(kind: Kind) -> [&'static str; 2] {
    match kind {
        Kind::Client => ["digital signature", "client auth"],
        Kind::Serving => ["digital signature", "server auth"],
    }
}

/// A new ECDSA P-256 key, as client-go generates for every request.
pub fn new_key() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
}

/// The PEM request for `template`, signed with `key`.
pub fn request(template: &Template, key: &KeyPair) -> Result<String, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for o in &template.organizations {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, o.as_str());
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, template.common_name.as_str());
    let mut sans = Vec::new();
    for d in &template.dns_names {
        sans.push(rcgen::SanType::DnsName(d.as_str().try_into()?));
    }
    sans.extend(template.ips.iter().copied().map(rcgen::SanType::IpAddress));
    params.subject_alt_names = sans;
    params.serialize_request(key)?.pem()
}

/// The name the kubelet gives its bootstrap request: `node-csr-` and a digest of the public
/// key, subject and usages, so that a restarted bootstrap finds its own pending request
/// again rather than filing another (kubelet `digestedName`).
pub fn digested_name(key: &KeyPair, template: &Template, usages: &[&str]) -> String {
    let encode = |data: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
    let mut hash = sha2::Sha512_256::new();
    let mut write = |data: &[u8]| {
        hash.update(encode(data).as_bytes());
        hash.update(b"|");
    };
    write(&key.subject_public_key_info());
    write(template.common_name.as_bytes());
    for o in &template.organizations {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", encode(&hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::rotation::Lifetime;
    use crate::clock::Timestamp;
    use rustls::pki_types::CertificateSigningRequestDer;
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;

    fn parse(pem: &str) -> (String, Vec<String>, usize) {
        let der =
            CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).expect("PEM request");
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
            .expect("a PKCS #10 request");
        let info = &csr.certification_request_info;
        let cn = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let orgs = info
            .subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        let sans = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter(|e| {
                matches!(
                    e,
                    x509_parser::extensions::ParsedExtension::SubjectAlternativeName(_)
                )
            })
            .count();
        (cn, orgs, sans)
    }

    #[test]
    fn a_client_request_names_the_node_in_system_nodes_without_alt_names() {
        let key = new_key().expect("key");
        let pem = request(&Template::client("n1"), &key).expect("request");
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        let (cn, orgs, sans) = parse(&pem);
        assert_eq!(cn, "system:node:n1");
        assert_eq!(orgs, ["system:nodes"]);
        assert_eq!(
            sans, 0,
            "the API server refuses names in a kubelet client request"
        );
        assert_eq!(usages(Kind::Client), ["digital signature", "client auth"]);
    }

    #[test]
    fn a_serving_request_carries_the_node_names_and_needs_an_address() {
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(Template::serving("n1", &["n1".into()], &[]), None);
        let t = Template::serving("n1", &["n1".into()], &[ip]).expect("has an IP");
        let key = new_key().expect("key");
        let (cn, _, sans) = parse(&request(&t, &key).expect("request"));
        assert_eq!((cn.as_str(), sans), ("system:node:n1", 1));
        assert_eq!(usages(Kind::Serving), ["digital signature", "server auth"]);
    }

    #[test]
    fn a_certificate_satisfies_a_template_when_it_has_at_least_its_names() {
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let t = Template::serving("n1", &["n1".into()], &[ip]).expect("template");
        let mut facts = Facts {
            lifetime: Lifetime {
                not_before: Timestamp(0),
                not_after: Timestamp(1),
            },
            common_name: "system:node:n1".into(),
            organizations: ["system:nodes".to_owned()].into(),
            dns_names: ["n1".to_owned(), "extra".to_owned()].into(),
            ips: [ip].into(),
        };
        assert!(t.satisfied_by(&facts));
        facts.ips.clear();
        assert!(!t.satisfied_by(&facts), "the address changed");
        assert!(!Template::client("n2").satisfied_by(&facts), "another node");
    }

    #[test]
    fn the_bootstrap_name_is_stable_for_one_key_and_differs_between_keys() {
        let t = Template::client("n1");
        let u = usages(Kind::Client);
        let key = new_key().expect("key");
        let name = digested_name(&key, &t, &u);
        assert!(name.starts_with("node-csr-"), "{name}");
        assert_eq!(name.len(), "node-csr-".len() + 43, "{name}");
        assert_eq!(digested_name(&key, &t, &u), name);
        assert_ne!(digested_name(&new_key().expect("key"), &t, &u), name);
    }
}
