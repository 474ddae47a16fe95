//! Which images a proposal makes the daemon pull, pure: those of the containers it starts
//! (every container of a created or replaced pod, the restarted and added ones of a pod
//! changed in place), by their `imagePullPolicy` and, when the daemon lists them, the images
//! the node holds.

use std::collections::BTreeMap;

use serde::Serialize;

use super::outcome::{Outcome, PodDiff, Step};
use crate::images::names::held;
use crate::manifest::Snapshot;
use crate::runtime::RuntimeImage;

/// Why an image is pulled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Why {
    /// `imagePullPolicy: Always`: pulled at every start.
    Always,
    /// The node does not hold it.
    Absent,
    /// Pulled if the node does not hold it; whether it does is not known (no daemon).
    Unknown,
    /// The node does not hold it and `imagePullPolicy: Never` forbids pulling it: the
    /// container will not start (`ErrImageNeverPull`).
    NeverPulled,
}

/// One image and the pods that want it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImagePull {
    /// The image as the manifest names it.
    pub image: String,
    /// Why it is listed.
    pub why: Why,
    /// The pods whose starting containers name it.
    pub pods: Vec<String>,
}

/// The images the starting containers of `diffs` need, given the node's images (`None`:
/// not known). Sorted by reason, then image.
pub fn pulls(
    diffs: &[PodDiff],
    proposed: &Snapshot,
    node_images: Option<&[RuntimeImage]>,
) -> Vec<ImagePull> {
    let mut out: BTreeMap<(Why, String), Vec<String>> = BTreeMap::new();
    for d in diffs {
        let Some(pod) = proposed.pods.values().find(|p| p.key.to_string() == d.pod) else {
            continue;
        };
        let all = matches!(d.outcome, Outcome::Create | Outcome::Replace);
        let starting =
            pod.init_containers()
                .iter()
                .chain(pod.containers())
                .filter(|c| {
                    all || d.containers.iter().any(|ch| {
                        ch.name == c.name && matches!(ch.step, Step::Restart | Step::Start)
                    })
                });
        for c in starting {
            let Some(image) = c.image.clone().filter(|i| !i.is_empty()) else {
                continue;
            };
            let present = node_images.map(|images| held(&image, images));
            let why = match (c.image_pull_policy.as_deref(), present) {
                (Some("Always"), _) => Why::Always,
                (Some("Never"), Some(false)) => Why::NeverPulled,
                (Some("Never"), _) | (_, Some(true)) => continue,
                (_, Some(false)) => Why::Absent,
                (_, None) => Why::Unknown,
            };
            let pods = out.entry((why, image)).or_default();
            if !pods.contains(&d.pod) {
                pods.push(d.pod.clone());
            }
        }
    }
    out.into_iter()
        .map(|((why, image), pods)| ImagePull { image, why, pods })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Entry, Format, Resolver, Scan, parse_manifest};
    use crate::pod::NodeName;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn snapshot(containers: &str) -> Snapshot {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n{containers}"
        );
        let path = PathBuf::from("/m/web.yaml");
        let mut scan = Scan::default();
        let parsed = parse_manifest(&path, Format::Yaml, text.as_bytes()).map(Arc::new);
        scan.entries.insert(path, Entry::Parsed(parsed));
        Resolver::new(NodeName::new("n1")).resolve(&scan, crate::clock::Timestamp(0))
    }

    fn created() -> Vec<PodDiff> {
        vec![PodDiff {
            pod: "default/web-n1".into(),
            file: None,
            outcome: Outcome::Create,
            fields: vec![],
            containers: vec![],
            note: None,
        }]
    }

    const FOUR: &str = "  - {name: a, image: 'here:1'}\n  - {name: b, image: 'gone:1'}\n  - {name: c, image: 'here:1', imagePullPolicy: Always}\n  - {name: d, image: 'gone:2', imagePullPolicy: Never}\n";

    #[test]
    fn the_policy_and_the_nodes_images_decide_what_is_pulled() {
        let held = [RuntimeImage {
            id: "sha256:1".into(),
            tags: vec!["docker.io/library/here:1".into()],
            digests: vec![],
            size: 1,
            pinned: false,
        }];
        let got = pulls(&created(), &snapshot(FOUR), Some(&held));
        let got: Vec<(&str, Why)> = got.iter().map(|p| (p.image.as_str(), p.why)).collect();
        assert_eq!(
            got,
            [
                ("here:1", Why::Always),
                ("gone:1", Why::Absent),
                ("gone:2", Why::NeverPulled)
            ]
        );
    }

    #[test]
    fn without_the_daemon_presence_is_unknown_and_unchanged_pods_pull_nothing() {
        let snap = snapshot(FOUR);
        let got = pulls(&created(), &snap, None);
        let got: Vec<(&str, Why)> = got.iter().map(|p| (p.image.as_str(), p.why)).collect();
        assert_eq!(
            got,
            [
                ("here:1", Why::Always),
                ("gone:1", Why::Unknown),
                ("here:1", Why::Unknown)
            ]
        );
        let mut nothing = created();
        nothing[0].outcome = Outcome::Nothing;
        assert!(pulls(&nothing, &snap, None).is_empty());
    }
}
