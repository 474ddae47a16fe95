//! The opt-in suite against a real kube-apiserver (and etcd): what only a real API server
//! judges. It runs when `PODVISOR_K8S_BIN` names a directory with `kube-apiserver`, `etcd`
//! and `kubectl` (built from public source, ../shared/RUNTIME-LAB.md) and is skipped, saying
//! so, otherwise. Each test starts its own API server (hack/apiserver-lab.sh, Node and RBAC
//! authorization, NodeRestriction) and its own containerd, and runs podvisor with a
//! kubeconfig whose client certificate is the node's (`system:node:<name>`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab};

const T: Duration = Duration::from_secs(60);

/// The binaries, or `None` (the suite is skipped) when the variable is unset.
pub fn k8s_bin() -> Option<PathBuf> {
    match std::env::var_os("PODVISOR_K8S_BIN") {
        Some(dir) if Path::new(&dir).join("kube-apiserver").exists() => Some(dir.into()),
        Some(dir) => panic!("PODVISOR_K8S_BIN={dir:?} has no kube-apiserver"),
        None => {
            eprintln!("skipped: set PODVISOR_K8S_BIN to run the suite against a real API server");
            None
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/apiserver-lab.sh")
}

/// A running etcd + kube-apiserver.
pub struct ApiLab {
    dir: tempfile::TempDir,
    bin: PathBuf,
    admin: PathBuf,
}

impl ApiLab {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(script())
            .args(args)
            .env("PODVISOR_K8S_BIN", &self.bin)
            .output()
            .expect("run apiserver-lab.sh");
        assert!(
            out.status.success(),
            "apiserver-lab.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts one, or `None` when the suite is skipped.
    pub fn start() -> Option<ApiLab> {
        let bin = k8s_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("pvapi")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let mut lab = ApiLab {
            dir,
            bin,
            admin: PathBuf::new(),
        };
        let path = lab.dir.path().display().to_string();
        lab.admin = PathBuf::from(lab.run(&["start", &path]));
        Some(lab)
    }

    /// Where the binaries are.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The admin kubeconfig.
    pub fn admin_path(&self) -> &Path {
        &self.admin
    }

    /// The cluster CA (it signs kube-apiserver's kubelet client certificate).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("pki/ca.crt")
    }

    /// Starts kube-controller-manager approving and signing node CSRs as kubeadm sets it up,
    /// with a bootstrap token; returns the bootstrap kubeconfig.
    pub fn csr_controllers(&self) -> PathBuf {
        let path = self.dir.path().display().to_string();
        PathBuf::from(self.run(&["csr", &path]))
    }

    /// The cluster CA's key (the CSR signer's).
    pub fn ca_key_file(&self) -> PathBuf {
        self.dir.path().join("pki/ca.key")
    }

    /// A kubeconfig for node `name`.
    pub fn node_kubeconfig(&self, name: &str) -> PathBuf {
        let path = self.dir.path().display().to_string();
        PathBuf::from(self.run(&["node", &path, name]))
    }

    /// A cluster-admin client.
    pub async fn admin(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.admin).expect("admin.conf");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("admin config");
        kube::Client::try_from(config).expect("admin client")
    }

    /// `kubectl` as cluster admin with `stdin`; (success, stdout + stderr).
    pub fn kubectl(&self, args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("kubectl output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for ApiLab {
    fn drop(&mut self) {
        let path = self.dir.path().display().to_string();
        let _ = Command::new(script())
            .args(["stop", &path])
            .env("PODVISOR_K8S_BIN", &self.bin)
            .output();
    }
}

/// Polls `f` until it yields a value; fails after `within`.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// podvisor for node `node` on `lab`'s containerd, mirroring into `api`.
fn daemon(lab: &Lab, api: &ApiLab, node: &str, kubeconfig_for: &str) -> Daemon {
    let kubeconfig = api.node_kubeconfig(kubeconfig_for);
    Daemon::start_named(
        lab,
        node,
        &["--kubeconfig", &kubeconfig.display().to_string()],
        &[],
    )
}

fn condition(pod: &Pod, kind: &str) -> Option<k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .cloned()
}

const GATED: &str = "apiVersion: v1
kind: Pod
metadata: {name: gated, namespace: kube-system}
spec:
  terminationGracePeriodSeconds: 2
  readinessGates: [{conditionType: example.com/lb}]
  initContainers:
  - {name: setup, image: IMAGE, command: [sh, -c, 'true']}
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    resources: {limits: {cpu: 100m, memory: 32Mi}}
";

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn mirror_status_is_the_kubelets_and_others_changes_are_kept_or_corrected() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let d = daemon(&lab, &api, "n1", "n1");
    d.write("gated.yaml", &GATED.replace("IMAGE", BUSYBOX));
    let pods: Api<Pod> = Api::namespaced(api.admin().await, "kube-system");
    let nodes: Api<Node> = Api::all(api.admin().await);

    // Running, but not Ready: the readiness gate's condition does not exist (issue 17.12).
    let pod = until("gated-n1 Running", T, || async {
        pods.get_opt("gated-n1")
            .await
            .ok()
            .flatten()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let ready = condition(&pod, "Ready").expect("Ready");
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_deref(),
            ready.message.as_deref()
        ),
        (
            "False",
            Some("ReadinessGatesNotReady"),
            Some(
                "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
            )
        )
    );
    let status = pod.status.clone().expect("status");
    assert!(
        status.init_container_statuses.expect("init")[0].ready,
        "issue 17.18"
    );
    let main = &status.container_statuses.expect("containers")[0];
    assert!(
        main.resources.is_some(),
        "containerStatuses[].resources (issue 17.18)"
    );

    // A controller sets the gate and a DisruptionTarget: Ready follows, both are kept.
    let theirs = serde_json::json!({"status": {"conditions": [
        {"type": "example.com/lb", "status": "True"},
        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}
    ]}});
    pods.patch_status(
        "gated-n1",
        &PatchParams::default(),
        &Patch::Strategic(&theirs),
    )
    .await
    .expect("patch as a controller");
    let ready = until("Ready through the gate", T, || async {
        pods.get_opt("gated-n1")
            .await
            .ok()
            .flatten()
            .filter(|p| condition(p, "Ready").is_some_and(|c| c.status == "True"))
    })
    .await;
    assert!(condition(&ready, "DisruptionTarget").is_some());

    // Someone overwrites the phase: put right (issue 17.13).
    let wrong = serde_json::json!({"status": {"phase": "Failed"}});
    pods.patch_status("gated-n1", &PatchParams::default(), &Patch::Merge(&wrong))
        .await
        .expect("overwrite phase");
    let fixed = until("phase put right", T, || async {
        pods.get_opt("gated-n1")
            .await
            .ok()
            .flatten()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    assert!(
        condition(&fixed, "DisruptionTarget").is_some(),
        "still there after podvisor's own patches"
    );

    // The node lifecycle controller's Unknown is written back within a node status check.
    let unknown = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown",
        "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Strategic(&unknown))
        .await
        .expect("patch node");
    let started = Instant::now();
    until("Node Ready again", Duration::from_secs(30), || async {
        let n = nodes.get("n1").await.ok()?;
        let c = n
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.status == "True").then_some(())
    })
    .await;
    eprintln!("Node Ready written back after {:?}", started.elapsed());
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn a_node_certificate_for_another_name_is_reported_as_refused_not_unreachable() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let d = daemon(&lab, &api, "n2", "n1");
    let mirror = until("mirror refused", T, || async {
        let m: serde_json::Value = podvisor::api::client::get_json(&d.socket, "/mirror")
            .await
            .ok()?;
        (m["phase"] == "Refused").then_some(m)
    })
    .await;
    let message = mirror["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("forbidden"), "{message}");
    let (_, body) = podvisor::api::client::get_raw(&d.socket, "/metrics")
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("podvisor_apiserver_reachable 1"), "{text}");
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn kubeadms_pod_on_a_long_node_name_is_run_and_mirrored() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let node = "controlplane-node-01-rack-b12-datacenter-fra";
    let d = daemon(&lab, &api, node, node);
    d.write(
        "kcm.yaml",
        &crate::lifecycle::sleeper("kube-controller-manager", "1"),
    );
    let pods: Api<Pod> = Api::namespaced(api.admin().await, "kube-system");
    let name = format!("kube-controller-manager-{node}");
    until("the mirror pod", T, || async {
        pods.get_opt(&name).await.ok().flatten()
    })
    .await;
}

/// The specs issue 17 found podvisor ran while the API server refused their mirror pods.
const REFUSED: &[(&str, &str)] = &[
    ("schedulingGates", "  schedulingGates: [{name: wait}]\n"),
    (
        "toleration",
        "  tolerations: [{key: k, operator: Exists, value: v}]\n",
    ),
    ("hostUsers", "  hostUsers: false\n  hostNetwork: true\n"),
    ("nodeSelector", "  nodeSelector: {'bad key!': x}\n"),
    (
        "readinessGates",
        "  readinessGates: [{conditionType: 'not valid!'}]\n",
    ),
    (
        "windows",
        "  os: {name: windows}\n  securityContext: {runAsUser: 1000}\n",
    ),
    (
        "sysctls",
        "  securityContext: {sysctls: [{name: kernel.shm_rmid_forced, value: '1'}, {name: kernel.shm_rmid_forced, value: '0'}]}\n",
    ),
    (
        "apparmor",
        "  securityContext: {appArmorProfile: {type: Localhost}}\n",
    ),
    (
        "maxSkew",
        "  topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]\n",
    ),
    (
        "nodeSelectorTerms",
        "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}\n",
    ),
    (
        "fsGroupChangePolicy",
        "  securityContext: {fsGroupChangePolicy: Sometimes}\n",
    ),
];

#[tokio::test]
#[ignore = "needs PODVISOR_K8S_BIN: run with --include-ignored"]
async fn what_check_refuses_the_api_server_refuses_too() {
    let Some(api) = ApiLab::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "apiVersion: v1\nkind: Pod\nmetadata: {name: v, namespace: default}\nspec:\n  nodeName: n1\n  containers:\n  - {name: c, image: busybox}\n";
    let with = |extra: &str| base.replace("spec:\n", &format!("spec:\n{extra}"));
    let container =
        |extra: &str| base.replace("image: busybox}", &format!("image: busybox{extra}}}"));
    let mut cases: Vec<(String, String)> = REFUSED
        .iter()
        .map(|(name, extra)| ((*name).to_owned(), with(extra)))
        .collect();
    cases.push((
        "hugepages".into(),
        container(", resources: {limits: {hugepages-2Mi: 2Mi}, requests: {hugepages-2Mi: 2Mi}}"),
    ));
    cases.push((
        "resizePolicy".into(),
        container(", resizePolicy: [{resourceName: cpu, restartPolicy: Bogus}]"),
    ));
    // No controller manager here: the ServiceAccount admission needs the default account.
    let (ok, text) = api.kubectl(
        &["create", "serviceaccount", "default", "-n", "default"],
        "",
    );
    assert!(ok || text.contains("AlreadyExists"), "{text}");
    let (ok, text) = api.kubectl(&["create", "--dry-run=server", "-f", "-"], base);
    assert!(ok, "the base pod is valid: {text}");
    for (name, yaml) in cases {
        let (accepted, text) = api.kubectl(&["create", "--dry-run=server", "-f", "-"], &yaml);
        assert!(!accepted, "{name}: the API server accepted it:\n{yaml}");
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml.replace("  nodeName: n1\n", "")).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
            .args(["check", "--node-name", "n1"])
            .arg(&file)
            .output()
            .expect("check");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: podvisor check accepted what the API server refused ({text})"
        );
    }
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn a_probe_failing_every_second_writes_at_most_the_kubelets_burst_of_events() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let d = daemon(&lab, &api, "n1", "n1");
    let failing = crate::lifecycle::sleeper("flaky", "1").replace(
        "    env:",
        "    readinessProbe: {exec: {command: ['false']}, periodSeconds: 1}\n    env:",
    );
    d.write("flaky.yaml", &failing);
    let pods: Api<Pod> = Api::namespaced(api.admin().await, "kube-system");
    until("flaky mirrored", T, || async {
        pods.get_opt("flaky-n1").await.ok().flatten()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(45)).await;
    let mirror: serde_json::Value = podvisor::api::client::get_json(&d.socket, "/mirror")
        .await
        .expect("mirror");
    let posted = mirror["counters"]["eventsPosted"].as_u64().unwrap_or(0);
    eprintln!("45 s of a probe failing every second: {posted} event writes");
    assert!(posted <= 25, "{posted} event writes for one pod");
}

/// `podvisor_apiserver_requests_total{verb="..."}` from podvisor's metrics.
async fn requests(d: &Daemon) -> std::collections::BTreeMap<String, u64> {
    let (_, body) = podvisor::api::client::get_raw(&d.socket, "/metrics")
        .await
        .expect("metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.strip_prefix("podvisor_apiserver_requests_total{verb=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(verb, n)| (verb.to_owned(), n.trim().parse().unwrap_or(0)))
        .collect()
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn mirror_pods_are_watched_a_deleted_one_is_back_at_once_and_idle_load_is_small() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let d = daemon(&lab, &api, "n1", "n1");
    for i in 0..5 {
        d.write(
            &format!("p{i}.yaml"),
            &crate::lifecycle::sleeper(&format!("p{i}"), "1"),
        );
    }
    let pods: Api<Pod> = Api::namespaced(api.admin().await, "kube-system");
    for i in 0..5 {
        let name = format!("p{i}-n1");
        until("mirrored and Running", T, || async {
            pods.get_opt(&name)
                .await
                .ok()
                .flatten()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        })
        .await;
    }
    // Idle for a minute: no LIST, a watch, the lease and the node check.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = requests(&d).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = requests(&d).await;
    let delta: std::collections::BTreeMap<&String, u64> = after
        .iter()
        .map(|(v, n)| (v, n - before.get(v).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let total: u64 = delta.values().sum();
    eprintln!("one idle minute with 5 pods: {total} requests {delta:?}");
    assert_eq!(delta.get(&"list".to_owned()), None, "no list while idle");
    assert!(total <= 16, "{total} requests in an idle minute");

    // Deleted by an admin: back within a couple of seconds, through the watch.
    let old = pods.get("p0-n1").await.expect("p0").metadata.uid;
    let deleted = Instant::now();
    pods.delete("p0-n1", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    until("p0 recreated", Duration::from_secs(10), || async {
        pods.get_opt("p0-n1")
            .await
            .ok()
            .flatten()
            .filter(|p| p.metadata.uid != old && p.metadata.deletion_timestamp.is_none())
    })
    .await;
    eprintln!("deleted mirror pod back after {:?}", deleted.elapsed());
    assert!(deleted.elapsed() < Duration::from_secs(3));
}
