//! Issue 15, registries and pulls: a real registry (Debian's `docker-registry`) on loopback
//! with TLS from a CA the test makes and htpasswd auth, the project's busybox pushed into it
//! with skopeo, and the lab's runtime told to trust the CA (`Lab::trust_registry_ca`). Credentials
//! come from a `config.json` in podvisor's root dir or from a credential provider plugin, as
//! under the kubelet; a proxy that stops forwarding mid-blob shows how stalls are caught.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::daemon::Daemon;
use crate::lab::{Lab, run, wait_for};
use crate::lifecycle::running;

const T: Duration = Duration::from_secs(60);
const USER: &str = "puller";
/// Distinctive, so that finding it anywhere it should not be is certain.
const PASSWORD: &str = "Zq7-secret-pw-91x";
const WRONG: &str = "Wr0ng-pw-never-log-me";

fn require_registry_tools() {
    for bin in [
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
        "/usr/bin/htpasswd",
        "/usr/bin/openssl",
    ] {
        assert!(
            Path::new(bin).exists(),
            "{bin} missing: run hack/deps.sh (docker-registry skopeo apache2-utils openssl)"
        );
    }
}

/// A registry serving `127.0.0.1:port` over TLS with one user, holding
/// `test/busybox:1.35`. Killed when dropped.
struct Registry {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Registry {
    async fn start(lab: &Lab, port: u16) -> Registry {
        require_registry_tools();
        let dir = lab.path("registry");
        let p = |name: &str| dir.join(name);
        // A CA and a server certificate for 127.0.0.1, both v3 (with extensions).
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=podvisor-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ])
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")));
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(p("ext.cnf"))
            .arg("-out")
            .arg(p("server.pem")));
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        std::fs::write(p("htpasswd"), htpasswd).expect("write htpasswd");
        std::fs::write(
            p("config.yml"),
            format!(
                "version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {data}}}
http:
  addr: 127.0.0.1:{port}
  tls: {{certificate: {cert}, key: {key}}}
auth:
  htpasswd: {{realm: podvisor-test, path: {htpasswd}}}
",
                data = p("data").display(),
                cert = p("server.pem").display(),
                key = p("server.key").display(),
                htpasswd = p("htpasswd").display(),
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(p("registry.log")).expect("registry log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(p("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let r = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let archive =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-images/busybox.tar");
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://127.0.0.1:{port}/test/busybox:1.35")));
        lab.trust_registry_ca(&format!("127.0.0.1:{port}"), &r.dir.join("ca.pem"));
        forget_busybox(lab).await;
        r
    }

    /// The pushed image.
    fn image(&self) -> String {
        format!("127.0.0.1:{}/test/busybox:1.35", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the lab's imported busybox (every name of it), so that its layers are collected:
/// otherwise a pull of the same image from the registry would fetch only the manifest and
/// find every blob present. Through CRI `RemoveImage`, which drops all of an image's
/// references on either runtime.
async fn forget_busybox(lab: &Lab) {
    use podvisor::runtime::Runtime;
    let cri = lab.cri();
    let id = cri
        .image_id(crate::lab::BUSYBOX)
        .await
        .expect("image status")
        .expect("the lab's busybox");
    cri.remove_image(&id)
        .await
        .expect("remove the lab's busybox");
    let left = cri.list_images().await.expect("list images");
    assert!(
        left.iter().all(|i| i.id != id),
        "busybox still there: {left:?}"
    );
}

/// A `config.json` giving `password` for `location`.
fn docker_config(location: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    format!(r#"{{"auths":{{"{location}":{{"auth":"{auth}"}}}}}}"#)
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: kube-system}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Always
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']
"
    )
}

/// The status API's detail of `pod`, as text.
async fn detail(d: &Daemon, pod: &str) -> String {
    match podvisor::api::client::get_raw(&d.socket, &format!("/pods/{pod}")).await {
        Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => String::new(),
    }
}

async fn metrics(d: &Daemon) -> String {
    match podvisor::api::client::get_raw(&d.socket, "/metrics").await {
        Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => String::new(),
    }
}

/// Waits until the pod's detail contains every one of `needles`; returns it.
async fn wait_detail(d: &Daemon, pod: &str, needles: &[&str]) -> String {
    let deadline = Instant::now() + T;
    loop {
        let text = detail(d, pod).await;
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        if Instant::now() > deadline {
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{pod} never showed {needles:?}; last:\n{text}\npodvisor's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_no_secret(what: &str, text: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [
        PASSWORD.to_owned(),
        WRONG.to_owned(),
        b64.encode(format!("{USER}:{PASSWORD}")),
        b64.encode(format!("{USER}:{WRONG}")),
    ] {
        assert!(!text.contains(&secret), "{what} contains a secret:\n{text}");
    }
}

#[tokio::test]
#[ignore = "needs root, containerd and docker-registry: run with --include-ignored"]
async fn credentials_from_config_json_in_the_root_dir_pull_and_the_pod_runs() {
    let lab = Lab::start();
    let port = lab.port_base + 50;
    let reg = Registry::start(&lab, port).await;
    std::fs::write(
        lab.path("root").join("config.json"),
        docker_config(&format!("https://127.0.0.1:{port}/v2/"), PASSWORD),
    )
    .expect("write config.json");
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let name = d.pod("private");
    d.write("private.yaml", &pod("private", &reg.image()));
    wait_for(&cri, T, "private running", |o| running(o, &name).len() == 1).await;
    let m = metrics(&d).await;
    assert!(
        m.contains("podvisor_image_pull_duration_seconds_count{result=\"pulled\"} 1"),
        "{m}"
    );
    assert!(m.contains("podvisor_image_pulls_in_flight 0"), "{m}");
    assert_no_secret("the status API", &detail(&d, &name).await);
    assert_no_secret("podvisor's log", &d.log());
}

#[tokio::test]
#[ignore = "needs root, containerd and docker-registry: run with --include-ignored"]
async fn a_credential_provider_plugin_gives_the_credentials_and_is_cached() {
    let lab = Lab::start();
    let port = lab.port_base + 51;
    let reg = Registry::start(&lab, port).await;
    let bin = lab.path("plugins");
    let calls = lab.dir.path().join("plugin-calls");
    let script = bin.join("lab-registry");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh
cat >> {calls}
echo >> {calls}
printf '%s' '{{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"10m\",\"auth\":{{\"127.0.0.1:{port}\":{{\"username\":\"{USER}\",\"password\":\"{PASSWORD}\"}}}}}}'
",
            calls = calls.display()
        ),
    )
    .expect("write plugin");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = lab.dir.path().join("credential-providers.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: lab-registry
  matchImages: ['127.0.0.1:{port}']
  defaultCacheDuration: 1m
  apiVersion: credentialprovider.kubelet.k8s.io/v1
"
        ),
    )
    .expect("write provider config");
    let d = Daemon::start_with(
        &lab,
        &[
            "--image-credential-provider-config",
            config.to_str().expect("utf-8"),
            "--image-credential-provider-bin-dir",
            bin.to_str().expect("utf-8"),
        ],
    );
    let cri = lab.cri();
    let (a, b) = (d.pod("plugin-a"), d.pod("plugin-b"));
    d.write("a.yaml", &pod("plugin-a", &reg.image()));
    wait_for(&cri, T, "plugin-a running", |o| running(o, &a).len() == 1).await;
    d.write("b.yaml", &pod("plugin-b", &reg.image()));
    wait_for(&cri, T, "plugin-b running", |o| running(o, &b).len() == 1).await;
    let asked = std::fs::read_to_string(&calls).expect("the plugin ran");
    // One request, as the kubelet sends it: the repository, not the tag; the second pull
    // was served from the Registry-keyed cache.
    assert_eq!(asked.lines().count(), 1, "{asked}");
    assert!(
        asked.contains(r#""kind":"CredentialProviderRequest""#)
            && asked.contains(&format!(r#""image":"127.0.0.1:{port}/test/busybox""#)),
        "{asked}"
    );
    assert_no_secret("podvisor's log", &d.log());
}

#[tokio::test]
#[ignore = "needs root, containerd and docker-registry: run with --include-ignored"]
async fn wrong_or_missing_credentials_give_err_image_pull_then_back_off_without_the_secret() {
    let lab = Lab::start();
    let port = lab.port_base + 52;
    let reg = Registry::start(&lab, port).await;
    // Wrong credentials for test/, none for other/.
    std::fs::write(
        lab.path("root").join("config.json"),
        docker_config(&format!("127.0.0.1:{port}/test"), WRONG),
    )
    .expect("write config.json");
    let d = Daemon::start(&lab);
    let wrong = d.pod("wrong");
    let missing = d.pod("missing");
    d.write("wrong.yaml", &pod("wrong", &reg.image()));
    d.write(
        "missing.yaml",
        &pod("missing", &format!("127.0.0.1:{port}/other/busybox:1.35")),
    );
    for name in [&wrong, &missing] {
        wait_detail(&d, name, &["ErrImagePull"]).await;
        let text = wait_detail(&d, name, &["ImagePullBackOff", "Back-off pulling image"]).await;
        // the runtime's words for the registry's 401: containerd says 401 Unauthorized,
        // CRI-O (containers/image) "authentication required"
        let said = text.to_lowercase();
        assert!(
            said.contains("401")
                || said.contains("unauthorized")
                || said.contains("authentication required"),
            "{name}: the message should say the registry refused: {text}"
        );
        assert_no_secret("the status API", &text);
    }
    assert_no_secret("podvisor's log", &d.log());
}

/// A TCP proxy to `upstream` that, while `stall` is set, stops passing the registry's
/// answers on after `limit` bytes of a connection, leaving it open: a registry that hangs
/// mid-blob.
async fn stalling_proxy(
    listener: TcpListener,
    upstream: u16,
    limit: usize,
    stall: Arc<AtomicBool>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let stall = stall.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let mut passed = 0usize;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let stalling = stall.load(Ordering::SeqCst);
                let n = if stalling {
                    n.min(limit.saturating_sub(passed))
                } else {
                    n
                };
                if n == 0 {
                    // Hold the connection open, passing nothing, until the client goes.
                    let _ = tokio::io::copy(&mut sr, &mut tokio::io::sink()).await;
                    return;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                passed += n;
            }
        });
    }
}

#[tokio::test]
#[ignore = "needs root, containerd and docker-registry: run with --include-ignored"]
async fn a_pull_that_stops_making_progress_is_cancelled_and_retried_with_back_off() {
    let lab = Lab::start();
    let port = lab.port_base + 53;
    let proxy_port = lab.port_base + 54;
    let reg = Registry::start(&lab, port).await;
    lab.trust_registry_ca(&format!("127.0.0.1:{proxy_port}"), &reg.dir.join("ca.pem"));
    let stall = Arc::new(AtomicBool::new(true));
    let listener = TcpListener::bind(("127.0.0.1", proxy_port))
        .await
        .expect("bind proxy");
    // Manifests, configs and the TLS handshake fit in 64 KiB; the busybox layer does not.
    tokio::spawn(stalling_proxy(listener, port, 64 * 1024, stall.clone()));
    std::fs::write(
        lab.path("root").join("config.json"),
        docker_config(&format!("127.0.0.1:{proxy_port}"), PASSWORD),
    )
    .expect("write config.json");
    let d = Daemon::start_with(&lab, &["--image-pull-progress-timeout", "3s"]);
    let cri = lab.cri();
    let name = d.pod("stalled");
    let started = Instant::now();
    d.write(
        "stalled.yaml",
        &pod(
            "stalled",
            &format!("127.0.0.1:{proxy_port}/test/busybox:1.35"),
        ),
    );
    let text = wait_detail(&d, &name, &["ErrImagePull", "pull stalled"]).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the stall took {took:?} to notice with a 3 s progress timeout: {text}"
    );
    let m = metrics(&d).await;
    assert!(
        m.contains("podvisor_image_pull_duration_seconds_count{result=\"stalled\"}"),
        "{m}"
    );
    wait_detail(&d, &name, &["ImagePullBackOff", "pull stalled"]).await;
    // The registry recovers: the retry after the back-off resumes and the pod runs.
    stall.store(false, Ordering::SeqCst);
    wait_for(&cri, T, "stalled pod running after the retry", |o| {
        running(o, &name).len() == 1
    })
    .await;
    assert_no_secret("podvisor's log", &d.log());
}

/// A TCP proxy to `upstream` that passes the registry's answers on at about `per_second`
/// bytes a second: a slow registry that keeps moving.
async fn throttled_proxy(listener: TcpListener, upstream: u16, per_second: usize) {
    const CHUNK: usize = 8 * 1024;
    let pause = Duration::from_secs_f64(CHUNK as f64 / per_second as f64);
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n @ 1..) = sr.read(&mut buf).await {
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
        });
    }
}

#[tokio::test]
#[ignore = "needs root, containerd and docker-registry: run with --include-ignored"]
async fn a_slow_pull_that_keeps_moving_outlasts_the_progress_timeout() {
    let lab = Lab::start();
    if !lab.kind.download_grows_per_read() {
        eprintln!(
            "skipped: this runtime's download area grows in steps too coarse to show a slow 1 MB pull moving"
        );
        return;
    }
    let port = lab.port_base + 55;
    let proxy_port = lab.port_base + 56;
    let reg = Registry::start(&lab, port).await;
    lab.trust_registry_ca(&format!("127.0.0.1:{proxy_port}"), &reg.dir.join("ca.pem"));
    let listener = TcpListener::bind(("127.0.0.1", proxy_port))
        .await
        .expect("bind proxy");
    // The busybox layer is about 1 MB: 10 s or so at 96 KiB/s, well past the 4 s timeout.
    tokio::spawn(throttled_proxy(listener, port, 96 * 1024));
    std::fs::write(
        lab.path("root").join("config.json"),
        docker_config(&format!("127.0.0.1:{proxy_port}"), PASSWORD),
    )
    .expect("write config.json");
    let timeout = Duration::from_secs(4);
    let d = Daemon::start_with(&lab, &["--image-pull-progress-timeout", "4s"]);
    let name = d.pod("slow");
    let started = Instant::now();
    d.write(
        "slow.yaml",
        &pod("slow", &format!("127.0.0.1:{proxy_port}/test/busybox:1.35")),
    );
    wait_for(&lab.cri(), T, "slow pod running", |o| {
        running(o, &name).len() == 1
    })
    .await;
    let took = started.elapsed();
    assert!(
        took > 2 * timeout,
        "the pull took {took:?}: too fast to tell a moving pull from a deadline"
    );
    let log = d.log();
    assert!(
        !log.contains("pull stalled") && !log.contains("did not finish within"),
        "a moving pull was cancelled:\n{log}"
    );
    let m = metrics(&d).await;
    assert!(
        m.contains("podvisor_image_pull_duration_seconds_count{result=\"pulled\"} 1"),
        "{m}"
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_credential_provider_config_the_kubelet_would_refuse_is_a_usage_error() {
    let lab = Lab::start();
    let bin = lab.path("plugins");
    let config = lab.dir.path().join("credential-providers.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: lab-registry
  matchImages: ['127.0.0.1:5000']
  apiVersion: credentialprovider.kubelet.k8s.io/v1
",
    )
    .expect("write provider config");
    let mut d = Daemon::start_with(
        &lab,
        &[
            "--image-credential-provider-config",
            config.to_str().expect("utf-8"),
            "--image-credential-provider-bin-dir",
            bin.to_str().expect("utf-8"),
        ],
    );
    let status = d
        .exited_within(Duration::from_secs(10))
        .expect("podvisor refuses to start");
    assert_eq!(status.code(), Some(64), "{}", d.log());
    assert!(d.log().contains("defaultCacheDuration"), "{}", d.log());
}
