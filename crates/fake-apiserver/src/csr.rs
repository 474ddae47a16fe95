//! CertificateSigningRequests: what the approver and signer controllers of a real cluster
//! do, done here by the test, by hand ([`super::FakeApiServer::approve_csr`],
//! [`super::FakeApiServer::issue_csr`], [`super::FakeApiServer::deny_csr`]) or at once on
//! creation ([`super::FakeApiServer::set_csr_signer`]), and a [`TestCa`] to sign with.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::resource::Resource;
use super::store::Store;

/// Decides a new request: `Some(certificate PEM)` approves and issues it at once, `None`
/// leaves it pending. Runs under the fake's lock: it must not call the fake.
pub type CsrSigner = dyn Fn(&CertificateSigningRequest) -> Option<String> + Send + Sync;

/// The signer set on the fake, if any.
#[derive(Clone, Default)]
pub(super) struct Signer(pub(super) Option<Arc<CsrSigner>>);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Signer(set)"
        } else {
            "Signer(none)"
        })
    }
}

fn condition(type_: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Changes a stored request as the controllers would: a condition added, the certificate set.
pub(super) fn decide(
    store: &mut Store,
    name: &str,
    add: Option<CertificateSigningRequestCondition>,
    certificate: Option<&str>,
) -> bool {
    let Some(mut csr) = store.typed::<CertificateSigningRequest>(Resource::Csrs, "", name) else {
        return false;
    };
    let status = csr.status.get_or_insert_with(Default::default);
    if let Some(c) = add {
        status.conditions.get_or_insert_with(Vec::new).push(c);
    }
    if let Some(pem) = certificate {
        status.certificate = Some(ByteString(pem.as_bytes().to_vec()));
    }
    let value = serde_json::to_value(&csr).unwrap_or(Value::Null);
    store.upsert(Resource::Csrs, value).is_ok()
}

/// The approval an auto-approver adds (the csrapproving controller's reason).
pub(super) fn approved() -> CertificateSigningRequestCondition {
    condition(
        "Approved",
        "AutoApproved",
        "Auto approving kubelet client certificate after SubjectAccessReview.",
    )
}

/// A denial with `reason` and `message`.
pub(super) fn denied(reason: &str, message: &str) -> CertificateSigningRequestCondition {
    condition("Denied", reason, message)
}

/// Signs a request that was just created, when a signer is set.
pub(super) fn on_create(store: &mut Store, signer: &Signer, created: &Value) {
    let Some(sign) = &signer.0 else {
        return;
    };
    let Ok(csr) = serde_json::from_value::<CertificateSigningRequest>(created.clone()) else {
        return;
    };
    let name = csr.metadata.name.clone().unwrap_or_default();
    if let Some(pem) = sign(&csr) {
        decide(store, &name, Some(approved()), Some(&pem));
    }
}

/// A certificate authority for tests: the cluster CA a kube-controller-manager signs with.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

impl TestCa {
    /// A new CA, `CN=kubernetes`, valid for ten years.
    ///
    /// # Panics
    /// When rcgen cannot make a key, which would be a bug.
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kubernetes");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Signs a PEM request for the period `from` to `to`, with the usages of a kubelet's
    /// client (`server` false) or serving certificate; `None` for a request that does not
    /// parse or verify.
    pub fn sign(
        &self,
        csr_pem: &str,
        server: bool,
        from: SystemTime,
        to: SystemTime,
    ) -> Option<String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).ok()?;
        csr.params.not_before = from.into();
        csr.params.not_after = to.into();
        csr.params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        csr.params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        csr.params.use_authority_key_identifier_extension = true;
        Some(csr.signed_by(&self.issuer).ok()?.pem())
    }

    /// A signer for [`super::FakeApiServer::set_csr_signer`] that issues every request for
    /// `lifetime` from now, as the csrsigning controller does for approved kubelet requests.
    pub fn signer(
        self: &Arc<Self>,
        lifetime: Duration,
    ) -> impl Fn(&CertificateSigningRequest) -> Option<String> + Send + Sync + 'static {
        let ca = Arc::clone(self);
        move |csr| {
            let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
            let server = csr.spec.signer_name == "kubernetes.io/kubelet-serving";
            let now = SystemTime::now();
            ca.sign(&pem, server, now, now + lifetime)
        }
    }

    /// A fresh key and a certificate for it: `cn` in `orgs`, with `names` (DNS names or IP
    /// addresses) as subjectAltNames, valid from `from` to `to`. Returns (certificate, key),
    /// both PEM.
    ///
    /// # Panics
    /// On a name rcgen refuses.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        names: &[&str],
        from: SystemTime,
        to: SystemTime,
    ) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = from.into();
        params.not_after = to.into();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}
