use super::*;
use crate::manifest::apply_defaults;

fn pod(yaml: &str) -> Pod {
    let mut p: Pod = serde_saphyr::from_str(yaml).expect("test yaml");
    apply_defaults(&mut p);
    p
}

fn fields(yaml: &str) -> Vec<String> {
    validate(&pod(yaml)).into_iter().map(|i| i.field).collect()
}

const BASE: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: busybox:1.35\n";

#[test]
fn a_minimal_pod_is_valid() {
    assert_eq!(fields(BASE), Vec::<String>::new());
}

#[test]
fn names_must_be_dns1123() {
    // The pod name's rules apply after the node suffix (see resolve's tests).
    assert_eq!(
        fields(&BASE.replace("name: web\nspec", "name: Web_1\nspec")),
        ["metadata.name"]
    );
    assert_eq!(
        fields(&BASE.replace("name: web\nspec", "name: web-\nspec")),
        Vec::<String>::new(),
        "abc- is valid once the suffix is appended"
    );
    assert_eq!(
        fields(&BASE.replace("- name: web", "- name: Web")),
        ["spec.containers[0].name"]
    );
    assert_eq!(
        fields(&BASE.replace(
            "  name: web\nspec",
            "  name: web\n  namespace: kube.system\nspec"
        )),
        ["metadata.namespace"]
    );
    assert_eq!(
        fields(&BASE.replace("  name: web\nspec", "spec")),
        ["metadata.name"]
    );
}

#[test]
fn at_least_one_container_and_unique_names() {
    assert_eq!(
        fields("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n"),
        ["spec.containers"]
    );
    let dup = format!("{BASE}  - name: web\n    image: busybox:1.35\n");
    assert_eq!(fields(&dup), ["spec.containers[1].name"]);
    let dup_init = format!("{BASE}  initContainers:\n  - name: web\n    image: busybox:1.35\n");
    assert_eq!(fields(&dup_init), ["spec.containers[0].name"]);
}

#[test]
fn ports_are_checked() {
    let bad = BASE.replace("image: busybox:1.35", "image: busybox:1.35\n    ports:\n    - containerPort: 70000\n    - containerPort: 80\n      protocol: HTTP\n    - containerPort: 81\n      name: TooLongPortNameHere");
    assert_eq!(
        fields(&bad),
        [
            "spec.containers[0].ports[0].containerPort",
            "spec.containers[0].ports[1].protocol",
            "spec.containers[0].ports[2].name"
        ]
    );
    let host = BASE
        .replace("containers:", "hostNetwork: true\n  containers:")
        .replace(
            "image: busybox:1.35",
            "image: busybox:1.35\n    ports:\n    - containerPort: 80\n      hostPort: 8080",
        );
    assert_eq!(fields(&host), ["spec.containers[0].ports[0].hostPort"]);
    let dup = format!(
        "{BASE}    ports: [{{containerPort: 80, hostPort: 8080}}]\n  - name: two\n    image: busybox:1.35\n    ports: [{{containerPort: 81, hostPort: 8080}}]\n"
    );
    assert_eq!(fields(&dup), ["spec.containers[1].ports[0].hostPort"]);
}

#[test]
fn api_object_references_are_refused() {
    let sa = BASE.replace("containers:", "serviceAccountName: default\n  containers:");
    assert_eq!(fields(&sa), ["spec.serviceAccountName"]);
    let secret = format!("{BASE}  volumes:\n  - name: s\n    secret: {{secretName: x}}\n");
    assert_eq!(fields(&secret), ["spec.volumes[0].secret"]);
    let cm = format!("{BASE}  volumes:\n  - name: c\n    configMap: {{name: x}}\n");
    assert_eq!(fields(&cm), ["spec.volumes[0].configMap"]);
    let pvc =
        format!("{BASE}  volumes:\n  - name: c\n    persistentVolumeClaim: {{claimName: x}}\n");
    assert_eq!(fields(&pvc), ["spec.volumes[0].persistentVolumeClaim"]);
    let env = BASE.replace("image: busybox:1.35", "image: busybox:1.35\n    env:\n    - name: P\n      valueFrom: {secretKeyRef: {name: s, key: k}}");
    assert_eq!(
        fields(&env),
        ["spec.containers[0].env[0].valueFrom.secretKeyRef"]
    );
    let token = format!(
        "{BASE}  volumes:\n  - name: t\n    projected: {{sources: [{{serviceAccountToken: {{path: token}}}}]}}\n"
    );
    assert_eq!(
        fields(&token),
        ["spec.volumes[0].projected.sources[0].serviceAccountToken"]
    );
    let pull = BASE.replace(
        "containers:",
        "imagePullSecrets: [{name: reg}]\n  containers:",
    );
    assert_eq!(fields(&pull), ["spec.imagePullSecrets"]);
}

#[test]
fn unsupported_volume_types_are_refused() {
    let nfs = format!("{BASE}  volumes:\n  - name: n\n    nfs: {{server: s, path: /x}}\n");
    assert_eq!(fields(&nfs), ["spec.volumes[0].nfs"]);
}

#[test]
fn mounts_must_name_a_volume() {
    let m = BASE.replace(
        "image: busybox:1.35",
        "image: busybox:1.35\n    volumeMounts:\n    - name: data\n      mountPath: /data",
    );
    assert_eq!(fields(&m), ["spec.containers[0].volumeMounts[0].name"]);
}

#[test]
fn probe_on_a_port_the_container_does_not_name_is_refused() {
    let p = BASE.replace(
        "image: busybox:1.35",
        "image: busybox:1.35\n    livenessProbe:\n      httpGet: {port: http}",
    );
    assert_eq!(
        fields(&p),
        ["spec.containers[0].livenessProbe.httpGet.port"]
    );
    let ok = BASE.replace("image: busybox:1.35", "image: busybox:1.35\n    ports: [{name: http, containerPort: 80}]\n    livenessProbe:\n      httpGet: {port: http}");
    assert_eq!(fields(&ok), Vec::<String>::new());
}

#[test]
fn requests_above_limits_are_refused() {
    let r = BASE.replace("image: busybox:1.35", "image: busybox:1.35\n    resources:\n      requests: {memory: 2Gi}\n      limits: {memory: 1Gi}");
    assert_eq!(
        fields(&r),
        ["spec.containers[0].resources.requests[memory]"]
    );
    let q = BASE.replace(
        "image: busybox:1.35",
        "image: busybox:1.35\n    resources:\n      limits: {memory: lots}",
    );
    // the bad limit is copied into requests by defaulting, so both are reported
    assert_eq!(
        fields(&q),
        [
            "spec.containers[0].resources.limits[memory]",
            "spec.containers[0].resources.requests[memory]"
        ]
    );
}

#[test]
fn enum_fields_are_checked() {
    assert_eq!(
        fields(&BASE.replace("containers:", "restartPolicy: Sometimes\n  containers:")),
        ["spec.restartPolicy"]
    );
    assert_eq!(
        fields(&BASE.replace(
            "image: busybox:1.35",
            "image: busybox:1.35\n    imagePullPolicy: Maybe"
        )),
        ["spec.containers[0].imagePullPolicy"]
    );
    assert_eq!(
        fields(&BASE.replace("containers:", "dnsPolicy: None\n  containers:")),
        ["spec.dnsConfig.nameservers"]
    );
}

#[test]
fn issues_read_as_field_and_message() {
    let issues = validate(&pod(&BASE.replace("image: busybox:1.35", "image: ''")));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].to_string(), "spec.containers[0].image: required");
}

#[test]
fn volume_file_modes_outside_0_to_0777_are_refused() {
    // 04755 (setuid), -1, 07777 and 0106000 are refused; 0644 and 0777 are fine.
    let volumes = "  volumes:
  - name: a
    downwardAPI: {defaultMode: 2541, items: [{path: x, fieldRef: {fieldPath: metadata.name}, mode: -1}]}
  - name: p
    projected: {defaultMode: 4095, sources: [{downwardAPI: {items: [{path: y, fieldRef: {fieldPath: metadata.name}, mode: 35840}]}}]}
  - name: ok
    downwardAPI: {defaultMode: 420, items: [{path: z, fieldRef: {fieldPath: metadata.name}, mode: 511}]}
";
    let issues = validate(&pod(&format!("{BASE}{volumes}")));
    let got: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        got,
        [
            "spec.volumes[0].downwardAPI.defaultMode",
            "spec.volumes[0].downwardAPI.items[0].mode",
            "spec.volumes[1].projected.defaultMode",
            "spec.volumes[1].projected.sources[0].downwardAPI.items[0].mode",
        ]
    );
    assert_eq!(
        issues[0].message,
        "2541 must be a file mode between 0 and 0777 (octal), i.e. 0 to 511"
    );
}

/// The specs issue 17 found that `check` accepted and the API server then refused as mirror
/// pods forever (and the kubelet refuses locally): each is now refused, on its field.
#[test]
fn what_the_api_server_refuses_is_refused_locally_issue_17() {
    let spec = |extra: &str| BASE.replace("spec:\n", &format!("spec:\n{extra}"));
    let container = |extra: &str| {
        BASE.replace(
            "    image: busybox:1.35\n",
            &format!("    image: busybox:1.35\n{extra}"),
        )
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "schedulingGates",
            spec("  schedulingGates: [{name: wait}]\n"),
            &["spec.schedulingGates"],
        ),
        (
            "Exists toleration with a value",
            spec("  tolerations: [{key: k, operator: Exists, value: v}]\n"),
            &["spec.tolerations[0].operator"],
        ),
        (
            "hostUsers false with hostNetwork",
            spec("  hostUsers: false\n  hostNetwork: true\n"),
            // refused in itself too since issue 13.4
            &["spec.hostNetwork", "spec.hostUsers"],
        ),
        (
            "invalid nodeSelector key",
            spec("  nodeSelector: {'bad key!': x}\n"),
            &["spec.nodeSelector[\"bad key!\"]"],
        ),
        (
            "hugepages without cpu or memory",
            container(
                "    resources: {limits: {hugepages-2Mi: 2Mi}, requests: {hugepages-2Mi: 2Mi}}\n",
            ),
            &["spec.containers[0].resources"],
        ),
        (
            "invalid readinessGates condition type",
            spec("  readinessGates: [{conditionType: 'not valid!'}]\n"),
            &["spec.readinessGates[0].conditionType"],
        ),
        (
            "os windows with runAsUser",
            spec("  os: {name: windows}\n  securityContext: {runAsUser: 1000}\n"),
            // refused in itself too since issue 13.4
            &["spec.securityContext.runAsUser", "spec.os.name"],
        ),
        (
            "duplicate sysctls",
            spec(
                "  securityContext: {sysctls: [{name: kernel.shm_rmid_forced, value: '1'}, {name: kernel.shm_rmid_forced, value: '0'}]}\n",
            ),
            &["spec.securityContext.sysctls[1].name"],
        ),
        (
            "AppArmor Localhost without a profile",
            spec("  securityContext: {appArmorProfile: {type: Localhost}}\n"),
            &["spec.securityContext.appArmorProfile.localhostProfile"],
        ),
        (
            "resizePolicy Bogus",
            container("    resizePolicy: [{resourceName: cpu, restartPolicy: Bogus}]\n"),
            &["spec.containers[0].resizePolicy[0].restartPolicy"],
        ),
        (
            "maxSkew 0",
            spec(
                "  topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]\n",
            ),
            &["spec.topologySpreadConstraints[0].maxSkew"],
        ),
        (
            "empty nodeSelectorTerms",
            spec(
                "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}\n",
            ),
            &[
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
            ],
        ),
        (
            "fsGroupChangePolicy Sometimes",
            spec("  securityContext: {fsGroupChangePolicy: Sometimes}\n"),
            &["spec.securityContext.fsGroupChangePolicy"],
        ),
    ];
    for (case, yaml, field) in cases {
        assert_eq!(fields(&yaml), field, "{case}");
    }
    // and their valid neighbours pass
    for ok in [
        spec("  tolerations: [{operator: Exists}]\n"),
        spec("  hostUsers: true\n"),
        spec("  nodeSelector: {kubernetes.io/os: linux}\n"),
        container(
            "    resources: {limits: {hugepages-2Mi: 2Mi, memory: 64Mi}, requests: {hugepages-2Mi: 2Mi, memory: 64Mi}}\n",
        ),
        spec("  readinessGates: [{conditionType: example.com/ready}]\n"),
        spec("  os: {name: linux}\n  securityContext: {runAsUser: 1000}\n"),
        spec(
            "  securityContext: {appArmorProfile: {type: Localhost, localhostProfile: k8s-default}}\n",
        ),
        container("    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]\n"),
        spec(
            "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]\n",
        ),
        spec("  securityContext: {fsGroupChangePolicy: OnRootMismatch}\n"),
    ] {
        assert_eq!(fields(&ok), Vec::<String>::new(), "{ok}");
    }
}

/// Issue 13.4: what podvisor cannot carry out is refused on its field, never run without.
#[test]
fn what_podvisor_cannot_carry_out_is_refused_on_its_field_issue_13_4() {
    let spec = |extra: &str| BASE.replace("spec:\n", &format!("spec:\n{extra}"));
    let container = |extra: &str| {
        BASE.replace(
            "    image: busybox:1.35\n",
            &format!("    image: busybox:1.35\n{extra}"),
        )
    };
    let cases: Vec<(String, &[&str])> = vec![
        (spec("  hostUsers: false\n"), &["spec.hostUsers"]),
        (spec("  os: {name: windows}\n"), &["spec.os.name"]),
        (spec("  overhead: {cpu: 100m}\n"), &["spec.overhead"]),
        (
            spec("  resources: {limits: {cpu: '1'}}\n"),
            &["spec.resources"],
        ),
        (
            spec("  hostnameOverride: other\n"),
            &["spec.hostnameOverride"],
        ),
        (
            spec("  securityContext: {supplementalGroupsPolicy: Strict}\n"),
            &["spec.securityContext.supplementalGroupsPolicy"],
        ),
        (
            spec("  securityContext: {windowsOptions: {runAsUserName: x}}\n"),
            &["spec.securityContext.windowsOptions"],
        ),
        (
            container("    resources: {limits: {ephemeral-storage: 1Gi}}\n"),
            &["spec.containers[0].resources.limits[ephemeral-storage]"],
        ),
        (
            container("    lifecycle: {stopSignal: SIGUSR1}\n"),
            &["spec.containers[0].lifecycle.stopSignal"],
        ),
        (
            container("    securityContext: {windowsOptions: {runAsUserName: x}}\n"),
            &["spec.containers[0].securityContext.windowsOptions"],
        ),
        (
            spec("  runtimeClassName: Not_A_Name\n"),
            &["spec.runtimeClassName"],
        ),
        (
            container("    resources: {limits: {example.com/gpu: '1'}}\n"),
            // defaulting copies the limit into requests
            &[
                "spec.containers[0].resources.limits[example.com/gpu]",
                "spec.containers[0].resources.requests[example.com/gpu]",
            ],
        ),
        (
            container(
                "    volumeMounts: [{name: v, mountPath: /v, readOnly: true, recursiveReadOnly: Enabled}]\n",
            )
            .replace("spec:\n", "spec:\n  volumes: [{name: v, emptyDir: {}}]\n"),
            &["spec.containers[0].volumeMounts[0].recursiveReadOnly"],
        ),
        (
            container("    resources: {limits: {memory: 64Mi, hugepages-big: 1Gi}}\n"),
            // defaulting copies the limit into requests
            &[
                "spec.containers[0].resources.limits[hugepages-big]",
                "spec.containers[0].resources.requests[hugepages-big]",
            ],
        ),
    ];
    for (yaml, field) in &cases {
        let issues = validate(&pod(yaml));
        let got: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(got, *field, "{yaml}");
    }
    let refusal = validate(&pod(&spec("  hostUsers: false\n")));
    assert!(
        refusal[0].to_string().starts_with(
            "spec.hostUsers: false is not supported: podvisor runs no pod in a user namespace"
        ),
        "{}",
        refusal[0]
    );
    // What podvisor does carry out passes.
    for ok in [
        spec("  runtimeClassName: runc-alt\n  activeDeadlineSeconds: 30\n  hostUsers: true\n"),
        spec(
            "  securityContext: {seLinuxOptions: {type: spc_t}, supplementalGroupsPolicy: Merge}\n",
        ),
        spec("  os: {name: linux}\n"),
        container("    resources: {requests: {ephemeral-storage: 1Gi}}\n"),
        container(
            "    resources: {limits: {hugepages-2Mi: 4Mi, memory: 64Mi}, requests: {hugepages-2Mi: 4Mi, memory: 64Mi}}\n",
        ),
        container(
            "    securityContext: {appArmorProfile: {type: RuntimeDefault}, seLinuxOptions: {level: 's0:c1'}}\n",
        ),
    ] {
        assert_eq!(fields(&ok), Vec::<String>::new(), "{ok}");
    }
}

#[test]
fn legacy_apparmor_annotations_name_a_container_a_profile_and_agree_with_the_field() {
    let annotated = |key: &str, value: &str, extra: &str| {
        BASE.replace(
            "  name: web\nspec:\n",
            &format!("  name: web\n  annotations: {{'{key}': '{value}'}}\nspec:\n{extra}"),
        )
    };
    let key = "container.apparmor.security.beta.kubernetes.io/web";
    for ok in ["runtime/default", "unconfined", "localhost/k8s-nginx", ""] {
        assert_eq!(
            fields(&annotated(key, ok, "")),
            Vec::<String>::new(),
            "{ok}"
        );
    }
    assert_eq!(
        fields(&annotated(key, "enforce-everything", "")),
        [format!("metadata.annotations[{key:?}]")]
    );
    let other = "container.apparmor.security.beta.kubernetes.io/nope";
    assert_eq!(
        fields(&annotated(other, "runtime/default", "")),
        [format!("metadata.annotations[{other:?}]")]
    );
    let pod_field = "  securityContext: {appArmorProfile: {type: Unconfined}}\n";
    assert_eq!(
        fields(&annotated(key, "runtime/default", pod_field)),
        ["spec.containers[0].securityContext.appArmorProfile.type"]
    );
    assert_eq!(
        fields(&annotated(key, "unconfined", pod_field)),
        Vec::<String>::new()
    );
    let localhost =
        "  securityContext: {appArmorProfile: {type: Localhost, localhostProfile: a}}\n";
    assert_eq!(
        fields(&annotated(key, "localhost/b", localhost)),
        ["spec.containers[0].securityContext.appArmorProfile.localhostProfile"]
    );
}

#[test]
fn a_shutdown_order_annotation_must_be_an_integer() {
    let annotated = |value: &str| {
        BASE.replace(
            "  name: web\nspec:\n",
            &format!(
                "  name: web\n  annotations: {{'podvisor.dev/shutdown-order': '{value}'}}\nspec:\n"
            ),
        )
    };
    for ok in ["0", "1", "-5", " 10 "] {
        assert_eq!(fields(&annotated(ok)), Vec::<String>::new(), "{ok:?}");
    }
    for bad in ["last", "1.5", "", "99999999999"] {
        assert_eq!(
            fields(&annotated(bad)),
            ["metadata.annotations[\"podvisor.dev/shutdown-order\"]"],
            "{bad:?}"
        );
    }
}
