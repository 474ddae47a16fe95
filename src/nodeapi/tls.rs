//! The node API's TLS: the serving certificate (given, or self-signed at first start and kept
//! under the root dir as the kubelet keeps `kubelet.crt`), client certificates verified
//! against the client CA, and the identity a verified certificate names.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, ServerConfig, SignatureScheme};
use thiserror::Error;

use super::auth::Identity;

/// A TLS set-up that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A certificate, key or CA file cannot be read or parsed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The self-signed certificate cannot be made or kept.
    #[error("self-signed serving certificate in {}: {message}", dir.display())]
    SelfSigned {
        /// Where it is kept.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
    /// rustls refuses the combination.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path) -> impl Fn(String) -> TlsError + '_ {
    move |message| TlsError::File {
        path: path.to_owned(),
        message,
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = file_error(path);
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path)(e.to_string()))
}

/// Makes (or reuses) the self-signed certificate for `node` and `addresses` in `dir`:
/// `podvisor.crt` and `podvisor.key` (mode 0600). An existing pair is reused as is.
pub fn self_signed(
    dir: &Path,
    node: &str,
    addresses: &[IpAddr],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("podvisor.crt");
    let key_path = dir.join("podvisor.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let fail = |message: String| TlsError::SelfSigned {
        dir: dir.to_owned(),
        message,
    };
    let mut names = vec![node.to_owned()];
    names.extend(addresses.iter().map(IpAddr::to_string));
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| fail(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{node}@podvisor"));
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    // The kubelet's self-signed certificate lasts a year; it is made again when deleted.
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| fail(e.to_string()))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// The serving certificate, which can be replaced while serving: the certificate manager
/// puts the one the API server issued (`serverTLSBootstrap`) in place of the self-signed or
/// given one, and new connections present it.
#[derive(Debug)]
pub struct ServingCert(RwLock<Arc<CertifiedKey>>);

impl ServingCert {
    /// The certificate and key in these files.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServingCert>, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(read_certs(cert)?, read_key(key)?, &provider)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
        Ok(Arc::new(ServingCert(RwLock::new(Arc::new(certified)))))
    }

    /// Serves `certified` from the next handshake on.
    pub fn set(&self, certified: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = certified;
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The server's TLS configuration: its certificate, and a client certificate asked for
/// when there is a client CA (optional: tokens and anonymous requests come without one; the
/// chain is checked against `client_ca` after the handshake).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &ClientCa,
) -> Result<Arc<ServerConfig>, TlsError> {
    serving_config(ServingCert::load(cert, key)?, client_ca)
}

/// As [`server_config`], presenting whatever `serving` holds at each handshake.
pub fn serving_config(
    serving: Arc<ServingCert>,
    client_ca: &ClientCa,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &client_ca.0 {
        None => builder.with_no_client_auth(),
        Some(verifier) => {
            builder.with_client_cert_verifier(Arc::new(RequestCertificate(verifier.clone())))
        }
    };
    let mut config = builder.with_cert_resolver(serving);
    // HTTP/1.1 only: exec, attach and port-forward are connection upgrades.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    ca: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(|e| file_error(ca)(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// Asks for a client certificate and checks that the client holds its key, but leaves the
/// chain to [`verified_identity`]: a certificate from another CA is then an unauthenticated
/// request (401), as the kubelet answers it, not a failed handshake.
#[derive(Debug)]
struct RequestCertificate(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Verifies client certificates against the client CA.
#[derive(Clone, Debug)]
pub struct ClientCa(Option<Arc<dyn ClientCertVerifier>>);

impl ClientCa {
    /// The CA in `path`; `None`: no certificate is ever accepted.
    pub fn load(path: Option<&Path>) -> Result<ClientCa, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(ClientCa(match path {
            Some(p) => Some(client_verifier(p, provider)?),
            None => None,
        }))
    }

    /// What a presented chain proves: the user it names when it chains to the CA and is
    /// valid now (`Ok(None)`: nothing presented), else why not.
    pub fn identity(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<Option<Identity>, String> {
        let Some([leaf, intermediates @ ..]) = chain else {
            return Ok(None);
        };
        let Some(verifier) = &self.0 else {
            return Err("no client CA configured".into());
        };
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| e.to_string())?;
        identity(leaf)
            .map(Some)
            .ok_or_else(|| "certificate has no common name".into())
    }
}

/// The user a verified client certificate names: its common name, its organizations as
/// groups (the Kubernetes convention). `None` when the certificate has no common name.
pub fn identity(cert: &CertificateDer<'_>) -> Option<Identity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(Identity::from_certificate(cn, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_names_the_node_and_its_addresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let (cert, key) = self_signed(&pki, "node1", &[ip]).expect("made");
        let first = std::fs::read(&cert).expect("cert");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = self_signed(&pki, "node1", &[ip]).expect("reused");
        assert_eq!(
            std::fs::read(again).expect("cert"),
            first,
            "kept, not remade"
        );
        let der = CertificateDer::from_pem_file(&cert).expect("pem");
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let san = parsed
            .subject_alternative_name()
            .expect("valid extension")
            .expect("has names");
        use x509_parser::extensions::GeneralName;
        let dns: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            })
            .collect();
        let ips: Vec<&[u8]> = san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::IPAddress(b) => Some(*b),
                _ => None,
            })
            .collect();
        assert_eq!(dns, ["node1"]);
        assert_eq!(ips, [&[192u8, 0, 2, 7][..]]);
        server_config(&cert, &key, &ClientCa::load(None).expect("no CA")).expect("usable");
    }

    #[test]
    fn a_missing_client_ca_is_an_error_naming_the_file() {
        let err = ClientCa::load(Some(Path::new("/nonexistent/ca.crt"))).expect_err("missing CA");
        assert!(
            err.to_string().starts_with("/nonexistent/ca.crt: "),
            "{err}"
        );
    }
}
