//! Replays the `manifest` fuzz target's seed corpus (`fuzz/seeds/manifest/`) and every input
//! the fuzzer ever crashed on (`fuzz/regressions/`) through the same pipeline, with plain
//! `cargo test`: no nightly, no cargo-fuzz, no root.
//!
//! A file's name records what it must do when read under its own name: `ok-*` is accepted
//! with at least one pod, `err-*` is rejected. Every file is also read as a `.yaml` and as a
//! `.json` file, as the fuzz target reads its inputs. The pipeline is called directly, so a
//! panic in it fails the test.

use std::fs;
use std::path::{Path, PathBuf};

use podvisor::clock::Timestamp;
use podvisor::manifest::{Loaded, ManifestError, load_manifest};
use podvisor::pod::NodeName;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The inputs in `dir` (relative to the repository), in name order; notes are skipped.
fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = repo().join(dir);
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && !name.starts_with("README") && !name.starts_with('.')
        })
        .collect();
    out.sort();
    out
}

fn all_inputs() -> Vec<PathBuf> {
    let mut all = inputs("fuzz/seeds/manifest");
    all.extend(inputs("fuzz/regressions"));
    all
}

/// Runs `bytes` as the file `path` and checks what holds for every outcome.
fn load(path: &Path, bytes: &[u8]) -> Result<Loaded, ManifestError> {
    let node = NodeName::new("node1");
    let result = load_manifest(path, bytes, &node, Timestamp(0));
    match &result {
        Ok(Loaded::Accepted { pods, .. }) => {
            for pod in pods {
                assert_eq!(
                    pod.hash.as_str().len(),
                    32,
                    "{}: {}",
                    path.display(),
                    pod.key
                );
                assert!(pod.key.name.ends_with("-node1"), "{}", pod.key);
            }
            let again = load_manifest(path, bytes, &node, Timestamp(0));
            assert_eq!(result, again, "{}: not deterministic", path.display());
        }
        Ok(Loaded::Ignored(_)) => {}
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&*path.to_string_lossy()),
                "the error does not name the file: {text}"
            );
        }
    }
    result
}

#[test]
fn every_seed_and_regression_input_is_handled_without_panic() {
    let all = all_inputs();
    assert!(all.len() >= 20, "only {} inputs found", all.len());
    for input in &all {
        let bytes = fs::read(input).expect("read input");
        for as_name in ["fuzz.yaml", "fuzz.json"] {
            let _ = load(
                &Path::new("/etc/kubernetes/manifests").join(as_name),
                &bytes,
            );
        }
    }
}

#[test]
fn each_input_is_accepted_or_rejected_as_its_name_records() {
    let mut wrong = Vec::new();
    for input in all_inputs() {
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let bytes = fs::read(&input).expect("read input");
        let path = Path::new("/etc/kubernetes/manifests").join(name);
        let outcome = load(&path, &bytes);
        let as_expected = if name.starts_with("ok-") {
            matches!(&outcome, Ok(Loaded::Accepted { pods, .. }) if !pods.is_empty())
        } else if name.starts_with("err-") {
            outcome.is_err()
        } else {
            wrong.push(format!(
                "{}: name it ok-* or err-* to record the expected outcome",
                input.display()
            ));
            continue;
        };
        if !as_expected {
            let got = match &outcome {
                Ok(Loaded::Accepted { pods, .. }) => format!("accepted with {} pods", pods.len()),
                Ok(Loaded::Ignored(reason)) => format!("ignored: {reason}"),
                Err(e) => format!("rejected: {e}"),
            };
            wrong.push(format!("{}: {got}", input.display()));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_seed_corpus_holds_every_fixture_and_example_manifest() {
    let seeds: Vec<Vec<u8>> = inputs("fuzz/seeds/manifest")
        .iter()
        .map(|p| fs::read(p).expect("read seed"))
        .collect();
    let mut missing = Vec::new();
    for dir in [
        "tests/fixtures/check",
        "tests/fixtures/kubeadm",
        "manifests-examples",
        "manifests-examples/control-plane",
    ] {
        for file in inputs(dir) {
            let is_manifest = file
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if is_manifest && !seeds.contains(&fs::read(&file).expect("read fixture")) {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "copy these into fuzz/seeds/manifest/ (as ok-* or err-*):\n{}",
        missing.join("\n")
    );
}
