//! The client as kubeadm configures a kubelet: TLS to the API server with the cluster CA, and a
//! client certificate with its EC key in one PEM file (`kubelet-client-current.pem`).
//!
//! A TLS front that demands a client certificate signed by the CA forwards to the fake. The
//! certificates are test-only (P-256, valid 2000 to 2126), made with openssl.

use std::net::SocketAddr;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::*;

/// The cluster CA.
const CA_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBXTCCAQSgAwIBAgICEAAwCgYIKoZIzj0EAwIwFTETMBEGA1UEAwwKa3ViZXJu
ZXRlczAgFw0wMDAxMDEwMDAwMDBaGA8yMTI2MDEwMTAwMDAwMFowFTETMBEGA1UE
AwwKa3ViZXJuZXRlczBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJPCpIZYztv2
ZUb7WAWenNfxQzNLus6Wk3ZsqZQ67jYV/AVGjES8B9v0E1hC8W4zzpEhEb9kJlzz
TeH7/lQwl4OjQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgGGMB0G
A1UdDgQWBBSGzkrtfBc1uOp8sFezQYy+RhPecjAKBggqhkjOPQQDAgNHADBEAiAm
tbSqWD7PY7nRs4UafwWGiHy2THOLPkyE+Y02c3izJgIgdXbO1pLriSF66NXtmcuM
w9/Md1D9GAOqa8vXJkFFWsg=
-----END CERTIFICATE-----
";
/// The API server, for `127.0.0.1`.
const SERVER_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBsTCCAVagAwIBAgICEAEwCgYIKoZIzj0EAwIwFTETMBEGA1UEAwwKa3ViZXJu
ZXRlczAgFw0wMDAxMDEwMDAwMDBaGA8yMTI2MDEwMTAwMDAwMFowGTEXMBUGA1UE
AwwOa3ViZS1hcGlzZXJ2ZXIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARzyUp9
aM69/9w82J5bLZIE/PgwNijIYlwighondyI6kvc3Yvt7j+Z901I46Hq6HSmgGXnW
DT4i8gpzJ+Ab9045o4GPMIGMMAkGA1UdEwQCMAAwDgYDVR0PAQH/BAQDAgWgMBMG
A1UdJQQMMAoGCCsGAQUFBwMBMBoGA1UdEQQTMBGHBH8AAAGCCWxvY2FsaG9zdDAd
BgNVHQ4EFgQUsL1nwSRMjUm3XpXqIAsLXDBfswcwHwYDVR0jBBgwFoAUhs5K7XwX
NbjqfLBXs0GMvkYT3nIwCgYIKoZIzj0EAwIDSQAwRgIhAIlJ7AYD8ggkaSmUPC7g
DDM7+lJWFotvyUg6+euuHYs8AiEA3LqsKWPw/gSKBRZoiGyjyPL/OoCwuLyf40A7
w02LiJ0=
-----END CERTIFICATE-----
";
/// The API server's key.
const SERVER_KEY: &str = "\
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICTppHNPC9UbVVYUM/p46AtoKbEaTs2esu5cx8etV/2boAoGCCqGSM49
AwEHoUQDQgAEc8lKfWjOvf/cPNieWy2SBPz4MDYoyGJcIoIaJ3ciOpL3N2L7e4/m
fdNSOOh6uh0poBl51g0+IvIKcyfgG/dOOQ==
-----END EC PRIVATE KEY-----
";
/// `system:node:n1` in `system:nodes`, as the kubelet client certificate.
const CLIENT_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBqjCCAU+gAwIBAgICEAIwCgYIKoZIzj0EAwIwFTETMBEGA1UEAwwKa3ViZXJu
ZXRlczAgFw0wMDAxMDEwMDAwMDBaGA8yMTI2MDEwMTAwMDAwMFowMDEXMBUGA1UE
AwwOc3lzdGVtOm5vZGU6bjExFTATBgNVBAoMDHN5c3RlbTpub2RlczBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABHBwBuK68NB9Ck2MKbmvaHRtX1yfx48Txj5Yw//J
wHGSZ3fxSiDDgFHxkPmwnREwEZiwYnfJQ42OsRcpVkKZDr+jcjBwMAkGA1UdEwQC
MAAwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMCMB0GA1UdDgQW
BBT0h/Rr/CuMQFZExXgVxaQkRB0iajAfBgNVHSMEGDAWgBSGzkrtfBc1uOp8sFez
QYy+RhPecjAKBggqhkjOPQQDAgNJADBGAiEAi++4+knBXD2u7NIXwYcC/mKWXJDn
o+Y/G2JIK2RtEiwCIQDjM4mg35BpqMshc7biE4pbCHGX2pVyVljhF9kNgpiKrw==
-----END CERTIFICATE-----
";
/// Its SEC1 EC key, as kubeadm writes it.
const CLIENT_KEY: &str = "\
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIKAP9OkOkw1SKUIIaXt/vHUK1jDK2gdPLvEmLkFWodv6oAoGCCqGSM49
AwEHoUQDQgAEcHAG4rrw0H0KTYwpua9odG1fXJ/HjxPGPljD/8nAcZJnd/FKIMOA
UfGQ+bCdETARmLBid8lDjY6xFylWQpkOvw==
-----END EC PRIVATE KEY-----
";

/// Serves TLS on a free port, demanding a client certificate from the CA, and forwards
/// each connection to `backend`.
async fn tls_front(backend: SocketAddr) -> SocketAddr {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA_CERT.as_bytes()).expect("CA certificate"))
        .expect("CA certificate as a root");
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .expect("client certificate verifier");
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![
                CertificateDer::from_pem_slice(SERVER_CERT.as_bytes()).expect("server certificate"),
            ],
            PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).expect("server key"),
        )
        .expect("TLS server configuration");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut upstream) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_kubeadm_style_kubeconfig_with_ca_and_client_certificate_connects() {
    let fake = Harness::fake().await;
    let backend: SocketAddr = fake.url().trim_start_matches("http://").parse().unwrap();
    let front = tls_front(backend).await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start_with(fake, &[&etcd], |_| {}, false).await;
    let pki = h.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.crt"), CA_CERT).unwrap();
    // One file holding certificate and key, named for both, as kubeadm's kubelet.conf does.
    std::fs::write(
        pki.join("kubelet-client-current.pem"),
        format!("{CLIENT_CERT}{CLIENT_KEY}"),
    )
    .unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    \
         certificate-authority: pki/ca.crt\n    server: https://127.0.0.1:{port}\n\
         contexts:\n- name: system:node:n1@kubernetes\n  context:\n    cluster: kubernetes\n    \
         user: system:node:n1\ncurrent-context: system:node:n1@kubernetes\nusers:\n\
         - name: system:node:n1\n  user:\n    client-certificate: pki/kubelet-client-current.pem\n    \
         client-key: pki/kubelet-client-current.pem\n",
        port = front.port()
    );
    std::fs::write(h.dir.path().join("kubelet.conf"), kubeconfig).unwrap();
    h.synced().await;
    h.mirrored(&etcd).await;
    h.stop().await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let fake = Harness::fake().await;
    let backend: SocketAddr = fake.url().trim_start_matches("http://").parse().unwrap();
    let front = tls_front(backend).await;
    let mut h = Harness::start_with(fake, &[], |_| {}, false).await;
    // Trust the client certificate as if it were the CA: the server's chain does not verify.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    \
         certificate-authority-data: {ca}\n    server: https://127.0.0.1:{port}\n\
         contexts:\n- name: k\n  context:\n    cluster: k\n    user: u\n\
         current-context: k\nusers:\n- name: u\n  user:\n    token: t\n",
        ca = base64(CLIENT_CERT.as_bytes()),
        port = front.port()
    );
    std::fs::write(h.dir.path().join("kubelet.conf"), kubeconfig).unwrap();
    let state = h
        .state_until("unreachable", |s| {
            matches!(s.phase, MirrorPhase::Unreachable { .. })
        })
        .await;
    assert!(h.fake.requests().is_empty(), "{}", state.phase);
    h.stop().await;
}

/// Standard base64 with padding, for `*-data` kubeconfig fields.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
