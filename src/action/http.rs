//! HTTP GET probes (`pkg/probe/http`) and the client that `httpGet` lifecycle hooks share.
//!
//! One connection per request, HTTP/1.1, no keep-alive and no compression. HTTPS does the
//! handshake without checking the certificate ([`super::tls`]). Redirects to the same host
//! name are followed (at most 10 requests in all); a redirect to another host is not, and the
//! 3xx is the answer, like the kubelet's `RedirectChecker(false)`. At most 10 KiB of a body
//! is read. The whole exchange, redirects and body included, is bounded by the timeout.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT, CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, LOCATION, REFERER, USER_AGENT,
};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::url::{Target, is_absolute};
use super::{Outcome, PortError, error_chain, host_or, resolve_port, tcp, tls};

/// The most of a response body that is read.
const MAX_BODY: usize = 10 * 1024;
/// The most requests one probe makes, following redirects (Go's "stopped after 10 redirects").
const MAX_REQUESTS: usize = 10;

/// Who is asking, which sets the default `User-Agent` (`kube-<purpose>/<major>.<minor>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A liveness, readiness or startup probe.
    Probe,
    /// A `postStart` or `preStop` hook.
    Lifecycle,
}

impl Purpose {
    fn user_agent(self) -> &'static str {
        match self {
            Purpose::Probe => "kube-probe/1.34",
            Purpose::Lifecycle => "kube-lifecycle/1.34",
        }
    }
}

/// Why an HTTP probe or hook request got no response.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The port names no container port or is out of range.
    #[error(transparent)]
    Port(#[from] PortError),
    /// `scheme` is neither HTTP nor HTTPS.
    #[error("unsupported protocol scheme {0:?}")]
    Scheme(String),
    /// A header name or value that HTTP does not allow.
    #[error("invalid header {name:?}")]
    Header {
        /// The header name.
        name: String,
    },
    /// A path that does not make a request target.
    #[error("invalid path {0:?}")]
    Path(String),
    /// The host is not a host name or IP address.
    #[error("invalid host {0:?}")]
    Host(String),
    /// No response headers within the timeout.
    #[error("Get {url:?}: timeout after {timeout:?} awaiting headers")]
    Timeout {
        /// The URL being fetched.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The TCP connection failed.
    #[error("Get {url:?}: connect")]
    Connect {
        /// The URL being fetched.
        url: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed.
    #[error("Get {url:?}: tls handshake")]
    Tls {
        /// The URL being fetched.
        url: String,
        /// What rustls said.
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange failed.
    #[error("Get {url:?}")]
    Exchange {
        /// The URL being fetched.
        url: String,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
    /// A `Location` header that is not a usable URL.
    #[error("Get {url:?}: invalid redirect location {location:?}")]
    Location {
        /// The URL that redirected.
        url: String,
        /// Its `Location` header.
        location: String,
    },
    /// The redirects did not end within 10 requests.
    #[error("Get {url:?}: stopped after 10 redirects")]
    TooManyRedirects {
        /// The URL of the last request.
        url: String,
    },
    /// Reading the body failed after the response headers came.
    #[error("Get {url:?}: reading the response body")]
    Body {
        /// The URL being fetched.
        url: String,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
    /// The body did not arrive within the timeout.
    #[error("Get {url:?}: timeout after {timeout:?} reading the response body")]
    BodyTimeout {
        /// The URL being fetched.
        url: String,
        /// The limit.
        timeout: Duration,
    },
}

impl HttpError {
    /// Whether the request got a response whose body then failed: the kubelet calls that a
    /// probe error rather than a failure.
    pub(super) fn is_body_error(&self) -> bool {
        matches!(self, HttpError::Body { .. } | HttpError::BodyTimeout { .. })
    }
}

/// Probes `action`: a GET to its host (or `default_host`), port (which may name one of the
/// container's `ports`), path and headers, within `timeout`. 2xx is a success, 3xx a warning
/// (counted as success), anything else a failure.
pub async fn http_get(
    action: &HTTPGetAction,
    ports: &[ContainerPort],
    default_host: &str,
    timeout: Duration,
) -> Outcome {
    let request = match Request::new(action, ports, default_host, Purpose::Probe) {
        Ok(request) => request,
        // The kubelet cannot build the request: a probe error, not a failure.
        Err(e @ HttpError::Port(_)) => return Outcome::Unknown(error_chain(&e)),
        Err(e) => return Outcome::Failure(error_chain(&e)),
    };
    match request.fetch(timeout).await {
        Ok(response) => judge(&response),
        Err(e) if e.is_body_error() => Outcome::Unknown(error_chain(&e)),
        Err(e) => Outcome::Failure(error_chain(&e)),
    }
}

fn judge(response: &Response) -> Outcome {
    let code = response.status.as_u16();
    match code {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            String::from_utf8_lossy(&response.body)
        )),
        _ => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// A GET built from an `HTTPGetAction`.
#[derive(Clone, Debug)]
pub(super) struct Request {
    url: Target,
    headers: HeaderMap,
    /// A `Host` given in `httpHeaders`, which replaces the URL's authority.
    host: Option<String>,
}

/// A response: its status and up to [`MAX_BODY`] bytes of its body.
#[derive(Clone, Debug)]
pub(super) struct Response {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl Request {
    /// The kubelet's `NewRequestForHTTPGetAction`.
    pub(super) fn new(
        action: &HTTPGetAction,
        ports: &[ContainerPort],
        default_host: &str,
        purpose: Purpose,
    ) -> Result<Request, HttpError> {
        let https = match action
            .scheme
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("" | "http") => false,
            Some("https") => true,
            Some(other) => return Err(HttpError::Scheme(other.to_owned())),
        };
        let port = resolve_port(&action.port, ports)?;
        let host = host_or(action.host.as_deref(), default_host);
        let path = action.path.as_deref().unwrap_or("/");
        let url =
            Target::new(https, host, port, path).ok_or_else(|| HttpError::Host(host.to_owned()))?;
        let mut headers = HeaderMap::new();
        let mut host = None;
        for h in action.http_headers.iter().flatten() {
            let invalid = || HttpError::Header {
                name: h.name.clone(),
            };
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| invalid())?;
            let value = HeaderValue::from_str(&h.value).map_err(|_| invalid())?;
            if name == HOST {
                host.get_or_insert_with(|| h.value.clone());
            } else {
                headers.append(name, value);
            }
        }
        // An explicitly empty User-Agent or Accept removes the header.
        for (name, default) in [(USER_AGENT, purpose.user_agent()), (ACCEPT, "*/*")] {
            match headers.get(&name) {
                None => {
                    headers.insert(name, HeaderValue::from_static(default));
                }
                Some(v) if v.is_empty() => {
                    headers.remove(&name);
                }
                Some(_) => {}
            }
        }
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        Ok(Request {
            url,
            headers,
            host: host.filter(|h| !h.is_empty()),
        })
    }

    /// Where the request goes, as a URL.
    pub(super) fn target(&self) -> String {
        self.url.to_string()
    }

    /// The same request over plain HTTP, without credentials (the hooks' HTTPS fallback).
    pub(super) fn downgraded(&self) -> Request {
        let mut request = self.clone();
        request.url = request.url.downgraded();
        request.headers.remove(http::header::AUTHORIZATION);
        request
    }

    /// Sends the request, following same-host redirects, all within `timeout`.
    pub(super) async fn fetch(&self, timeout: Duration) -> Result<Response, HttpError> {
        let deadline = Instant::now() + timeout;
        let mut url = self.url.clone();
        let mut headers = self.headers.clone();
        let mut host = self.host.clone();
        let mut requests = 1;
        loop {
            let (parts, body, _connection) =
                tokio::time::timeout_at(deadline, send(&url, &headers, host.as_deref()))
                    .await
                    .map_err(|_| HttpError::Timeout {
                        url: url.to_string(),
                        timeout,
                    })??;
            let location = match parts.headers.get(LOCATION) {
                Some(l) if is_redirect(parts.status) && !l.is_empty() => l,
                _ => return read_body(parts.status, body, &url, deadline, timeout).await,
            };
            let location = location.to_str().ok();
            let next =
                location
                    .and_then(|l| url.resolve(l))
                    .ok_or_else(|| HttpError::Location {
                        url: url.to_string(),
                        location: location.unwrap_or("<not text>").to_owned(),
                    })?;
            if !next.same_host(&self.url) {
                // Another host: the 3xx is the answer.
                return read_body(parts.status, body, &url, deadline, timeout).await;
            }
            if requests >= MAX_REQUESTS {
                return Err(HttpError::TooManyRedirects {
                    url: url.to_string(),
                });
            }
            requests += 1;
            // Like Go: a custom Host survives relative redirects only.
            if location.is_some_and(is_absolute) {
                host = None;
            }
            // Go sets Referer unless the caller did, or it would leak an https URL to http.
            if self.headers.get(REFERER).is_none()
                && (next.https() || !url.https())
                && let Ok(referer) = HeaderValue::from_str(&url.to_string())
            {
                headers.insert(REFERER, referer);
            }
            url = next;
        }
    }
}

/// The statuses Go's client follows.
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

async fn read_body(
    status: StatusCode,
    mut body: Incoming,
    url: &Target,
    deadline: Instant,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let read = async {
        let mut buf = BytesMut::new();
        while buf.len() < MAX_BODY {
            match body.frame().await {
                None => break,
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
        buf.truncate(MAX_BODY);
        Ok::<_, hyper::Error>(buf.freeze())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(body)) => Ok(Response { status, body }),
        Ok(Err(source)) => Err(HttpError::Body {
            url: url.to_string(),
            source,
        }),
        Err(_) => Err(HttpError::BodyTimeout {
            url: url.to_string(),
            timeout,
        }),
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The task driving a connection, stopped when the exchange is done with.
struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on a new connection.
async fn send(
    url: &Target,
    headers: &HeaderMap,
    host: Option<&str>,
) -> Result<(http::response::Parts, Incoming, Connection), HttpError> {
    let stream = tcp::dial(&url.host(), url.port())
        .await
        .map_err(|source| HttpError::Connect {
            url: url.to_string(),
            source,
        })?;
    let io: Box<dyn Io> = if url.https() {
        let tls = tls::connect(&url.host(), stream)
            .await
            .map_err(|source| HttpError::Tls {
                url: url.to_string(),
                source,
            })?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let exchange = |source| HttpError::Exchange {
        url: url.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(exchange)?;
    let connection = Connection(tokio::spawn(async move {
        // Its errors surface through the response.
        let _ = connection.await;
    }));
    let mut request = http::Request::new(Empty::new());
    let target = url.path_and_query();
    *request.uri_mut() = Uri::try_from(target.as_str()).map_err(|_| HttpError::Path(target))?;
    let authority = url.authority();
    let host = host.unwrap_or(&authority);
    let host = HeaderValue::from_str(host).map_err(|_| HttpError::Header {
        name: "Host".to_owned(),
    })?;
    request.headers_mut().insert(HOST, host);
    for (name, value) in headers {
        request.headers_mut().append(name, value.clone());
    }
    let (parts, body) = sender
        .send_request(request)
        .await
        .map_err(exchange)?
        .into_parts();
    Ok((parts, body, connection))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::net::TcpListener;

    use super::*;
    use crate::action::testing::{Seen, get, reply, serve, serve_on, serve_tls};

    async fn probe(action: &HTTPGetAction) -> Outcome {
        http_get(action, &[], "127.0.0.1", Duration::from_secs(5)).await
    }

    fn paths(seen: &Seen) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|p| p.uri.to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_200_is_a_success() {
        let (addr, _) = serve(|_| async { reply(200, &[], "ok") }).await;
        assert_eq!(
            probe(&get(addr.port(), "/healthz", &[])).await,
            Outcome::Success
        );
    }

    #[tokio::test]
    async fn a_404_is_a_failure_naming_the_status() {
        let (addr, _) = serve(|_| async { reply(404, &[], "no such page") }).await;
        assert_eq!(
            probe(&get(addr.port(), "/", &[])).await,
            Outcome::Failure("HTTP probe failed with statuscode: 404".to_owned())
        );
    }

    #[tokio::test]
    async fn a_500_is_a_failure() {
        let (addr, _) = serve(|_| async { reply(500, &[], "boom") }).await;
        assert_eq!(
            probe(&get(addr.port(), "/", &[])).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".to_owned())
        );
    }

    #[tokio::test]
    async fn a_redirect_to_the_same_host_is_followed() {
        let (addr, seen) = serve(|parts| async move {
            match parts.uri.path() {
                "/" => reply(302, &[("Location", "/healthz?full=1")], ""),
                _ => reply(200, &[], "ok"),
            }
        })
        .await;
        assert_eq!(probe(&get(addr.port(), "/", &[])).await, Outcome::Success);
        assert_eq!(paths(&seen), ["/", "/healthz?full=1"]);
        let referer = seen.lock().unwrap()[1].headers[REFERER].clone();
        assert_eq!(referer, format!("http://127.0.0.1:{}/", addr.port()));
    }

    #[tokio::test]
    async fn a_followed_redirect_is_judged_by_the_final_response() {
        let (addr, _) = serve(move |parts| async move {
            match parts.uri.path() {
                "/" => reply(307, &[("Location", "broken")], ""),
                _ => reply(503, &[], "down"),
            }
        })
        .await;
        assert_eq!(
            probe(&get(addr.port(), "/", &[])).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".to_owned())
        );
    }

    #[tokio::test]
    async fn a_redirect_to_another_port_of_the_same_host_is_followed() {
        let (there, seen) = serve(|_| async { reply(200, &[], "") }).await;
        let location = format!("http://127.0.0.1:{}/there", there.port());
        let (here, _) = serve(move |_| {
            let location = location.clone();
            async move { reply(301, &[("Location", location.as_str())], "") }
        })
        .await;
        assert_eq!(probe(&get(here.port(), "/", &[])).await, Outcome::Success);
        assert_eq!(paths(&seen), ["/there"]);
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_a_warning_and_not_followed() {
        let (addr, seen) =
            serve(|_| async { reply(302, &[("Location", "http://example.invalid/")], "moved") })
                .await;
        assert_eq!(
            probe(&get(addr.port(), "/", &[])).await,
            Outcome::Warning("Probe terminated redirects, Response body: moved".to_owned())
        );
        assert_eq!(paths(&seen), ["/"]);
    }

    #[tokio::test]
    async fn endless_redirects_fail_after_ten_requests() {
        let (addr, seen) = serve(|_| async { reply(302, &[("Location", "/")], "") }).await;
        let outcome = probe(&get(addr.port(), "/", &[])).await;
        assert!(
            matches!(&outcome, Outcome::Failure(m) if m.ends_with("stopped after 10 redirects")),
            "{outcome:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn a_3xx_without_location_is_a_warning() {
        let (addr, _) = serve(|_| async { reply(304, &[], "") }).await;
        assert!(matches!(
            probe(&get(addr.port(), "/", &[])).await,
            Outcome::Warning(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_is_a_timeout_failure() {
        let (addr, seen) = serve(|_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            reply(200, &[], "late")
        })
        .await;
        let outcome = http_get(
            &get(addr.port(), "/", &[]),
            &[],
            "127.0.0.1",
            Duration::from_secs(1),
        )
        .await;
        assert!(
            matches!(&outcome, Outcome::Failure(m) if m.ends_with("timeout after 1s awaiting headers")),
            "{outcome:?}"
        );
        assert_eq!(paths(&seen), ["/"]);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let outcome = probe(&get(port, "/", &[])).await;
        assert!(
            matches!(&outcome, Outcome::Failure(m) if m.contains("connect")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_server_receives_the_probe_headers() {
        let (addr, seen) = serve(|_| async { reply(200, &[], "") }).await;
        let action = get(
            addr.port(),
            "/ready",
            &[("X-Custom", "yes"), ("X-Custom", "twice")],
        );
        assert_eq!(probe(&action).await, Outcome::Success);
        let parts = seen.lock().unwrap()[0].clone();
        let h = &parts.headers;
        let custom: Vec<_> = h.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["yes", "twice"]);
        assert_eq!(h[USER_AGENT], "kube-probe/1.34");
        assert_eq!(h[ACCEPT], "*/*");
        assert_eq!(
            h[HOST].to_str().unwrap(),
            format!("127.0.0.1:{}", addr.port())
        );
        assert_eq!(h[CONNECTION], "close");
        assert!(h.get(http::header::ACCEPT_ENCODING).is_none());
        assert_eq!(parts.uri, "/ready");
    }

    #[tokio::test]
    async fn a_host_header_sets_the_host() {
        let (addr, seen) = serve(|_| async { reply(200, &[], "") }).await;
        let action = get(addr.port(), "/", &[("Host", "api.example.com")]);
        assert_eq!(probe(&action).await, Outcome::Success);
        let parts = seen.lock().unwrap()[0].clone();
        assert_eq!(parts.headers[HOST], "api.example.com");
        assert_eq!(parts.headers.get_all(HOST).iter().count(), 1);
    }

    #[tokio::test]
    async fn default_headers_can_be_replaced_or_removed() {
        let (addr, seen) = serve(|_| async { reply(200, &[], "") }).await;
        let action = get(
            addr.port(),
            "/",
            &[("user-agent", "mine/1"), ("Accept", "")],
        );
        assert_eq!(probe(&action).await, Outcome::Success);
        let parts = seen.lock().unwrap()[0].clone();
        assert_eq!(parts.headers[USER_AGENT], "mine/1");
        assert!(parts.headers.get(ACCEPT).is_none());
    }

    #[tokio::test]
    async fn https_with_a_self_signed_certificate_is_accepted() {
        let (addr, seen) = serve_tls(|_| async { reply(200, &[], "secure") }).await;
        let mut action = get(addr.port(), "/tls", &[]);
        action.scheme = Some("HTTPS".to_owned());
        assert_eq!(probe(&action).await, Outcome::Success);
        assert_eq!(paths(&seen), ["/tls"]);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_failure() {
        let (addr, _) = serve(|_| async { reply(200, &[], "") }).await;
        let mut action = get(addr.port(), "/", &[]);
        action.scheme = Some("HTTPS".to_owned());
        let outcome = probe(&action).await;
        assert!(
            matches!(&outcome, Outcome::Failure(m) if m.contains("tls")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_named_port_is_looked_up_and_an_unknown_one_cannot_be_probed() {
        let (addr, _) = serve(|_| async { reply(200, &[], "") }).await;
        let ports = [ContainerPort {
            name: Some("http".to_owned()),
            container_port: i32::from(addr.port()),
            ..ContainerPort::default()
        }];
        let mut action = get(0, "/", &[]);
        action.port = IntOrString::String("http".to_owned());
        let ok = http_get(&action, &ports, "127.0.0.1", Duration::from_secs(5)).await;
        assert_eq!(ok, Outcome::Success);
        action.port = IntOrString::String("admin".to_owned());
        let unknown = http_get(&action, &ports, "127.0.0.1", Duration::from_secs(5)).await;
        assert_eq!(
            unknown,
            Outcome::Unknown("port \"admin\" not found in the container's ports".to_owned())
        );
    }

    #[tokio::test]
    async fn at_most_ten_kib_of_the_body_is_read() {
        let (addr, _) = serve(|_| async {
            reply(
                302,
                &[("Location", "http://elsewhere.invalid/")],
                &"x".repeat(100 * 1024),
            )
        })
        .await;
        let outcome = probe(&get(addr.port(), "/", &[])).await;
        let prefix = "Probe terminated redirects, Response body: ".len();
        assert_eq!(outcome.message().len(), prefix + MAX_BODY);
    }

    #[tokio::test]
    async fn ipv6_hosts_are_reached_in_brackets() {
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            return; // No IPv6 loopback here.
        };
        let port = listener.local_addr().unwrap().port();
        let seen = serve_on(listener, None, |_| async { reply(200, &[], "") }).await;
        let outcome = http_get(&get(port, "/", &[]), &[], "::1", Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::Success);
        assert_eq!(
            seen.lock().unwrap()[0].headers[HOST].to_str().unwrap(),
            format!("[::1]:{port}")
        );
    }

    #[test]
    fn urls_bracket_ipv6_hosts_and_default_the_path() {
        let mut action = get(8080, "healthz", &[]);
        let url = |a: &HTTPGetAction, host: &str| {
            Request::new(a, &[], host, Purpose::Probe)
                .unwrap()
                .url
                .to_string()
        };
        assert_eq!(url(&action, "fd00::1"), "http://[fd00::1]:8080/healthz");
        action.path = None;
        action.host = Some("10.0.0.7".to_owned());
        assert_eq!(url(&action, "fd00::1"), "http://10.0.0.7:8080/");
        action.host = None;
        action.path = Some("/a b?q=1#frag".to_owned());
        assert_eq!(url(&action, "h"), "http://h:8080/a%20b?q=1");
    }

    #[test]
    fn unsupported_schemes_and_invalid_headers_are_failures() {
        let mut action = get(80, "/", &[]);
        action.scheme = Some("FTP".to_owned());
        assert!(matches!(
            Request::new(&action, &[], "h", Purpose::Probe),
            Err(HttpError::Scheme(_))
        ));
        let action = get(80, "/", &[("bad header", "x")]);
        assert!(matches!(
            Request::new(&action, &[], "h", Purpose::Probe),
            Err(HttpError::Header { .. })
        ));
    }
}
