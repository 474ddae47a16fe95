//! `/stats/summary` (the kubelet's Summary API, `stats/v1alpha1`, which `kubectl top` and
//! older metrics-servers read) and `/metrics/resource` (the Prometheus text metrics-server
//! 0.6+ scrapes), from the runtime's usage of podvisor's pods and the node's own. Pure.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

use crate::clock::Timestamp;
use crate::runtime::{CpuUse, FsUse, InterfaceUse, MemoryUse, Observed, PodUse};
use crate::status::{NodeStatus, api_time};

/// What the node reports about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUse {
    /// Node CPU.
    pub cpu: Option<CpuUse>,
    /// Node memory.
    pub memory: Option<MemoryUse>,
    /// When podvisor started (the Summary's node `startTime`).
    pub started: Option<Timestamp>,
}

fn time(t: Option<Timestamp>) -> Value {
    t.map(|t| serde_json::to_value(api_time(t)).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

fn insert(map: &mut serde_json::Map<String, Value>, key: &str, v: Option<u64>) {
    if let Some(v) = v {
        map.insert(key.to_owned(), json!(v));
    }
}

fn cpu(c: &Option<CpuUse>) -> Value {
    let Some(c) = c else { return Value::Null };
    let mut m = serde_json::Map::new();
    m.insert("time".into(), time(c.at));
    insert(&mut m, "usageNanoCores", c.nano_cores);
    insert(&mut m, "usageCoreNanoSeconds", c.core_nanos);
    Value::Object(m)
}

fn memory(mem: &Option<MemoryUse>) -> Value {
    let Some(mem) = mem else { return Value::Null };
    let mut m = serde_json::Map::new();
    m.insert("time".into(), time(mem.at));
    insert(&mut m, "availableBytes", mem.available);
    insert(&mut m, "usageBytes", mem.usage);
    insert(&mut m, "workingSetBytes", mem.working_set);
    insert(&mut m, "rssBytes", mem.rss);
    insert(&mut m, "pageFaults", mem.page_faults);
    insert(&mut m, "majorPageFaults", mem.major_page_faults);
    Value::Object(m)
}

fn fs(f: &Option<FsUse>) -> Value {
    let Some(f) = f else { return Value::Null };
    let mut m = serde_json::Map::new();
    m.insert("time".into(), time(f.at));
    insert(&mut m, "usedBytes", f.used_bytes);
    insert(&mut m, "inodesUsed", f.inodes_used);
    Value::Object(m)
}

fn interface(i: &InterfaceUse) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(i.name));
    insert(&mut m, "rxBytes", i.rx_bytes);
    insert(&mut m, "rxErrors", i.rx_errors);
    insert(&mut m, "txBytes", i.tx_bytes);
    insert(&mut m, "txErrors", i.tx_errors);
    Value::Object(m)
}

/// Sums the containers' CPU and memory, for runtimes that give no pod-level figures.
fn pod_totals(p: &PodUse) -> (Option<CpuUse>, Option<MemoryUse>) {
    let cpu = p.cpu.or_else(|| {
        let all: Vec<&CpuUse> = p.containers.iter().filter_map(|c| c.cpu.as_ref()).collect();
        (!all.is_empty()).then(|| CpuUse {
            at: all.iter().filter_map(|c| c.at).max(),
            core_nanos: all.iter().map(|c| c.core_nanos).sum(),
            nano_cores: all.iter().map(|c| c.nano_cores).sum(),
        })
    });
    let memory = p.memory.or_else(|| {
        let all: Vec<&MemoryUse> = p
            .containers
            .iter()
            .filter_map(|c| c.memory.as_ref())
            .collect();
        (!all.is_empty()).then(|| MemoryUse {
            at: all.iter().filter_map(|m| m.at).max(),
            working_set: all.iter().map(|m| m.working_set).sum(),
            usage: all.iter().map(|m| m.usage).sum(),
            rss: all.iter().map(|m| m.rss).sum(),
            ..MemoryUse::default()
        })
    });
    (cpu, memory)
}

fn start_times(observed: &Observed) -> BTreeMap<String, Option<Timestamp>> {
    observed
        .containers
        .iter()
        .map(|c| (c.id.0.clone(), c.started_at))
        .collect()
}

/// The Summary API's document.
pub fn summary(
    node: &str,
    usage: &NodeUse,
    pods: &[PodUse],
    status: &NodeStatus,
    observed: &Observed,
) -> Value {
    let started = start_times(observed);
    let pod_start = |uid: &str| {
        status
            .pods
            .values()
            .find(|r| r.pod.uid.as_str() == uid)
            .and_then(|r| r.status.start_time.clone())
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .unwrap_or(Value::Null)
    };
    let pods: Vec<Value> = pods
        .iter()
        .map(|p| {
            let (pod_cpu, pod_memory) = pod_totals(p);
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "startTime": time(started.get(&c.id.0).copied().flatten()),
                        "cpu": cpu(&c.cpu),
                        "memory": memory(&c.memory),
                        "rootfs": fs(&c.rootfs),
                    })
                })
                .collect();
            let mut doc = json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": pod_start(&p.uid),
                "containers": containers,
                "cpu": cpu(&pod_cpu),
                "memory": memory(&pod_memory),
            });
            if let (Some(n), Value::Object(m)) = (&p.network, &mut doc) {
                let mut net = match n.default_interface.as_ref().map(interface) {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                net.insert("time".into(), time(n.at));
                net.insert(
                    "interfaces".into(),
                    Value::Array(n.interfaces.iter().map(interface).collect()),
                );
                m.insert("network".into(), Value::Object(net));
            }
            if let (Some(count), Value::Object(m)) = (p.processes, &mut doc) {
                m.insert("process_stats".into(), json!({ "process_count": count }));
            }
            doc
        })
        .collect();
    json!({
        "node": {
            "nodeName": node,
            "startTime": time(usage.started),
            "cpu": cpu(&usage.cpu),
            "memory": memory(&usage.memory),
        },
        "pods": pods,
    })
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

fn millis(t: Option<Timestamp>) -> String {
    t.map(|t| format!(" {}", t.0 / 1_000_000))
        .unwrap_or_default()
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/metrics/resource`, the kubelet's resource metrics in Prometheus text format.
pub fn resource_metrics(
    usage: &NodeUse,
    pods: Result<&[PodUse], ()>,
    observed: &Observed,
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in samples {
            let _ = writeln!(out, "{name}{s}");
        }
    };
    let scrape_error = usize::from(pods.is_err());
    let pods = pods.unwrap_or_default();
    let started = start_times(observed);
    let each_container = |f: &dyn Fn(&crate::runtime::ContainerUse) -> Option<String>| {
        pods.iter()
            .flat_map(|p| {
                p.containers.iter().filter_map(move |c| {
                    f(c).map(|v| {
                        format!(
                            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {v}",
                            label(&c.name),
                            label(&p.namespace),
                            label(&p.name)
                        )
                    })
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        each_container(&|c| {
            let cpu = c.cpu?;
            Some(format!("{}{}", seconds(cpu.core_nanos?), millis(cpu.at)))
        }),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        each_container(&|c| {
            let m = c.memory?;
            Some(format!("{}{}", m.working_set?, millis(m.at)))
        }),
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        each_container(&|c| {
            let t = started.get(&c.id.0).copied().flatten()?;
            Some(format!("{}", t.0 as f64 / 1e9))
        }),
    );
    if let Some(cpu) = usage.cpu
        && let Some(n) = cpu.core_nanos
    {
        family(
            "node_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the node in core-seconds",
            vec![format!(" {}{}", seconds(n), millis(cpu.at))],
        );
    }
    if let Some(m) = usage.memory
        && let Some(ws) = m.working_set
    {
        family(
            "node_memory_working_set_bytes",
            "gauge",
            "Current working set of the node in bytes",
            vec![format!(" {ws}{}", millis(m.at))],
        );
    }
    let each_pod = |f: &dyn Fn(&PodUse) -> Option<String>| {
        pods.iter()
            .filter_map(|p| {
                f(p).map(|v| {
                    format!(
                        "{{namespace=\"{}\",pod=\"{}\"}} {v}",
                        label(&p.namespace),
                        label(&p.name)
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        each_pod(&|p| {
            let cpu = pod_totals(p).0?;
            Some(format!("{}{}", seconds(cpu.core_nanos?), millis(cpu.at)))
        }),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        each_pod(&|p| {
            let m = pod_totals(p).1?;
            Some(format!("{}{}", m.working_set?, millis(m.at)))
        }),
    );
    family(
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
        vec![format!(" {scrape_error}")],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerUse;

    fn container(core_nanos: u64, working_set: u64, at: i64) -> ContainerUse {
        ContainerUse {
            cpu: Some(CpuUse {
                at: Some(Timestamp(at)),
                core_nanos: Some(core_nanos),
                nano_cores: None,
            }),
            memory: Some(MemoryUse {
                at: Some(Timestamp(at)),
                working_set: Some(working_set),
                ..MemoryUse::default()
            }),
            ..ContainerUse::default()
        }
    }

    /// Issue 14: CRI-O with the cgroupfs manager cannot read a pod's cgroup and leaves the
    /// pod-level figures of `ListPodSandboxStats` empty; its containers' figures are there.
    #[test]
    fn a_pod_without_pod_level_figures_sums_its_containers() {
        let pod = PodUse {
            containers: vec![container(100, 10, 5), container(20, 3, 7)],
            ..PodUse::default()
        };
        let (cpu, memory) = pod_totals(&pod);
        let cpu = cpu.expect("summed cpu");
        let memory = memory.expect("summed memory");
        assert_eq!((cpu.core_nanos, cpu.at), (Some(120), Some(Timestamp(7))));
        assert_eq!(memory.working_set, Some(13));

        // pod-level figures, where the runtime has them, win
        let own = PodUse {
            cpu: Some(CpuUse {
                core_nanos: Some(999),
                ..CpuUse::default()
            }),
            ..pod
        };
        assert_eq!(pod_totals(&own).0.and_then(|c| c.core_nanos), Some(999));
    }
}
