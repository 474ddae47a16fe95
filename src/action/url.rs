//! URLs for HTTP probes and hooks: formatting the first request's target and resolving
//! `Location` headers against it (RFC 3986 §5.2, for the forms servers send). Pure.

use std::fmt;

use super::join_host_port;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Url {
    /// HTTPS rather than HTTP.
    pub(super) https: bool,
    /// A name or IP address, IPv6 without brackets.
    pub(super) host: String,
    /// The port.
    pub(super) port: u16,
    /// Path and query, starting with '/'.
    pub(super) path: String,
}

impl Url {
    /// `host:port`, IPv6 in brackets.
    pub(super) fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// A path as a request target: fragment dropped, a leading '/', and bytes that may not
/// appear in a request line percent-encoded.
pub(super) fn origin_form(path: &str) -> String {
    let path = path.split('#').next().unwrap_or_default();
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for b in path.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scheme of an absolute URL (`http://...`) and what follows `://`.
pub(super) fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

/// Resolves a `Location` against the URL that returned it (RFC 3986 §5.2, for the forms
/// servers send). `None` if it is not an http(s) URL with a host.
pub(super) fn resolve(base: &Url, location: &str) -> Option<Url> {
    let location = location.split('#').next().unwrap_or_default();
    if let Some((scheme, rest)) = split_scheme(location) {
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        return absolute(https, rest);
    }
    if let Some(rest) = location.strip_prefix("//") {
        return absolute(base.https, rest);
    }
    let base_path = base.path.split('?').next().unwrap_or("/");
    let path = if location.starts_with('/') {
        location.to_owned()
    } else if location.starts_with('?') || location.is_empty() {
        format!("{base_path}{location}")
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{location}")
    };
    Some(Url {
        path: origin_form(&remove_dot_segments(&path)),
        ..base.clone()
    })
}

/// `authority[/path][?query]` of an absolute URL.
fn absolute(https: bool, rest: &str) -> Option<Url> {
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => (host, p.parse().ok()?),
            _ => (host, default_port),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, p)) if !p.is_empty() => (host, p.parse().ok()?),
            Some((host, _)) => (host, default_port),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(Url {
        https,
        host: host.to_owned(),
        port,
        path: origin_form(&remove_dot_segments(if path.is_empty() {
            "/"
        } else {
            path
        })),
    })
}

/// Removes `.` and `..` segments from the path part of `path_and_query`.
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}{query}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Url {
            https: false,
            host: "10.0.0.1".to_owned(),
            port: 8080,
            path: "/a/b?x=1".to_owned(),
        };
        let resolved = |l: &str| resolve(&base, l).map(|u| u.to_string());
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
            resolved("HTTP://u:p@Host/").as_deref(),
            Some("http://Host:80/")
        );
        assert_eq!(resolved("ftp://h/"), None);
        assert_eq!(resolved("http:///nohost"), None);
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(remove_dot_segments("/a/b/../c"), "/a/c");
        assert_eq!(remove_dot_segments("/a/."), "/a/");
        assert_eq!(remove_dot_segments("/.."), "/");
        assert_eq!(remove_dot_segments("/a/b/?q=.."), "/a/b/?q=..");
    }
}
