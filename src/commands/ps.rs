//! `podvisor ps`: a pod-centric table of the daemon's static pods.

use crate::api::client::{ClientError, get_json};
use crate::api::views::{PodView, age};
use crate::cli::{Output, PsArgs};
use crate::clock::{Clock, Timestamp};

fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!(
            "{}…",
            one_line
                .chars()
                .take(n.saturating_sub(1))
                .collect::<String>()
        )
    }
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == widths.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Renders pods in a format. Pure.
pub fn render(pods: &[PodView], output: Output, now: Timestamp) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(pods)
            .map(|s| s + "\n")
            .unwrap_or_default(),
        Output::Yaml => serde_saphyr::to_string(&pods.to_vec()).unwrap_or_default(),
        Output::Table | Output::Wide => {
            let wide = output == Output::Wide;
            let mut header = vec![
                "POD",
                "NAMESPACE",
                "FILE",
                "PHASE",
                "READY",
                "RESTARTS",
                "AGE",
            ];
            if wide {
                header.extend(["IP", "UID", "HASH", "CONTAINERS"]);
            }
            header.push("LAST ERROR");
            let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
            for p in pods {
                let file = std::path::Path::new(&p.file)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(&p.file)
                    .to_owned();
                let mut row = vec![
                    p.name.clone(),
                    p.namespace.clone(),
                    file,
                    p.phase.clone(),
                    p.ready_count.clone(),
                    p.restarts.to_string(),
                    age(p.start_time.as_deref(), now),
                ];
                if wide {
                    let containers: Vec<String> = p
                        .containers
                        .iter()
                        .map(|c| {
                            format!(
                                "{}:{}{}",
                                c.name,
                                c.state,
                                c.reason
                                    .as_ref()
                                    .map(|r| format!("({r})"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    row.extend([
                        p.pod_ip.clone().unwrap_or_else(|| "-".into()),
                        p.uid.clone(),
                        p.hash.clone(),
                        containers.join(","),
                    ]);
                }
                // the error first; else why the running version is not the file's
                row.push(
                    p.last_error
                        .as_deref()
                        .or(p.note.as_deref())
                        .map(|e| truncate(e, 60))
                        .unwrap_or_else(|| "-".into()),
                );
                rows.push(row);
            }
            table(rows)
        }
    }
}

/// Runs `podvisor ps`.
pub async fn run(args: &PsArgs) -> Result<String, ClientError> {
    let pods: Vec<PodView> = get_json(&super::socket(&args.client), "/pods").await?;
    Ok(render(&pods, args.output, Clock::System.now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::views::ContainerView;

    fn pod() -> PodView {
        PodView {
            name: "etcd-cp1".into(),
            namespace: "kube-system".into(),
            file: "/etc/kubernetes/manifests/etcd.yaml".into(),
            hash: "abc".into(),
            uid: "def".into(),
            phase: "Running".into(),
            ready: true,
            ready_count: "1/1".into(),
            restarts: 2,
            start_time: Some("2023-11-14T22:10:20Z".into()),
            pod_ip: Some("192.168.1.10".into()),
            containers: vec![ContainerView {
                name: "etcd".into(),
                kind: "app".into(),
                state: "running".into(),
                reason: None,
                restarts: 2,
                ready: true,
                last_exit: None,
                image: "registry.k8s.io/etcd:3.5.15-0".into(),
                container_id: None,
                log_path: None,
                previous_log_path: None,
            }],
            last_error: None,
            note: None,
        }
    }

    #[test]
    fn the_table_has_one_aligned_row_per_pod() {
        let out = render(
            &[pod()],
            Output::Table,
            Timestamp(1_700_000_000_000_000_000),
        );
        assert_eq!(
            out,
            "POD        NAMESPACE     FILE        PHASE     READY   RESTARTS   AGE   LAST ERROR\n\
             etcd-cp1   kube-system   etcd.yaml   Running   1/1     2          3m    -\n"
        );
    }

    #[test]
    fn wide_shows_addresses_and_containers_and_json_round_trips() {
        let wide = render(&[pod()], Output::Wide, Timestamp(1_700_000_000_000_000_000));
        assert!(
            wide.contains("192.168.1.10") && wide.contains("etcd:running"),
            "{wide}"
        );
        let json = render(&[pod()], Output::Json, Timestamp(0));
        let back: Vec<PodView> = serde_json::from_str(&json).expect("json");
        assert_eq!(back, [pod()]);
        assert!(render(&[pod()], Output::Yaml, Timestamp(0)).contains("name: etcd-cp1"));
    }
}
