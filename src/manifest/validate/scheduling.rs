//! The scheduling fields of a pod: node selector, affinity, tolerations, topology spread,
//! scheduling and readiness gates. A static pod is never scheduled, but the kubelet validates
//! these with `ValidatePodCreate`, and the API server refuses a mirror pod that breaks them
//! forever; so they are checked as `pkg/apis/core/validation` checks them. Pure.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, PodSpec,
    Toleration, TopologySpreadConstraint,
};

use super::Issues;
use super::names::{is_label_value, is_qualified_name};

const LABEL_KEY: &str = "must be a qualified name: [prefix/]name of alphanumerics, '-', '_' and '.', at most 63 characters";
const LABEL_VALUE: &str =
    "must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric";

/// Validates the scheduling fields of `spec`.
pub(super) fn validate_scheduling(spec: &PodSpec, v: &mut Issues) {
    if spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty())
    {
        // Static pods are bound to their node (`spec.nodeName`) from the start.
        v.add(
            "spec.schedulingGates",
            "a static pod is bound to its node: spec.nodeName cannot be set until all schedulingGates have been cleared",
        );
    }
    for (k, val) in spec.node_selector.iter().flatten() {
        let at = format!("spec.nodeSelector[{k:?}]");
        if !is_qualified_name(k) {
            v.add(&at, format!("key {LABEL_KEY}"));
        }
        if !is_label_value(val) {
            v.add(&at, format!("value {val:?} {LABEL_VALUE}"));
        }
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        validate_toleration(t, &format!("spec.tolerations[{i}]"), v);
    }
    if let Some(a) = &spec.affinity {
        validate_affinity(a, v);
    }
    validate_spread(
        spec.topology_spread_constraints.as_deref().unwrap_or(&[]),
        v,
    );
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        if !is_qualified_name(&g.condition_type) {
            v.add(
                format!("spec.readinessGates[{i}].conditionType"),
                format!("{:?} {LABEL_KEY}", g.condition_type),
            );
        }
    }
}

fn validate_toleration(t: &Toleration, at: &str, v: &mut Issues) {
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("");
    let value = t.value.as_deref().unwrap_or("");
    if !key.is_empty() && !is_qualified_name(key) {
        v.add(format!("{at}.key"), format!("{key:?} {LABEL_KEY}"));
    }
    if key.is_empty() && op != "Exists" {
        v.add(
            format!("{at}.operator"),
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        );
    }
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
        v.add(
            format!("{at}.effect"),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
    match op {
        "" | "Equal" => {
            if !is_label_value(value) {
                v.add(format!("{at}.value"), format!("{value:?} {LABEL_VALUE}"));
            }
        }
        "Exists" => {
            if !value.is_empty() {
                v.add(
                    format!("{at}.operator"),
                    "value must be empty when `operator` is 'Exists'",
                );
            }
        }
        other => v.add(
            format!("{at}.operator"),
            format!("{other:?}: supported values: \"Equal\", \"Exists\""),
        ),
    }
    match t.effect.as_deref() {
        None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") => {}
        Some(other) => v.add(
            format!("{at}.effect"),
            format!(
                "{other:?}: supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
            ),
        ),
    }
}

fn validate_requirement(r: &NodeSelectorRequirement, at: &str, v: &mut Issues) {
    if !is_qualified_name(&r.key) {
        v.add(format!("{at}.key"), format!("{:?} {LABEL_KEY}", r.key));
    }
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => v.add(
            format!("{at}.values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        ),
        "Exists" | "DoesNotExist" if !values.is_empty() => v.add(
            format!("{at}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => v.add(
            format!("{at}.values"),
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        ),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {
            for (j, val) in values.iter().enumerate() {
                if matches!(r.operator.as_str(), "In" | "NotIn") && !is_label_value(val) {
                    v.add(
                        format!("{at}.values[{j}]"),
                        format!("{val:?} {LABEL_VALUE}"),
                    );
                }
            }
        }
        other => v.add(
            format!("{at}.operator"),
            format!("{other:?} is not a valid node selector operator"),
        ),
    }
}

fn validate_term(term: &NodeSelectorTerm, at: &str, v: &mut Issues) {
    for (j, r) in term.match_expressions.iter().flatten().enumerate() {
        validate_requirement(r, &format!("{at}.matchExpressions[{j}]"), v);
    }
    for (j, r) in term.match_fields.iter().flatten().enumerate() {
        let fat = format!("{at}.matchFields[{j}]");
        if r.key != "metadata.name" {
            v.add(
                format!("{fat}.key"),
                format!("{:?}: supported values: \"metadata.name\"", r.key),
            );
        }
        if !matches!(r.operator.as_str(), "In" | "NotIn") {
            v.add(
                format!("{fat}.operator"),
                format!("{:?}: supported values: \"In\", \"NotIn\"", r.operator),
            );
        }
        if r.values.as_ref().is_none_or(|vals| vals.len() != 1) {
            v.add(format!("{fat}.values"), "must have one element");
        }
    }
}

fn validate_node_selector(s: &NodeSelector, at: &str, v: &mut Issues) {
    if s.node_selector_terms.is_empty() {
        v.add(
            format!("{at}.nodeSelectorTerms"),
            "must have at least one node selector term",
        );
    }
    for (i, term) in s.node_selector_terms.iter().enumerate() {
        validate_term(term, &format!("{at}.nodeSelectorTerms[{i}]"), v);
    }
}

fn validate_pod_term(t: &PodAffinityTerm, at: &str, v: &mut Issues) {
    if t.topology_key.is_empty() {
        v.add(format!("{at}.topologyKey"), "can not be empty");
    } else if !is_qualified_name(&t.topology_key) {
        v.add(
            format!("{at}.topologyKey"),
            format!("{:?} {LABEL_KEY}", t.topology_key),
        );
    }
}

fn validate_affinity(a: &Affinity, v: &mut Issues) {
    let at = "spec.affinity.nodeAffinity";
    if let Some(na) = &a.node_affinity {
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            validate_node_selector(
                req,
                &format!("{at}.requiredDuringSchedulingIgnoredDuringExecution"),
                v,
            );
        }
        for (i, p) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let pat = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            if !(1..=100).contains(&p.weight) {
                v.add(format!("{pat}.weight"), "must be in the range 1-100");
            }
            validate_term(&p.preference, &format!("{pat}.preference"), v);
        }
    }
    for (kind, required, preferred) in [
        (
            "podAffinity",
            a.pod_affinity.as_ref().and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            a.pod_affinity.as_ref().and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
        (
            "podAntiAffinity",
            a.pod_anti_affinity.as_ref().and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            a.pod_anti_affinity.as_ref().and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
    ] {
        let at = format!("spec.affinity.{kind}");
        for (i, t) in required.into_iter().flatten().enumerate() {
            validate_pod_term(
                t,
                &format!("{at}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
                v,
            );
        }
        for (i, w) in preferred.into_iter().flatten().enumerate() {
            let wat = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            if !(1..=100).contains(&w.weight) {
                v.add(format!("{wat}.weight"), "must be in the range 1-100");
            }
            validate_pod_term(&w.pod_affinity_term, &format!("{wat}.podAffinityTerm"), v);
        }
    }
}

fn validate_spread(constraints: &[TopologySpreadConstraint], v: &mut Issues) {
    let mut seen = HashSet::new();
    for (i, c) in constraints.iter().enumerate() {
        let at = format!("spec.topologySpreadConstraints[{i}]");
        if c.max_skew <= 0 {
            v.add(format!("{at}.maxSkew"), "must be greater than zero");
        }
        if c.topology_key.is_empty() {
            v.add(format!("{at}.topologyKey"), "can not be empty");
        }
        match c.when_unsatisfiable.as_str() {
            "DoNotSchedule" | "ScheduleAnyway" => {}
            other => v.add(
                format!("{at}.whenUnsatisfiable"),
                format!("{other:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\""),
            ),
        }
        if !seen.insert((c.topology_key.as_str(), c.when_unsatisfiable.as_str())) {
            v.add(
                format!("{at}.{{topologyKey, whenUnsatisfiable}}"),
                "duplicate value",
            );
        }
        if let Some(min) = c.min_domains {
            if min <= 0 {
                v.add(format!("{at}.minDomains"), "must be greater than zero");
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                v.add(
                    format!("{at}.minDomains"),
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                        c.when_unsatisfiable
                    ),
                );
            }
        }
        for (field, policy) in [
            ("nodeAffinityPolicy", &c.node_affinity_policy),
            ("nodeTaintsPolicy", &c.node_taints_policy),
        ] {
            if let Some(p) = policy.as_deref()
                && !matches!(p, "Honor" | "Ignore")
            {
                v.add(
                    format!("{at}.{field}"),
                    format!("{p:?}: supported values: \"Honor\", \"Ignore\""),
                );
            }
        }
    }
}
