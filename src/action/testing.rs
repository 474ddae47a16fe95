//! Test fixtures shared by the probe tests: local HTTP(S) servers and a running container
//! in a [`FakeRuntime`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{HTTPGetAction, HTTPHeader};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::clock::Timestamp;
use crate::pod::{ContainerKind, PodKey};
use crate::runtime::{ContainerId, ContainerState, FakeRuntime, ObservedContainer, SandboxId};

/// A self-signed certificate for `probe.test` (P-256, valid until 2126), made with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes`.
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBlzCCAT6gAwIBAgIUdo013pzxSQSHKrJRDNIQNsCTZ/gwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKcHJvYmUudGVzdDAgFw0yNjExMjMxMDA2NDFaGA8yMTI2MTAz
MDEwMDY0MVowFTETMBEGA1UEAwwKcHJvYmUudGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABDvWkU9mRj35+M9tk4zsSbwvxQqdHhhbUH5+e10+QWIeMbT+eHZm
Ux9zugORpEbFnkagIwCSih3MPxpICFMA04OjajBoMB0GA1UdDgQWBBR2SAIjDj1i
0AihbqWBSJiELdlILDAfBgNVHSMEGDAWgBR2SAIjDj1i0AihbqWBSJiELdlILDAP
BgNVHRMBAf8EBTADAQH/MBUGA1UdEQQOMAyCCnByb2JlLnRlc3QwCgYIKoZIzj0E
AwIDRwAwRAIgM5CmBXDi/mUGpnLYc6IFPg7lPDkD0yBbMlfuhXnsGh4CIA/ZG8fv
13NIVaRdjB25SA2hXPqj3p1MK/QW2kgFJqcp
-----END CERTIFICATE-----
";
/// The certificate's private key (PKCS#8). A test fixture, protecting nothing.
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiJPP1li5hIzXYIAE
lxyScZf7vXp+R3OvCLEuWgMHUM6hRANCAAQ71pFPZkY9+fjPbZOM7Em8L8UKnR4Y
W1B+fntdPkFiHjG0/nh2ZlMfc7oDkaRGxZ5GoCMAkoodzD8aSAhTANOD
-----END PRIVATE KEY-----
";

/// What the test servers saw: each request's head.
pub(super) type Seen = Arc<Mutex<Vec<http::request::Parts>>>;

/// A response with `status`, `headers` and `body`.
pub(crate) fn reply(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}

/// Serves HTTP/1.1 on `listener`, optionally over TLS, answering with `handler`.
pub(crate) async fn serve_on<F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: F,
) -> Seen
where
    F: Fn(http::request::Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let seen = Seen::default();
    let handler = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, log, tls) = (handler.clone(), log.clone(), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let (parts, _) = req.into_parts();
                    log.lock().unwrap().push(parts.clone());
                    let answer = handler(parts);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let server = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = server.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    seen
}

/// An HTTP server on 127.0.0.1: its address and what it saw.
pub(crate) async fn serve<F, Fut>(handler: F) -> (SocketAddr, Seen)
where
    F: Fn(http::request::Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_on(listener, None, handler).await)
}

/// An HTTPS server on 127.0.0.1 with the self-signed test certificate.
pub(crate) async fn serve_tls<F, Fut>(handler: F) -> (SocketAddr, Seen)
where
    F: Fn(http::request::Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let cert = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    (addr, serve_on(listener, Some(acceptor), handler).await)
}

/// A GET of `path` on `port` with `headers`.
pub(crate) fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> HTTPGetAction {
    HTTPGetAction {
        host: None,
        http_headers: Some(
            headers
                .iter()
                .map(|(name, value)| HTTPHeader {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
        ),
        path: Some(path.to_owned()),
        port: IntOrString::Int(i32::from(port)),
        scheme: Some("HTTP".to_owned()),
    }
}

/// Adds a running container to `rt` and returns its ID.
pub(crate) fn running_container(rt: &FakeRuntime) -> ContainerId {
    let id = ContainerId("ct-probe".to_owned());
    rt.insert_container(ObservedContainer {
        id: id.clone(),
        sandbox: SandboxId("sb-probe".to_owned()),
        key: PodKey {
            namespace: "default".to_owned(),
            name: "web-node1".to_owned(),
        },
        uid: crate::pod::PodUid("uid".to_owned()),
        name: "web".to_owned(),
        attempt: 0,
        restarts: 0,
        kind: ContainerKind::App,
        state: ContainerState::Running,
        hash: None,
        grace_seconds: Some(30),
        pre_stop: None,
        image: "busybox".to_owned(),
        image_ref: String::new(),
        created_at: Some(Timestamp(0)),
        started_at: Some(Timestamp(0)),
        finished_at: None,
        exit_code: None,
        reason: None,
        termination: None,
        message: String::new(),
    });
    id
}
