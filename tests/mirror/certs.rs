//! The node's certificates against the fake API server's CSR API (issue 13.5): a client
//! certificate near expiry renewed and used without a restart, TLS bootstrap from a token
//! kubeconfig, a request never approved, and a serving certificate approved by hand.
//!
//! The certificate manager runs beside the mirror task as the daemon runs it; the mirror pods
//! the task posted before must still be there, with the same UID, after everything here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use fake_apiserver::TestCa;
use podvisor::certs::{CertTimings, KubeCsrs, Manager, ServingNames};
use podvisor::metrics::{Gauges, Metrics};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The client certificates a TLS front saw, one per handshake, and the ones it refuses.
#[derive(Default)]
struct Seen {
    presented: Vec<Vec<u8>>,
    refused: Vec<Vec<u8>>,
}

/// TLS in front of the fake, for `127.0.0.1`, demanding a client certificate from `ca`.
async fn front(backend: SocketAddr, ca: &TestCa, seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("CA"))
        .expect("root");
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .expect("verifier");
    let now = SystemTime::now();
    let (cert, key) = ca.issue(
        "kube-apiserver",
        &[],
        &["127.0.0.1"],
        now - MINUTE,
        now + 60 * MINUTE,
    );
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
        )
        .expect("TLS server configuration");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec())
                    .unwrap_or_default();
                {
                    let mut seen = seen.lock().expect("seen");
                    if seen.refused.contains(&leaf) {
                        return;
                    }
                    seen.presented.push(leaf);
                }
                if let Ok(mut upstream) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    addr
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("certificate")
        .as_ref()
        .to_vec()
}

/// A kubeconfig for `server` trusting `ca_file`, with `user` (YAML lines under `user:`).
fn kubeconfig(server: &str, ca_file: Option<&Path>, user: &str) -> String {
    let ca = ca_file
        .map(|p| format!("    certificate-authority: {}\n", p.display()))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n{ca}    server: {server}\n\
         contexts:\n- name: k\n  context:\n    cluster: k\n    user: u\ncurrent-context: k\n\
         users:\n- name: u\n  user:\n{user}\n"
    )
}

/// Short waits, so that a request never approved costs milliseconds.
fn quick() -> CertTimings {
    CertTimings {
        request_timeout: Duration::from_millis(500),
        approval_timeout: Duration::from_millis(300),
        bootstrap_timeout: Duration::from_secs(5),
        retry: Policy::new(Duration::from_millis(20), Duration::from_millis(50), MINUTE),
    }
}

fn csrs(kubeconfig: &Path, identity: Option<PathBuf>) -> KubeCsrs {
    KubeCsrs {
        kubeconfig: kubeconfig.to_owned(),
        identity,
        timeout: Duration::from_millis(500),
        metrics: None,
    }
}

fn renew_errors(metrics: &Metrics) -> u64 {
    let text = metrics.render(&Gauges::default());
    text.lines()
        .find_map(|l| {
            l.strip_prefix("podvisor_certificate_manager_client_expiration_renew_errors_total ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_certificate_near_expiry_is_renewed_and_used_without_a_restart() {
    let ca = Arc::new(TestCa::new());
    let fake = Harness::fake().await;
    fake.set_csr_signer(Some(ca.signer(365 * 24 * 60 * MINUTE)));
    let backend: SocketAddr = fake
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tls = front(backend, &ca, seen.clone()).await;
    // 55 of its 60 minutes gone: past even the latest rotation deadline.
    let now = SystemTime::now();
    let (old, old_key) = ca.issue(
        "system:node:n1",
        &["system:nodes"],
        &[],
        now - 55 * MINUTE,
        now + 5 * MINUTE,
    );
    let etcd = static_pod("etcd", "etcd:1");
    let (tx, rx) = watch::channel(0u64);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let current = pki.join("kubelet-client-current.pem");
    let (rx_for_task, current_for_task) = (rx.clone(), current.clone());
    let mut h = Harness::start_with(
        fake,
        &[&etcd],
        move |c| {
            c.identity = Some(current_for_task);
            c.credentials = Some(rx_for_task);
        },
        false,
    )
    .await;
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("CA");
    std::fs::write(dir.path().join("old.pem"), format!("{old}{old_key}")).expect("old pair");
    let path = h.dir.path().join("kubelet.conf");
    let old_pem = dir.path().join("old.pem");
    std::fs::write(
        &path,
        kubeconfig(
            &format!("https://127.0.0.1:{}", tls.port()),
            Some(&dir.path().join("ca.crt")),
            &format!(
                "    client-certificate: {p}\n    client-key: {p}",
                p = old_pem.display()
            ),
        ),
    )
    .expect("kubeconfig");
    h.synced().await;
    let uid = h.mirrored(&etcd).await;

    let metrics = Arc::new(Metrics::new());
    let manager = Manager::client(
        "n1",
        &pki,
        path.clone(),
        true,
        csrs(&path, Some(current.clone())),
    )
    .with_timings(quick())
    .with_metrics(metrics.clone())
    .on_update(move |_| tx.send_modify(|g| *g += 1));
    let certs = tokio::spawn(manager.run());

    let mut rx = rx;
    tokio::time::timeout(PATIENCE, rx.changed())
        .await
        .expect("renewed in time")
        .expect("open");
    let csrs = h.fake.csrs();
    assert_eq!(csrs.len(), 1, "one request");
    assert_eq!(
        csrs[0].spec.signer_name,
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    let new = std::fs::read_to_string(&current).expect("the new pair is current");
    let new_der = der(&new);
    assert_ne!(new_der, der(&old));
    // From now on the old certificate is refused: the task must be using the new one.
    seen.lock().expect("seen").refused.push(der(&old));
    let presented = |cert: &[u8]| {
        seen.lock()
            .expect("seen")
            .presented
            .iter()
            .any(|p| p == cert)
    };
    eventually("a connection with the new certificate", || {
        presented(&new_der).then_some(())
    })
    .await;
    let leases = h.fake.request_count("update") + h.fake.request_count("patch");
    eventually("the lease renewed with the new certificate", || {
        (h.fake.request_count("update") + h.fake.request_count("patch") > leases + 2).then_some(())
    })
    .await;
    h.synced().await;
    assert_eq!(h.mirrored(&etcd).await, uid, "the mirror pod is untouched");
    assert_eq!(renew_errors(&metrics), 0);
    certs.abort();
    h.stop().await;
}

#[tokio::test]
async fn a_node_bootstraps_from_a_token_kubeconfig_then_registers_with_its_certificate() {
    let ca = Arc::new(TestCa::new());
    let fake = Harness::fake().await;
    fake.set_csr_signer(Some(ca.signer(365 * 24 * 60 * MINUTE)));
    let etcd = static_pod("etcd", "etcd:1");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let current = pki.join("kubelet-client-current.pem");
    let (tx, rx) = watch::channel(0u64);
    let current_for_task = current.clone();
    // No kubeconfig yet: the mirror task waits for one, and nothing else waits at all.
    let mut h = Harness::start_with(
        fake,
        &[&etcd],
        move |c| {
            c.identity = Some(current_for_task);
            c.credentials = Some(rx);
        },
        false,
    )
    .await;
    h.state_until("connecting", |s| {
        matches!(s.phase, MirrorPhase::Connecting { error: Some(_) })
    })
    .await;
    let path = h.dir.path().join("kubelet.conf");
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    std::fs::write(
        &bootstrap,
        kubeconfig(&h.fake.url(), None, "    token: abcdef.0123456789abcdef"),
    )
    .expect("bootstrap kubeconfig");
    let manager = Manager::client(
        "n1",
        &pki,
        path.clone(),
        false,
        csrs(&path, Some(current.clone())),
    )
    .with_bootstrap(csrs(&bootstrap, None), bootstrap.clone())
    .with_timings(quick())
    .on_update(move |_| tx.send_modify(|g| *g += 1));
    let certs = tokio::spawn(manager.run());

    h.synced().await;
    h.mirrored(&etcd).await;
    assert!(h.fake.node("n1").is_some(), "the node registered");
    let csrs = h.fake.csrs();
    assert_eq!(csrs.len(), 1);
    let name = csrs[0].metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("node-csr-"), "{name}");
    assert_eq!(
        csrs[0].spec.usages.clone().unwrap_or_default(),
        ["digital signature", "client auth"]
    );
    let written = std::fs::read_to_string(&path).expect("the kubeconfig is written");
    assert!(
        written.contains(&format!("client-certificate: {}", current.display())),
        "{written}"
    );
    assert!(
        !written.contains("abcdef"),
        "the bootstrap token stays out: {written}"
    );
    assert!(written.contains(&h.fake.url()), "{written}");
    certs.abort();
    h.stop().await;
}

#[tokio::test]
async fn a_request_never_approved_is_counted_and_filed_again_while_the_pods_stay_mirrored() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.synced().await;
    let uid = h.mirrored(&etcd).await;
    let path = h.dir.path().join("kubelet.conf");
    let pki = h.dir.path().join("pki");
    let metrics = Arc::new(Metrics::new());
    // A token kubeconfig and rotation on: a client certificate is requested at once.
    let manager = Manager::client("n1", &pki, path.clone(), true, csrs(&path, None))
        .with_timings(quick())
        .with_metrics(metrics.clone());
    let certs = tokio::spawn(manager.run());
    eventually("two failed attempts", || {
        (renew_errors(&metrics) >= 2 && h.fake.csrs().len() >= 2).then_some(())
    })
    .await;
    assert!(
        h.fake
            .csrs()
            .iter()
            .all(|c| c.status.is_none()
                || c.status.as_ref().is_some_and(|s| s.certificate.is_none())),
        "nothing was issued"
    );
    assert!(!pki.join("kubelet-client-current.pem").exists());
    h.synced().await;
    assert_eq!(h.mirrored(&etcd).await, uid, "the mirror pod is untouched");
    certs.abort();
    h.stop().await;
}

#[tokio::test]
async fn a_serving_certificate_waits_for_approval_then_replaces_the_self_signed_one() {
    let ca = TestCa::new();
    let fake = Harness::fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubelet.conf");
    std::fs::write(&path, fake.kubeconfig_yaml("t")).expect("kubeconfig");
    let ip: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    // The node API's TLS as the daemon sets it up: self-signed first.
    let (cert, key) =
        podvisor::nodeapi::self_signed(&dir.path().join("self"), "n1", &[ip]).expect("self-signed");
    let serving = podvisor::nodeapi::ServingCert::load(&cert, &key).expect("loads");
    let client_ca = podvisor::nodeapi::ClientCa::load(None).expect("no client CA");
    let config = podvisor::nodeapi::serving_config(serving.clone(), &client_ca).expect("config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { acceptor.accept(tcp).await.map(drop) });
        }
    });
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("CA"))
        .expect("root");
    let connector = TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let trusted = || async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::IpAddress(ip.into());
        connector.connect(name, tcp).await.is_ok()
    };
    assert!(
        !trusted().await,
        "the self-signed certificate is not the cluster's"
    );

    let names = ServingNames {
        hostnames: vec!["n1".into()],
        ips: vec![ip],
    };
    let manager = Manager::serving("n1", &names, &dir.path().join("pki"), csrs(&path, None))
        .expect("the node has an address")
        .with_timings(CertTimings {
            approval_timeout: PATIENCE,
            ..quick()
        })
        .on_update(move |pair| serving.set(pair.certified.clone()));
    let certs = tokio::spawn(manager.run());
    let csr = eventually("a serving request", || fake.csrs().into_iter().next()).await;
    assert_eq!(csr.spec.signer_name, "kubernetes.io/kubelet-serving");
    assert_eq!(
        csr.spec.usages.clone().unwrap_or_default(),
        ["digital signature", "server auth"]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!trusted().await, "nothing changes before approval");
    let name = csr.metadata.name.clone().unwrap_or_default();
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let now = SystemTime::now();
    let issued = ca
        .sign(&pem, true, now - MINUTE, now + 60 * MINUTE)
        .expect("signed");
    assert!(fake.approve_csr(&name) && fake.issue_csr(&name, &issued));
    let deadline = Instant::now() + PATIENCE;
    while !trusted().await {
        assert!(
            Instant::now() < deadline,
            "the issued certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.csrs().len(), 1, "one request");
    certs.abort();
}
