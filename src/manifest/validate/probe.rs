//! Probes and lifecycle handlers: one handler each, sane numbers, ports the container has. Pure.

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Issues;

pub(super) fn port_ok(port: &IntOrString, c: &Container, at: &str, v: &mut Issues) {
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

pub(super) fn validate_probe(p: &Probe, c: &Container, kind: &str, at: &str, v: &mut Issues) {
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

pub(super) fn validate_handler(h: &LifecycleHandler, c: &Container, at: &str, v: &mut Issues) {
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
