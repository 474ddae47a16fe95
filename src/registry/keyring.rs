//! Which credentials go with an image, as the kubelet's `BasicDockerKeyring` decides
//! (`pkg/credentialprovider/keyring.go`, v1.35). Pure: no files, no processes.

use std::collections::BTreeMap;

use super::Credentials;

/// The registry the Docker Hub's short names mean.
const DOCKER_HUB: &str = "docker.io";
/// The key Docker Hub credentials are filed under (`https://index.docker.io/v1/`).
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// The repository an image is pulled from, normalized as the kubelet's `ParseImageName`
/// (`docker.io/library/busybox` for `busybox:1.36`): tag and digest dropped, Docker Hub's
/// domain and `library/` added to short names.
pub fn repository(image: &str) -> String {
    let name = image.split_once('@').map_or(image, |(n, _)| n);
    // A tag is a `:` after the last `/`; a `:` before it is a registry port.
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let domain = if first == DEFAULT_REGISTRY_HOST {
                DOCKER_HUB
            } else {
                first
            };
            format!("{domain}/{rest}")
        }
        Some(_) => format!("{DOCKER_HUB}/{name}"),
        None => format!("{DOCKER_HUB}/library/{name}"),
    }
}

/// The registry part of an image (host and port), as the plugin cache's `Registry` key.
pub fn registry(image: &str) -> &str {
    image.split('/').next().unwrap_or(image)
}

/// A schemeless URL split as Go's `url.Parse("https://" + s)` would: host (with port) and
/// path (with its leading `/`, or empty).
fn split_url(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(slash) => (&s[..slash], &s[slash..]),
        None => (s, ""),
    }
}

/// Host labels and port, as `SplitURL`.
fn host_parts(host: &str) -> (Vec<&str>, &str) {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => (name, port),
        _ => (host, ""),
    };
    (name.split('.').collect(), port)
}

/// Whether `target` (a repository) matches `glob` (a keyring key or a plugin's
/// `matchImages` entry), as the kubelet's `URLsMatch`: same port, same number of host labels,
/// each label matching its glob (`*.example.com`), and the target's path starting with the
/// glob's path.
pub fn url_matches(glob: &str, target: &str) -> bool {
    let glob = strip_scheme(glob);
    let target = strip_scheme(target);
    let (glob_host, glob_path) = split_url(glob);
    let (target_host, target_path) = split_url(target);
    let (glob_labels, glob_port) = host_parts(glob_host);
    let (target_labels, target_port) = host_parts(target_host);
    glob_port == target_port
        && glob_labels.len() == target_labels.len()
        && target_path.starts_with(glob_path)
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
}

fn strip_scheme(s: &str) -> &str {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
}

/// Go's `filepath.Match` on one host label: `*`, `?`, `[a-z]`, `[^x]` and `\` escapes.
/// A malformed class matches nothing (Go returns an error, which the kubelet treats as no
/// match).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, tail)) = text.split_first() else {
                return false;
            };
            let Some(end) = rest.iter().skip(1).position(|&b| b == b']').map(|p| p + 1) else {
                return false;
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let (negated, class) = match class.split_first() {
                Some((b'^', c)) => (true, c),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negated && glob_match(after, tail)
        }
        Some((b'\\', rest)) => match (rest.split_first(), text.split_first()) {
            (Some((p, rest)), Some((t, tail))) => p == t && glob_match(rest, tail),
            _ => false,
        },
        Some((p, rest)) => text.first() == Some(p) && glob_match(rest, &text[1..]),
    }
}

/// Credentials filed by registry location, most specific first, as the kubelet's keyring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    /// Key (host plus path) → its credentials, in the order they were added.
    creds: BTreeMap<String, Vec<Credentials>>,
}

impl Keyring {
    /// Files each `(location, credentials)` under its key: the location without scheme, with
    /// a `/v1/` or `/v2/` path prefix dropped (`https://index.docker.io/v1/` →
    /// `index.docker.io`).
    pub fn add<'a>(&mut self, entries: impl IntoIterator<Item = (&'a str, &'a Credentials)>) {
        for (location, creds) in entries {
            let (host, path) = split_url(strip_scheme(location));
            if host.is_empty() {
                continue;
            }
            let path = path
                .strip_prefix("/v2")
                .or_else(|| path.strip_prefix("/v1"))
                .filter(|p| p.starts_with('/'))
                .unwrap_or(path);
            let key = if path.is_empty() || path == "/" {
                host.to_owned()
            } else {
                format!("{host}{path}")
            };
            self.creds.entry(key).or_default().push(creds.clone());
        }
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.creds.is_empty()
    }

    /// Every credential whose key matches `repository` (from [`repository`]), keys in
    /// reverse order (so `reg.io/team` comes before `reg.io`); Docker Hub's credentials for
    /// Docker Hub images when no key matched. Empty: pull without credentials.
    pub fn lookup(&self, repository: &str) -> Vec<Credentials> {
        let found: Vec<Credentials> = self
            .creds
            .iter()
            .rev()
            .filter(|(key, _)| url_matches(key, repository))
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        if !found.is_empty() {
            return found;
        }
        if is_docker_hub(repository)
            && let Some(c) = self.creds.get(DEFAULT_REGISTRY_HOST)
        {
            return c.clone();
        }
        Vec::new()
    }
}

/// The kubelet's `isDefaultRegistryMatch`.
fn is_docker_hub(image: &str) -> bool {
    match image.split_once('/') {
        None => !image.is_empty(),
        Some(("", _)) => false,
        Some((first, _)) => {
            first == DOCKER_HUB
                || first == DEFAULT_REGISTRY_HOST
                || !(first.contains('.') || first.contains(':'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str) -> Credentials {
        Credentials::new(user, "pw")
    }

    fn users(found: Vec<Credentials>) -> Vec<String> {
        found.into_iter().map(|c| c.username).collect()
    }

    #[test]
    fn short_names_normalize_to_docker_hub_library() {
        assert_eq!(repository("busybox"), "docker.io/library/busybox");
        assert_eq!(repository("busybox:1.36"), "docker.io/library/busybox");
        assert_eq!(repository("team/app:v1"), "docker.io/team/app");
        assert_eq!(repository("index.docker.io/team/app"), "docker.io/team/app");
    }

    #[test]
    fn registry_ports_are_kept_and_tags_and_digests_dropped() {
        assert_eq!(
            repository("127.0.0.1:5000/busybox:1"),
            "127.0.0.1:5000/busybox"
        );
        assert_eq!(
            repository("reg.example.com/a/b@sha256:abcd"),
            "reg.example.com/a/b"
        );
        assert_eq!(repository("localhost/app"), "localhost/app");
        assert_eq!(registry("127.0.0.1:5000/busybox"), "127.0.0.1:5000");
    }

    #[test]
    fn host_globs_match_one_label_each() {
        assert!(url_matches("*.example.com", "reg.example.com/app"));
        assert!(!url_matches("*.example.com", "a.reg.example.com/app"));
        assert!(url_matches("*.*.example.com", "a.reg.example.com/app"));
        assert!(url_matches("reg-?.example.com", "reg-1.example.com/app"));
        assert!(url_matches("reg-[0-9].example.com", "reg-7.example.com/x"));
        assert!(!url_matches(
            "reg-[^0-9].example.com",
            "reg-7.example.com/x"
        ));
    }

    #[test]
    fn ports_must_be_equal_to_match() {
        assert!(url_matches("127.0.0.1:5000", "127.0.0.1:5000/busybox"));
        assert!(!url_matches("127.0.0.1:5000", "127.0.0.1:5001/busybox"));
        assert!(!url_matches("127.0.0.1", "127.0.0.1:5000/busybox"));
    }

    #[test]
    fn a_path_matches_as_a_prefix_of_the_repository_path() {
        assert!(url_matches("reg.io/team", "reg.io/team/app"));
        assert!(url_matches("reg.io/team", "reg.io/teamwork/app"));
        assert!(!url_matches("reg.io/team", "reg.io/other/app"));
        assert!(url_matches("https://reg.io", "reg.io/other/app"));
    }

    #[test]
    fn more_specific_keys_are_tried_first() {
        let mut k = Keyring::default();
        let (a, b) = (creds("host"), creds("team"));
        k.add([("https://reg.io/v2/", &a), ("reg.io/team", &b)]);
        assert_eq!(users(k.lookup("reg.io/team/app")), ["team", "host"]);
        assert_eq!(users(k.lookup("reg.io/other")), ["host"]);
    }

    #[test]
    fn docker_hub_credentials_serve_short_names() {
        let mut k = Keyring::default();
        let hub = creds("hub");
        k.add([("https://index.docker.io/v1/", &hub)]);
        assert_eq!(users(k.lookup(&repository("busybox"))), ["hub"]);
        assert!(k.lookup("quay.io/app").is_empty());
    }

    #[test]
    fn an_image_no_key_matches_gets_no_credentials() {
        let mut k = Keyring::default();
        let a = creds("a");
        k.add([("reg.io", &a)]);
        assert!(k.lookup("other.io/app").is_empty());
    }
}
