//! Error messages with their causes, for the one place an error is logged or reported.

use std::error::Error;

/// An error and its causes, `a: b: c`, skipping a cause the message before it already quotes
/// (kube, hyper and some of our own errors repeat their source in their own message).
pub fn chain(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("running command \"sh\"")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_once() {
        let err = Outer(std::io::Error::other("container not running"));
        assert_eq!(chain(&err), "running command \"sh\": container not running");
        let io = std::io::Error::other("x");
        assert_eq!(chain(&io), "x");
    }
}
