//! The node's certificates against a real kube-apiserver and kube-controller-manager (issue
//! 13.5), set up as kubeadm sets up a cluster for joining nodes: a bootstrap token, the
//! csrapproving controller approving node client CSRs through kubeadm's ClusterRoleBindings,
//! the csrsigning controller signing with the cluster CA. Opt-in like the rest of the real
//! suite (`PODVISOR_K8S_BIN`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use podvisor::certs::Pair;

use crate::daemon::Daemon;
use crate::lab::{Lab, wait_for};
use crate::lifecycle::{running, sleeper};
use crate::real_apiserver::{ApiLab, until};

const T: Duration = Duration::from_secs(90);

fn issued(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.clone().unwrap_or_default();
    let approved = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Approved");
    approved && status.certificate.is_some_and(|c| !c.0.is_empty())
}

async fn csr_by(
    api: &Api<CertificateSigningRequest>,
    user: &str,
) -> Option<CertificateSigningRequest> {
    api.list(&Default::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|c| c.spec.username.as_deref() == Some(user) && issued(c))
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn a_node_joins_with_a_bootstrap_token_as_kubeadm_joins_kubelets_and_its_pods_never_wait() {
    let Some(api) = ApiLab::start() else { return };
    let bootstrap = api.csr_controllers();
    let lab = Lab::start();
    let kubeconfig = lab.dir.path().join("kubelet.conf");
    let d = Daemon::start_named(
        &lab,
        "joiner",
        &[
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--bootstrap-kubeconfig",
            &bootstrap.display().to_string(),
            "--rotate-certificates",
        ],
        &[],
    );
    d.write("web.yaml", &sleeper("web", "1"));
    let pod = d.pod("web");
    wait_for(&lab.cri(), T, "web running", |o| {
        running(o, &pod).len() == 1
    })
    .await;

    let admin = api.admin().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let csr = until("the bootstrap CSR approved and issued", T, || async {
        csrs.list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("node-csr-"))
                    && issued(c)
            })
    })
    .await;
    let user = csr.spec.username.clone().unwrap_or_default();
    assert!(
        user.starts_with("system:bootstrap:"),
        "filed with the token: {user}"
    );
    assert_eq!(
        csr.spec.signer_name,
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    eprintln!(
        "bootstrap CSR {} by {user}: {:?}",
        csr.metadata.name.clone().unwrap_or_default(),
        csr.status.as_ref().and_then(|s| s.conditions.clone())
    );

    let nodes: Api<Node> = Api::all(admin.clone());
    until("Node joiner registered", T, || async {
        nodes.get_opt("joiner").await.ok().flatten()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "kube-system");
    until("mirror pod web-joiner", T, || async {
        pods.get_opt("web-joiner").await.ok().flatten()
    })
    .await;
    let written = std::fs::read_to_string(&kubeconfig).expect("kubelet.conf written");
    let current = d.root.join("pki/kubelet-client-current.pem");
    assert!(
        written.contains(&current.display().to_string()),
        "{written}"
    );
    let pair = Pair::read(&current).expect("the stored pair");
    assert_eq!(pair.facts.common_name, "system:node:joiner");
    eprintln!(
        "client certificate {} in {:?}, valid until {}",
        pair.facts.common_name, pair.facts.organizations, pair.facts.lifetime.not_after
    );
}

/// A client certificate for `node` from the lab's CA, 55 of its 60 minutes gone.
fn expiring_pair(api: &ApiLab, node: &str, dir: &Path) -> std::path::PathBuf {
    let ca_pem = std::fs::read_to_string(api.ca_file()).expect("CA");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(api.ca_key_file()).expect("CA key"))
            .expect("the CA key");
    let ca = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("the CA");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(55 * 60)).into();
    params.not_after = (now + Duration::from_secs(5 * 60)).into();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("signed");
    let path = dir.join("expiring.pem");
    std::fs::write(&path, format!("{}{}", cert.pem(), key.serialize_pem())).expect("pair");
    path
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn a_client_certificate_near_expiry_is_renewed_through_the_csr_api_without_a_restart() {
    let Some(api) = ApiLab::start() else { return };
    api.csr_controllers();
    let lab = Lab::start();
    let pem = expiring_pair(&api, "rotor", lab.dir.path());
    let kubeconfig = lab.dir.path().join("kubelet.conf");
    let port = std::fs::read_to_string(api.admin_path())
        .expect("admin.conf")
        .lines()
        .find_map(|l| {
            l.split("server: \"")
                .nth(1)
                .map(|s| s.split('"').next().unwrap_or_default().to_owned())
        })
        .expect("server");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {port}\n    certificate-authority: {ca}\n\
             users:\n- name: n\n  user:\n    client-certificate: {pem}\n    client-key: {pem}\n\
             contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: n\ncurrent-context: lab\n",
            ca = api.ca_file().display(),
            pem = pem.display()
        ),
    )
    .expect("kubeconfig");
    let d = Daemon::start_named(
        &lab,
        "rotor",
        &[
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--rotate-certificates",
        ],
        &[],
    );
    d.write("web.yaml", &sleeper("web", "1"));
    let pod = d.pod("web");
    wait_for(&lab.cri(), T, "web running", |o| {
        running(o, &pod).len() == 1
    })
    .await;
    let admin = api.admin().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let csr = until("the renewal CSR approved and issued", T, || {
        csr_by(&csrs, "system:node:rotor")
    })
    .await;
    eprintln!(
        "renewal CSR {} by system:node:rotor: {:?}",
        csr.metadata.name.clone().unwrap_or_default(),
        csr.status.as_ref().and_then(|s| s.conditions.clone())
    );
    let current = d.root.join("pki/kubelet-client-current.pem");
    let pair = until("the new pair stored", T, || async {
        Pair::read(&current).ok()
    })
    .await;
    let year = Duration::from_secs(300 * 24 * 3600);
    let now = podvisor::clock::Timestamp::from_system(SystemTime::now());
    assert!(
        pair.facts.lifetime.not_after > now.plus(year),
        "signed for the cluster's signing duration: {}",
        pair.facts.lifetime.not_after
    );
    // Still heartbeating, now with the new certificate.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let renew = |l: Option<Lease>| {
        l.and_then(|l| l.spec)
            .and_then(|s| s.renew_time)
            .map(|t| t.0)
    };
    let before = renew(leases.get_opt("rotor").await.ok().flatten());
    until("the lease renewed after the rotation", T, || async {
        let now = renew(leases.get_opt("rotor").await.ok().flatten());
        (now.is_some() && now != before).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(admin, "kube-system");
    assert!(pods.get_opt("web-rotor").await.ok().flatten().is_some());
    let log = d.log();
    assert!(log.contains("certificate renewed"), "{log}");
    assert!(
        log.contains("client certificate changed; connecting with it"),
        "{log}"
    );
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn a_serving_certificate_is_requested_approved_by_hand_and_served_by_the_node_api() {
    let Some(api) = ApiLab::start() else { return };
    api.csr_controllers();
    let lab = Lab::start();
    let kubeconfig = api.node_kubeconfig("server1");
    let d = Daemon::start_named(
        &lab,
        "server1",
        &[
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--rotate-server-certificates",
        ],
        &[],
    );
    let admin = api.admin().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(admin);
    // No controller approves serving certificates (kubeadm's docs say: approve by hand).
    let pending = until("the serving CSR filed", T, || async {
        csrs.list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|c| {
                c.spec.signer_name == "kubernetes.io/kubelet-serving"
                    && c.spec.username.as_deref() == Some("system:node:server1")
            })
    })
    .await;
    let name = pending.metadata.name.clone().expect("name");
    let (ok, out) = api.kubectl(&["certificate", "approve", &name], "");
    assert!(ok, "{out}");
    d.wait_log("node API serving the issued certificate", T)
        .await;
    // What the node API presents now is the cluster CA's, for the node's names.
    let log = d.log();
    let addr = log
        .lines()
        .find_map(|l| l.split("node API listening addr=").nth(1))
        .expect("node API address")
        .trim()
        .to_owned();
    let served = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -issuer -subject"
        ))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&served.stdout).into_owned();
    eprintln!("served: {text}");
    assert!(text.contains("podvisor-lab-ca"), "issuer: {text}");
    assert!(text.contains("system:node:server1"), "subject: {text}");
}
