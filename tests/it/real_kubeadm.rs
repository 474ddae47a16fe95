//! The README's control-plane walkthrough, run for real (issue 13.6): kubeadm's own manifests
//! for etcd, kube-apiserver, kube-controller-manager and kube-scheduler, this build's podvisor
//! as the only node agent, `kubeadm init` from `wait-control-plane` through `addon`, an edit of
//! `kube-apiserver.yaml`, and what becomes of CoreDNS and kube-proxy. The work is
//! hack/kubeadm-walkthrough.sh (its own containerd, network and mount namespaces, images
//! built from the binaries); this test runs it and prints its summary. Like the rest of the
//! real_ suite it runs when `PODVISOR_K8S_BIN` names the binaries, and needs kubeadm,
//! kube-controller-manager and kube-scheduler there besides.

use std::path::PathBuf;
use std::process::Command;

use crate::real_apiserver::k8s_bin;

#[test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
fn kubeadm_init_completes_with_podvisor_as_the_only_node_agent() {
    let Some(bin) = k8s_bin() else { return };
    let missing: Vec<&str> = ["kubeadm", "kube-controller-manager", "kube-scheduler"]
        .into_iter()
        .filter(|b| !bin.join(b).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "skipped: PODVISOR_K8S_BIN has no {missing:?}; the kubeadm walkthrough needs them"
        );
        return;
    }
    crate::lab::require_runtime();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/kubeadm-walkthrough.sh");
    let out = Command::new(script)
        .env("PODVISOR_K8S_BIN", &bin)
        .env("PODVISOR_BIN", env!("CARGO_BIN_EXE_podvisor"))
        .env("OBSERVE_SECONDS", "60")
        .output()
        .expect("run hack/kubeadm-walkthrough.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the walkthrough failed:\n{text}");
}
