//! The CertificateSigningRequest calls, as client-go's `csr` package makes them: create the
//! request (by name for bootstrap, finding its own earlier one again; `csr-` plus a random
//! suffix otherwise), then watch it until it is issued, denied, failed or deleted, or until
//! the wait ends. [`verdict`] reads one version of the object (pure).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use tokio::time::{Instant, sleep, timeout_at};
use tracing::debug;
use x509_parser::prelude::FromDer;

use super::{CertError, Kind};
use crate::mirror::{MirrorError, call};

/// How long one watch of the request may stay open before it is started again.
const WATCH_SECONDS: u32 = 290;
/// Pause before looking again after the API server could not be reached.
const PAUSE: Duration = Duration::from_secs(1);

/// A filed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filed {
    /// Its name.
    pub name: String,
    /// Its UID: a request with the same name and another UID is not ours.
    pub uid: String,
}

fn object(name: Option<&str>, kind: Kind, csr_pem: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: name.map(str::to_owned),
            generate_name: name.is_none().then(|| "csr-".to_owned()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: kind.signer().to_owned(),
            usages: Some(
                super::csr::usages(kind)
                    .iter()
                    .map(|u| (*u).to_owned())
                    .collect(),
            ),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

fn filed(csr: &CertificateSigningRequest) -> Filed {
    Filed {
        name: csr.metadata.name.clone().unwrap_or_default(),
        uid: csr.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The public key (SubjectPublicKeyInfo DER) of a PEM request.
fn request_key(pem: &[u8]) -> Option<Vec<u8>> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem).ok()?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .ok()?;
    Some(csr.certification_request_info.subject_pki.raw.to_vec())
}

/// Files a request for `csr_pem` (whose key is `spki`). With a `name`, a request of that name
/// already there is taken as ours when it is for the same key and signer (client-go
/// `ensureCompatible`), as after a restart during bootstrap.
pub async fn file(
    api: &Api<CertificateSigningRequest>,
    name: Option<&str>,
    kind: Kind,
    csr_pem: &str,
    spki: &[u8],
    timeout: Duration,
) -> Result<Filed, CertError> {
    let new = object(name, kind, csr_pem);
    match call(timeout, api.create(&PostParams::default(), &new)).await {
        Ok(created) => Ok(filed(&created)),
        Err(e) if e.is_code(409) && name.is_some() => {
            let name = name.unwrap_or_default();
            let existing = call(timeout, api.get(name)).await.map_err(CertError::Api)?;
            let same_key = request_key(&existing.spec.request.0).as_deref() == Some(spki);
            if existing.spec.signer_name != kind.signer() || !same_key {
                return Err(CertError::Incompatible {
                    name: name.to_owned(),
                });
            }
            Ok(filed(&existing))
        }
        Err(e) => Err(CertError::Api(e)),
    }
}

/// What one version of the request says: issued (the certificate PEM), still waiting
/// (`None`), or an end.
pub fn verdict(csr: &CertificateSigningRequest, ours: &Filed) -> Result<Option<String>, CertError> {
    if csr.metadata.uid.as_deref() != Some(ours.uid.as_str()) {
        return Err(CertError::Deleted {
            name: ours.name.clone(),
        });
    }
    let status = csr.status.clone().unwrap_or_default();
    let mut approved = false;
    for c in status.conditions.iter().flatten() {
        let reason = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        let name = ours.name.clone();
        match c.type_.as_str() {
            "Denied" => {
                return Err(CertError::Denied {
                    name,
                    reason,
                    message,
                });
            }
            "Failed" => {
                return Err(CertError::Failed {
                    name,
                    reason,
                    message,
                });
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    match status.certificate {
        Some(cert) if approved && !cert.0.is_empty() => {
            Ok(Some(String::from_utf8_lossy(&cert.0).into_owned()))
        }
        _ => Ok(None),
    }
}

/// Waits until `ours` is issued and returns its certificate, at most `wait`. The API server
/// going away meanwhile is waited out; a denial, a failure or a deletion ends the wait.
pub async fn wait_issued(
    api: &Api<CertificateSigningRequest>,
    ours: &Filed,
    wait: Duration,
    timeout: Duration,
) -> Result<String, CertError> {
    let deadline = Instant::now() + wait;
    let waiting = async {
        loop {
            let version = match call(timeout, api.get_opt(&ours.name)).await {
                Ok(Some(csr)) => match verdict(&csr, ours)? {
                    Some(cert) => return Ok(cert),
                    None => csr.metadata.resource_version.unwrap_or_default(),
                },
                Ok(None) => {
                    return Err(CertError::Deleted {
                        name: ours.name.clone(),
                    });
                }
                Err(e) => {
                    debug!(csr = %ours.name, error = %e.reason(), "cannot read the certificate signing request");
                    sleep(PAUSE).await;
                    continue;
                }
            };
            if let Some(cert) = watch(api, ours, &version).await? {
                return Ok(cert);
            }
        }
    };
    match timeout_at(deadline, waiting).await {
        Ok(result) => result,
        Err(_) => Err(CertError::NotApproved {
            name: ours.name.clone(),
            waited: wait,
        }),
    }
}

/// Watches the request from `version` until it is issued (`Some`), ends, or the watch does
/// (`None`, to read it again).
async fn watch(
    api: &Api<CertificateSigningRequest>,
    ours: &Filed,
    version: &str,
) -> Result<Option<String>, CertError> {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={}", ours.name))
        .timeout(WATCH_SECONDS);
    let mut stream = match api.watch(&params, version).await {
        Ok(s) => s.boxed(),
        Err(e) => {
            debug!(csr = %ours.name, error = %MirrorError::from(e).reason(), "cannot watch the certificate signing request");
            sleep(PAUSE).await;
            return Ok(None);
        }
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::Added(csr) | WatchEvent::Modified(csr)) => {
                if let Some(cert) = verdict(&csr, ours)? {
                    return Ok(Some(cert));
                }
            }
            Ok(WatchEvent::Deleted(_)) => {
                return Err(CertError::Deleted {
                    name: ours.name.clone(),
                });
            }
            Ok(WatchEvent::Bookmark(_)) => {}
            Ok(WatchEvent::Error(_)) | Err(_) => return Ok(None),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn ours() -> Filed {
        Filed {
            name: "csr-abc".into(),
            uid: "u1".into(),
        }
    }

    fn csr(conditions: &[&str], cert: &str) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some("csr-abc".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            status: Some(CertificateSigningRequestStatus {
                certificate: (!cert.is_empty()).then(|| ByteString(cert.as_bytes().to_vec())),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| CertificateSigningRequestCondition {
                            type_: (*t).into(),
                            status: "True".into(),
                            reason: Some(format!("{t}Reason")),
                            message: Some("why".into()),
                            ..CertificateSigningRequestCondition::default()
                        })
                        .collect(),
                ),
            }),
            ..CertificateSigningRequest::default()
        }
    }

    #[test]
    fn a_request_is_issued_once_approved_with_a_certificate() {
        assert_eq!(verdict(&csr(&[], ""), &ours()).expect("pending"), None);
        assert_eq!(
            verdict(&csr(&["Approved"], ""), &ours()).expect("approved"),
            None,
            "approved but not signed yet"
        );
        assert_eq!(
            verdict(&csr(&["Approved"], "PEM"), &ours()).expect("issued"),
            Some("PEM".into())
        );
    }

    #[test]
    fn a_denied_failed_or_replaced_request_ends_the_wait() {
        let err = verdict(&csr(&["Denied"], ""), &ours()).expect_err("denied");
        assert!(matches!(err, CertError::Denied { ref reason, .. } if reason == "DeniedReason"));
        let err = verdict(&csr(&["Approved", "Failed"], ""), &ours()).expect_err("failed");
        assert!(matches!(err, CertError::Failed { .. }));
        let mut other = csr(&["Approved"], "PEM");
        other.metadata.uid = Some("u2".into());
        assert!(matches!(
            verdict(&other, &ours()),
            Err(CertError::Deleted { .. })
        ));
    }

    #[test]
    fn a_request_names_its_signer_and_usages_and_is_named_by_the_server_unless_bootstrapping() {
        let o = object(None, Kind::Client, "PEM");
        assert_eq!(o.metadata.generate_name.as_deref(), Some("csr-"));
        assert_eq!(
            o.spec.signer_name,
            "kubernetes.io/kube-apiserver-client-kubelet"
        );
        assert_eq!(
            o.spec.usages,
            Some(vec!["digital signature".into(), "client auth".into()])
        );
        let o = object(Some("node-csr-x"), Kind::Serving, "PEM");
        assert_eq!(o.metadata.name.as_deref(), Some("node-csr-x"));
        assert_eq!(o.metadata.generate_name, None);
        assert_eq!(o.spec.signer_name, "kubernetes.io/kubelet-serving");
    }
}
