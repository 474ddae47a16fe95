//! The floor: what the runtime itself costs for the bench's pod, as raw CRI calls over one
//! open connection, with the configs podvisor would send (host or pod network, log
//! directory, cgroup parent, kubelet labels and annotations, mounts, security context).
//! Host-side preparation (directories, files) happens before the clock starts.
//!
//! The floor pods lack podvisor's `podvisor.dev/managed` label, so that the podvisor running
//! beside them never sees them; it is one label among nine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_cri::v1 as cri;
use podvisor::labels;
use podvisor::runtime::ResolvConf;

use crate::cri::Cri;
use crate::pods::{COMMAND, GRACE_SECONDS, IMAGE, NAMESPACE};

/// Untimed pause between a start and the next stop.
const RUNNING_PAUSE: Duration = Duration::from_millis(300);

/// Where the floor's host-side files go.
pub struct FloorEnv {
    /// Log directories (as `--pod-log-dir`).
    pub log_dir: PathBuf,
    /// Pod directories (as `--root-dir`).
    pub root_dir: PathBuf,
    /// The host's resolver config, as podvisor passes it.
    pub resolv: ResolvConf,
}

/// The durations of one floor pod's life, in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloorSample {
    /// RunPodSandbox.
    pub run_sandbox: f64,
    /// CreateContainer.
    pub create: f64,
    /// StartContainer.
    pub start: f64,
    /// RunPodSandbox + CreateContainer + StartContainer.
    pub up: f64,
    /// StopContainer (the container exits on SIGTERM at once).
    pub stop_container: f64,
    /// StopPodSandbox.
    pub stop_sandbox: f64,
    /// RemovePodSandbox.
    pub remove_sandbox: f64,
    /// StopContainer + StopPodSandbox + RemovePodSandbox.
    pub down: f64,
    /// StopContainer + CreateContainer + StartContainer of attempt 1 in the same sandbox: what
    /// a container-only edit or a restart needs.
    pub restart: f64,
    /// CreateContainer + StartContainer of that attempt 1: what a crash restart needs.
    pub recreate: f64,
    /// SIGKILL of attempt 1's process → ContainerStatus says EXITED: how long the runtime
    /// takes to record a crash, which no supervisor can act before.
    pub exit_recorded: f64,
    /// SIGKILL → EXITED, then CreateContainer + StartContainer of attempt 2: a crash restart
    /// by a client that polls ContainerStatus as fast as it can.
    pub crash: f64,
}

struct FloorPod {
    name: String,
    uid: String,
    host_network: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn uid_for(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h: u128 = nanos ^ u128::from(std::process::id()) << 64;
    for b in name.bytes() {
        h = h.wrapping_mul(0x100_0000_01b3).wrapping_add(u128::from(b));
    }
    format!("{h:032x}")
}

impl FloorPod {
    fn log_dir(&self, env: &FloorEnv) -> PathBuf {
        env.log_dir
            .join(format!("{NAMESPACE}_{}_{}", self.name, self.uid))
    }

    fn pod_dir(&self, env: &FloorEnv) -> PathBuf {
        env.root_dir.join("pods").join(&self.uid)
    }

    fn ns_options(&self) -> cri::NamespaceOption {
        cri::NamespaceOption {
            network: if self.host_network {
                cri::NamespaceMode::Node as i32
            } else {
                cri::NamespaceMode::Pod as i32
            },
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    fn sandbox_config(&self, env: &FloorEnv) -> cri::PodSandboxConfig {
        let pod_labels: HashMap<String, String> = [
            ("app", "bench"),
            (labels::POD_NAME, &self.name),
            (labels::POD_NAMESPACE, NAMESPACE),
            (labels::POD_UID, &self.uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let annotations: HashMap<String, String> = [
            (labels::CONFIG_HASH, self.uid.as_str()),
            (labels::CONFIG_SOURCE, "file"),
            (labels::CONFIG_SEEN, "2025-01-01T00:00:00.000000000Z"),
            (
                labels::MANIFEST_PATH,
                "/etc/kubernetes/manifests/floor.yaml",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut servers = env.resolv.servers.clone();
        servers.truncate(3);
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: NAMESPACE.to_owned(),
                attempt: 0,
            }),
            // runc refuses a hostname without a UTS namespace of its own.
            hostname: if self.host_network {
                String::new()
            } else {
                self.name.clone()
            },
            log_directory: self.log_dir(env).to_string_lossy().into_owned(),
            dns_config: Some(cri::DnsConfig {
                servers,
                searches: env.resolv.searches.clone(),
                options: env.resolv.options.clone(),
            }),
            labels: pod_labels,
            annotations,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{}", self.uid),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(self.ns_options()),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container_config(&self, env: &FloorEnv, attempt: u32) -> cri::ContainerConfig {
        let container_labels: HashMap<String, String> = [
            (labels::POD_NAME, self.name.as_str()),
            (labels::POD_NAMESPACE, NAMESPACE),
            (labels::POD_UID, self.uid.as_str()),
            (labels::CONTAINER_NAME, "main"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let annotations: HashMap<String, String> = [
            (labels::CONTAINER_HASH, "0123456789abcdef".to_owned()),
            (labels::CONTAINER_RESTART_COUNT, attempt.to_string()),
            (
                labels::CONTAINER_TERMINATION_MESSAGE_PATH,
                "/dev/termination-log".to_owned(),
            ),
            (
                labels::CONTAINER_TERMINATION_MESSAGE_POLICY,
                "File".to_owned(),
            ),
            (
                labels::POD_TERMINATION_GRACE_PERIOD,
                GRACE_SECONDS.to_string(),
            ),
            (labels::CONTAINER_KIND, "app".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pod_dir = self.pod_dir(env);
        let mounts = vec![
            cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: pod_dir.join("etc-hosts").to_string_lossy().into_owned(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/dev/termination-log".into(),
                host_path: termination_log(&pod_dir, attempt)
                    .to_string_lossy()
                    .into_owned(),
                ..Default::default()
            },
        ];
        let str_list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "main".into(),
                attempt,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                user_specified_image: IMAGE.into(),
                ..Default::default()
            }),
            command: str_list(&COMMAND),
            envs: vec![cri::KeyValue {
                key: "GEN".into(),
                value: "0".into(),
            }],
            mounts,
            labels: container_labels,
            annotations,
            log_path: format!("main/{attempt}.log"),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(self.ns_options()),
                    masked_paths: str_list(&[
                        "/proc/asound",
                        "/proc/acpi",
                        "/proc/interrupts",
                        "/proc/kcore",
                        "/proc/keys",
                        "/proc/latency_stats",
                        "/proc/timer_list",
                        "/proc/timer_stats",
                        "/proc/sched_debug",
                        "/proc/scsi",
                        "/sys/firmware",
                        "/sys/devices/virtual/powercap",
                    ]),
                    readonly_paths: str_list(&[
                        "/proc/bus",
                        "/proc/fs",
                        "/proc/irq",
                        "/proc/sys",
                        "/proc/sysrq-trigger",
                    ]),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// Directories and files podvisor would create before its calls.
    fn prepare(&self, env: &FloorEnv) -> Result<()> {
        let logs = self.log_dir(env).join("main");
        std::fs::create_dir_all(&logs).with_context(|| format!("mkdir {}", logs.display()))?;
        let pod_dir = self.pod_dir(env);
        for attempt in [0, 1, 2] {
            let t = termination_log(&pod_dir, attempt);
            if let Some(parent) = t.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&t, b"")?;
        }
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        std::fs::write(pod_dir.join("etc-hosts"), hosts)?;
        Ok(())
    }

    fn forget(&self, env: &FloorEnv) {
        let _ = std::fs::remove_dir_all(self.log_dir(env));
        let _ = std::fs::remove_dir_all(self.pod_dir(env));
        remove_pod_cgroup(&self.uid);
    }
}

fn termination_log(pod_dir: &Path, attempt: u32) -> PathBuf {
    pod_dir
        .join("containers/main")
        .join(format!("termination-log-{attempt}"))
}

/// Removes `/kubepods/besteffort/pod<uid>` in every hierarchy: containerd leaves it.
pub fn remove_pod_cgroup(uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut bases: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    bases.push(PathBuf::from("/sys/fs/cgroup"));
    for base in bases {
        let _ = std::fs::remove_dir(base.join(format!("kubepods/besteffort/pod{uid}")));
    }
}

/// Runs one floor pod through up, a container restart, and down.
pub async fn once(
    cri: &Cri,
    env: &FloorEnv,
    name: String,
    host_network: bool,
) -> Result<FloorSample> {
    let pod = FloorPod {
        uid: uid_for(&name),
        name,
        host_network,
    };
    pod.prepare(env)?;
    let sandbox_config = pod.sandbox_config(env);
    let c0 = pod.container_config(env, 0);
    let c1 = pod.container_config(env, 1);
    let c2 = pod.container_config(env, 2);
    let result = life(cri, &pod, sandbox_config, [c0, c1, c2]).await;
    pod.forget(env);
    result
}

async fn life(
    cri: &Cri,
    pod: &FloorPod,
    sandbox_config: cri::PodSandboxConfig,
    [c0, c1, c2]: [cri::ContainerConfig; 3],
) -> Result<FloorSample> {
    let mut rt = cri.client();
    let mut s = FloorSample::default();
    let what = |step: &str| format!("floor {step} of {}", pod.name);

    let t0 = Instant::now();
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| what("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    let t1 = Instant::now();
    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(c0),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .with_context(|| what("CreateContainer"))?
        .into_inner()
        .container_id;
    let t2 = Instant::now();
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .with_context(|| what("StartContainer"))?;
    let t3 = Instant::now();
    s.run_sandbox = ms(t1 - t0);
    s.create = ms(t2 - t1);
    s.start = ms(t3 - t2);
    s.up = ms(t3 - t0);
    // The shell must have set its trap before it is stopped, as podvisor's pods have by the
    // time the bench edits or deletes them; a SIGTERM before that waits out the grace period.
    tokio::time::sleep(RUNNING_PAUSE).await;

    // A container restart in the same sandbox.
    let r0 = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: container,
        timeout: GRACE_SECONDS,
    })
    .await
    .with_context(|| what("StopContainer"))?;
    let r1 = Instant::now();
    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(c1),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .with_context(|| what("CreateContainer (attempt 1)"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .with_context(|| what("StartContainer (attempt 1)"))?;
    let r2 = Instant::now();
    s.restart = ms(r2 - r0);
    s.recreate = ms(r2 - r1);
    tokio::time::sleep(RUNNING_PAUSE).await;

    // A crash: attempt 1 killed, noticed by polling, replaced by attempt 2.
    let pid = cri.container_pid(&container).await?;
    let k0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    loop {
        let state = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            })
            .await
            .with_context(|| what("ContainerStatus"))?
            .into_inner()
            .status
            .map(|st| st.state);
        if state == Some(cri::ContainerState::ContainerExited as i32) {
            break;
        }
        if k0.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("{}: still not EXITED 10 s after SIGKILL", what("crash"));
        }
    }
    let k1 = Instant::now();
    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(c2),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .with_context(|| what("CreateContainer (attempt 2)"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .with_context(|| what("StartContainer (attempt 2)"))?;
    let k3 = Instant::now();
    s.exit_recorded = ms(k1 - k0);
    s.crash = ms(k3 - k0);
    tokio::time::sleep(RUNNING_PAUSE).await;

    let d0 = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: container,
        timeout: GRACE_SECONDS,
    })
    .await
    .with_context(|| what("StopContainer"))?;
    let d1 = Instant::now();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .with_context(|| what("StopPodSandbox"))?;
    let d2 = Instant::now();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .with_context(|| what("RemovePodSandbox"))?;
    let d3 = Instant::now();
    s.stop_container = ms(d1 - d0);
    s.stop_sandbox = ms(d2 - d1);
    s.remove_sandbox = ms(d3 - d2);
    s.down = ms(d3 - d0);
    Ok(s)
}
