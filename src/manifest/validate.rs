//! Validation of a defaulted pod: the kubelet's `ValidatePodCreate` rules that matter on a
//! node, the static-pod restriction on API-object references (`PreventStaticPodAPIReferences`),
//! and what podvisor itself cannot honour. Every issue carries its field path. Pure; no IO.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, LifecycleHandler, Pod, PodSpec, Probe, ResourceRequirements,
    SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::quantity;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldIssue {
    /// Field path, like `spec.containers[0].name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Default)]
struct Issues(Vec<FieldIssue>);

impl Issues {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldIssue {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates a defaulted pod. An empty result means it may run.
pub fn validate(pod: &Pod) -> Vec<FieldIssue> {
    let mut v = Issues::default();
    validate_metadata(pod, &mut v);
    match &pod.spec {
        Some(spec) => validate_spec(spec, &mut v),
        None => v.add("spec", "required"),
    }
    v.0
}

// ---- name rules (k8s.io/apimachinery/pkg/util/validation) ----

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A lowercase RFC 1123 subdomain of at most 253 characters.
pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_label_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_label_name_part(name),
        None => is_label_name_part(s),
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name_part(s)
}

fn is_iana_svc_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (32..127).contains(&b) && b != b'=')
}

const DNS1123_LABEL: &str = "must be a lowercase RFC 1123 label: a-z, 0-9 and '-', starting and ending alphanumeric, at most 63 characters";
const DNS1123_SUBDOMAIN: &str = "must be a lowercase RFC 1123 subdomain: labels of a-z, 0-9 and '-' separated by '.', at most 253 characters";

// ---- metadata ----

fn validate_metadata(pod: &Pod, v: &mut Issues) {
    let m = &pod.metadata;
    match m.name.as_deref() {
        None | Some("") => v.add("metadata.name", "required: a static pod needs a name"),
        Some(name) if !is_dns1123_subdomain(name) => {
            v.add("metadata.name", format!("{name:?} {DNS1123_SUBDOMAIN}"))
        }
        _ => {}
    }
    if m.generate_name.as_deref().is_some_and(|g| !g.is_empty()) && m.name.is_none() {
        v.add(
            "metadata.generateName",
            "not supported for static pods: set metadata.name",
        );
    }
    if let Some(ns) = m.namespace.as_deref()
        && !is_dns1123_label(ns)
    {
        v.add("metadata.namespace", format!("{ns:?} {DNS1123_LABEL}"));
    }
    for (k, val) in m.labels.iter().flatten() {
        if !is_qualified_name(k) {
            v.add(
                format!("metadata.labels[{k:?}]"),
                "key must be a qualified name: [prefix/]name of alphanumerics, '-', '_' and '.', at most 63 characters",
            );
        }
        if !is_label_value(val) {
            v.add(
                format!("metadata.labels[{k:?}]"),
                format!("value {val:?} must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"),
            );
        }
    }
    let mut total = 0usize;
    for (k, val) in m.annotations.iter().flatten() {
        if !is_qualified_name(&k.to_lowercase()) {
            v.add(
                format!("metadata.annotations[{k:?}]"),
                "key must be a qualified name",
            );
        }
        total += k.len() + val.len();
    }
    if total > 256 * 1024 {
        v.add("metadata.annotations", "must be at most 256 KiB in total");
    }
    if m.owner_references.as_ref().is_some_and(|o| !o.is_empty()) {
        v.add("metadata.ownerReferences", "not allowed on static pods");
    }
}

// ---- spec ----

fn validate_spec(spec: &PodSpec, v: &mut Issues) {
    if spec.containers.is_empty() {
        v.add("spec.containers", "required: at least one container");
    }
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|vol| vol.name.as_str())
        .collect();
    let mut names = HashSet::new();
    let host_network = spec.host_network.unwrap_or(false);
    let mut host_ports = HashSet::new();
    for (kind, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ] {
        for (i, c) in list.iter().enumerate() {
            let at = format!("spec.{kind}[{i}]");
            if !names.insert(c.name.as_str()) && !c.name.is_empty() {
                v.add(
                    format!("{at}.name"),
                    format!("duplicate container name {:?}", c.name),
                );
            }
            validate_container(c, &at, kind == "initContainers", host_network, &volumes, v);
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let hp = p.host_port.unwrap_or(0);
                if hp != 0 {
                    let key = (
                        hp,
                        p.protocol.clone().unwrap_or_default(),
                        p.host_ip.clone().unwrap_or_default(),
                    );
                    if !host_ports.insert(key) {
                        v.add(
                            format!("{at}.ports[{j}].hostPort"),
                            format!("duplicate host port {hp}"),
                        );
                    }
                }
            }
        }
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        v.add("spec.ephemeralContainers", "not supported for static pods");
    }
    match spec.restart_policy.as_deref() {
        Some("Always" | "OnFailure" | "Never") | None => {}
        Some(other) => v.add(
            "spec.restartPolicy",
            format!("{other:?} must be Always, OnFailure or Never"),
        ),
    }
    match spec.dns_policy.as_deref() {
        Some("ClusterFirst" | "ClusterFirstWithHostNet" | "Default") | None => {}
        Some("None") => {
            if spec
                .dns_config
                .as_ref()
                .and_then(|d| d.nameservers.as_ref())
                .is_none_or(Vec::is_empty)
            {
                v.add(
                    "spec.dnsConfig.nameservers",
                    "required when dnsPolicy is None",
                );
            }
        }
        Some(other) => v.add(
            "spec.dnsPolicy",
            format!("{other:?} must be ClusterFirst, ClusterFirstWithHostNet, Default or None"),
        ),
    }
    if let Some(dns) = &spec.dns_config {
        let servers = dns.nameservers.as_deref().unwrap_or(&[]);
        if servers.len() > 3 {
            v.add("spec.dnsConfig.nameservers", "at most 3 nameservers");
        }
        for (i, s) in servers.iter().enumerate() {
            if s.parse::<IpAddr>().is_err() {
                v.add(
                    format!("spec.dnsConfig.nameservers[{i}]"),
                    format!("{s:?} is not an IP address"),
                );
            }
        }
        if dns.searches.as_ref().is_some_and(|s| s.len() > 32) {
            v.add("spec.dnsConfig.searches", "at most 32 search domains");
        }
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        v.add("spec.terminationGracePeriodSeconds", "must not be negative");
    }
    if let Some(d) = spec.active_deadline_seconds
        && d <= 0
    {
        v.add("spec.activeDeadlineSeconds", "must be positive");
    }
    for (field, value) in [
        ("spec.hostname", &spec.hostname),
        ("spec.subdomain", &spec.subdomain),
    ] {
        if let Some(h) = value.as_deref()
            && !h.is_empty()
            && !is_dns1123_label(h)
        {
            v.add(field, format!("{h:?} {DNS1123_LABEL}"));
        }
    }
    if spec.share_process_namespace.unwrap_or(false) && spec.host_pid.unwrap_or(false) {
        v.add(
            "spec.shareProcessNamespace",
            "cannot be used together with hostPID",
        );
    }
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        if alias.ip.parse::<IpAddr>().is_err() {
            v.add(
                format!("spec.hostAliases[{i}].ip"),
                format!("{:?} is not an IP address", alias.ip),
            );
        }
        for (j, h) in alias.hostnames.iter().flatten().enumerate() {
            if !is_dns1123_subdomain(h) {
                v.add(
                    format!("spec.hostAliases[{i}].hostnames[{j}]"),
                    format!("{h:?} {DNS1123_SUBDOMAIN}"),
                );
            }
        }
    }
    if let Some(sc) = &spec.security_context {
        for (field, id) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
            ("fsGroup", sc.fs_group),
        ] {
            if id.is_some_and(|id| id < 0) {
                v.add(
                    format!("spec.securityContext.{field}"),
                    "must not be negative",
                );
            }
        }
        if let Some(p) = &sc.seccomp_profile {
            validate_seccomp(
                &p.type_,
                p.localhost_profile.as_deref(),
                "spec.securityContext.seccompProfile",
                v,
            );
        }
        for (i, s) in sc.sysctls.iter().flatten().enumerate() {
            if s.name.is_empty()
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
            {
                v.add(
                    format!("spec.securityContext.sysctls[{i}].name"),
                    format!("{:?} is not a sysctl name", s.name),
                );
            }
        }
    }
    let mut seen_volumes = HashSet::new();
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("spec.volumes[{i}]");
        if !is_dns1123_label(&vol.name) {
            v.add(
                format!("{at}.name"),
                format!("{:?} {DNS1123_LABEL}", vol.name),
            );
        }
        if !seen_volumes.insert(vol.name.as_str()) {
            v.add(
                format!("{at}.name"),
                format!("duplicate volume name {:?}", vol.name),
            );
        }
        validate_volume(vol, &at, v);
    }
    validate_api_references(spec, v);
}

fn validate_seccomp(kind: &str, localhost: Option<&str>, at: &str, v: &mut Issues) {
    match kind {
        "RuntimeDefault" | "Unconfined" => {}
        "Localhost" => {
            if localhost.is_none_or(str::is_empty) {
                v.add(
                    format!("{at}.localhostProfile"),
                    "required when type is Localhost",
                );
            } else if localhost
                .is_some_and(|p| p.starts_with('/') || p.split('/').any(|s| s == ".."))
            {
                v.add(
                    format!("{at}.localhostProfile"),
                    "must be a relative path without '..'",
                );
            }
        }
        other => v.add(
            format!("{at}.type"),
            format!("{other:?} must be RuntimeDefault, Unconfined or Localhost"),
        ),
    }
}

fn validate_volume(vol: &Volume, at: &str, v: &mut Issues) {
    let mut sources = Vec::new();
    if let Some(hp) = &vol.host_path {
        sources.push("hostPath");
        if hp.path.is_empty() {
            v.add(format!("{at}.hostPath.path"), "required");
        } else if hp.path.split('/').any(|s| s == "..") {
            v.add(format!("{at}.hostPath.path"), "must not contain '..'");
        }
        match hp.type_.as_deref().unwrap_or("") {
            "" | "DirectoryOrCreate" | "Directory" | "FileOrCreate" | "File" | "Socket" | "CharDevice"
            | "BlockDevice" => {}
            other => v.add(
                format!("{at}.hostPath.type"),
                format!("{other:?} must be one of DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice or empty"),
            ),
        }
    }
    if let Some(ed) = &vol.empty_dir {
        sources.push("emptyDir");
        match ed.medium.as_deref().unwrap_or("") {
            "" | "Memory" => {}
            other => v.add(
                format!("{at}.emptyDir.medium"),
                format!("{other:?} is not supported: use \"\" (disk) or Memory"),
            ),
        }
        if let Some(q) = &ed.size_limit
            && let Err(e) = quantity::value(&q.0)
        {
            v.add(format!("{at}.emptyDir.sizeLimit"), e.to_string());
        }
    }
    if let Some(d) = &vol.downward_api {
        sources.push("downwardAPI");
        for (i, item) in d.items.iter().flatten().enumerate() {
            validate_downward_item(
                &item.path,
                item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                item.resource_field_ref.is_some(),
                &format!("{at}.downwardAPI.items[{i}]"),
                v,
            );
        }
    }
    if let Some(p) = &vol.projected {
        sources.push("projected");
        for (i, s) in p.sources.iter().flatten().enumerate() {
            let sat = format!("{at}.projected.sources[{i}]");
            if let Some(d) = &s.downward_api {
                for (j, item) in d.items.iter().flatten().enumerate() {
                    validate_downward_item(
                        &item.path,
                        item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                        item.resource_field_ref.is_some(),
                        &format!("{sat}.downwardAPI.items[{j}]"),
                        v,
                    );
                }
            }
            // secret, configMap, serviceAccountToken, clusterTrustBundle are API references,
            // reported by validate_api_references.
        }
    }
    for (present, name) in [
        (vol.secret.is_some(), "secret"),
        (vol.config_map.is_some(), "configMap"),
        (
            vol.persistent_volume_claim.is_some(),
            "persistentVolumeClaim",
        ),
        (vol.ephemeral.is_some(), "ephemeral"),
    ] {
        if present {
            sources.push(name); // refused as an API reference below
        }
    }
    let unsupported = [
        (vol.nfs.is_some(), "nfs"),
        (vol.iscsi.is_some(), "iscsi"),
        (vol.csi.is_some(), "csi"),
        (vol.image.is_some(), "image"),
        (vol.fc.is_some(), "fc"),
        (vol.rbd.is_some(), "rbd"),
        (vol.cephfs.is_some(), "cephfs"),
        (vol.glusterfs.is_some(), "glusterfs"),
        (vol.git_repo.is_some(), "gitRepo"),
        (vol.flex_volume.is_some(), "flexVolume"),
        (
            vol.aws_elastic_block_store.is_some(),
            "awsElasticBlockStore",
        ),
        (vol.azure_disk.is_some(), "azureDisk"),
        (vol.azure_file.is_some(), "azureFile"),
        (vol.cinder.is_some(), "cinder"),
        (vol.flocker.is_some(), "flocker"),
        (vol.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (vol.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (vol.portworx_volume.is_some(), "portworxVolume"),
        (vol.quobyte.is_some(), "quobyte"),
        (vol.scale_io.is_some(), "scaleIO"),
        (vol.storageos.is_some(), "storageos"),
        (vol.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    for (present, name) in unsupported {
        if present {
            sources.push(name);
            v.add(
                format!("{at}.{name}"),
                "volume type not supported by podvisor: use hostPath, emptyDir, downwardAPI or projected downwardAPI",
            );
        }
    }
    if sources.len() > 1 {
        v.add(
            at.to_owned(),
            format!("exactly one volume source, found {}", sources.join(", ")),
        );
    }
}

const DOWNWARD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

fn validate_downward_item(
    path: &str,
    field: Option<&str>,
    resource: bool,
    at: &str,
    v: &mut Issues,
) {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|s| s == "..") {
        v.add(format!("{at}.path"), "must be a relative path without '..'");
    }
    match (field, resource) {
        (Some(f), false) => {
            let ok = DOWNWARD_FIELDS.contains(&f) || is_label_or_annotation_ref(f);
            if !ok {
                v.add(
                    format!("{at}.fieldRef.fieldPath"),
                    format!("{f:?} is not supported in a downwardAPI volume"),
                );
            }
        }
        (None, true) => {}
        _ => v.add(at.to_owned(), "exactly one of fieldRef or resourceFieldRef"),
    }
}

fn is_label_or_annotation_ref(f: &str) -> bool {
    (f.starts_with("metadata.labels['") || f.starts_with("metadata.annotations['"))
        && f.ends_with("']")
}

const ENV_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_env(env: &[EnvVar], at: &str, v: &mut Issues) {
    for (i, e) in env.iter().enumerate() {
        let eat = format!("{at}.env[{i}]");
        if !is_env_name(&e.name) {
            v.add(
                format!("{eat}.name"),
                format!("{:?} must be printable ASCII without '='", e.name),
            );
        }
        if let Some(from) = &e.value_from {
            if e.value.as_deref().is_some_and(|s| !s.is_empty()) {
                v.add(
                    format!("{eat}.valueFrom"),
                    "may not be set together with value",
                );
            }
            let count = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if count != 1 {
                v.add(
                    format!("{eat}.valueFrom"),
                    "exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
                );
            }
            if let Some(f) = &from.field_ref
                && !(ENV_FIELDS.contains(&f.field_path.as_str())
                    || is_label_or_annotation_ref(&f.field_path))
            {
                v.add(
                    format!("{eat}.valueFrom.fieldRef.fieldPath"),
                    format!("{:?} is not a supported field", f.field_path),
                );
            }
            if let Some(r) = &from.resource_field_ref
                && !matches!(
                    r.resource.as_str(),
                    "limits.cpu"
                        | "limits.memory"
                        | "requests.cpu"
                        | "requests.memory"
                        | "limits.ephemeral-storage"
                        | "requests.ephemeral-storage"
                )
            {
                v.add(
                    format!("{eat}.valueFrom.resourceFieldRef.resource"),
                    format!("{:?} is not a supported resource", r.resource),
                );
            }
        }
    }
}

fn validate_container(
    c: &Container,
    at: &str,
    init: bool,
    host_network: bool,
    volumes: &BTreeSet<&str>,
    v: &mut Issues,
) {
    if !is_dns1123_label(&c.name) {
        v.add(
            format!("{at}.name"),
            format!("{:?} {DNS1123_LABEL}", c.name),
        );
    }
    match c.image.as_deref() {
        None | Some("") => v.add(format!("{at}.image"), "required"),
        Some(i) if i.trim() != i => v.add(
            format!("{at}.image"),
            "must not have leading or trailing whitespace",
        ),
        _ => {}
    }
    match c.image_pull_policy.as_deref() {
        Some("Always" | "IfNotPresent" | "Never") | None => {}
        Some(other) => v.add(
            format!("{at}.imagePullPolicy"),
            format!("{other:?} must be Always, IfNotPresent or Never"),
        ),
    }
    match c.termination_message_policy.as_deref() {
        Some("File" | "FallbackToLogsOnError") | None => {}
        Some(other) => v.add(
            format!("{at}.terminationMessagePolicy"),
            format!("{other:?} must be File or FallbackToLogsOnError"),
        ),
    }
    if let Some(p) = c.termination_message_path.as_deref()
        && !p.starts_with('/')
    {
        v.add(
            format!("{at}.terminationMessagePath"),
            "must be an absolute path",
        );
    }
    let sidecar = match c.restart_policy.as_deref() {
        None => false,
        Some("Always") if init => true,
        Some(other) if init => {
            v.add(
                format!("{at}.restartPolicy"),
                format!("{other:?}: only Always is allowed, for a sidecar"),
            );
            false
        }
        Some(_) => {
            v.add(
                format!("{at}.restartPolicy"),
                "only init containers may set a restartPolicy",
            );
            false
        }
    };
    if init && !sidecar {
        for (present, field) in [
            (c.liveness_probe.is_some(), "livenessProbe"),
            (c.readiness_probe.is_some(), "readinessProbe"),
            (c.startup_probe.is_some(), "startupProbe"),
            (c.lifecycle.is_some(), "lifecycle"),
        ] {
            if present {
                v.add(format!("{at}.{field}"), "not allowed on an init container unless it is a sidecar (restartPolicy: Always)");
            }
        }
    }
    let mut port_names = HashSet::new();
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let pat = format!("{at}.ports[{j}]");
        if !(1..=65535).contains(&p.container_port) {
            v.add(
                format!("{pat}.containerPort"),
                format!("{} must be between 1 and 65535", p.container_port),
            );
        }
        if let Some(hp) = p.host_port
            && !(0..=65535).contains(&hp)
        {
            v.add(
                format!("{pat}.hostPort"),
                format!("{hp} must be between 1 and 65535"),
            );
        }
        if host_network && p.host_port.is_some_and(|hp| hp != p.container_port) {
            v.add(
                format!("{pat}.hostPort"),
                "must equal containerPort when hostNetwork is true",
            );
        }
        match p.protocol.as_deref() {
            Some("TCP" | "UDP" | "SCTP") | None => {}
            Some(other) => v.add(
                format!("{pat}.protocol"),
                format!("{other:?} must be TCP, UDP or SCTP"),
            ),
        }
        if let Some(ip) = p.host_ip.as_deref()
            && !ip.is_empty()
            && ip.parse::<IpAddr>().is_err()
        {
            v.add(
                format!("{pat}.hostIP"),
                format!("{ip:?} is not an IP address"),
            );
        }
        if let Some(name) = p.name.as_deref() {
            if !is_iana_svc_name(name) {
                v.add(
                    format!("{pat}.name"),
                    format!(
                        "{name:?} must be at most 15 lowercase alphanumerics or '-', with a letter"
                    ),
                );
            } else if !port_names.insert(name) {
                v.add(
                    format!("{pat}.name"),
                    format!("duplicate port name {name:?}"),
                );
            }
        }
    }
    validate_env(c.env.as_deref().unwrap_or(&[]), at, v);
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        v.add(
            format!("{at}.envFrom"),
            "static pods may not reference ConfigMaps or Secrets",
        );
    }
    let mut mount_paths = HashSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mat = format!("{at}.volumeMounts[{j}]");
        if !volumes.contains(m.name.as_str()) {
            v.add(
                format!("{mat}.name"),
                format!("no volume named {:?} in spec.volumes", m.name),
            );
        }
        if m.mount_path.is_empty() {
            v.add(format!("{mat}.mountPath"), "required");
        } else if !mount_paths.insert(m.mount_path.trim_end_matches('/')) {
            v.add(
                format!("{mat}.mountPath"),
                format!("{:?} is mounted twice", m.mount_path),
            );
        }
        for (field, sub) in [("subPath", &m.sub_path), ("subPathExpr", &m.sub_path_expr)] {
            if let Some(s) = sub.as_deref()
                && (s.starts_with('/') || s.split('/').any(|p| p == ".."))
            {
                v.add(
                    format!("{mat}.{field}"),
                    "must be a relative path without '..'",
                );
            }
        }
        if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            && m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
        {
            v.add(
                format!("{mat}.subPathExpr"),
                "may not be set together with subPath",
            );
        }
        match m.mount_propagation.as_deref() {
            None | Some("None" | "HostToContainer") => {}
            Some("Bidirectional") => {
                let privileged = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false);
                if !privileged {
                    v.add(
                        format!("{mat}.mountPropagation"),
                        "Bidirectional needs a privileged container",
                    );
                }
            }
            Some(other) => v.add(
                format!("{mat}.mountPropagation"),
                format!("{other:?} must be None, HostToContainer or Bidirectional"),
            ),
        }
    }
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        v.add(format!("{at}.volumeDevices"), "not supported by podvisor");
    }
    if let Some(r) = &c.resources {
        validate_resources(r, &format!("{at}.resources"), v);
    }
    if let Some(sc) = &c.security_context {
        validate_security_context(sc, &format!("{at}.securityContext"), v);
    }
    for (probe, field) in [
        (&c.liveness_probe, "livenessProbe"),
        (&c.readiness_probe, "readinessProbe"),
        (&c.startup_probe, "startupProbe"),
    ] {
        if let Some(p) = probe {
            validate_probe(p, c, field, &format!("{at}.{field}"), v);
        }
    }
    if let Some(l) = &c.lifecycle {
        for (h, field) in [(&l.post_start, "postStart"), (&l.pre_stop, "preStop")] {
            if let Some(h) = h {
                validate_handler(h, c, &format!("{at}.lifecycle.{field}"), v);
            }
        }
    }
}

fn validate_resources(r: &ResourceRequirements, at: &str, v: &mut Issues) {
    for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map.iter().flatten() {
            let valid_name = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("hugepages-")
                || name.contains('/');
            if !valid_name {
                v.add(
                    format!("{at}.{kind}[{name}]"),
                    "unknown resource: expected cpu, memory, ephemeral-storage or hugepages-<size>",
                );
            }
            if let Err(e) = quantity::milli_value(&q.0) {
                v.add(format!("{at}.{kind}[{name}]"), e.to_string());
            }
        }
    }
    if let (Some(limits), Some(requests)) = (&r.limits, &r.requests) {
        for (name, req) in requests {
            if let Some(lim) = limits.get(name)
                && let (Ok(req_m), Ok(lim_m)) =
                    (quantity::milli_value(&req.0), quantity::milli_value(&lim.0))
                && req_m > lim_m
            {
                v.add(
                    format!("{at}.requests[{name}]"),
                    format!(
                        "{} must be less than or equal to the limit {}",
                        req.0, lim.0
                    ),
                );
            }
        }
    }
    if r.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        v.add(
            format!("{at}.claims"),
            "static pods may not reference ResourceClaims",
        );
    }
}

fn validate_security_context(sc: &SecurityContext, at: &str, v: &mut Issues) {
    for (field, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if id.is_some_and(|id| id < 0) {
            v.add(format!("{at}.{field}"), "must not be negative");
        }
    }
    let privileged = sc.privileged.unwrap_or(false);
    if sc.allow_privilege_escalation == Some(false) {
        if privileged {
            v.add(
                format!("{at}.allowPrivilegeEscalation"),
                "cannot be false when privileged is true",
            );
        }
        if sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|c| c == "SYS_ADMIN" || c == "CAP_SYS_ADMIN"))
        {
            v.add(
                format!("{at}.allowPrivilegeEscalation"),
                "cannot be false when SYS_ADMIN is added",
            );
        }
    }
    if let Some(p) = &sc.seccomp_profile {
        validate_seccomp(
            &p.type_,
            p.localhost_profile.as_deref(),
            &format!("{at}.seccompProfile"),
            v,
        );
    }
    match sc.proc_mount.as_deref() {
        None | Some("Default") => {}
        Some(other) => v.add(
            format!("{at}.procMount"),
            format!("{other:?} is not supported by podvisor"),
        ),
    }
}

fn port_ok(port: &IntOrString, c: &Container, at: &str, v: &mut Issues) {
    match port {
        IntOrString::Int(p) if (1..=65535).contains(p) => {}
        IntOrString::Int(p) => v.add(
            format!("{at}.port"),
            format!("{p} must be between 1 and 65535"),
        ),
        IntOrString::String(name) => {
            let known = c
                .ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref() == Some(name.as_str()));
            if !known {
                v.add(
                    format!("{at}.port"),
                    format!("{name:?} is not the name of one of this container's ports"),
                );
            }
        }
    }
}

fn validate_probe(p: &Probe, c: &Container, kind: &str, at: &str, v: &mut Issues) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if handlers != 1 {
        v.add(
            at.to_owned(),
            "exactly one of exec, httpGet, tcpSocket or grpc",
        );
    }
    for (field, value, min) in [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("periodSeconds", p.period_seconds, 1),
        ("successThreshold", p.success_threshold, 1),
        ("failureThreshold", p.failure_threshold, 1),
    ] {
        if value.is_some_and(|x| x < min) {
            v.add(format!("{at}.{field}"), format!("must be at least {min}"));
        }
    }
    if kind != "readinessProbe" && p.success_threshold.is_some_and(|s| s != 1) {
        v.add(
            format!("{at}.successThreshold"),
            "must be 1 for liveness and startup probes",
        );
    }
    if kind == "readinessProbe" && p.termination_grace_period_seconds.is_some() {
        v.add(
            format!("{at}.terminationGracePeriodSeconds"),
            "not allowed on a readiness probe",
        );
    }
    if p.termination_grace_period_seconds.is_some_and(|g| g < 1) {
        v.add(
            format!("{at}.terminationGracePeriodSeconds"),
            "must be at least 1",
        );
    }
    if let Some(e) = &p.exec
        && e.command.as_ref().is_none_or(Vec::is_empty)
    {
        v.add(format!("{at}.exec.command"), "required");
    }
    if let Some(h) = &p.http_get {
        port_ok(&h.port, c, &format!("{at}.httpGet"), v);
        match h.scheme.as_deref() {
            None | Some("HTTP" | "HTTPS") => {}
            Some(other) => v.add(
                format!("{at}.httpGet.scheme"),
                format!("{other:?} must be HTTP or HTTPS"),
            ),
        }
    }
    if let Some(t) = &p.tcp_socket {
        port_ok(&t.port, c, &format!("{at}.tcpSocket"), v);
    }
    if let Some(g) = &p.grpc
        && !(1..=65535).contains(&g.port)
    {
        v.add(
            format!("{at}.grpc.port"),
            format!("{} must be between 1 and 65535", g.port),
        );
    }
}

fn validate_handler(h: &LifecycleHandler, c: &Container, at: &str, v: &mut Issues) {
    let handlers = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.tcp_socket.is_some(),
        h.sleep.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if handlers != 1 {
        v.add(at.to_owned(), "exactly one of exec, httpGet or sleep");
    }
    if h.tcp_socket.is_some() {
        v.add(
            format!("{at}.tcpSocket"),
            "not supported as a lifecycle handler (the kubelet ignores it)",
        );
    }
    if let Some(e) = &h.exec
        && e.command.as_ref().is_none_or(Vec::is_empty)
    {
        v.add(format!("{at}.exec.command"), "required");
    }
    if let Some(g) = &h.http_get {
        port_ok(&g.port, c, &format!("{at}.httpGet"), v);
    }
    if let Some(s) = &h.sleep
        && s.seconds < 0
    {
        v.add(format!("{at}.sleep.seconds"), "must not be negative");
    }
}

/// Static pods may not reference API objects: the API server would refuse their mirror pods,
/// and there is no API server to read them from (kubelet `PreventStaticPodAPIReferences`).
fn validate_api_references(spec: &PodSpec, v: &mut Issues) {
    const WHY: &str = "static pods may not reference API objects";
    for (field, value) in [
        ("spec.serviceAccountName", &spec.service_account_name),
        ("spec.serviceAccount", &spec.service_account),
    ] {
        if value.as_deref().is_some_and(|s| !s.is_empty()) {
            v.add(field, format!("{WHY} (ServiceAccount)"));
        }
    }
    if spec
        .image_pull_secrets
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        v.add("spec.imagePullSecrets", format!("{WHY} (Secret)"));
    }
    if spec.resource_claims.as_ref().is_some_and(|s| !s.is_empty()) {
        v.add("spec.resourceClaims", format!("{WHY} (ResourceClaim)"));
    }
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("spec.volumes[{i}]");
        for (present, field, what) in [
            (vol.secret.is_some(), "secret", "Secret"),
            (vol.config_map.is_some(), "configMap", "ConfigMap"),
            (
                vol.persistent_volume_claim.is_some(),
                "persistentVolumeClaim",
                "PersistentVolumeClaim",
            ),
            (
                vol.ephemeral.is_some(),
                "ephemeral",
                "PersistentVolumeClaim",
            ),
        ] {
            if present {
                v.add(format!("{at}.{field}"), format!("{WHY} ({what})"));
            }
        }
        for (j, s) in vol
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            for (present, field, what) in [
                (s.secret.is_some(), "secret", "Secret"),
                (s.config_map.is_some(), "configMap", "ConfigMap"),
                (
                    s.service_account_token.is_some(),
                    "serviceAccountToken",
                    "ServiceAccount",
                ),
                (
                    s.cluster_trust_bundle.is_some(),
                    "clusterTrustBundle",
                    "ClusterTrustBundle",
                ),
                (
                    s.pod_certificate.is_some(),
                    "podCertificate",
                    "PodCertificate",
                ),
            ] {
                if present {
                    v.add(
                        format!("{at}.projected.sources[{j}].{field}"),
                        format!("{WHY} ({what})"),
                    );
                }
            }
        }
    }
    for (kind, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ] {
        for (i, c) in list.iter().enumerate() {
            for (j, e) in c.env.iter().flatten().enumerate() {
                if let Some(from) = &e.value_from {
                    if from.secret_key_ref.is_some() {
                        v.add(
                            format!("spec.{kind}[{i}].env[{j}].valueFrom.secretKeyRef"),
                            format!("{WHY} (Secret)"),
                        );
                    }
                    if from.config_map_key_ref.is_some() {
                        v.add(
                            format!("spec.{kind}[{i}].env[{j}].valueFrom.configMapKeyRef"),
                            format!("{WHY} (ConfigMap)"),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            fields(&BASE.replace("name: web\nspec", "name: Web_1\nspec")),
            ["metadata.name"]
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
}
