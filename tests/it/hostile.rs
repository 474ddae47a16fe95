//! Hostile manifests against a running daemon: an alias bomb, a 100 MB file, 10,000-deep
//! nesting, invalid UTF-8, a FIFO, a device node, a symlink loop and symlinks out of the
//! directory are each refused with one error naming the file, in bounded time and memory,
//! and nothing else is touched (issue 7).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use podvisor::api::client::get_json;
use podvisor::api::views::ManifestView;
use podvisor::runtime::Runtime;

use crate::daemon::Daemon;
use crate::lab::{Lab, holds_for, wait_for};
use crate::lifecycle::{running, sleeper};

const T: Duration = Duration::from_secs(30);

/// Writes `bytes` through a hidden temp file and a rename, so the daemon never reads a
/// half-written file.
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn symlink(target: impl AsRef<Path>, link: PathBuf) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Nine levels of nine aliases: 387,420,489 strings if it were expanded.
fn billion_laughs() -> String {
    let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in b'b'..=b'i' {
        let (this, prev) = (level as char, (level - 1) as char);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        bomb.push_str(&format!("{this}: &{this} [{refs}]\n"));
    }
    bomb
}

/// Drops every hostile input into `dir`; returns each file with what its error must say.
fn drop_hostile_files(dir: &Path, outside: &Path) -> Vec<(PathBuf, String)> {
    let evil = outside.join("evil.yaml");
    std::fs::write(&evil, sleeper("evil", "1")).expect("write");
    let evil = std::fs::canonicalize(&evil).expect("canonical");

    nix::unistd::mkfifo(&dir.join("fifo.yaml"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
    // a character device like /dev/null (1:3)
    mknod(
        &dir.join("null.yaml"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o644),
        makedev(1, 3),
    )
    .expect("mknod");
    symlink("loop-b.yaml", dir.join("loop-a.yaml"));
    symlink("loop-a.yaml", dir.join("loop-b.yaml"));
    symlink("/etc/passwd", dir.join("passwd.yaml"));
    symlink(&evil, dir.join("escape.yaml"));
    put(dir, "bomb.yaml", billion_laughs().as_bytes());
    put(
        dir,
        "deep.yaml",
        format!("{}x\n", "- ".repeat(10_000)).as_bytes(),
    );
    put(
        dir,
        "deep.json",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes(),
    );
    let mut utf8 = sleeper("latin1", "1").into_bytes();
    utf8.extend_from_slice(b"# caf\xe9\n");
    put(dir, "utf8.yaml", &utf8);
    // 100 MB, sparse: cheap to make, and it must never be read
    let huge_tmp = dir.join(".huge.yaml.tmp");
    std::fs::File::create(&huge_tmp)
        .and_then(|f| f.set_len(100 << 20))
        .expect("sparse file");
    std::fs::rename(&huge_tmp, dir.join("huge.yaml")).expect("rename");

    let loop_error = "cannot read: symlink loop (too many levels of symbolic links)";
    [
        (
            "fifo.yaml",
            "cannot read: it is a FIFO (named pipe), not a regular file".to_owned(),
        ),
        (
            "null.yaml",
            "cannot read: it is a character device, not a regular file".to_owned(),
        ),
        ("loop-a.yaml", loop_error.to_owned()),
        ("loop-b.yaml", loop_error.to_owned()),
        (
            "passwd.yaml",
            "cannot read: symlink points outside the manifest directory: /etc/passwd ".to_owned(),
        ),
        (
            "escape.yaml",
            format!(
                "cannot read: symlink points outside the manifest directory: {} ",
                evil.display()
            ),
        ),
        (
            "bomb.yaml",
            "too many aliases (*name) or merge keys (<<): refused (an alias bomb?)".to_owned(),
        ),
        ("deep.yaml", "nested more than 64 levels deep".to_owned()),
        ("deep.json", "recursion limit exceeded".to_owned()),
        ("utf8.yaml", "not valid UTF-8".to_owned()),
        (
            "huge.yaml",
            "104857600 bytes is over the 10485760 byte limit".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(name, error)| (dir.join(name), error))
    .collect()
}

/// Waits until the daemon has logged the rejection of `path` saying `error` (after the
/// file name come the line and column, for syntax errors).
async fn wait_reported(d: &Daemon, path: &Path, error: &str) {
    let file = format!("error={}: ", path.display());
    let deadline = Instant::now() + T;
    while !d
        .log()
        .lines()
        .any(|l| l.contains("manifest rejected") && l.contains(&file) && l.contains(error))
    {
        assert!(
            Instant::now() < deadline,
            "{} never reported with {error:?}; log:\n{}",
            path.display(),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peak resident memory (`VmHWM`) of the daemon serving `socket`, in KiB.
fn daemon_peak_kib(socket: &Path) -> u64 {
    let socket = socket.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let serves = args
            .windows(2)
            .any(|w| w[0] == b"--status-socket".as_slice() && w[1] == socket.as_bytes());
        if !(args.get(1) == Some(&b"run".as_slice()) && serves) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).expect("status");
        return status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
    }
    panic!("no podvisor serving {socket}");
}

/// Runs `podvisor check DIR`; fails if it does not finish within `T`.
fn check_dir(dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["check", "--node-name", "n1"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run check");
    let deadline = Instant::now() + T;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("podvisor check {} did not finish in {T:?}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn hostile_files_are_each_refused_once_and_harm_nothing() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let good = d.pod("good");
    d.write("good.yaml", &sleeper("good", "1"));
    let o = wait_for(&cri, T, "good running", |o| running(o, &good).len() == 1).await;
    let id = running(&o, &good)[0].id.clone();

    let t0 = Instant::now();
    let hostile = drop_hostile_files(&d.manifests, &lab.path("outside"));
    for (path, error) in &hostile {
        wait_reported(&d, path, error).await;
    }
    let reported_in = t0.elapsed();
    // through three resyncs (2 s each): the good pod untouched, nothing else started
    holds_for(
        &cri,
        Duration::from_secs(6),
        "the good pod alone, never restarted",
        |o| {
            o.sandboxes.len() == 1
                && running(o, &good)
                    .iter()
                    .any(|c| c.id == id && c.attempt == 0)
        },
    )
    .await;

    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
    for (path, _) in &hostile {
        let reports = log
            .lines()
            .filter(|l| l.contains("manifest rejected"))
            .filter(|l| l.contains(&format!("error={}: ", path.display())))
            .count();
        assert_eq!(
            reports,
            1,
            "{} reported {reports} times:\n{log}",
            path.display()
        );
    }
    let manifests: Vec<ManifestView> = get_json(&d.socket, "/manifests")
        .await
        .expect("the daemon still answers");
    for (path, error) in &hostile {
        let path = path.display().to_string();
        let view = manifests
            .iter()
            .find(|m| m.path == path)
            .unwrap_or_else(|| panic!("{path} not listed: {manifests:?}"));
        assert_eq!(view.status, "rejected", "{view:?}");
        assert_eq!(view.errors.len(), 1, "{view:?}");
        assert!(
            view.errors[0].starts_with(&format!("{path}: ")) && view.errors[0].contains(error),
            "{view:?}"
        );
    }
    let (code, ps, _) = d.cli(&["ps"]);
    assert_eq!(code, 0, "{ps}");
    // bounded memory: nothing expanded or read whole. A debug build peaks at about 35 MiB
    // before the hostile files and 44 MiB after; 84 MiB when only the 250,000-value cap held
    // the alias bomb, and reading the 100 MB file would add 100 MB.
    let peak = daemon_peak_kib(&d.socket);
    eprintln!(
        "reliability: hostile manifests: {} inputs tried, {} rejected with one error each, all \
         reported {reported_in:.2?} after they were written; the good pod never restarted; \
         daemon peak RSS {} MiB (debug build)",
        hostile.len(),
        hostile.len(),
        peak / 1024
    );
    assert!(peak < 64 * 1024, "the daemon peaked at {peak} KiB");

    // `check` reads the same directory the same way, and ends
    let (code, report) = check_dir(&d.manifests);
    assert_eq!(code, 1, "{report}");
    for (path, error) in &hostile {
        let prefix = format!("error: {}: ", path.display());
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(error.as_str())),
            "{report}"
        );
    }

    // and a new manifest still starts promptly
    let added = Instant::now();
    d.write("late.yaml", &sleeper("late", "1"));
    let late = d.pod("late");
    wait_for(&cri, T, "late running", |o| running(o, &late).len() == 1).await;
    assert!(
        added.elapsed() < Duration::from_secs(10),
        "a new pod took {:?} to start",
        added.elapsed()
    );
    let o = cri.observe().await.expect("observe");
    assert!(
        running(&o, &good)
            .iter()
            .any(|c| c.id == id && c.attempt == 0),
        "{o:#?}"
    );
    assert!(
        o.sandboxes
            .iter()
            .all(|s| s.key.name != d.pod("evil") && s.key.name != d.pod("latin1")),
        "{o:#?}"
    );
}
