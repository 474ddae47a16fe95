//! Image names as the runtime files them, to tell whether a manifest's image is on the node
//! without asking the runtime once per name. Pure.
//!
//! containerd lists an image under its full names (`docker.io/library/busybox:1.35`) and
//! digests (`docker.io/library/busybox@sha256:…`); a manifest may say `busybox:1.35`,
//! `busybox` (`:latest`) or pin a digest. Both sides are normalized as Docker's
//! `ParseNormalizedNamed` does before they are compared.

use crate::registry::keyring::repository;
use crate::runtime::RuntimeImage;

/// The full name of `image`: Docker Hub's domain and `library/` added to short names, `:latest`
/// when it names neither tag nor digest, and only the digest when it names both (the runtime
/// resolves `name:tag@digest` by the digest).
pub fn normalized(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let repo = repository(name);
    if let Some(digest) = digest {
        return format!("{repo}@{digest}");
    }
    // A tag is a `:` after the last `/`; a `:` before it is a registry port.
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => format!("{repo}{}", &name[colon..]),
        _ => format!("{repo}:latest"),
    }
}

/// Whether `images` (the runtime's list) holds `image`: by one of its names, one of its
/// digests, or its ID.
pub fn held(image: &str, images: &[RuntimeImage]) -> bool {
    let wanted = normalized(image);
    images.iter().any(|i| {
        i.id == image
            || i.tags
                .iter()
                .chain(&i.digests)
                .any(|name| normalized(name) == wanted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_docker_hub_names_with_a_tag() {
        assert_eq!(normalized("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalized("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(normalized("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(
            normalized("podvisor.local/busybox:1.35"),
            "podvisor.local/busybox:1.35"
        );
        assert_eq!(
            normalized("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalized("busybox:1.35@sha256:ab"),
            "docker.io/library/busybox@sha256:ab"
        );
    }

    #[test]
    fn an_image_is_held_by_any_of_its_names_digests_or_its_id() {
        let images = [RuntimeImage {
            id: "sha256:1".into(),
            tags: vec!["docker.io/library/busybox:1.35".into()],
            digests: vec!["docker.io/library/busybox@sha256:ab".into()],
            size: 1,
            pinned: false,
        }];
        assert!(held("busybox:1.35", &images));
        assert!(held("docker.io/library/busybox:1.35", &images));
        assert!(held("busybox@sha256:ab", &images));
        assert!(held("sha256:1", &images));
        assert!(!held("busybox", &images), "busybox means busybox:latest");
        assert!(!held("busybox:1.36", &images));
    }
}
