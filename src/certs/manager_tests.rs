//! The manager's loop under a paused clock, against an in-memory signer: when it renews, what
//! it stores and hands on, how it bootstraps, and what a request never approved costs.

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::certs::Facts;

const BASE: Timestamp = Timestamp(1_700_000_000_000_000_000);
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Sign every request at once.
    Sign,
    /// Never approve: the wait runs out.
    Never,
}

/// A CA that signs requests for `lifetime` from "now" on the test's clock.
#[derive(Clone)]
struct FakeCsrs {
    ca: Arc<rcgen::Issuer<'static, KeyPair>>,
    clock: Clock,
    lifetime: Duration,
    answer: Answer,
    requests: Arc<Mutex<Vec<Request>>>,
}

fn system_time(t: Timestamp) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.0).expect("after 1970"))
}

impl FakeCsrs {
    fn new(clock: Clock, lifetime: Duration, answer: Answer) -> FakeCsrs {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        FakeCsrs {
            ca: Arc::new(rcgen::Issuer::new(params, key)),
            clock,
            lifetime,
            answer,
            requests: Arc::default(),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    fn sign(&self, csr_pem: &str, from: Timestamp, to: Timestamp) -> String {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("a request");
        csr.params.not_before = system_time(from).into();
        csr.params.not_after = system_time(to).into();
        csr.signed_by(&self.ca).expect("signed").pem()
    }

    /// A client pair for node n1 valid from `from` to `to`, as the store would hold it.
    fn pair(&self, from: Timestamp, to: Timestamp) -> (String, String) {
        let key = csr::new_key().expect("key");
        let pem = csr::request(&Template::client("n1"), &key).expect("request");
        (self.sign(&pem, from, to), key.serialize_pem())
    }
}

impl Csrs for FakeCsrs {
    async fn obtain(&self, request: &Request, wait: Duration) -> Result<String, CertError> {
        self.requests
            .lock()
            .expect("requests")
            .push(request.clone());
        match self.answer {
            Answer::Sign => {
                let now = self.clock.now();
                Ok(self.sign(&request.csr_pem, now, now.plus(self.lifetime)))
            }
            Answer::Never => {
                sleep(wait).await;
                Err(CertError::NotApproved {
                    name: "csr-never".into(),
                    waited: wait,
                })
            }
        }
    }
}

fn updates(m: Manager<FakeCsrs>) -> (Manager<FakeCsrs>, mpsc::UnboundedReceiver<Facts>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let m = m.on_update(move |p| {
        let _ = tx.send(p.facts.clone());
    });
    (m, rx)
}

#[tokio::test(start_paused = true)]
async fn a_certificate_is_renewed_between_70_and_90_percent_of_its_life_and_handed_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::tokio(BASE);
    let csrs = FakeCsrs::new(clock, 10 * HOUR, Answer::Sign);
    let store = Store::new(dir.path(), Kind::Client);
    let (cert, key) = csrs.pair(BASE, BASE.plus(10 * HOUR));
    store.update(&cert, &key, BASE).expect("stored");
    let kubeconfig = dir.path().join("kubelet.conf");
    let m = Manager::client("n1", dir.path(), kubeconfig, true, csrs.clone()).with_clock(clock);
    let (m, mut rx) = updates(m);
    let task = tokio::spawn(m.run());

    let facts = timeout(11 * HOUR, rx.recv())
        .await
        .expect("renewed in time")
        .expect("open");
    let at = clock.now().since(BASE);
    assert!(at >= 7 * HOUR && at <= 9 * HOUR, "renewed after {at:?}");
    assert_eq!(facts.common_name, "system:node:n1");
    let stored = store.current().expect("readable").expect("present");
    assert_eq!(stored.facts, facts, "the new pair is the current one");
    let requests = csrs.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].kind, requests[0].name.as_deref()),
        (Kind::Client, None)
    );

    // The next deadline is the new certificate's, not the old one's.
    let renewed = clock.now();
    timeout(11 * HOUR, rx.recv())
        .await
        .expect("renewed again")
        .expect("open");
    let at = clock.now().since(renewed);
    assert!(
        at >= 7 * HOUR && at <= 9 * HOUR,
        "renewed again after {at:?}"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_request_never_approved_is_counted_and_filed_again_while_the_old_pair_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::tokio(BASE);
    let csrs = FakeCsrs::new(clock, 10 * HOUR, Answer::Never);
    let store = Store::new(dir.path(), Kind::Client);
    // Past even the latest deadline: 95 % of its life gone.
    let start = Timestamp(BASE.0 - (95 * HOUR / 10).as_nanos() as i64);
    let (cert, key) = csrs.pair(start, start.plus(10 * HOUR));
    store.update(&cert, &key, BASE).expect("stored");
    let metrics = Arc::new(Metrics::new());
    let m = Manager::client("n1", dir.path(), dir.path().join("k"), true, csrs.clone())
        .with_clock(clock)
        .with_metrics(metrics.clone());
    let (m, mut rx) = updates(m);
    let task = tokio::spawn(m.run());

    let errors = |n: usize| {
        format!("podvisor_certificate_manager_client_expiration_renew_errors_total {n}\n")
    };
    sleep(Duration::from_secs(15 * 60 + 1)).await;
    assert_eq!(csrs.requests().len(), 1);
    let text = metrics.render(&crate::metrics::Gauges::default());
    assert!(text.contains(&errors(1)), "{text}");
    // Backed off (2 s at most the first time), then filed again.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(csrs.requests().len(), 2);
    sleep(Duration::from_secs(15 * 60)).await;
    let text = metrics.render(&crate::metrics::Gauges::default());
    assert!(text.contains(&errors(2)), "{text}");
    assert!(rx.try_recv().is_err(), "nothing handed on");
    let current = store.current().expect("readable").expect("present");
    assert_eq!(
        current.cert_pem.trim(),
        cert.trim(),
        "the old pair stays in use"
    );
    task.abort();
}

fn bootstrap_kubeconfig(dir: &std::path::Path) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode("CA PEM");
    let path = dir.join("bootstrap-kubelet.conf");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://192.0.2.1:6443\n    certificate-authority-data: {ca}\n\
             users:\n- name: tls-bootstrap-token-user\n  user:\n    token: abcdef.0123456789abcdef\n\
             contexts:\n- name: b\n  context:\n    cluster: c\n    user: tls-bootstrap-token-user\ncurrent-context: b\n"
        ),
    )
    .expect("bootstrap kubeconfig");
    path
}

#[tokio::test(start_paused = true)]
async fn without_a_usable_kubeconfig_the_bootstrap_credentials_get_the_certificate_and_a_kubeconfig_naming_it()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::tokio(BASE);
    let rotation = FakeCsrs::new(clock, 10 * HOUR, Answer::Sign);
    let bootstrap = FakeCsrs::new(clock, 10 * HOUR, Answer::Sign);
    let kubeconfig = dir.path().join("kubelet.conf");
    let pki = dir.path().join("pki");
    let m = Manager::client("n1", &pki, kubeconfig.clone(), false, rotation.clone())
        .with_bootstrap(bootstrap.clone(), bootstrap_kubeconfig(dir.path()))
        .with_clock(clock);
    let (m, mut rx) = updates(m);
    let task = tokio::spawn(m.run());

    let facts = timeout(HOUR, rx.recv())
        .await
        .expect("bootstrapped")
        .expect("open");
    assert_eq!(kubeconfig::usable(&kubeconfig, clock.now()), Ok(()));
    let written = kubeconfig::client_identity(&kubeconfig)
        .expect("readable")
        .expect("a client certificate");
    assert_eq!(written.pair.facts, facts);
    assert!(
        !written.embedded,
        "the kubeconfig names kubelet-client-current.pem"
    );
    let requests = bootstrap.requests();
    assert_eq!(requests.len(), 1);
    let name = requests[0].name.clone().unwrap_or_default();
    assert!(name.starts_with("node-csr-"), "{name}");
    assert!(
        !pki.join(BOOTSTRAP_KEY).exists(),
        "the temporary key is gone"
    );
    sleep(2 * HOUR).await;
    assert!(rotation.requests().is_empty(), "rotation is off");
    assert_eq!(bootstrap.requests().len(), 1, "bootstrapped once");
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_restarted_bootstrap_files_the_same_request_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::tokio(BASE);
    let boot = bootstrap_kubeconfig(dir.path());
    let mut names = Vec::new();
    for _ in 0..2 {
        let never = FakeCsrs::new(clock, HOUR, Answer::Never);
        let m = Manager::client(
            "n1",
            dir.path(),
            dir.path().join("kubelet.conf"),
            true,
            never.clone(),
        )
        .with_bootstrap(never.clone(), boot.clone())
        .with_clock(clock);
        let task = tokio::spawn(m.run());
        sleep(Duration::from_secs(1)).await;
        task.abort();
        names.extend(never.requests().into_iter().map(|r| r.name));
    }
    assert_eq!(names.len(), 2);
    assert!(names[0].is_some());
    assert_eq!(names[0], names[1], "one key, one name, across restarts");
}

#[tokio::test(start_paused = true)]
async fn a_serving_certificate_is_requested_for_the_node_names_and_reused_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::tokio(BASE);
    let csrs = FakeCsrs::new(clock, 10 * HOUR, Answer::Sign);
    let ip: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
    let names = ServingNames {
        hostnames: vec!["n1".into()],
        ips: vec![ip],
    };
    let m = Manager::serving("n1", &names, dir.path(), csrs.clone())
        .expect("has an IP")
        .with_clock(clock);
    let (m, mut rx) = updates(m);
    let task = tokio::spawn(m.run());
    let facts = timeout(HOUR, rx.recv())
        .await
        .expect("issued")
        .expect("open");
    assert!(
        facts.dns_names.contains("n1") && facts.ips.contains(&ip),
        "{facts:?}"
    );
    assert_eq!(csrs.requests()[0].kind, Kind::Serving);
    task.abort();

    let m = Manager::serving("n1", &names, dir.path(), csrs.clone())
        .expect("has an IP")
        .with_clock(clock);
    let (m, mut rx) = updates(m);
    let task = tokio::spawn(m.run());
    let again = timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("at once")
        .expect("open");
    assert_eq!(again, facts, "the stored certificate is served at once");
    assert_eq!(csrs.requests().len(), 1, "and not requested again");
    assert!(Manager::serving("n1", &ServingNames::default(), dir.path(), csrs).is_none());
    task.abort();
}
