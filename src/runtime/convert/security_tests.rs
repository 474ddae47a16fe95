//! Tests of the fields issue 13.4 made podvisor carry out: the runtime handler, AppArmor and
//! SELinux profiles, huge page limits; and the AppArmor profile a host cannot enforce.

use k8s_cri::v1 as cri;

use super::container::page_size_unit;
use super::tests::{ctx, pod};
use super::*;
use crate::pod::ContainerKind;
use crate::pod::environment::Addresses;
use cri::security_profile::ProfileType;

fn container_security(yaml: &str, index: usize) -> cri::LinuxContainerSecurityContext {
    let p = pod(yaml);
    let c = container_config(
        &p,
        &p.containers()[index],
        ContainerKind::App,
        (0, 0),
        &Addresses::default(),
        &ctx(),
    );
    c.linux
        .and_then(|l| l.security_context)
        .expect("security context")
}

#[test]
fn runtime_class_name_is_the_runtime_handler_and_none_is_the_default() {
    let with = pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: k}\nspec:\n  runtimeClassName: kata\n  containers: [{name: c, image: 'i:1'}]\n",
    );
    assert_eq!(runtime_handler(&with), "kata");
    let without = pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: k}\nspec: {containers: [{name: c, image: 'i:1'}]}\n",
    );
    assert_eq!(runtime_handler(&without), "");
}

const APPARMOR: &str = "apiVersion: v1
kind: Pod
metadata:
  name: a
  annotations:
    container.apparmor.security.beta.kubernetes.io/legacy: localhost/k8s-legacy
    container.apparmor.security.beta.kubernetes.io/both: unconfined
spec:
  containers:
  - name: own
    image: i:1
    securityContext: {appArmorProfile: {type: Localhost, localhostProfile: k8s-own}}
  - {name: legacy, image: 'i:1'}
  - {name: none, image: 'i:1'}
  - name: both
    image: i:1
    securityContext: {appArmorProfile: {type: Unconfined}}
";

#[test]
#[allow(deprecated)] // the deprecated string is what containerd 1.6 reads
fn apparmor_comes_from_the_container_then_the_legacy_annotation_then_the_pod() {
    // Validation makes an annotation agree with the field where both are set.
    let on_pod = APPARMOR.replace(
        "spec:\n",
        "spec:\n  securityContext: {appArmorProfile: {type: RuntimeDefault}}\n",
    );
    let on_pod = on_pod.replace(": localhost/k8s-legacy", ": runtime/default");
    let expect = [
        (
            APPARMOR,
            0,
            ProfileType::Localhost,
            "k8s-own",
            "localhost/k8s-own",
        ),
        (
            APPARMOR,
            1,
            ProfileType::Localhost,
            "k8s-legacy",
            "localhost/k8s-legacy",
        ),
        (APPARMOR, 3, ProfileType::Unconfined, "", "unconfined"),
        (
            &on_pod,
            2,
            ProfileType::RuntimeDefault,
            "",
            "runtime/default",
        ),
    ];
    for (yaml, i, kind, localhost, deprecated) in expect {
        let sc = container_security(yaml, i);
        let profile = sc.apparmor.expect("apparmor profile");
        assert_eq!(profile.profile_type, kind as i32, "container {i}");
        assert_eq!(profile.localhost_ref, localhost, "container {i}");
        assert_eq!(sc.apparmor_profile, deprecated, "container {i}");
    }
    let none = container_security(APPARMOR, 2);
    assert_eq!(
        (none.apparmor, none.apparmor_profile),
        (None, String::new())
    );
}

#[test]
fn an_apparmor_profile_is_refused_on_a_host_without_apparmor_unless_unconfined() {
    let p = pod(APPARMOR);
    let mut host = ctx();
    host.apparmor = false;
    let refusal = apparmor_refusal(&p, &p.containers()[1], &host).expect("refused");
    assert_eq!(
        refusal,
        "Cannot enforce AppArmor: AppArmor is not enabled on the host (container \"legacy\" asks for localhost/k8s-legacy)"
    );
    assert_eq!(
        apparmor_refusal(&p, &p.containers()[2], &host),
        None,
        "none asked for"
    );
    assert_eq!(
        apparmor_refusal(&p, &p.containers()[3], &host),
        None,
        "unconfined"
    );
    host.apparmor = true;
    assert_eq!(apparmor_refusal(&p, &p.containers()[1], &host), None);
}

#[test]
fn selinux_options_label_the_sandbox_and_a_container_replaces_the_pods_whole() {
    let yaml = "apiVersion: v1
kind: Pod
metadata: {name: s}
spec:
  securityContext:
    seLinuxOptions: {type: spc_t, level: 's0:c1,c2'}
  containers:
  - {name: inherits, image: 'i:1'}
  - name: own
    image: i:1
    securityContext: {seLinuxOptions: {user: system_u, role: system_r}}
";
    let p = pod(yaml);
    let sandbox = sandbox_config(&p, 0, &ctx())
        .linux
        .and_then(|l| l.security_context)
        .and_then(|s| s.selinux_options)
        .expect("sandbox label");
    let pod_label = cri::SeLinuxOption {
        user: String::new(),
        role: String::new(),
        r#type: "spc_t".into(),
        level: "s0:c1,c2".into(),
    };
    assert_eq!(sandbox, pod_label);
    assert_eq!(container_security(yaml, 0).selinux_options, Some(pod_label));
    assert_eq!(
        container_security(yaml, 1).selinux_options,
        Some(cri::SeLinuxOption {
            user: "system_u".into(),
            role: "system_r".into(),
            r#type: String::new(),
            level: String::new(),
        })
    );
}

#[test]
fn huge_page_sizes_read_as_the_kubelet_writes_them() {
    assert_eq!(page_size_unit(2 << 20), "2MB");
    assert_eq!(page_size_unit(1 << 30), "1GB");
    assert_eq!(page_size_unit(64 << 10), "64KB");
    assert_eq!(page_size_unit(1000), "1000B");
}

#[test]
fn huge_page_limits_are_zero_for_every_host_size_but_the_ones_asked_for() {
    let limits = |resources: &str| {
        let p = pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: h}}\nspec:\n  containers:\n  - {{name: c, image: 'i:1', resources: {resources}}}\n"
        ));
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            (0, 0),
            &Addresses::default(),
            &ctx(),
        );
        c.linux
            .and_then(|l| l.resources)
            .expect("resources")
            .hugepage_limits
            .into_iter()
            .map(|l| (l.page_size, l.limit))
            .collect::<Vec<_>>()
    };
    // The test host offers 2 MiB and 1 GiB pages.
    assert_eq!(
        limits("{limits: {memory: 64Mi, hugepages-2Mi: 8Mi}}"),
        [("2MB".to_owned(), 8 << 20), ("1GB".to_owned(), 0)]
    );
    assert_eq!(
        limits("{limits: {memory: 64Mi}}"),
        [("2MB".to_owned(), 0), ("1GB".to_owned(), 0)]
    );
    // A size the host lacks still goes to the runtime, which says it cannot.
    assert_eq!(
        limits("{limits: {memory: 64Mi, hugepages-16Gi: 16Gi}}"),
        [
            ("2MB".to_owned(), 0),
            ("1GB".to_owned(), 0),
            ("16GB".to_owned(), 16 << 30)
        ]
    );
}

#[test]
fn set_hostname_as_fqdn_names_the_sandbox_by_its_fqdn_and_one_too_long_is_refused() {
    let yaml = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: edge}}\nspec:\n  setHostnameAsFQDN: true\n  subdomain: svc\n  containers: [{{name: c, image: 'i:1'}}]\n"
        )
    };
    let p = pod(&yaml("web"));
    assert_eq!(
        sandbox_config(&p, 0, &ctx()).hostname,
        "web-node1.svc.edge.svc.cluster.local"
    );
    assert_eq!(hostname_refusal(&p), None);
    let long = pod(&yaml(&"a".repeat(40)));
    let refusal = hostname_refusal(&long).expect("too long");
    assert!(
        refusal.ends_with("is too long (64 characters is the max, 73 characters requested)"),
        "{refusal}"
    );
    let plain = pod(&yaml("web").replace("  setHostnameAsFQDN: true\n", ""));
    assert_eq!(sandbox_config(&plain, 0, &ctx()).hostname, "web-node1");
}
