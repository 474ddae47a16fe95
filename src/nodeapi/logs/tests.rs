//! End to end through [`stream`]: a CRI log file in, the body's chunks out, covering the
//! query, the reader and the renderer together. The helpers serve the other files' tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::time::parse_time;
use super::*;
use crate::clock::Timestamp;

const T0: &str = "2024-05-01T10:00:00.000000001Z";
pub(super) const T5: &str = "2024-05-01T10:00:05Z";
const T10: &str = "2024-05-01T10:00:10.5Z";

fn cri(time: &str, tag: &str, message: &str) -> String {
    format!("{time} stdout {tag} {message}\n")
}

pub(super) fn log_file(dir: &tempfile::TempDir, content: &[u8]) -> PathBuf {
    let path = dir.path().join("0.log");
    std::fs::write(&path, content).expect("write log");
    path
}

fn append(path: &Path, content: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open log");
    file.write_all(content.as_bytes()).expect("append");
}

pub(super) fn at(time: &str) -> Timestamp {
    parse_time(time.as_bytes()).expect("time").0.timestamp()
}

pub(super) fn query(q: &str) -> LogQuery {
    LogQuery::parse(q).expect("valid query")
}

/// Streams a whole log without follow; returns the output and the summary.
async fn read(content: &[u8], q: &str, now: Timestamp) -> (String, StreamSummary) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_file(&dir, content);
    read_path(&path, &query(q), now).await
}

async fn read_path(path: &Path, q: &LogQuery, now: Timestamp) -> (String, StreamSummary) {
    let (tx, rx) = mpsc::channel(4);
    let (summary, out) = tokio::join!(stream(path, q, now, || async { false }, tx), collect(rx));
    let summary = summary.expect("stream");
    assert_eq!(summary.bytes, out.len() as u64);
    (String::from_utf8(out).expect("utf-8"), summary)
}

async fn collect(mut rx: mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend_from_slice(&chunk);
    }
    out
}

/// Receives until the output so far ends with `want`.
async fn recv_until(rx: &mut mpsc::Receiver<Bytes>, got: &mut String, want: &str) {
    while !got.ends_with(want) {
        let chunk = rx.recv().await.expect("more output");
        got.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
}

#[tokio::test]
async fn full_lines_come_out_as_their_messages() {
    let log = [cri(T0, "F", "one"), cri(T5, "F", "two"), cri(T10, "F", "")].concat();
    let (out, summary) = read(log.as_bytes(), "", Timestamp(0)).await;
    assert_eq!(out, "one\ntwo\n\n");
    assert_eq!(summary.malformed_lines, 0);
}

#[tokio::test]
async fn partial_lines_join_into_one_message() {
    let log = [
        cri(T0, "P", "hello "),
        cri(T0, "P", "big "),
        cri(T5, "F", "world"),
        cri(T10, "F", "next"),
    ]
    .concat();
    let (out, _) = read(log.as_bytes(), "", Timestamp(0)).await;
    assert_eq!(out, "hello big world\nnext\n");
}

#[tokio::test]
async fn partial_pieces_join_in_file_order_across_streams_as_the_kubelet_writes_them() {
    let log = format!("{T0} stdout P out-\n{T0} stderr F err\n{T5} stdout F more\n");
    let (out, _) = read(log.as_bytes(), "", Timestamp(0)).await;
    assert_eq!(out, "out-err\nmore\n");
}

#[tokio::test]
async fn timestamps_prefix_each_line_with_the_log_time() {
    let log = [
        cri(T0, "F", "one"),
        cri("2024-05-01T10:00:05.5Z", "P", "two "),
        cri(T10, "F", "halves"),
        cri("2024-05-01T12:00:00.123+02:00", "F", "east"),
        cri("2024-05-01T03:00:00-07:00", "F", "west"),
        cri("2024-05-01T10:00:00+00:00", "F", "zero offset"),
    ]
    .concat();
    let (out, _) = read(log.as_bytes(), "timestamps=true", Timestamp(0)).await;
    assert_eq!(
        out,
        "2024-05-01T10:00:00.000000001Z one\n\
         2024-05-01T10:00:05.500000000Z two halves\n\
         2024-05-01T12:00:00.123000000+02:00 east\n\
         2024-05-01T03:00:00.000000000-07:00 west\n\
         2024-05-01T10:00:00.000000000Z zero offset\n"
    );
}

#[tokio::test]
async fn limit_bytes_cuts_the_output_at_the_limit() {
    let log = [
        cri(T0, "F", "abc"),
        cri(T5, "F", "def"),
        cri(T10, "F", "ghi"),
    ]
    .concat();
    let (out, summary) = read(log.as_bytes(), "limitBytes=5", Timestamp(0)).await;
    assert_eq!(out, "abc\nd");
    assert_eq!(summary.bytes, 5);
    let (out, _) = read(log.as_bytes(), "limitBytes=8", Timestamp(0)).await;
    assert_eq!(out, "abc\ndef\n");
    let (out, _) = read(log.as_bytes(), "limitBytes=10&timestamps=1", Timestamp(0)).await;
    assert_eq!(out, "2024-05-01");
}

#[tokio::test]
async fn since_time_skips_older_lines() {
    let log = [
        cri(T0, "F", "old"),
        cri(T5, "F", "same"),
        cri(T10, "F", "new"),
    ]
    .concat();
    let q = "sinceTime=2024-05-01T10%3A00%3A05Z";
    let (out, _) = read(log.as_bytes(), q, Timestamp(0)).await;
    assert_eq!(out, "same\nnew\n");
    let q = "sinceTime=2024-05-01T12:00:06%2B02:00";
    let (out, _) = read(log.as_bytes(), q, Timestamp(0)).await;
    assert_eq!(out, "new\n");
}

#[tokio::test]
async fn since_seconds_counts_back_from_now() {
    let log = [
        cri(T0, "F", "old"),
        cri(T5, "F", "same"),
        cri(T10, "F", "new"),
    ]
    .concat();
    let now = at("2024-05-01T10:00:11Z");
    let (out, _) = read(log.as_bytes(), "sinceSeconds=6", now).await;
    assert_eq!(out, "same\nnew\n");
}

#[tokio::test]
async fn a_malformed_line_is_skipped() {
    let log = [
        "garbage without spaces\n".to_owned(),
        cri(T0, "F", "one"),
        "2024-05-01T10:00:00Zstdout F glued\n".to_owned(),
        "2024-02-30T10:00:00Z stdout F no such day\n".to_owned(),
        format!("{T0} stdin F wrong stream\n"),
        format!("{T0} stdout F\n"),
        cri(T5, "F", "two"),
    ]
    .concat();
    let (out, summary) = read(log.as_bytes(), "", Timestamp(0)).await;
    assert_eq!(out, "one\ntwo\n");
    assert_eq!(summary.malformed_lines, 5);
}

#[tokio::test]
async fn tail_lines_returns_only_the_last_n_lines_of_a_big_file() {
    // Several tail blocks and read buffers, with lines straddling their edges.
    let log: String = (0..60_000)
        .map(|i| cri(T0, "F", &format!("line {i} {}", "x".repeat(i % 97))))
        .collect();
    assert!(log.len() > 4 * MAX_LINE);
    let want: String = (59_000..60_000)
        .map(|i| format!("line {i} {}\n", "x".repeat(i % 97)))
        .collect();
    let (out, _) = read(log.as_bytes(), "tailLines=1000", Timestamp(0)).await;
    assert_eq!(out, want);
    let (out, _) = read(log.as_bytes(), "tail=1000&tailLines=3", Timestamp(0)).await;
    assert_eq!(out, want);
    let (out, _) = read(log.as_bytes(), "tailLines=70000", Timestamp(0)).await;
    assert_eq!(out.lines().count(), 60_000);
    let (out, _) = read(log.as_bytes(), "tailLines=0", Timestamp(0)).await;
    assert_eq!(out, "");
}

#[tokio::test]
async fn a_big_log_comes_out_whole_and_in_order() {
    // Many reads long, with partial, malformed and long lines
    // across read boundaries.
    let (mut log, mut want) = (String::new(), String::new());
    for i in 0..40_000 {
        match i {
            _ if i % 50 == 0 => {
                log.push_str(&cri(T0, "P", &format!("p{i}-")));
                log.push_str(&cri(T5, "F", &format!("f{i}")));
                want.push_str(&format!("p{i}-f{i}\n"));
            }
            _ if i % 333 == 0 => log.push_str(&format!("{T0} stdout\n")),
            _ if i % 10_000 == 7 => {
                let long = "z".repeat(MAX_LINE + i);
                log.push_str(&cri(T10, "F", &long));
                want.push_str(&format!("{long}\n"));
            }
            _ => {
                let line = format!("line {i} {}", "x".repeat(i % 300));
                log.push_str(&cri(T10, "F", &line));
                want.push_str(&format!("{line}\n"));
            }
        }
    }
    assert!(log.len() > 20 * READ_SIZE);
    let (out, summary) = read(log.as_bytes(), "", Timestamp(0)).await;
    assert!(out == want, "output differs from the messages");
    assert_eq!(summary.malformed_lines, 40_000 / 333 - 40_000 / (333 * 50));
    let limit = want.len() - 1000;
    let (out, _) = read(log.as_bytes(), &format!("limitBytes={limit}"), Timestamp(0)).await;
    assert!(out == want[..limit], "limited output differs");
}

#[tokio::test]
async fn an_unterminated_last_line_is_written_as_is_and_not_counted_by_tail() {
    let log = [
        cri(T0, "F", "a"),
        cri(T5, "F", "b"),
        format!("{T10} stdout F c"),
    ]
    .concat();
    let (out, _) = read(log.as_bytes(), "", Timestamp(0)).await;
    assert_eq!(out, "a\nb\nc");
    let (out, _) = read(log.as_bytes(), "tailLines=1", Timestamp(0)).await;
    assert_eq!(out, "b\n");
}

#[tokio::test]
async fn a_line_longer_than_the_buffer_streams_through_in_pieces() {
    let huge = "x".repeat(3 * MAX_LINE + 17);
    let log = [
        cri(T0, "P", &huge),
        cri(T0, "F", "end"),
        format!("{}\n", "y".repeat(2 * MAX_LINE)),
        cri(T5, "F", "after"),
    ]
    .concat();
    let (out, summary) = read(log.as_bytes(), "timestamps=1", Timestamp(0)).await;
    assert_eq!(
        out,
        format!("2024-05-01T10:00:00.000000001Z {huge}end\n2024-05-01T10:00:05.000000000Z after\n")
    );
    assert_eq!(summary.malformed_lines, 1);
    let (out, _) = read(log.as_bytes(), "limitBytes=40", Timestamp(0)).await;
    assert_eq!(out, "x".repeat(40));
}

#[tokio::test(start_paused = true)]
async fn follow_streams_lines_written_after_the_start_and_ends_when_the_container_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_file(&dir, cri(T0, "F", "one").as_bytes());
    let running = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn({
        let (path, running) = (path.clone(), running.clone());
        async move {
            let still_running = move || {
                let running = running.clone();
                async move { running.load(Ordering::SeqCst) }
            };
            stream(
                &path,
                &query("follow=true"),
                Timestamp(0),
                still_running,
                tx,
            )
            .await
        }
    });
    let mut got = String::new();
    recv_until(&mut rx, &mut got, "one\n").await;

    append(&path, &[cri(T5, "P", "tw"), cri(T5, "F", "o")].concat());
    recv_until(&mut rx, &mut got, "two\n").await;

    // The last line lands before the container is seen stopped; an unterminated one is
    // dropped, as the kubelet does when following.
    append(
        &path,
        &[cri(T10, "F", "three"), format!("{T10} stdout F cut")].concat(),
    );
    running.store(false, Ordering::SeqCst);
    while let Some(chunk) = rx.recv().await {
        got.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert_eq!(got, "one\ntwo\nthree\n");
    let summary = task.await.expect("join").expect("stream");
    assert_eq!(summary.bytes, got.len() as u64);
    assert!(!summary.receiver_gone);
}

#[tokio::test(start_paused = true)]
async fn follow_reads_a_log_file_recreated_at_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_file(&dir, cri(T0, "F", "old").as_bytes());
    let running = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn({
        let (path, running) = (path.clone(), running.clone());
        async move {
            let still_running = move || {
                let running = running.clone();
                async move { running.load(Ordering::SeqCst) }
            };
            stream(
                &path,
                &query("follow=1&tailLines=5"),
                Timestamp(0),
                still_running,
                tx,
            )
            .await
        }
    });
    let mut got = String::new();
    recv_until(&mut rx, &mut got, "old\n").await;
    append(&path, &cri(T0, "F", "old again"));
    std::fs::rename(&path, dir.path().join("0.log.1")).expect("rotate");
    std::fs::write(&path, cri(T5, "F", "new")).expect("recreate");
    recv_until(&mut rx, &mut got, "new\n").await;
    assert_eq!(got, "old\nold again\nnew\n");
    running.store(false, Ordering::SeqCst);
    task.await.expect("join").expect("stream");
}

#[tokio::test]
async fn a_dropped_receiver_ends_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_file(&dir, cri(T0, "F", "one").as_bytes());
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let summary = stream(&path, &query(""), Timestamp(0), || async { true }, tx)
        .await
        .expect("stream");
    assert!(summary.receiver_gone);
    assert_eq!(summary.bytes, 0);
}

#[tokio::test]
async fn a_missing_log_file_is_an_open_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = mpsc::channel(1);
    let err = stream(
        &dir.path().join("nope.log"),
        &query(""),
        Timestamp(0),
        || async { false },
        tx,
    )
    .await
    .expect_err("no file");
    assert!(matches!(err, LogsError::Open { .. }), "{err}");
}

/// A log rotated twice: `old` compressed, `mid` renamed, `live` being written.
fn rotated_log(dir: &tempfile::TempDir, old: &str, mid: &str, live: &str) -> PathBuf {
    let base = dir.path().join("0.log");
    crate::logfiles::files::write_gz(&dir.path().join("0.log.20240501-100000.gz"), old.as_bytes())
        .expect("gz");
    std::fs::write(dir.path().join("0.log.20240501-100001"), mid).expect("mid");
    std::fs::write(&base, live).expect("live");
    base
}

#[tokio::test]
async fn a_rotated_log_is_read_across_its_compressed_renamed_and_live_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = rotated_log(
        &dir,
        &[cri(T0, "F", "one"), cri(T0, "F", "two")].concat(),
        &cri(T5, "F", "three"),
        &[cri(T10, "F", "four"), cri(T10, "F", "five")].concat(),
    );
    let (out, _) = read_path(&path, &query(""), Timestamp(0)).await;
    assert_eq!(out, "one\ntwo\nthree\nfour\nfive\n");
    // tailLines reaching back over the rotation, and one the live file alone answers
    let (out, _) = read_path(&path, &query("tailLines=4"), Timestamp(0)).await;
    assert_eq!(out, "two\nthree\nfour\nfive\n");
    let (out, _) = read_path(&path, &query("tailLines=2"), Timestamp(0)).await;
    assert_eq!(out, "four\nfive\n");
    let (out, _) = read_path(&path, &query("tailLines=100"), Timestamp(0)).await;
    assert_eq!(out, "one\ntwo\nthree\nfour\nfive\n");
    // sinceTime applies to the rotated lines too
    let (out, _) = read_path(&path, &query(&format!("sinceTime={T5}")), Timestamp(0)).await;
    assert_eq!(out, "three\nfour\nfive\n");
}
