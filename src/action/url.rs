//! Where an HTTP probe or hook request goes: the kubelet's URL for an `HTTPGetAction`, and
//! `Location` headers resolved against it, on the `url` crate (WHATWG parsing and RFC 3986
//! resolution). Pure.
//!
//! Host names are ASCII only: the build pins `idna_adapter` to its stub, so a probe host with
//! non-ASCII letters is refused rather than punycoded (the kubelet does not punycode either;
//! such a name never resolves).

use std::fmt;

use url::{Host, Url};

use super::join_host_port;

/// Where a request goes: an http(s) URL with a host and, always, a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Target {
    url: Url,
    port: u16,
}

impl Target {
    /// The kubelet's `formatURL(scheme, host, port, path)`: the path (and its query) on
    /// `scheme://host:port`, the fragment dropped. `None` if the host is not one.
    pub(super) fn new(https: bool, host: &str, port: u16, path: &str) -> Option<Target> {
        let scheme = if https { "https" } else { "http" };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut url = Url::parse(&format!("{scheme}://{}/", join_host_port(host, port))).ok()?;
        let path = path.split('#').next().unwrap_or_default();
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        url.set_path(path);
        url.set_query(query);
        Some(Target { url, port })
    }

    /// Resolves a `Location` against this URL. `None` if the result is not an http(s) URL
    /// with a host. Credentials in it are dropped, as is its fragment.
    pub(super) fn resolve(&self, location: &str) -> Option<Target> {
        let mut url = self.url.join(location).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return None;
        }
        url.set_fragment(None);
        url.set_username("").ok()?;
        url.set_password(None).ok()?;
        let port = url.port_or_known_default()?;
        Some(Target { url, port })
    }

    /// The same target over plain HTTP, on the same port.
    pub(super) fn downgraded(&self) -> Target {
        let mut url = self.url.clone();
        // http and https are both special schemes, so the change is always allowed.
        let _ = url.set_scheme("http");
        let _ = url.set_port(Some(self.port));
        Target {
            url,
            port: self.port,
        }
    }

    /// HTTPS rather than HTTP.
    pub(super) fn https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// The host to dial or verify: a name, or an IP address (IPv6 without brackets).
    pub(super) fn host(&self) -> String {
        match self.url.host() {
            Some(Host::Ipv6(ip)) => ip.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Domain(name)) => name.to_owned(),
            None => String::new(),
        }
    }

    /// The port.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` for the `Host` header, IPv6 in brackets.
    pub(super) fn authority(&self) -> String {
        join_host_port(&self.host(), self.port)
    }

    /// Path and query: the request target.
    pub(super) fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// Whether `other` goes to the same host (names compare case-insensitively).
    pub(super) fn same_host(&self, other: &Target) -> bool {
        self.url.host() == other.url.host()
    }
}

impl fmt::Display for Target {
    /// As the kubelet prints it: the port always written (`http://10.0.0.1:80/`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.url.scheme(),
            self.authority(),
            self.path_and_query()
        )
    }
}

/// Whether `location` is an absolute URL (has a scheme): a custom `Host` header does not
/// survive a redirect to one.
pub(super) fn is_absolute(location: &str) -> bool {
    Url::parse(location).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Target::new(false, "10.0.0.1", 8080, "/a/b?x=1").expect("target");
        let resolved = |l: &str| base.resolve(l).map(|u| u.to_string());
        assert_eq!(resolved("/c").as_deref(), Some("http://10.0.0.1:8080/c"));
        assert_eq!(resolved("c").as_deref(), Some("http://10.0.0.1:8080/a/c"));
        assert_eq!(
            resolved("../c/./d").as_deref(),
            Some("http://10.0.0.1:8080/c/d")
        );
        assert_eq!(
            resolved("?y=2").as_deref(),
            Some("http://10.0.0.1:8080/a/b?y=2")
        );
        assert_eq!(
            resolved("https://10.0.0.1/z").as_deref(),
            Some("https://10.0.0.1:443/z")
        );
        assert_eq!(resolved("//other:81").as_deref(), Some("http://other:81/"));
        assert_eq!(
            resolved("http://[fd00::2]:90/v6").as_deref(),
            Some("http://[fd00::2]:90/v6")
        );
        assert_eq!(
            resolved("HTTP://u:p@Host/#frag").as_deref(),
            Some("http://host:80/")
        );
        assert_eq!(resolved("ftp://h/"), None);
        assert_eq!(
            resolved("http:///nohost").as_deref(),
            Some("http://nohost:80/")
        );
    }

    #[test]
    fn a_target_is_the_kubelets_url_for_the_action() {
        let t =
            |host: &str, path: &str| Target::new(false, host, 8080, path).map(|t| t.to_string());
        assert_eq!(
            t("fd00::1", "healthz").as_deref(),
            Some("http://[fd00::1]:8080/healthz")
        );
        assert_eq!(
            t("[fd00::1]", "/").as_deref(),
            Some("http://[fd00::1]:8080/")
        );
        assert_eq!(
            t("h", "/a b?q=1#frag").as_deref(),
            Some("http://h:8080/a%20b?q=1")
        );
        assert_eq!(t("h", "").as_deref(), Some("http://h:8080/"));
        // A path that looks like an authority stays a path: the host is the action's.
        assert_eq!(t("h", "//evil/x").as_deref(), Some("http://h:8080//evil/x"));
        assert_eq!(t("bad host", "/"), None);
        let https = Target::new(true, "10.0.0.1", 443, "/x").expect("target");
        assert_eq!(https.to_string(), "https://10.0.0.1:443/x");
        assert_eq!(https.downgraded().to_string(), "http://10.0.0.1:443/x");
        assert_eq!((https.host(), https.port()), ("10.0.0.1".to_owned(), 443));
    }

    #[test]
    fn only_a_url_with_a_scheme_is_absolute() {
        assert!(is_absolute("http://h/x"));
        assert!(!is_absolute("/x"));
        assert!(!is_absolute("//h/x"));
        assert!(!is_absolute("x?y"));
    }
}
