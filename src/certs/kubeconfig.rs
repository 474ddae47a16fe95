//! Kubeconfigs as the certificate managers read and write them: the client certificate the
//! current context's user carries (a file, or data embedded as kubeadm's `admin.conf` and a
//! fresh `kubelet.conf` embed it), whether the kubeconfig is still usable (kubelet
//! `isClientConfigStillValid`), and the kubeconfig bootstrap writes (kubelet
//! `writeKubeconfigFromBootstrapping`): the bootstrap kubeconfig's server and CA, with the
//! stored pair as client certificate and key.

use std::path::Path;

use base64::Engine;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

use super::CertError;
use super::pair::{Pair, certificates, facts};
use super::store::write_atomic;
use crate::clock::Timestamp;

/// The client certificate a kubeconfig names.
#[derive(Clone, Debug)]
pub struct KubeconfigIdentity {
    /// The certificate and key.
    pub pair: Pair,
    /// Embedded in the kubeconfig rather than in files: such a certificate is rotated out at
    /// once, as the kubelet rotates kubeadm's initial one.
    pub embedded: bool,
}

fn error(path: &Path) -> impl Fn(String) -> CertError + '_ {
    move |message| CertError::Kubeconfig {
        path: path.to_owned(),
        message,
    }
}

fn current(kc: &Kubeconfig) -> Option<&Context> {
    let name = kc.current_context.as_deref()?;
    kc.contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
}

fn current_user(kc: &Kubeconfig) -> Option<&AuthInfo> {
    let user = current(kc)?.user.as_deref()?;
    kc.auth_infos
        .iter()
        .find(|a| a.name == user)
        .and_then(|a| a.auth_info.as_ref())
}

fn current_cluster(kc: &Kubeconfig) -> Option<&Cluster> {
    let cluster = &current(kc)?.cluster;
    kc.clusters
        .iter()
        .find(|c| &c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
}

fn decode(data: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// The client certificate of `path`'s current user; `None` when it has none (a token, say).
pub fn client_identity(path: &Path) -> Result<Option<KubeconfigIdentity>, CertError> {
    let err = error(path);
    let kc = Kubeconfig::read_from(path).map_err(|e| err(crate::chain::chain(&e)))?;
    let Some(user) = current_user(&kc) else {
        return Ok(None);
    };
    // kube keeps the key data behind a secret type; its own serialization gives it back.
    let raw = serde_json::to_value(user).unwrap_or_default();
    let field = |key: &str| raw.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let read = |file: String| std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"));
    let (cert, embedded) = match (
        field("client-certificate-data"),
        field("client-certificate"),
    ) {
        (Some(data), _) => (decode(&data).map_err(&err)?, true),
        (None, Some(file)) => (read(file).map_err(&err)?, false),
        (None, None) => return Ok(None),
    };
    let key = match (field("client-key-data"), field("client-key")) {
        (Some(data), _) => decode(&data).map_err(&err)?,
        (None, Some(file)) => read(file).map_err(&err)?,
        (None, None) => return Err(err("a client certificate without a key".into())),
    };
    let pair = Pair::from_pem(&cert, &key).map_err(&err)?;
    Ok(Some(KubeconfigIdentity { pair, embedded }))
}

/// Whether the kubeconfig at `path` can be used as is: it exists and loads, and its client
/// certificate is present, matches its key and has no certificate expired at `now`. When it
/// cannot, bootstrap replaces it.
pub fn usable(path: &Path, now: Timestamp) -> Result<(), String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let identity = client_identity(path).map_err(|e| crate::chain::chain(&e))?;
    let Some(identity) = identity else {
        return Err(format!("{} has no client certificate", path.display()));
    };
    for der in certificates(identity.pair.cert_pem.as_bytes())? {
        let f = facts(der.as_ref())?;
        if f.lifetime.expired(now) {
            return Err(format!(
                "{}: a client certificate expired at {}",
                path.display(),
                f.lifetime.not_after
            ));
        }
    }
    Ok(())
}

/// Writes the kubeconfig bootstrap leaves behind: the bootstrap kubeconfig's server and CA,
/// and `pem` (the stored pair) as client certificate and key.
pub fn write_from_bootstrap(
    bootstrap: &Path,
    kubeconfig: &Path,
    pem: &Path,
) -> Result<(), CertError> {
    let err = error(bootstrap);
    let kc = Kubeconfig::read_from(bootstrap).map_err(|e| err(crate::chain::chain(&e)))?;
    let source =
        current_cluster(&kc).ok_or_else(|| err("no current context and cluster".into()))?;
    let cluster = Cluster {
        server: source.server.clone(),
        insecure_skip_tls_verify: source.insecure_skip_tls_verify,
        certificate_authority: source.certificate_authority.clone(),
        certificate_authority_data: match source.certificate_authority {
            Some(_) => None,
            None => source.certificate_authority_data.clone(),
        },
        ..Cluster::default()
    };
    let pem = pem.display().to_string();
    let written = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: "default-cluster".into(),
            cluster: Some(cluster),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "default-auth".into(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(pem.clone()),
                client_key: Some(pem),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "default-context".into(),
            context: Some(Context {
                cluster: "default-cluster".into(),
                user: Some("default-auth".into()),
                namespace: Some("default".into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("default-context".into()),
        ..Kubeconfig::default()
    };
    let text = serde_saphyr::to_string(&written).map_err(|e| error(kubeconfig)(e.to_string()))?;
    write_atomic(kubeconfig, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::pair::tests::issue;

    const NOW: Timestamp = Timestamp(1_700_000_100_000_000_000);

    fn kubeconfig(user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://192.0.2.1:6443\n    certificate-authority: ca.crt\n\
             users:\n- name: u\n  user:\n{user}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
        )
    }

    #[test]
    fn a_kubeconfig_with_a_valid_client_certificate_file_is_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = issue("system:node:n1", &[], 1_700_000_000, 1_700_086_400);
        std::fs::write(dir.path().join("pair.pem"), format!("{cert}{key}")).expect("pair");
        let path = dir.path().join("kubelet.conf");
        std::fs::write(
            &path,
            kubeconfig("    client-certificate: pair.pem\n    client-key: pair.pem"),
        )
        .expect("kubeconfig");
        assert_eq!(usable(&path, NOW), Ok(()));
        let id = client_identity(&path).expect("reads").expect("has one");
        assert!(!id.embedded);
        assert_eq!(id.pair.facts.common_name, "system:node:n1");
        let later = Timestamp(1_700_086_400_000_000_000);
        let err = usable(&path, later).expect_err("expired");
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn a_missing_file_or_a_token_user_is_not_usable_and_embedded_data_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubelet.conf");
        assert!(usable(&path, NOW).is_err());
        std::fs::write(&path, kubeconfig("    token: abc")).expect("kubeconfig");
        let err = usable(&path, NOW).expect_err("token only");
        assert!(err.contains("no client certificate"), "{err}");
        let (cert, key) = issue("system:node:n1", &[], 1_700_000_000, 1_700_086_400);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &path,
            kubeconfig(&format!(
                "    client-certificate-data: {}\n    client-key-data: {}",
                b64(&cert),
                b64(&key)
            )),
        )
        .expect("kubeconfig");
        let id = client_identity(&path).expect("reads").expect("has one");
        assert!(id.embedded);
    }

    #[test]
    fn bootstrap_writes_a_kubeconfig_with_the_bootstraps_server_and_ca_and_the_stored_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bootstrap = dir.path().join("bootstrap-kubelet.conf");
        std::fs::write(&bootstrap, kubeconfig("    token: abcdef.0123456789abcdef"))
            .expect("bootstrap");
        let (cert, key) = issue("system:node:n1", &[], 1_700_000_000, 1_700_086_400);
        let pem = dir.path().join("pki/kubelet-client-current.pem");
        std::fs::create_dir_all(dir.path().join("pki")).expect("pki");
        std::fs::write(&pem, format!("{cert}{key}")).expect("pair");
        let path = dir.path().join("kubelet.conf");
        write_from_bootstrap(&bootstrap, &path, &pem).expect("written");
        let kc = Kubeconfig::read_from(&path).expect("a kubeconfig kube reads");
        let cluster = current_cluster(&kc).expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://192.0.2.1:6443"));
        let ca = dir.path().join("ca.crt").display().to_string();
        assert_eq!(cluster.certificate_authority.as_deref(), Some(ca.as_str()));
        let user = current_user(&kc).expect("user");
        let pem_text = pem.display().to_string();
        assert_eq!(user.client_certificate.as_deref(), Some(pem_text.as_str()));
        assert_eq!(user.client_key.as_deref(), Some(pem_text.as_str()));
        assert!(user.token.is_none(), "the bootstrap token is not kept");
        assert_eq!(usable(&path, NOW), Ok(()));
    }
}
