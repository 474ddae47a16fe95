//! [`CriRuntime`] against the in-process CRI server: what it does with the runtime's answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::{CriRuntime, cri_time};
use crate::clock::Timestamp;
use crate::host::NodeContext;
use crate::labels;
use crate::pod::NodeName;
use crate::registry::RegistryAuth;
use crate::registry::dockercfg::SearchPaths;
use crate::runtime::PullSettings;
use crate::runtime::test_cri::{TestCri, TestImages, serve, serve_images};
use crate::runtime::{ContainerId, Runtime, RuntimeError};

fn runtime(path: &std::path::Path) -> CriRuntime {
    let ctx = NodeContext::detect(
        NodeName::new("n"),
        "/nonexistent".into(),
        "/nonexistent".into(),
    );
    CriRuntime::new(&path.display().to_string(), Arc::new(ctx), None).expect("runtime")
}

fn exited(id: &str) -> cri::Container {
    cri::Container {
        id: id.into(),
        pod_sandbox_id: "sb".into(),
        state: cri::ContainerState::ContainerExited as i32,
        labels: [
            (labels::POD_NAMESPACE, "default"),
            (labels::POD_NAME, "web-n"),
            (labels::POD_UID, "u1"),
            (labels::MANAGED, labels::MANAGED_VALUE),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_failed_container_status_is_reported_and_asked_again_next_time() {
    let server = TestCri {
        containers: Some(vec![exited("c1")]),
        status_error: Some(Status::internal("snapshotter broke")),
        ..TestCri::default()
    };
    let calls = server.status_calls.clone();
    let (_dir, path) = serve(server).await;
    let rt = runtime(&path);
    for pass in 1..=2 {
        let o = rt.observe().await.expect("the list itself works");
        assert_eq!(o.containers.len(), 1, "the container is still listed");
        assert_eq!(o.containers[0].exit_code, None, "its details are unknown");
        assert_eq!(o.unreadable.len(), 1, "{:?}", o.unreadable);
        assert!(
            o.unreadable[0]
                .to_string()
                .contains("ContainerStatus failed: snapshotter broke"),
            "{}",
            o.unreadable[0]
        );
        assert_eq!(calls.load(Ordering::SeqCst), pass);
    }
}

#[tokio::test]
async fn an_exited_containers_status_is_asked_once_and_kept() {
    let server = TestCri {
        containers: Some(vec![exited("c1")]),
        ..TestCri::default()
    };
    let calls = server.status_calls.clone();
    let (_dir, path) = serve(server).await;
    let rt = runtime(&path);
    for _ in 0..3 {
        let o = rt.observe().await.expect("observe");
        assert!(o.unreadable.is_empty());
        assert_eq!(o.containers[0].exit_code, Some(3));
        assert_eq!(
            o.containers[0].reason.as_ref().map(|r| r.as_str()),
            Some("Error")
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stopping_a_container_the_runtime_does_not_have_succeeds_other_refusals_do_not() {
    let (_d1, gone) = serve(TestCri {
        stop_error: Some(Status::not_found(
            "an error occurred when try to find container",
        )),
        ..TestCri::default()
    })
    .await;
    let id = ContainerId("c1".into());
    let rt = runtime(&gone);
    assert_eq!(rt.stop_container(&id, Duration::from_secs(1)).await, Ok(()));
    assert_eq!(rt.remove_container(&id).await, Ok(()));

    let (_d2, busy) = serve(TestCri {
        stop_error: Some(Status::unknown("container c1 not found in the cache")),
        ..TestCri::default()
    })
    .await;
    let err = runtime(&busy)
        .stop_container(&id, Duration::from_secs(1))
        .await
        .expect_err("an Unknown answer is a failure, whatever its text says");
    assert!(
        matches!(
            err,
            RuntimeError::Call {
                code: tonic::Code::Unknown,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_runtime_whose_socket_is_missing_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = runtime(&dir.path().join("none.sock"))
        .version()
        .await
        .expect_err("nothing listens");
    assert!(err.is_unavailable(), "{err:?}");
}

#[test]
fn a_zero_or_go_zero_time_from_the_runtime_is_no_time_issue_17() {
    assert_eq!(cri_time(0), None);
    assert_eq!(cri_time(-6_795_364_578_871_345_152), None);
    assert_eq!(cri_time(7), Some(Timestamp(7)));
}

#[tokio::test]
async fn the_runtimes_cgroup_driver_is_read_and_its_absence_is_no_error_issue_14() {
    let (_d1, systemd) = serve(TestCri {
        cgroup_driver: Some(cri::CgroupDriver::Systemd as i32),
        ..TestCri::default()
    })
    .await;
    assert_eq!(
        runtime(&systemd).cgroup_driver().await,
        Ok(Some(crate::pod::CgroupDriver::Systemd))
    );
    let (_d2, cgroupfs) = serve(TestCri {
        cgroup_driver: Some(cri::CgroupDriver::Cgroupfs as i32),
        ..TestCri::default()
    })
    .await;
    assert_eq!(
        runtime(&cgroupfs).cgroup_driver().await,
        Ok(Some(crate::pod::CgroupDriver::Cgroupfs))
    );
    // containerd 1.6 does not implement RuntimeConfig: nothing said, no error
    let (_d3, old) = serve(TestCri::default()).await;
    assert_eq!(runtime(&old).cgroup_driver().await, Ok(None));
}

/// A runtime whose pulls use the `config.json` written in `root`, watched in `progress`.
fn pulling_runtime(
    path: &std::path::Path,
    root: &std::path::Path,
    timeout: Duration,
) -> CriRuntime {
    let auth =
        RegistryAuth::new(SearchPaths::kubelet(&[root], root, None), None).expect("no plugins");
    let settings = PullSettings {
        progress_timeout: timeout,
        progress_dir: Some(root.join("ingest")),
        ..PullSettings::default()
    };
    runtime(path).with_pulls(Some(Arc::new(auth)), settings, None)
}

#[tokio::test]
async fn pulls_wait_their_turn_one_at_a_time_by_default_as_the_kubelet_serializes_them_issue_15() {
    let root = tempfile::tempdir().expect("tempdir");
    let images = TestImages {
        takes: Duration::from_millis(300),
        ..TestImages::default()
    };
    let (_dir, path) = serve_images(images).await;
    let rt = pulling_runtime(&path, root.path(), Duration::from_secs(30));
    let (a, b) = tokio::join!(
        rt.ensure_image_status("reg.io/a:1", "Always", None),
        rt.ensure_image_status("reg.io/b:1", "Always", None)
    );
    let waited = |r: Result<(cri::Image, crate::runtime::ImageSource), RuntimeError>| match r {
        Ok((
            _,
            crate::runtime::ImageSource::Pulled {
                took, with_waiting, ..
            },
        )) => with_waiting.saturating_sub(took),
        other => panic!("not pulled: {other:?}"),
    };
    let (wa, wb) = (waited(a), waited(b));
    assert!(
        wa.max(wb) >= Duration::from_millis(250),
        "one pull waited for the other: {wa:?} {wb:?}"
    );
}

const TWO_ENTRIES: &str = r#"{"auths":{
    "reg.io/team":{"username":"team","password":"team-secret"},
    "reg.io":{"username":"host","password":"host-secret"}}}"#;

#[tokio::test]
async fn a_pull_tries_each_matching_credential_in_turn_until_one_works_issue_15() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("config.json"), TWO_ENTRIES).expect("write");
    let images = TestImages {
        accept: Some("host-secret".into()),
        ..TestImages::default()
    };
    let tried = images.tried.clone();
    let (_dir, path) = serve_images(images).await;
    let rt = pulling_runtime(&path, root.path(), Duration::from_secs(30));
    let pulling = std::sync::atomic::AtomicUsize::new(0);
    let on_pull = || {
        pulling.fetch_add(1, Ordering::SeqCst);
    };
    let (_, source) = rt
        .ensure_image_status("reg.io/team/app:1", "Always", Some(&on_pull))
        .await
        .expect("the second credential works");
    assert!(matches!(
        source,
        crate::runtime::ImageSource::Pulled { size: 42, .. }
    ));
    assert_eq!(*tried.lock().expect("lock"), ["team", "host"]);
    assert_eq!(
        pulling.load(Ordering::SeqCst),
        1,
        "one Pulling event per pull"
    );
}

#[tokio::test]
async fn a_refused_pull_says_why_without_any_credential_it_tried_issue_15() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("config.json"), TWO_ENTRIES).expect("write");
    let images = TestImages {
        accept: Some("neither".into()),
        ..TestImages::default()
    };
    let (_dir, path) = serve_images(images).await;
    let rt = pulling_runtime(&path, root.path(), Duration::from_secs(30));
    let err = rt
        .ensure_image_status("reg.io/team/app:1", "Always", None)
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err:?}");
    assert!(text.contains("401 Unauthorized"), "{text}");
    assert!(
        !text.contains("team-secret") && !text.contains("host-secret"),
        "{text}"
    );
}

#[tokio::test]
async fn a_pull_without_download_progress_is_cancelled_as_stalled_issue_15() {
    let root = tempfile::tempdir().expect("tempdir");
    let images = TestImages {
        takes: Duration::from_secs(3600),
        ..TestImages::default()
    };
    let (_dir, path) = serve_images(images).await;
    let rt = pulling_runtime(&path, root.path(), Duration::from_millis(300));
    let err = rt
        .ensure_image_status("reg.io/app:1", "Always", None)
        .await
        .expect_err("stalled");
    assert!(err.to_string().contains("pull stalled"), "{err}");
}

#[tokio::test]
async fn a_slow_pull_whose_downloads_grow_is_not_cut_off_issue_15() {
    let root = tempfile::tempdir().expect("tempdir");
    let blob = root.path().join("ingest/ref1");
    std::fs::create_dir_all(&blob).expect("mkdir");
    let images = TestImages {
        takes: Duration::from_millis(1500),
        ..TestImages::default()
    };
    let (_dir, path) = serve_images(images).await;
    let rt = pulling_runtime(&path, root.path(), Duration::from_millis(400));
    let grow = tokio::spawn(async move {
        for i in 0..40u8 {
            std::fs::write(blob.join("data"), vec![0u8; usize::from(i) * 10]).expect("write");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    rt.ensure_image_status("reg.io/app:1", "Always", None)
        .await
        .expect("a pull that makes progress outlives the progress timeout");
    grow.abort();
}

/// Issue 16: pull before swap asks for the image before anything stops; the start that
/// follows uses that answer once instead of asking `ImageStatus` again, so an edit makes the
/// same runtime calls as before, only in another order.
#[tokio::test]
async fn an_image_just_ensured_is_not_asked_for_again_by_the_next_start() {
    let images = TestImages {
        pulled: Arc::new(true.into()),
        ..TestImages::default()
    };
    let asked = images.status_calls.clone();
    let (_dir, path) = serve_images(images).await;
    let rt = runtime(&path);
    let pod = crate::manifest::testing::static_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: 'reg.io/app:1'}]}\n",
    );
    let source = rt
        .ensure_image("reg.io/app:1", "IfNotPresent", None)
        .await
        .expect("present");
    assert!(matches!(source, crate::runtime::ImageSource::Present));
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    let addrs = crate::pod::environment::Addresses::default();
    let start = crate::runtime::ContainerStart {
        pod: &pod,
        sandbox: &crate::runtime::SandboxId("sb".into()),
        name: "app",
        attempt: 0,
        restarts: 0,
        addrs: &addrs,
        host: crate::host::Ready { logs: true },
        pulling: None,
    };
    // (this test runtime creates no containers: the start fails after the image step)
    assert!(rt.start_container(&start).await.is_err());
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the ensured answer was used"
    );
    assert!(rt.start_container(&start).await.is_err());
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "once only: the next start asks again"
    );
}
