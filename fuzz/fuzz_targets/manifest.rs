//! Arbitrary bytes through the manifest pipeline (parse → default → validate → bind → hash),
//! as a `.yaml` and as a `.json` file. Errors are fine; a panic, an abort, a stack overflow,
//! a timeout or running out of memory is a bug.
//!
//! Seeds: `fuzz/seeds/manifest/`. Run: `hack/fuzz.sh`. Crashes become inputs under
//! `fuzz/regressions/`, replayed by `tests/fuzz_regressions.rs`.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use podvisor::clock::Timestamp;
use podvisor::manifest::{Loaded, load_manifest};
use podvisor::pod::NodeName;

fuzz_target!(|data: &[u8]| {
    let node = NodeName::new("node1");
    for path in [
        "/etc/kubernetes/manifests/fuzz.yaml",
        "/etc/kubernetes/manifests/fuzz.json",
    ] {
        let path = Path::new(path);
        let first = load_manifest(path, data, &node, Timestamp(0));
        match &first {
            Ok(Loaded::Accepted { pods, .. }) => {
                assert!(!pods.is_empty(), "an accepted file runs at least one pod");
                for pod in pods {
                    assert_eq!(pod.hash.as_str().len(), 32, "config.hash is 32 hex digits");
                    assert_eq!(pod.uid.as_str().len(), 32, "the pod UID is 32 hex digits");
                    assert!(pod.key.name.ends_with("-node1"), "{}", pod.key);
                    assert_eq!(pod.spec.node_name.as_deref(), Some("node1"));
                }
                // Hashes name running containers: the same bytes must give the same pods.
                let again = load_manifest(path, data, &node, Timestamp(0));
                assert_eq!(first, again, "the pipeline is deterministic");
            }
            Ok(Loaded::Ignored(reason)) => panic!("fuzz file names are manifests: {reason}"),
            Err(e) => {
                // Every error names the file.
                let text = e.to_string();
                assert!(text.starts_with(&*path.to_string_lossy()), "{text}");
            }
        }
    }
});
