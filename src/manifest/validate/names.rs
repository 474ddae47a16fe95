//! Name rules (`k8s.io/apimachinery/pkg/util/validation`). Pure.

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length: one dot-separated part of a subdomain.
fn is_dns1123_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_part(s)
}

/// A lowercase RFC 1123 subdomain, as apimachinery's `IsDNS1123Subdomain` checks it: at most
/// 253 characters in all, parts of a-z, 0-9 and '-' separated by '.'. Unlike a label, a part
/// has no length limit of its own.
pub(in crate::manifest) fn is_dns1123_subdomain(s: &str) -> bool {
    dns1123_subdomain_error(s).is_none()
}

/// What is wrong with `s` as an RFC 1123 subdomain, in apimachinery's words; `None` if nothing.
pub(super) fn dns1123_subdomain_error(s: &str) -> Option<&'static str> {
    if s.len() > 253 {
        Some("must be no more than 253 characters")
    } else if !s.split('.').all(is_dns1123_part) {
        Some(DNS1123_SUBDOMAIN)
    } else {
        None
    }
}

pub(super) fn is_label_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

pub(super) fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_label_name_part(name),
        None => is_label_name_part(s),
    }
}

pub(super) fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name_part(s)
}

pub(super) fn is_iana_svc_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A pod UID that is safe as a path component and a cgroup name.
pub(super) fn is_safe_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (32..127).contains(&b) && b != b'=')
}

pub(super) const DNS1123_LABEL: &str = "must be a lowercase RFC 1123 label: a-z, 0-9 and '-', starting and ending alphanumeric, at most 63 characters";
pub(super) const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
