//! A client of podvisor's node API for tests: a CA and client certificates made with rcgen,
//! HTTPS requests trusting podvisor's self-signed serving certificate, and WebSocket exec
//! sessions in the `v4.channel.k8s.io` protocol that kubectl and kube-apiserver speak.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A certificate authority for client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key.
pub struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    /// A new CA, its certificate written to `path` (PEM).
    pub fn new(path: &Path) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test-ca");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca");
        std::fs::write(path, cert.pem()).expect("write ca");
        Ca {
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate for user `cn` in groups `orgs`.
    pub fn client(&self, cn: &str, orgs: &[&str]) -> ClientCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key der"),
        }
    }
}

/// How to reach a node API.
#[derive(Clone)]
pub struct NodeApiClient {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its serving certificate (trusted as is).
    pub server_cert: CertificateDer<'static>,
    /// The name in it.
    pub server_name: String,
}

impl NodeApiClient {
    /// A client for the API at `addr` serving the self-signed certificate in `root`/pki.
    pub fn new(addr: SocketAddr, root: &Path, node: &str) -> NodeApiClient {
        let server_cert =
            CertificateDer::from_pem_file(root.join("pki/podvisor.crt")).expect("serving cert");
        NodeApiClient {
            addr,
            server_cert,
            server_name: node.to_owned(),
        }
    }

    async fn connect(&self, cert: Option<&ClientCert>) -> std::io::Result<TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_cert.clone()).expect("anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some(c) => builder
                .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from(self.server_name.clone()).expect("name");
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// Whether a TLS connection can be made now.
    pub async fn handshake_ok(&self) -> bool {
        self.connect(None).await.is_ok()
    }

    /// One request; (status, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        cert: Option<&ClientCert>,
        token: Option<&str>,
    ) -> (u16, String) {
        let stream = self.connect(cert).await.expect("TLS connection");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.server_name);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A streaming GET: the status, then chunks of the body as they come.
    pub async fn stream(&self, path: &str, cert: &ClientCert) -> (u16, hyper::body::Incoming) {
        let stream = self.connect(Some(cert)).await.expect("TLS connection");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(path)
            .header("host", &self.server_name)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        (resp.status().as_u16(), resp.into_body())
    }

    /// Opens a WebSocket session (`/exec`, `/attach`) in `v4.channel.k8s.io`.
    pub async fn websocket(&self, path: &str, cert: &ClientCert) -> Session {
        let stream = self.connect(Some(cert)).await.expect("TLS connection");
        let mut req = format!("wss://{}{path}", self.server_name)
            .into_client_request()
            .expect("ws request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "v4.channel.k8s.io".parse().expect("header"),
        );
        let (ws, resp) = tokio_tungstenite::client_async(req, stream)
            .await
            .expect("websocket upgrade through the node API");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("v4.channel.k8s.io")
        );
        Session { ws }
    }
}

/// An exec or attach session.
pub struct Session {
    ws: tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>,
}

/// What a session produced by its end.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Channel 1.
    pub stdout: String,
    /// Channel 2.
    pub stderr: String,
    /// Channel 3: the final status (JSON).
    pub status: String,
}

impl Session {
    /// Sends `data` on `channel` (0 stdin, 4 resize).
    pub async fn send(&mut self, channel: u8, data: &[u8]) {
        let mut frame = vec![channel];
        frame.extend_from_slice(data);
        self.ws
            .send(Message::Binary(frame.into()))
            .await
            .expect("send");
    }

    /// The WebSocket itself.
    pub fn ws(&mut self) -> &mut tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>> {
        &mut self.ws
    }

    /// Reads until the server closes the session.
    pub async fn finish(mut self) -> Outcome {
        let mut out = Outcome::default();
        while let Some(msg) = self.ws.next().await {
            let Ok(Message::Binary(data)) = msg else {
                continue;
            };
            let Some((&channel, rest)) = data.split_first() else {
                continue;
            };
            let text = String::from_utf8_lossy(rest);
            match channel {
                1 => out.stdout.push_str(&text),
                2 => out.stderr.push_str(&text),
                3 => out.status.push_str(&text),
                _ => {}
            }
        }
        out
    }
}
