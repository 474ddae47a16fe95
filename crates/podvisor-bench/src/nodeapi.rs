//! The kubelet's node API as podvisor serves it (HTTPS on 127.0.0.1, anonymous clients,
//! `AlwaysAllow`), each figure beside what the same work costs without podvisor in the way:
//!
//! * `containerLogs` of a large log (a container writes `--log-mib` MiB of 100-character
//!   lines to stdout, then sleeps) against reading the same CRI log file from disk. The file
//!   is read once first, so that both find it in the page cache, then the two alternate.
//! * exec of `true` (TLS connect, WebSocket upgrade, until the server closes the session)
//!   against CRI `Exec` over the bench's open connection plus a plain WebSocket to the URL
//!   containerd answers with, until containerd closes it.
//! * the idle daemon with the API on against the `idle` scenario's window (measured here
//!   first if that scenario did not run): same pods, same window, same samples.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as WsRequest;

use crate::bench::{Bench, FIRST_RECONCILE, STEP_TIMEOUT};
use crate::cri::Cri;
use crate::daemon::{USER_HZ, cpu_ticks, status_kib};
use crate::pods::{NAMESPACE, manifest_running};
use crate::scale::{ensure_pods, idle_window, record_idle};

/// The pod whose log is read and in whose container `true` is run.
const POD: &str = "nodeapi-log";
/// One line of its output (100 characters and a newline).
const LINE: &str = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
/// The floor's read size: podvisor's own log read buffer (`nodeapi::logs::MAX_LINE`).
const READ_BUF: usize = 128 * 1024;
/// The subprotocol kube-apiserver and kubectl speak for exec.
const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";
/// Pause between two exec sessions, so that the runtime has reaped the last one's process.
const EXEC_PAUSE: Duration = Duration::from_millis(200);
/// How long the container may take to write its log.
const LOG_TIMEOUT: Duration = Duration::from_secs(300);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cpu_ms(ticks: u64) -> f64 {
    ticks as f64 / USER_HZ * 1000.0
}

/// CPU ticks so far of podvisor and of this process (the client), to tell who spent what.
fn ticks(b: &Bench<'_>) -> Result<[u64; 2]> {
    let me = i32::try_from(std::process::id())?;
    Ok([cpu_ticks(b.daemon.pid()?)?, cpu_ticks(me)?])
}

/// A port free on 127.0.0.1 now (the node API binds it a moment later).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// podvisor's flags for the node API on `port`, open to anonymous clients, no API server.
fn api_flags(port: u16) -> Vec<String> {
    [
        "--node-api=true",
        "--authorization-mode",
        "AlwaysAllow",
        "--anonymous-auth=true",
        "--address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs the scenario; leaves a podvisor with the default flags and the idle pods running.
pub async fn run(b: &mut Bench<'_>) -> Result<()> {
    let port = free_port()?;
    b.respawn_with(false, None, &api_flags(port))?;
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let cert = b.daemon_cfg.root_dir.join("pki/podvisor.crt");
    let client = Client::new(addr, &cert, &b.settings.node).await?;

    let file = format!("{POD}.yaml");
    let pod = b.pod_name(POD);
    let bytes = b.settings.log_mib * 1024 * 1024;
    let script = format!(
        "trap 'exit 0' TERM; yes {LINE} | head -c {bytes}; while true; do sleep 1 & wait $!; done"
    );
    b.manifests
        .stage(&file, &manifest_running(POD, true, 0, &script))?;
    b.manifests.commit(&file)?;
    let (_, id) = b.wait_running(&pod, None, "the log pod running").await?;
    let log = b.observer.log_path(&id).await?;
    let t0 = Instant::now();
    let size = wait_written(&log, bytes).await?;
    eprintln!(
        "bench: nodeapi: {:.1} MiB log file written in {:.1} s",
        mib(size),
        t0.elapsed().as_secs_f64()
    );
    b.record("nodeapi.log.file", mib(size))?;

    logs(b, &client, &pod, &log, size).await?;
    exec(b, &client, &pod, &id).await?;
    b.record(
        "nodeapi.rss_after",
        status_kib(b.daemon.pid()?, "VmRSS:")? as f64 / 1024.0,
    )?;

    // The idle pods only, as the idle scenario had them; the log goes with its pod.
    ensure_pods(b, b.settings.idle_pods).await?;
    if let Some(dir) = log.parent().and_then(Path::parent)
        && dir.starts_with(&b.daemon_cfg.pod_log_dir)
        && dir.exists()
    {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    if !b.figures.has("idle.rss") {
        let off = idle_window(b, &[]).await?;
        record_idle(b, "idle", &off)?;
    }
    let on = idle_window(b, &api_flags(free_port()?)).await?;
    record_idle(b, "nodeapi.idle", &on)?;
    eprintln!(
        "bench: nodeapi idle with the API: {:.1} MiB, {:.3} % core",
        on.rss.last().copied().unwrap_or(0.0),
        on.cpu
    );

    b.respawn(false, None)?;
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    Ok(())
}

/// Waits until the log file at `path` holds at least `stdout` bytes (the CRI prefixes make
/// it larger) and has not grown for a second. Returns its size.
async fn wait_written(path: &Path, stdout: u64) -> Result<u64> {
    let deadline = Instant::now() + LOG_TIMEOUT;
    let mut last = (0, Instant::now());
    loop {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size != last.0 {
            last = (size, Instant::now());
        } else if size >= stdout && last.1.elapsed() >= Duration::from_secs(1) {
            return Ok(size);
        }
        if Instant::now() > deadline {
            bail!(
                "{}: {size} bytes after {LOG_TIMEOUT:?}, expected at least {stdout}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the whole file as `cat` would; returns the bytes read and the time taken.
async fn read_file(path: &Path) -> Result<(u64, Duration)> {
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(u64, Duration)> {
        let mut buf = vec![0u8; READ_BUF];
        let t0 = Instant::now();
        let mut f =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok((total, t0.elapsed()));
            }
            total += n as u64;
        }
    })
    .await?
}

/// `containerLogs` of the whole log against reading the file, alternating.
async fn logs(b: &mut Bench<'_>, client: &Client, pod: &str, log: &Path, size: u64) -> Result<()> {
    let path = format!("/containerLogs/{NAMESPACE}/{pod}/main");
    // The page cache holds the file from here on, for both.
    let (read, _) = read_file(log).await?;
    ensure!(read == size, "read {read} bytes of a {size}-byte log");
    // podvisor publishes the pod a moment after the runtime runs it.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let body = loop {
        match client.get(&path).await {
            Ok((200, n)) => break n,
            other if Instant::now() > deadline => bail!(
                "GET {path}: {other:?}; podvisor log tail:\n{}",
                b.daemon.tail()
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    b.record("nodeapi.log.body", mib(body))?;
    let reps = b.settings.log_reps;
    for i in 0..reps {
        let mut rates = [0.0; 2];
        for api in [i % 2 == 1, i % 2 == 0] {
            if api {
                b.mark(&format!("containerLogs {i}"));
                let before = ticks(b)?;
                let t0 = Instant::now();
                let (code, n) = client.get(&path).await?;
                let t = t0.elapsed();
                let after = ticks(b)?;
                b.record("nodeapi.logs.cpu", cpu_ms(after[0] - before[0]))?;
                b.record("nodeapi.logs.client_cpu", cpu_ms(after[1] - before[1]))?;
                ensure!(
                    code == 200 && n == body,
                    "GET {path}: {code}, {n} bytes (first read: {body})"
                );
                rates[1] = mib(size) / t.as_secs_f64();
                b.record("nodeapi.logs", rates[1])?;
            } else {
                let (n, t) = read_file(log).await?;
                ensure!(n == size, "read {n} bytes of a {size}-byte log");
                rates[0] = mib(size) / t.as_secs_f64();
                b.record("floor.log.read", rates[0])?;
            }
        }
        eprintln!(
            "bench: containerLogs round {}/{reps}: {:.0} MiB/s through the API, file read {:.0} MiB/s",
            i + 1,
            rates[1],
            rates[0]
        );
    }
    Ok(())
}

/// Exec of `true` through the node API against CRI `Exec` + containerd's URL, alternating.
async fn exec(b: &mut Bench<'_>, client: &Client, pod: &str, id: &str) -> Result<()> {
    let path = format!("/exec/{NAMESPACE}/{pod}/main?command=true&output=1");
    // One of each untimed, so that no sample pays for first use.
    floor_exec(&b.floor_cri, id).await?;
    client.exec(&path).await?;
    let reps = b.settings.exec_reps;
    let mut podvisor_ticks = 0;
    for i in 0..reps {
        let mut times = [0.0; 2];
        for api in [i % 2 == 1, i % 2 == 0] {
            tokio::time::sleep(EXEC_PAUSE).await;
            let before = ticks(b)?;
            let t0 = Instant::now();
            let status = if api {
                client.exec(&path).await
            } else {
                floor_exec(&b.floor_cri, id).await
            }
            .with_context(|| format!("podvisor log tail:\n{}", b.daemon.tail()))?;
            let t = ms(t0.elapsed());
            if api {
                podvisor_ticks += ticks(b)?[0] - before[0];
            }
            ensure!(
                status.contains("Success"),
                "exec `true` ended with status {status:?}"
            );
            times[usize::from(api)] = t;
            b.record(if api { "nodeapi.exec" } else { "floor.exec" }, t)?;
        }
        eprintln!(
            "bench: exec round {}/{reps}: {:.1} ms through the API, floor {:.1} ms",
            i + 1,
            times[1],
            times[0]
        );
    }
    // Whole ticks per session are too coarse; the sum over the rounds is not.
    b.record(
        "nodeapi.exec.cpu",
        cpu_ms(podvisor_ticks) / reps.max(1) as f64,
    )?;
    Ok(())
}

/// A WebSocket request for `url` asking for the channel protocol.
fn ws_request(url: &str) -> Result<WsRequest> {
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", CHANNEL_PROTOCOL.parse()?);
    Ok(req)
}

/// Reads a session until the server closes it; returns what came on channel 3 (the status).
async fn session<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) -> Result<String> {
    let mut status = String::new();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Binary(data)) => {
                if let Some((&3, rest)) = data.split_first() {
                    status.push_str(&String::from_utf8_lossy(rest));
                }
            }
            Ok(_) => {}
            // the status came; the connection ended without a closing handshake
            Err(_) if !status.is_empty() => break,
            Err(e) => return Err(e).context("WebSocket session"),
        }
    }
    Ok(status)
}

/// The floor: CRI `Exec` over the bench's open connection, then a WebSocket to the URL.
async fn floor_exec(cri: &Cri, id: &str) -> Result<String> {
    let url = cri.exec_url(id, vec!["true".to_owned()]).await?;
    let ws_url = url
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .ok_or_else(|| anyhow!("streaming URL {url:?}: not http:// (TLS streaming is off)"))?;
    let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_request(&ws_url)?, None, true)
        .await
        .with_context(|| format!("WebSocket to {ws_url}"))?;
    session(ws).await
}

/// An anonymous HTTPS client of the node API, trusting its self-signed certificate.
struct Client {
    addr: SocketAddr,
    name: ServerName<'static>,
    host: String,
    tls: TlsConnector,
}

impl Client {
    /// Waits until the node API at `addr` completes a TLS handshake with `cert` (podvisor
    /// writes it under its root dir on the first start).
    async fn new(addr: SocketAddr, cert: &Path, node: &str) -> Result<Client> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let attempt = async {
                let client = Client::with_cert(addr, cert, node)?;
                client.connect().await?;
                Ok::<_, anyhow::Error>(client)
            };
            match attempt.await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context(format!("the node API on {addr}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn with_cert(addr: SocketAddr, cert: &Path, node: &str) -> Result<Client> {
        let der = CertificateDer::from_pem_file(cert)
            .with_context(|| format!("serving certificate {}", cert.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every connection pays a full handshake, as a client without a session cache does.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Client {
            addr,
            name: ServerName::try_from(node.to_owned())?,
            host: node.to_owned(),
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self.tls.connect(self.name.clone(), tcp).await?)
    }

    /// GET `path` on a new connection, reading the whole body: (status, body bytes).
    async fn get(&self, path: &str) -> Result<(u16, u64)> {
        let stream = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri(path)
            .header("host", &self.host)
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let code = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
            }
        }
        Ok((code, n))
    }

    /// An exec session at `path` on a new connection, read until the server closes it;
    /// returns its status (channel 3).
    async fn exec(&self, path: &str) -> Result<String> {
        let stream = self.connect().await?;
        let req = ws_request(&format!("wss://{}{path}", self.host))?;
        let (ws, resp) = tokio_tungstenite::client_async(req, stream)
            .await
            .with_context(|| format!("WebSocket upgrade of {path}"))?;
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        ensure!(
            protocol == Some(CHANNEL_PROTOCOL),
            "{path}: subprotocol {protocol:?}"
        );
        session(ws).await
    }
}
