//! From a directory scan to the desired [`Snapshot`]: binds pods to the node, keeps each
//! rejected file's last good pods, and settles duplicate pod names (first file in name order
//! wins). Pure apart from the state it carries between scans; no IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::{Entry, FileReport, FileStatus, ManifestError, Scan, Snapshot};
use crate::clock::Timestamp;
use crate::pod::{ManifestRef, NodeName, PodKey, PodUid, StaticPod};

/// Turns scans into snapshots, remembering what it needs between them.
pub struct Resolver {
    node: NodeName,
    /// Each file's pods from the last time it was accepted.
    last_good: BTreeMap<PathBuf, Vec<Arc<StaticPod>>>,
    /// The parse each `last_good` entry was built from, for the on-disk copy.
    accepted: BTreeMap<PathBuf, Arc<Vec<super::ParsedPod>>>,
    /// When each pod UID was first seen (`kubernetes.io/config.seen`).
    seen: HashMap<PodUid, Timestamp>,
    /// The last good pods of files that went missing in the latest resolve, in case the
    /// caller learns only afterwards that they were renamed away (an editor mid-save).
    vanished: BTreeMap<PathBuf, Vec<Arc<StaticPod>>>,
    /// Each file's pods as built from the parse result they came from: a resync that finds
    /// the same parse (the scanner's cache) reuses them instead of hashing every pod again.
    built: HashMap<PathBuf, Built>,
}

/// A file's parse result and the pods built from it.
type Built = (Arc<Vec<super::ParsedPod>>, Vec<Arc<StaticPod>>);

impl Resolver {
    /// A resolver for pods on `node`.
    pub fn new(node: NodeName) -> Resolver {
        Resolver {
            node,
            last_good: BTreeMap::new(),
            accepted: BTreeMap::new(),
            seen: HashMap::new(),
            vanished: BTreeMap::new(),
            built: HashMap::new(),
        }
    }

    /// The desired state for `scan`, at `now`.
    pub fn resolve(&mut self, scan: &Scan, now: Timestamp) -> Snapshot {
        self.resolve_holding(scan, now, &BTreeSet::new())
    }

    /// [`Resolver::resolve`], where the files in `held` were renamed away moments ago (an
    /// editor mid-save): if missing from `scan`, they keep their last good pods.
    pub fn resolve_holding(
        &mut self,
        scan: &Scan,
        now: Timestamp,
        held: &BTreeSet<PathBuf>,
    ) -> Snapshot {
        let mut files = BTreeMap::new();
        let mut untouchable = BTreeSet::new();
        let mut candidates: Vec<(PathBuf, Vec<Arc<StaticPod>>)> = Vec::new();

        for (path, entry) in &scan.entries {
            let mut report = FileReport {
                status: FileStatus::Accepted,
                pods: Vec::new(),
                errors: Vec::new(),
                warnings: Vec::new(),
            };
            match entry {
                Entry::Ignored(reason) => report.status = FileStatus::Ignored(reason.clone()),
                Entry::Parsed(Ok(parsed)) => match self.bind(path, parsed, now) {
                    Ok(pods) => {
                        report.warnings = parsed.iter().flat_map(|p| p.warnings.clone()).collect();
                        self.last_good.insert(path.clone(), pods.clone());
                        self.accepted.insert(path.clone(), parsed.clone());
                        candidates.push((path.clone(), pods));
                    }
                    Err(e) => self.reject(path, e, &mut report, &mut candidates, &mut untouchable),
                },
                Entry::Parsed(Err(e)) => self.reject(
                    path,
                    e.clone(),
                    &mut report,
                    &mut candidates,
                    &mut untouchable,
                ),
            }
            files.insert(path.clone(), report);
        }
        for path in held.iter().filter(|p| !scan.entries.contains_key(*p)) {
            let kept = self
                .last_good
                .get(path)
                .or_else(|| self.vanished.get(path))
                .cloned();
            if let Some(pods) = kept {
                self.last_good.insert(path.clone(), pods.clone());
                candidates.push((path.clone(), pods.clone()));
                files.insert(
                    path.clone(),
                    FileReport {
                        status: FileStatus::RenamedAway,
                        pods: Vec::new(),
                        errors: Vec::new(),
                        warnings: Vec::new(),
                    },
                );
            }
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        self.built.retain(|p, _| scan.entries.contains_key(p));
        let (kept, gone) = std::mem::take(&mut self.last_good)
            .into_iter()
            .partition(|(p, _)| scan.entries.contains_key(p) || held.contains(p));
        self.last_good = kept;
        self.vanished = gone;
        let last_good = &self.last_good;
        self.accepted.retain(|p, _| last_good.contains_key(p));

        let mut pods: BTreeMap<PodKey, Arc<StaticPod>> = BTreeMap::new();
        for (path, list) in candidates {
            for pod in list {
                let report = files.get_mut(&path);
                match pods.get(&pod.key) {
                    Some(winner) => {
                        if let Some(report) = report {
                            if report.status == FileStatus::Accepted {
                                report.status = FileStatus::Conflict;
                            }
                            report.errors.push(ManifestError::Conflict {
                                path: path.clone(),
                                at: pod.source.at,
                                key: pod.key.clone(),
                                winner: winner.source.path.clone(),
                            });
                        }
                    }
                    None => {
                        if let Some(report) = report {
                            report.pods.push(pod.key.clone());
                        }
                        pods.insert(pod.key.clone(), pod);
                    }
                }
            }
        }
        let live: BTreeSet<&PodUid> = self.last_good.values().flatten().map(|p| &p.uid).collect();
        self.seen.retain(|h, _| live.contains(h));
        Snapshot {
            pods,
            files,
            untouchable,
        }
    }

    /// Gives `path` the last good version `parsed` (kept on disk from before podvisor
    /// started): if the file is rejected now, its pods run this version instead of being
    /// left alone. A version that no longer binds to the node is refused.
    pub fn restore(
        &mut self,
        path: PathBuf,
        parsed: Vec<super::ParsedPod>,
        now: Timestamp,
    ) -> Result<(), ManifestError> {
        let pods = self.build(&path, &parsed, now)?;
        self.last_good.insert(path.clone(), pods);
        self.accepted.insert(path, Arc::new(parsed));
        Ok(())
    }

    /// The parse behind each file's last good pods, by path.
    pub fn accepted(&self) -> &BTreeMap<PathBuf, Arc<Vec<super::ParsedPod>>> {
        &self.accepted
    }

    fn reject(
        &self,
        path: &PathBuf,
        error: ManifestError,
        report: &mut FileReport,
        candidates: &mut Vec<(PathBuf, Vec<Arc<StaticPod>>)>,
        untouchable: &mut BTreeSet<PathBuf>,
    ) {
        report.status = FileStatus::Rejected;
        report.errors.push(error);
        match self.last_good.get(path) {
            Some(pods) => candidates.push((path.clone(), pods.clone())),
            None => {
                untouchable.insert(path.clone());
            }
        }
    }

    fn bind(
        &mut self,
        path: &std::path::Path,
        parsed: &Arc<Vec<super::ParsedPod>>,
        now: Timestamp,
    ) -> Result<Vec<Arc<StaticPod>>, ManifestError> {
        if let Some((from, pods)) = self.built.get(path)
            && Arc::ptr_eq(from, parsed)
        {
            return Ok(pods.clone());
        }
        let pods = self.build(path, parsed, now)?;
        self.built
            .insert(path.to_owned(), (parsed.clone(), pods.clone()));
        Ok(pods)
    }

    fn build(
        &mut self,
        path: &std::path::Path,
        parsed: &[super::ParsedPod],
        now: Timestamp,
    ) -> Result<Vec<Arc<StaticPod>>, ManifestError> {
        let mut out = Vec::with_capacity(parsed.len());
        for p in parsed {
            let seen = &mut self.seen;
            let pod = StaticPod::build(
                p.metadata.clone(),
                p.spec.clone(),
                &self.node,
                ManifestRef {
                    path: path.to_owned(),
                    at: p.at,
                },
                |uid| *seen.entry(uid.clone()).or_insert(now),
            );
            if let Some(why) = super::validate::pod_name_error(&pod.key.name) {
                return Err(ManifestError::Invalid {
                    path: path.to_owned(),
                    at: p.at,
                    issues: vec![super::FieldIssue {
                        field: "metadata.name".to_owned(),
                        message: format!("{:?} (with the node suffix): {why}", pod.key.name),
                    }],
                });
            }
            out.push(Arc::new(pod));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Format, parse_manifest};
    use std::path::Path;

    fn pod_yaml(name: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: '{image}'}}]}}\n"
        )
    }

    fn entry(path: &Path, text: &str) -> Entry {
        Entry::Parsed(parse_manifest(path, Format::Yaml, text.as_bytes()).map(Arc::new))
    }

    fn scan(files: &[(&str, &str)]) -> Scan {
        let mut s = Scan::default();
        for (name, text) in files {
            let path = PathBuf::from(format!("/m/{name}"));
            let e = entry(&path, text);
            s.entries.insert(path, e);
        }
        s
    }

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "default".into(),
            name: format!("{name}-node1"),
        }
    }

    #[test]
    fn pods_are_named_with_the_node_suffix_and_annotated() {
        let mut r = Resolver::new(NodeName::new("Node1"));
        let snap = r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:1"))]),
            Timestamp(7),
        );
        let pod = &snap.pods[&key("web")];
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node1"));
        assert_eq!(pod.spec.node_name.as_deref(), Some("node1"));
        let ann = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(ann["kubernetes.io/config.source"], "file");
        assert_eq!(ann["kubernetes.io/config.hash"], pod.hash.as_str());
        assert_eq!(
            ann["kubernetes.io/config.seen"],
            "1970-01-01T00:00:00.000000007Z"
        );
        assert_eq!(pod.metadata.uid.as_deref(), Some(pod.uid.as_str()));
    }

    fn seen(snapshot: &Snapshot) -> String {
        snapshot.pods[&key("web")]
            .metadata
            .annotations
            .as_ref()
            .expect("annotations")["kubernetes.io/config.seen"]
            .clone()
    }

    #[test]
    fn config_seen_is_kept_while_the_pod_uid_is_unchanged_issue_17() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let s = scan(&[("web.yaml", &pod_yaml("web", "i:1"))]);
        let first = r.resolve(&s, Timestamp(1));
        let second = r.resolve(&s, Timestamp(2));
        assert_eq!(first, second);
        // A container-only edit keeps the sandbox and the UID: nothing was recreated.
        let edited = r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:2"))]),
            Timestamp(3),
        );
        assert_ne!(edited.pods[&key("web")].hash, first.pods[&key("web")].hash);
        assert_eq!(seen(&edited), Timestamp(1).rfc3339_nanos());
        // A sandbox-shaping edit is a new pod UID, first seen now.
        let relabelled =
            pod_yaml("web", "i:2").replace("{name: web}", "{name: web, labels: {a: b}}");
        let new_uid = r.resolve(&scan(&[("web.yaml", &relabelled)]), Timestamp(4));
        assert_eq!(seen(&new_uid), Timestamp(4).rfc3339_nanos());
    }

    #[test]
    fn a_manifest_uid_is_kept_as_the_pod_uid_issue_17() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let with_uid = |labels: &str| {
            pod_yaml("web", "i:1").replace(
                "{name: web}",
                &format!("{{name: web, uid: 6f1c2b1e-1b2a-4c3d-9e8f-0a1b2c3d4e5f{labels}}}"),
            )
        };
        let a = r.resolve(&scan(&[("web.yaml", &with_uid(""))]), Timestamp(1));
        let pod = &a.pods[&key("web")];
        assert_eq!(pod.uid.as_str(), "6f1c2b1e-1b2a-4c3d-9e8f-0a1b2c3d4e5f");
        assert_eq!(pod.metadata.uid.as_deref(), Some(pod.uid.as_str()));
        assert_ne!(pod.sandbox.as_str(), pod.uid.as_str());
        // A sandbox-shaping edit: a new sandbox version, the same UID and first-seen time.
        let b = r.resolve(
            &scan(&[("web.yaml", &with_uid(", labels: {a: b}"))]),
            Timestamp(2),
        );
        let edited = &b.pods[&key("web")];
        assert_eq!(edited.uid, pod.uid);
        assert_ne!(edited.sandbox, pod.sandbox);
        assert_eq!(seen(&b), Timestamp(1).rfc3339_nanos());
        // A UID that would escape its directory is refused.
        let bad = r.resolve(
            &scan(&[(
                "web.yaml",
                &pod_yaml("web", "i:1").replace("{name: web}", "{name: web, uid: ../../etc}"),
            )]),
            Timestamp(3),
        );
        let errors: Vec<String> = bad.errors().map(ToString::to_string).collect();
        assert!(errors[0].contains("metadata.uid"), "{errors:?}");
    }

    #[test]
    fn a_rejected_file_keeps_its_last_good_pods() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let good = r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:1"))]),
            Timestamp(1),
        );
        let bad = r.resolve(
            &scan(&[(
                "web.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web\n",
            )]),
            Timestamp(2),
        );
        assert_eq!(good.pods, bad.pods);
        let report = &bad.files[Path::new("/m/web.yaml")];
        assert_eq!(report.status, FileStatus::Rejected);
        assert_eq!(report.pods, [key("web")]);
        assert!(matches!(report.errors[..], [ManifestError::Syntax { .. }]));
        assert!(bad.untouchable.is_empty());
        // fixing the file applies the fix
        let fixed = r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:2"))]),
            Timestamp(3),
        );
        assert_eq!(
            fixed.pods[&key("web")].spec.containers[0].image.as_deref(),
            Some("i:2")
        );
    }

    #[test]
    fn a_file_rejected_since_startup_is_untouchable() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let snap = r.resolve(&scan(&[("web.yaml", "kind: Pod\n")]), Timestamp(1));
        assert!(snap.pods.is_empty());
        assert!(snap.untouchable.contains(Path::new("/m/web.yaml")));
    }

    #[test]
    fn duplicate_pod_first_file_wins_and_the_other_gets_a_conflict() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let s = scan(&[
            ("a.yaml", &pod_yaml("web", "i:1")),
            ("b.yaml", &pod_yaml("web", "i:2")),
        ]);
        let snap = r.resolve(&s, Timestamp(1));
        let winner = &snap.pods[&key("web")];
        assert_eq!(winner.source.path, Path::new("/m/a.yaml"));
        let loser = &snap.files[Path::new("/m/b.yaml")];
        assert!(loser.pods.is_empty());
        assert_eq!(
            loser.status,
            FileStatus::Conflict,
            "the losing file is not listed as accepted (issue 17)"
        );
        assert_eq!(
            snap.files[Path::new("/m/a.yaml")].status,
            FileStatus::Accepted
        );
        assert!(
            matches!(&loser.errors[..], [ManifestError::Conflict { winner, .. }] if winner == Path::new("/m/a.yaml")),
            "{:?}",
            loser.errors
        );
        // deleting the losing file leaves the winner exactly as it was
        let after = r.resolve(&scan(&[("a.yaml", &pod_yaml("web", "i:1"))]), Timestamp(2));
        assert_eq!(after.pods[&key("web")], *winner);
    }

    #[test]
    fn a_resync_of_an_unchanged_file_reuses_its_pods_instead_of_hashing_them_again_issue_17() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let s = scan(&[("web.yaml", &pod_yaml("web", "i:1"))]);
        let first = r.resolve(&s, Timestamp(1));
        let again = r.resolve(&s, Timestamp(2));
        assert!(Arc::ptr_eq(
            &first.pods[&key("web")],
            &again.pods[&key("web")]
        ));
        // A new parse of the same bytes (the scanner's cache was cold) builds anew, equal.
        let reparsed = r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:1"))]),
            Timestamp(3),
        );
        assert!(!Arc::ptr_eq(
            &first.pods[&key("web")],
            &reparsed.pods[&key("web")]
        ));
        assert_eq!(first.pods, reparsed.pods);
    }

    #[test]
    fn a_file_renamed_away_keeps_its_pods_while_held_even_if_learnt_late_issue_17() {
        let mut r = Resolver::new(NodeName::new("node1"));
        let web = PathBuf::from("/m/web.yaml");
        let first = r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:1"))]),
            Timestamp(1),
        );
        let held: BTreeSet<PathBuf> = [web.clone()].into();
        let during = r.resolve_holding(&scan(&[]), Timestamp(2), &held);
        assert_eq!(during.pods, first.pods);
        assert_eq!(during.files[&web].status, FileStatus::RenamedAway);
        // The hold ends without the file coming back: the pod goes.
        assert!(r.resolve(&scan(&[]), Timestamp(3)).pods.is_empty());

        // A scan that missed the file before the rename was known: the next one, holding
        // it, still has its pods.
        let mut r = Resolver::new(NodeName::new("node1"));
        r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:1"))]),
            Timestamp(1),
        );
        assert!(r.resolve(&scan(&[]), Timestamp(2)).pods.is_empty());
        let late = r.resolve_holding(&scan(&[]), Timestamp(3), &held);
        assert_eq!(late.pods, first.pods);
    }

    #[test]
    fn deleted_file_drops_its_pods_and_its_last_good() {
        let mut r = Resolver::new(NodeName::new("node1"));
        r.resolve(
            &scan(&[("web.yaml", &pod_yaml("web", "i:1"))]),
            Timestamp(1),
        );
        let gone = r.resolve(&scan(&[]), Timestamp(2));
        assert!(gone.pods.is_empty());
        // re-adding it broken does not resurrect the old pod
        let bad = r.resolve(&scan(&[("web.yaml", "kind: Pod\n")]), Timestamp(3));
        assert!(bad.pods.is_empty());
    }

    /// The outcome for pod `name` on `node`: the full name, or the error message.
    fn full_name(name: &str, node: &str) -> Result<String, String> {
        let mut r = Resolver::new(NodeName::new(node));
        let snap = r.resolve(&scan(&[("web.yaml", &pod_yaml(name, "i:1"))]), Timestamp(1));
        match snap.pods.keys().next() {
            Some(k) => Ok(k.name.clone()),
            None => Err(snap.errors().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn pod_names_are_checked_as_the_kubelet_does_after_the_node_suffix_issue_17() {
        // kubeadm's own pod on a long hostname: a 67-character part is fine in a subdomain.
        assert_eq!(
            full_name(
                "kube-controller-manager",
                "controlplane-node-01-rack-b12-datacenter-fra"
            )
            .as_deref(),
            Ok("kube-controller-manager-controlplane-node-01-rack-b12-datacenter-fra")
        );
        // A trailing '-' is not trailing any more once the suffix is appended.
        assert_eq!(full_name("abc-", "node").as_deref(), Ok("abc--node"));
        assert_eq!(full_name("a.b", "node").as_deref(), Ok("a.b-node"));
        // What stays invalid says why, in the API server's words.
        let upper = full_name("Web_1", "node").unwrap_err();
        assert!(
            upper.contains(
                "\"Web_1\" with the node suffix (\"Web_1-<node>\"): a lowercase RFC 1123 subdomain"
            ),
            "{upper}"
        );
        let dot = full_name("a..b", "node").unwrap_err();
        assert!(dot.contains("a lowercase RFC 1123 subdomain"), "{dot}");
        let long = full_name(&"a".repeat(250), "node1").unwrap_err();
        assert!(
            long.contains("must be no more than 253 characters"),
            "{long}"
        );
    }

    #[test]
    fn overlong_name_with_node_suffix_is_rejected() {
        let long = "a".repeat(250);
        let mut r = Resolver::new(NodeName::new("node1"));
        let snap = r.resolve(
            &scan(&[("web.yaml", &pod_yaml(&long, "i:1"))]),
            Timestamp(1),
        );
        assert!(snap.pods.is_empty());
        let report = &snap.files[Path::new("/m/web.yaml")];
        assert!(matches!(
            &report.errors[..],
            [ManifestError::Invalid { .. }]
        ));
    }
}
