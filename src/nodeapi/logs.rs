//! The kubelet's `/containerLogs/{namespace}/{pod}/{container}` over the CRI log files the
//! runtime writes: [`LogQuery`] decodes and validates the URL query, and [`stream`] renders a
//! log file into chunks for an HTTP body, following it while the container runs.
//!
//! Pure parts do no IO: query decoding, CRI line parsing, and `Renderer`, which holds the
//! kubelet's per-line decisions (since, timestamps, byte limit, line count). `Reader` and
//! [`stream`] only open, read and poll the file and send what `Renderer` produced.
//!
//! What follows the kubelet (`kuberuntime/logs.ReadLogs`, `util/tail`, `server.getContainerLogs`,
//! `validation.ValidatePodLogOptions`, apimachinery's query conversions):
//!
//! * A file line is `<RFC 3339 time> <stdout|stderr> <tag> <message>`. A partial (`P`) line
//!   loses its newline, so its message runs into the next line's: the runtime splits long lines
//!   at 16 KiB and the pieces come out as one line. With `timestamps` only the first piece gets
//!   the prefix (kubernetes#113481). Pieces join in file order, as the kubelet writes them, even
//!   when the other stream's line falls between them.
//! * The timestamp prefix is the line's time in `2006-01-02T15:04:05.000000000Z07:00` (nine
//!   fraction digits, the line's own zone offset, `Z` for UTC), then a space.
//! * A malformed line is skipped. The kubelet fails the request when the *first* line is
//!   malformed (it picks the CRI or the Docker JSON parser from it); podvisor only reads CRI
//!   files, so it skips that one too.
//! * `tailLines` starts at the N-th newline from the end, found by reading blocks backwards; an
//!   unterminated last line is not counted. Without `follow` the output then stops after N
//!   lines (the unterminated one is included only if it falls within them).
//! * `sinceTime`/`sinceSeconds` skip lines strictly older than the bound. A skipped line still
//!   counts towards `tailLines` and still decides whether the next piece starts a line.
//! * `limitBytes` cuts the output exactly at the limit, inside a line or a timestamp if need be.
//! * Without `follow` an unterminated last line is written as it is; with `follow` the reader
//!   waits for its newline and drops it if the container stops first.
//! * With `follow`, a log file replaced at its path (rotation) is read from its start after the
//!   old one has been read to its end.
//!
//! Where podvisor differs: it polls the file every [`FOLLOW_POLL`] instead of using inotify
//! (no inotify instance per follower), and a line longer than [`MAX_LINE`] (which only a
//! hostile writer produces: CRI runtimes split lines at 16 KiB) is streamed through in pieces
//! rather than held whole. Such a line is written even before its newline arrives while
//! following; one whose header does not fit in `MAX_LINE` is skipped.
//!
//! Memory, whatever the file holds: a read buffer of `MAX_LINE` + 128 KiB, the output chunk
//! being filled (about [`CHUNK`]), and what the caller's channel holds. A follower waiting for
//! new lines keeps neither buffer.
//!
//! Speed: reads are 128 KiB, a line's header is parsed in place and its newline looked for
//! sixteen bytes at a time after it (safe Rust has no SIMD), the date-time text consecutive
//! lines share is parsed once, and output goes out in `CHUNK`-sized `Bytes`. (Reading ahead
//! on a second thread was tried: moving the data between cores cost what it saved.)
//!
//! An axum handler can hand the receiver to the response body:
//!
//! ```ignore
//! let (tx, mut rx) = tokio::sync::mpsc::channel(4);
//! tokio::spawn(async move { stream(&path, &query, clock.now(), running, tx).await });
//! let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>)));
//! Response::new(Body::from_stream(body))
//! ```

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::clock::Timestamp;

/// The most of one line held in memory; longer lines stream through in pieces.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes asked of the file per read.
const READ_SIZE: usize = 128 * 1024;
/// Output goes out in chunks of at least this many bytes, smaller only at the end of the file.
pub const CHUNK: usize = 128 * 1024;
/// How often a followed log file is checked for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Block size of the backwards scan for `tailLines` (the kubelet reads 1 KiB blocks).
const TAIL_BLOCK: usize = 64 * 1024;
/// Longest timestamp prefix: 19 date-time bytes, '.', 9 digits, a `+hh:mm` zone and a space.
const STAMP_MAX: usize = 36;

// ---------------------------------------------------------------------------------------------
// The query.

/// The options of a `/containerLogs` request, decoded and validated as the kubelet does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// `follow`: keep streaming new lines until the container stops.
    pub follow: bool,
    /// `previous`: read the previous instance's log. The caller picks the file; a stopped
    /// container ends a `follow` as soon as its file has been read.
    pub previous: bool,
    /// `timestamps`: prefix each line with its time.
    pub timestamps: bool,
    /// `tailLines` (or the legacy `tail`): only the last N lines.
    pub tail_lines: Option<u64>,
    /// `limitBytes`: stop after this many bytes of output (at least 1).
    pub limit_bytes: Option<u64>,
    /// `sinceSeconds` or `sinceTime`: skip older lines.
    pub since: Option<Since>,
}

/// Where a [`LogQuery`] starts in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// `sinceSeconds`: this many seconds before the time the request is served (at least 1).
    Seconds(u64),
    /// `sinceTime`: an instant (RFC 3339 in the query; saturated to `Timestamp`'s range).
    Time(Timestamp),
}

/// A query the kubelet would refuse. Each message names its parameter. The kubelet answers
/// [`LogQueryError::Decode`] with 400 ("Unable to decode query.") and the validation failures
/// with 422 ("Invalid request."); the caller chooses.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LogQueryError {
    /// A value that does not decode as its parameter's type.
    #[error("{param}: cannot decode {value:?} as {expected}")]
    Decode {
        /// The query parameter.
        param: &'static str,
        /// Its (percent-decoded) value.
        value: String,
        /// What the parameter takes.
        expected: &'static str,
    },
    /// `tailLines` below zero.
    #[error("{param}: invalid value {value}: must be greater than or equal to 0")]
    Negative {
        /// The query parameter.
        param: &'static str,
        /// Its value.
        value: i64,
    },
    /// `limitBytes` or `sinceSeconds` below one.
    #[error("{param}: invalid value {value}: must be greater than 0")]
    NotPositive {
        /// The query parameter.
        param: &'static str,
        /// Its value.
        value: i64,
    },
    /// Both `sinceSeconds` and `sinceTime`.
    #[error(
        "sinceSeconds, sinceTime: at most one of `sinceTime` or `sinceSeconds` may be specified"
    )]
    SinceConflict,
    /// A `stream` other than `All`: podvisor serves both streams together, as the kubelet does
    /// without its `PodLogsQuerySplitStreams` feature.
    #[error("stream: unsupported value {value:?}: only \"All\" is served")]
    Stream {
        /// The value asked for.
        value: String,
    },
}

impl LogQuery {
    /// Decodes a URL query string (without the `?`) as the kubelet does: the first value of a
    /// parameter wins, unknown parameters are ignored, a boolean is false only when absent,
    /// `0` or `false` (any case), `tail` overrides `tailLines` (`tail=all` removes it), and a
    /// pair that does not percent-decode is dropped. Then validates it.
    pub fn parse(query: &str) -> Result<LogQuery, LogQueryError> {
        let mut raw = RawQuery::default();
        for (key, value) in query_pairs(query) {
            let slot = match key.as_slice() {
                b"follow" => &mut raw.follow,
                b"previous" => &mut raw.previous,
                b"timestamps" => &mut raw.timestamps,
                b"tailLines" => &mut raw.tail_lines,
                b"tail" => &mut raw.tail,
                b"limitBytes" => &mut raw.limit_bytes,
                b"sinceSeconds" => &mut raw.since_seconds,
                b"sinceTime" => &mut raw.since_time,
                b"stream" => &mut raw.stream,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(String::from_utf8_lossy(&value).into_owned());
            }
        }
        raw.decode()
    }
}

/// The first value of each parameter the kubelet reads.
#[derive(Debug, Default)]
struct RawQuery {
    follow: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    tail_lines: Option<String>,
    tail: Option<String>,
    limit_bytes: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    stream: Option<String>,
}

impl RawQuery {
    fn decode(self) -> Result<LogQuery, LogQueryError> {
        // server.go: "backwards compatibility for the tail query parameter".
        let (tail_param, tail_value) = match self.tail {
            Some(t) if t == "all" => ("tail", None),
            Some(t) if !t.is_empty() => ("tail", Some(t)),
            _ => ("tailLines", self.tail_lines),
        };
        let tail_lines = decode_int(tail_param, tail_value)?;
        let limit_bytes = decode_int("limitBytes", self.limit_bytes)?;
        let since_seconds = decode_int("sinceSeconds", self.since_seconds)?;
        // metav1.Time: empty and "null" decode to the zero time, which filters nothing.
        let since_time = match self.since_time {
            None => None,
            Some(s) if s.is_empty() || s == "null" => Some(None),
            Some(s) => match parse_time(s.as_bytes()) {
                Some((time, n)) if n == s.len() => Some(Some(time)),
                _ => {
                    return Err(LogQueryError::Decode {
                        param: "sinceTime",
                        value: s,
                        expected: "an RFC 3339 time",
                    });
                }
            },
        };

        // ValidatePodLogOptions, in its order.
        if let Some(value) = tail_lines.filter(|v| *v < 0) {
            return Err(LogQueryError::Negative {
                param: tail_param,
                value,
            });
        }
        if let Some(value) = limit_bytes.filter(|v| *v < 1) {
            return Err(LogQueryError::NotPositive {
                param: "limitBytes",
                value,
            });
        }
        let since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err(LogQueryError::SinceConflict),
            (Some(value), None) if value < 1 => {
                return Err(LogQueryError::NotPositive {
                    param: "sinceSeconds",
                    value,
                });
            }
            (Some(value), None) => Some(Since::Seconds(value.unsigned_abs())),
            (None, Some(Some(time))) => Some(Since::Time(time.timestamp())),
            (None, _) => None,
        };
        if let Some(value) = self.stream.filter(|s| s != "All") {
            return Err(LogQueryError::Stream { value });
        }
        Ok(LogQuery {
            follow: flag(self.follow.as_deref()),
            previous: flag(self.previous.as_deref()),
            timestamps: flag(self.timestamps.as_deref()),
            tail_lines: tail_lines.map(i64::unsigned_abs),
            limit_bytes: limit_bytes.map(i64::unsigned_abs),
            since,
        })
    }
}

/// apimachinery's `Convert_Slice_string_To_bool`: only "0" and "false" (any case) are false.
fn flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Go's `strconv.ParseInt(v, 10, 64)`, which Rust's `i64::from_str` matches (sign, no spaces).
fn decode_int(param: &'static str, value: Option<String>) -> Result<Option<i64>, LogQueryError> {
    match value {
        None => Ok(None),
        Some(v) => match v.parse() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(LogQueryError::Decode {
                param,
                value: v,
                expected: "an integer",
            }),
        },
    }
}

/// Go's `url.ParseQuery`: `&`-separated pairs; a pair holding `;` or failing to unescape is
/// dropped; `+` is a space.
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((unescape(key)?, unescape(value)?))
        })
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

// ---------------------------------------------------------------------------------------------
// Streaming: the IO edge.

/// Why [`stream`] stopped early.
#[derive(Debug, Error)]
pub enum LogsError {
    /// The log file cannot be resolved or opened (the kubelet answers 400 with this).
    #[error("cannot open log file {}", path.display())]
    Open {
        /// The path asked for.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading (or, for `tailLines`, seeking in) the log file failed.
    #[error("cannot read log file {}", path.display())]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The blocking task that reads the file panicked or was cancelled.
    #[error("log reader task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// What [`stream`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Bytes handed to the receiver.
    pub bytes: u64,
    /// Malformed lines skipped (the kubelet logs each; the caller may log this count once).
    pub malformed_lines: u64,
    /// The receiver was dropped before the log ended (the client went away).
    pub receiver_gone: bool,
}

/// Streams the CRI log file at `path` into `out` as `query` asks, in chunks of about
/// [`CHUNK`] bytes. `now` anchors `sinceSeconds`.
///
/// Without `follow` it reads to the end of the file and returns. With `follow` it then checks
/// the file every [`FOLLOW_POLL`]; each time it finds nothing new it awaits `still_running`
/// (so that should be cheap, e.g. a look at the latest observed state), and once that says
/// the container has stopped it reads the file to its end one last time and returns. It also
/// returns when `limitBytes` is reached, when `tailLines` are out (without `follow`) or when
/// `out`'s receiver is dropped. Reading and rendering run on tokio's blocking pool.
pub async fn stream<F, Fut>(
    path: &Path,
    query: &LogQuery,
    now: Timestamp,
    mut still_running: F,
    out: mpsc::Sender<Bytes>,
) -> Result<StreamSummary, LogsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let renderer = Renderer::new(query, now);
    let (path, tail, follow) = (path.to_path_buf(), query.tail_lines, query.follow);
    let mut reader = blocking(move || Reader::open(path, tail, follow, renderer, out)).await??;
    let mut stopped = false;
    loop {
        let (back, drained) = blocking(move || {
            let drained = reader.drain();
            (reader, drained)
        })
        .await?;
        reader = back;
        if drained? == Drained::Finished || !follow || stopped {
            return Ok(reader.summary());
        }
        // kubelet waitLogs: a stopped container ends the follow after one more read to the end.
        if !still_running().await {
            stopped = true;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            () = reader.lines.tx.closed() => {
                let mut summary = reader.summary();
                summary.receiver_gone = true;
                return Ok(summary);
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LogsError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(LogsError::Task)
}

/// How a [`Reader::drain`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// At the end of the file; following may find more.
    Eof,
    /// Nothing more to send: a limit was reached or the receiver is gone.
    Finished,
}

/// A line longer than [`MAX_LINE`], being streamed in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LongLine {
    /// Its header parsed: its message goes through `Renderer`.
    Render {
        /// A `P` line: its newline is dropped.
        partial: bool,
    },
    /// Malformed: skipped up to its newline.
    Skip,
}

/// The open log file, the buffer it is read into, and what is done with the lines.
struct Reader {
    source: Source,
    lines: Lines,
    /// `MAX_LINE` bytes of room for the start of an unfinished line, then `READ_SIZE` for a
    /// read; empty between the reads of a follower.
    buffer: Box<[u8]>,
    follow: bool,
}

/// The log file and where reading has got to.
struct Source {
    /// The path with symlinks resolved.
    path: PathBuf,
    file: File,
    /// Device and inode, to notice the path naming another file.
    identity: (u64, u64),
    offset: u64,
}

/// Lines on their way out: the unfinished end of what was read, the rendering state, and the
/// output not yet sent.
struct Lines {
    /// The start of an unfinished line (shorter than `MAX_LINE`).
    carry: Vec<u8>,
    long: Option<LongLine>,
    renderer: Renderer,
    out: BytesMut,
    tx: mpsc::Sender<Bytes>,
    sent: u64,
    receiver_gone: bool,
}

fn new_buffer() -> Box<[u8]> {
    vec![0; MAX_LINE + READ_SIZE].into_boxed_slice()
}

impl Reader {
    /// Resolves symlinks (as the kubelet does before watching), opens the file and finds where
    /// `tail` lines start.
    fn open(
        path: PathBuf,
        tail: Option<u64>,
        follow: bool,
        renderer: Renderer,
        tx: mpsc::Sender<Bytes>,
    ) -> Result<Reader, LogsError> {
        let open = |path: &Path| -> io::Result<(PathBuf, File)> {
            let resolved = std::fs::canonicalize(path)?;
            let file = File::open(&resolved)?;
            Ok((resolved, file))
        };
        let (resolved, file) = open(&path).map_err(|source| LogsError::Open { path, source })?;
        let read_error = |source: io::Error| LogsError::Read {
            path: resolved.clone(),
            source,
        };
        let meta = file.metadata().map_err(read_error)?;
        let offset = match tail {
            Some(n) => tail_start(&file, meta.len(), n).map_err(read_error)?,
            None => 0,
        };
        Ok(Reader {
            source: Source {
                identity: (meta.dev(), meta.ino()),
                path: resolved,
                file,
                offset,
            },
            lines: Lines {
                carry: Vec::new(),
                long: None,
                renderer,
                out: BytesMut::with_capacity(CHUNK + CHUNK / 2),
                tx,
                sent: 0,
                receiver_gone: false,
            },
            buffer: new_buffer(),
            follow,
        })
    }

    fn summary(&self) -> StreamSummary {
        StreamSummary {
            bytes: self.lines.sent,
            malformed_lines: self.lines.renderer.malformed,
            receiver_gone: self.lines.receiver_gone,
        }
    }

    /// Renders and sends everything up to the end of the file (blocking).
    fn drain(&mut self) -> Result<Drained, LogsError> {
        loop {
            let flow = match self.lines.renderer.lines_left {
                Some(0) => Flow::Done,
                _ => self.read_to_end()?,
            };
            if flow == Flow::Done {
                self.lines.flush();
                return Ok(Drained::Finished);
            }
            if self.follow && self.source.reopen_if_replaced() {
                self.lines.carry.clear();
                self.lines.long = None;
                continue;
            }
            if !self.follow && self.lines.finish_unterminated() == Flow::Done {
                self.lines.flush();
                return Ok(Drained::Finished);
            }
            if !self.lines.flush() {
                return Ok(Drained::Finished);
            }
            // A follower mostly waits: it keeps no buffers meanwhile.
            self.buffer = Box::default();
            self.lines.out = BytesMut::new();
            return Ok(Drained::Eof);
        }
    }

    /// Reads and renders up to the end of the file.
    fn read_to_end(&mut self) -> Result<Flow, LogsError> {
        if self.buffer.is_empty() {
            self.buffer = new_buffer();
        }
        loop {
            let n = self.source.read(&mut self.buffer[MAX_LINE..])?;
            if n == 0 {
                return Ok(Flow::More);
            }
            if self.lines.feed(&mut self.buffer, n) == Flow::Done {
                return Ok(Flow::Done);
            }
        }
    }
}

/// `read_at`, retried when interrupted.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl Source {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LogsError> {
        let n = read_at(&self.file, buf, self.offset).map_err(|source| LogsError::Read {
            path: self.path.clone(),
            source,
        })?;
        self.offset += n as u64;
        Ok(n)
    }

    /// Whether the path now names another file (the runtime rotated or recreated the log);
    /// if so, reads that one from its start.
    fn reopen_if_replaced(&mut self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return false;
        };
        if (meta.dev(), meta.ino()) == self.identity {
            return false;
        }
        let Ok(file) = File::open(&self.path) else {
            return false;
        };
        self.file = file;
        self.identity = (meta.dev(), meta.ino());
        self.offset = 0;
        true
    }
}

impl Lines {
    /// Renders the `n` bytes just read into `buf[MAX_LINE..]`, after the carried start of
    /// their first line, and carries the start of their last unfinished line.
    fn feed(&mut self, buf: &mut [u8], n: usize) -> Flow {
        let start = MAX_LINE - self.carry.len();
        buf[start..MAX_LINE].copy_from_slice(&self.carry);
        self.carry.clear();
        let data = &buf[start..MAX_LINE + n];
        let (flow, used) = self.complete_lines(data);
        if flow == Flow::Done {
            return Flow::Done;
        }
        let rest = &data[used..];
        let flow = match self.long {
            Some(long) => self.renderer.continue_long(long, rest, &mut self.out),
            None if rest.len() >= MAX_LINE => {
                let (long, flow) = self.renderer.begin_long(rest, &mut self.out);
                self.long = Some(long);
                flow
            }
            None => {
                self.carry.extend_from_slice(rest);
                return Flow::More;
            }
        };
        if flow == Flow::Done || !self.flush_if_full() {
            return Flow::Done;
        }
        Flow::More
    }

    /// Renders the complete lines at the start of `data`; returns how many bytes they took.
    fn complete_lines(&mut self, data: &[u8]) -> (Flow, usize) {
        let mut used = 0;
        loop {
            let pending = &data[used..];
            // The usual line: its header first, then its newline is looked for after it.
            if self.long.is_none()
                && let Some(head) = parse_head(pending, &mut self.renderer.times)
            {
                let Some(newline) = find_byte(b'\n', &pending[head.body..]) else {
                    return (Flow::More, used);
                };
                let line = &pending[..head.body + newline + 1];
                let flow = self.renderer.render(&head, line, &mut self.out);
                used += line.len();
                if flow == Flow::Done || !self.flush_if_full() {
                    return (Flow::Done, used);
                }
                continue;
            }
            let Some(newline) = find_byte(b'\n', pending) else {
                return (Flow::More, used);
            };
            let line = &pending[..=newline];
            let flow = match self.long.take() {
                None => self.renderer.line(line, &mut self.out),
                Some(long) => self.renderer.finish_long(long, line, &mut self.out),
            };
            used += line.len();
            if flow == Flow::Done || !self.flush_if_full() {
                return (Flow::Done, used);
            }
        }
    }

    /// Without `follow`, the kubelet writes an unterminated last line as it is.
    fn finish_unterminated(&mut self) -> Flow {
        let carry = std::mem::take(&mut self.carry);
        match self.long.take() {
            Some(LongLine::Render { .. }) => self.renderer.end(),
            Some(LongLine::Skip) => Flow::More,
            None if carry.is_empty() => Flow::More,
            None => self.renderer.line(&carry, &mut self.out),
        }
    }

    #[inline(always)]
    fn flush_if_full(&mut self) -> bool {
        self.out.len() < CHUNK || self.flush()
    }

    /// Sends the pending output; false when the receiver is gone.
    fn flush(&mut self) -> bool {
        if self.receiver_gone {
            return false;
        }
        if self.out.is_empty() {
            return true;
        }
        let chunk = self.out.split().freeze();
        let len = chunk.len() as u64;
        self.out.reserve(CHUNK + CHUNK / 2);
        if self.tx.blocking_send(chunk).is_err() {
            self.receiver_gone = true;
            return false;
        }
        self.sent += len;
        true
    }
}

/// `util/tail.FindTailLineStartIndex`: the offset just after the (n+1)-th newline from the
/// end, or 0 when the file has no more than n. Reads blocks backwards from `size`.
fn tail_start(file: &File, size: u64, n: u64) -> io::Result<u64> {
    let mut block = vec![0; TAIL_BLOCK];
    let mut right = size;
    let mut seen = 0u64;
    while right > 0 {
        let left = right.saturating_sub(TAIL_BLOCK as u64);
        let buf = &mut block[..usize::try_from(right - left).unwrap_or(TAIL_BLOCK)];
        file.read_exact_at(buf, left)?;
        let count = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        if seen + count > n {
            let mut to_pass = n + 1 - seen;
            for (i, &b) in buf.iter().enumerate().rev() {
                if b == b'\n' {
                    to_pass -= 1;
                    if to_pass == 0 {
                        return Ok(left + i as u64 + 1);
                    }
                }
            }
        }
        seen += count;
        right = left;
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// Rendering: pure.

/// Whether rendering goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// More lines are wanted.
    More,
    /// The output is complete (limitBytes or tailLines reached).
    Done,
}

/// The kubelet's `ReadLogs` loop body and `logWriter.write`, over lines in memory.
#[derive(Debug)]
struct Renderer {
    /// Lines older than this (Unix nanoseconds) are skipped.
    since: Option<i128>,
    timestamps: bool,
    /// limitBytes left (`u64::MAX` when unlimited).
    remaining: u64,
    /// tailLines without follow: lines still to render.
    lines_left: Option<u64>,
    /// The kubelet's `isNewLine`: the last message ended a line, so the next gets a prefix.
    at_line_start: bool,
    /// Whether the current line passes `since`.
    emitting: bool,
    /// The last byte of the current line's message.
    last_byte: Option<u8>,
    times: TimeCache,
    malformed: u64,
}

/// The parsed start of a CRI log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    time: LogTime,
    partial: bool,
    /// Where the message starts in the line.
    body: usize,
}

impl Renderer {
    fn new(query: &LogQuery, now: Timestamp) -> Renderer {
        let since = match query.since {
            None => None,
            Some(Since::Seconds(s)) => Some(i128::from(now.0) - i128::from(s) * 1_000_000_000),
            Some(Since::Time(t)) => Some(i128::from(t.0)),
        };
        Renderer {
            since,
            timestamps: query.timestamps,
            remaining: query.limit_bytes.unwrap_or(u64::MAX),
            lines_left: query.tail_lines.filter(|_| !query.follow),
            at_line_start: true,
            emitting: false,
            last_byte: None,
            times: TimeCache::default(),
            malformed: 0,
        }
    }

    /// Renders one file line: with its newline, or the unterminated last line without one.
    #[inline(always)]
    fn line(&mut self, line: &[u8], out: &mut BytesMut) -> Flow {
        match self.head(line) {
            Some(head) => self.render(&head, line, out),
            None => Flow::More,
        }
    }

    /// Renders a file line whose head is parsed.
    #[inline(always)]
    fn render(&mut self, head: &Head, line: &[u8], out: &mut BytesMut) -> Flow {
        let mut body = line.get(head.body..).unwrap_or_default();
        if head.partial {
            body = body.strip_suffix(b"\n").unwrap_or(body);
        }
        if self.begin(head, out) == Flow::Done || self.body(body, out) == Flow::Done {
            return Flow::Done;
        }
        self.end()
    }

    /// Starts a line too long for the buffer from its first `bytes` (no newline among them).
    fn begin_long(&mut self, bytes: &[u8], out: &mut BytesMut) -> (LongLine, Flow) {
        let Some(head) = self.head(bytes) else {
            return (LongLine::Skip, Flow::More);
        };
        let long = LongLine::Render {
            partial: head.partial,
        };
        if self.begin(&head, out) == Flow::Done {
            return (long, Flow::Done);
        }
        let body = bytes.get(head.body..).unwrap_or_default();
        (long, self.body(body, out))
    }

    /// More of a long line, still without its newline.
    fn continue_long(&mut self, long: LongLine, bytes: &[u8], out: &mut BytesMut) -> Flow {
        match long {
            LongLine::Render { .. } => self.body(bytes, out),
            LongLine::Skip => Flow::More,
        }
    }

    /// The end of a long line, up to and including its newline.
    fn finish_long(&mut self, long: LongLine, bytes: &[u8], out: &mut BytesMut) -> Flow {
        match long {
            LongLine::Render { partial } => {
                let bytes = if partial {
                    bytes.strip_suffix(b"\n").unwrap_or(bytes)
                } else {
                    bytes
                };
                if self.body(bytes, out) == Flow::Done {
                    return Flow::Done;
                }
                self.end()
            }
            LongLine::Skip => Flow::More,
        }
    }

    /// Parses a whole line's head, counting it when malformed.
    fn head(&mut self, line: &[u8]) -> Option<Head> {
        let head = parse_head(line, &mut self.times);
        if head.is_none() {
            self.malformed += 1;
        }
        head
    }

    /// The since check and the timestamp prefix.
    #[inline(always)]
    fn begin(&mut self, head: &Head, out: &mut BytesMut) -> Flow {
        self.emitting = self.since.is_none_or(|s| head.time.unix_nanos() >= s);
        self.last_byte = None;
        if self.emitting && self.timestamps && self.at_line_start {
            let mut stamp = [0; STAMP_MAX];
            let n = self.times.format(head.time, &mut stamp);
            return self.write(&stamp[..n], out);
        }
        Flow::More
    }

    #[inline(always)]
    fn body(&mut self, bytes: &[u8], out: &mut BytesMut) -> Flow {
        if let Some(&last) = bytes.last() {
            self.last_byte = Some(last);
        }
        if self.emitting {
            return self.write(bytes, out);
        }
        Flow::More
    }

    /// A line is done: it counts towards tailLines and decides the next prefix.
    #[inline(always)]
    fn end(&mut self) -> Flow {
        self.at_line_start = self.last_byte.is_none_or(|b| b == b'\n');
        match &mut self.lines_left {
            Some(left) => {
                *left = left.saturating_sub(1);
                if *left == 0 { Flow::Done } else { Flow::More }
            }
            None => Flow::More,
        }
    }

    /// Writes within limitBytes, cutting exactly at the limit.
    #[inline(always)]
    fn write(&mut self, bytes: &[u8], out: &mut BytesMut) -> Flow {
        let n = usize::try_from(self.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
        out.extend_from_slice(&bytes[..n]);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            Flow::Done
        } else {
            Flow::More
        }
    }
}

/// `parseCRILog`: `<time> <stdout|stderr> <tag> <message>`, where the tag's first
/// `:`-separated field says partial (`P`) or not. `line` may lack its end, or run on past
/// its newline: nothing after the first newline is taken into account.
#[inline(always)]
fn parse_head(line: &[u8], times: &mut TimeCache) -> Option<Head> {
    let (time, n) = times.parse(line)?;
    let rest = line.get(n..)?.strip_prefix(b" ")?;
    let rest = rest
        .strip_prefix(b"stdout ")
        .or_else(|| rest.strip_prefix(b"stderr "))?;
    let tag_len = rest.iter().position(|&b| b == b' ' || b == b'\n')?;
    if rest[tag_len] != b' ' {
        return None;
    }
    let tag = &rest[..tag_len];
    let partial = tag.split(|&b| b == b':').next() == Some(b"P");
    Some(Head {
        time,
        partial,
        body: line.len() - rest.len() + tag_len + 1,
    })
}

// ---------------------------------------------------------------------------------------------
// Time: Go's lenient RFC 3339 parse and its fixed-width nanosecond format, in the line's zone.

/// A log line's time: the instant, and the zone offset it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogTime {
    /// Seconds since the Unix epoch.
    secs: i64,
    nanos: u32,
    /// Seconds east of UTC.
    offset: i32,
}

impl LogTime {
    fn unix_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    fn timestamp(self) -> Timestamp {
        let nanos = self
            .unix_nanos()
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Timestamp(i64::try_from(nanos).unwrap_or_default())
    }
}

/// Parses an RFC 3339 time at the start of `s` as Go's `time.Parse` does with `RFC3339Nano`
/// (which also covers `RFC3339`); returns it and the bytes it took.
fn parse_time(s: &[u8]) -> Option<(LogTime, usize)> {
    TimeCache::default().parse(s)
}

/// Remembers the last date-time parsed and formatted: consecutive log lines mostly share
/// their second.
#[derive(Debug, Default)]
struct TimeCache {
    /// The last `2006-01-02T15:04:05` parsed, and its wall-clock seconds since the epoch.
    parsed: Option<([u8; 19], i64)>,
    formatted_wall: Option<i64>,
    formatted_text: [u8; 19],
}

impl TimeCache {
    /// Parses the time at the start of `s`; returns it and the bytes it took.
    #[inline(always)]
    fn parse(&mut self, s: &[u8]) -> Option<(LogTime, usize)> {
        let (wall, at) = match (self.parsed, s.first_chunk::<19>()) {
            (Some((text, wall)), Some(head)) if *head == text => (wall, 19),
            _ => {
                let (wall, n) = parse_date_time(s)?;
                // Only the usual two-digit hour is remembered: then the text is 19 bytes.
                if let Some(head) = s.first_chunk::<19>().filter(|_| n == 19) {
                    self.parsed = Some((*head, wall));
                }
                (wall, n)
            }
        };
        let (nanos, offset, n) = parse_fraction_and_zone(s.get(at..)?)?;
        let time = LogTime {
            secs: wall - i64::from(offset),
            nanos,
            offset,
        };
        Some((time, at + n))
    }

    /// Writes `2006-01-02T15:04:05.000000000Z07:00 ` into `buf`; returns its length.
    fn format(&mut self, t: LogTime, buf: &mut [u8; STAMP_MAX]) -> usize {
        let wall = t.secs + i64::from(t.offset);
        if self.formatted_wall != Some(wall) {
            self.formatted_text = format_date_time(wall);
            self.formatted_wall = Some(wall);
        }
        buf[..19].copy_from_slice(&self.formatted_text);
        buf[19] = b'.';
        put_digits(&mut buf[20..29], u64::from(t.nanos));
        let mut n = 29;
        if t.offset == 0 {
            buf[n] = b'Z';
            n += 1;
        } else {
            let minutes = t.offset.unsigned_abs() / 60;
            buf[n] = if t.offset < 0 { b'-' } else { b'+' };
            put_digits(&mut buf[n + 1..n + 3], u64::from(minutes / 60));
            buf[n + 3] = b':';
            put_digits(&mut buf[n + 4..n + 6], u64::from(minutes % 60));
            n += 6;
        }
        buf[n] = b' ';
        n + 1
    }
}

/// Go's `time.Parse` for `2006-01-02T15:04:05`: a four-digit year, two-digit month (1–12),
/// day (within the month), minute and second (0–59), and a one- or two-digit hour (0–23).
/// Returns wall-clock seconds since the epoch and the bytes taken.
#[inline(never)]
fn parse_date_time(s: &[u8]) -> Option<(i64, usize)> {
    let year = i64::from(digits(s.get(0..4)?)?);
    let month = digits(s.get(5..7)?)?;
    let day = digits(s.get(8..10)?)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') || s.get(10) != Some(&b'T') {
        return None;
    }
    let (hour, at) = match s.get(12) {
        Some(b) if b.is_ascii_digit() => (digits(s.get(11..13)?)?, 13),
        _ => (digits(s.get(11..12)?)?, 12),
    };
    let minute = digits(s.get(at + 1..at + 3)?)?;
    let second = digits(s.get(at + 4..at + 6)?)?;
    if s.get(at) != Some(&b':') || s.get(at + 3) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((secs, at + 6))
}

/// An optional `.123` or `,123` (any number of digits, the first nine count), then `Z` or
/// `±hh:mm` (Go accepts up to 24:60). Returns nanoseconds, offset seconds, bytes taken.
#[inline(always)]
fn parse_fraction_and_zone(s: &[u8]) -> Option<(u32, i32, usize)> {
    let mut i = 0;
    let mut nanos = 0u32;
    if matches!(s.first(), Some(b'.' | b',')) && s.get(1).is_some_and(u8::is_ascii_digit) {
        i = 1;
        let mut kept = 0;
        while let Some(&d) = s.get(i).filter(|d| d.is_ascii_digit()) {
            if kept < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
                kept += 1;
            }
            i += 1;
        }
        nanos *= 10u32.pow(9 - kept);
    }
    match s.get(i)? {
        b'Z' => Some((nanos, 0, i + 1)),
        &sign @ (b'+' | b'-') => {
            let zone = s.get(i..i + 6)?;
            let hours = digits(&zone[1..3])?;
            let minutes = digits(&zone[4..6])?;
            if zone[3] != b':' || hours > 24 || minutes > 60 {
                return None;
            }
            let offset = i32::try_from((hours * 60 + minutes) * 60).ok()?;
            Some((nanos, if sign == b'-' { -offset } else { offset }, i + 6))
        }
        _ => None,
    }
}

/// The value of a run of ASCII digits (at most four, so no overflow).
#[inline(always)]
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `00` to `99`, for writing two digits at a time.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Writes `value` as `buf.len()` zero-padded decimal digits.
#[inline]
fn put_digits(buf: &mut [u8], mut value: u64) {
    let mut end = buf.len();
    while end >= 2 {
        let pair = (value % 100) as usize * 2;
        buf[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        end -= 2;
    }
    if end == 1 {
        buf[0] = b'0' + (value % 10) as u8;
    }
}

fn format_date_time(wall: i64) -> [u8; 19] {
    let (year, month, day) = civil_from_days(wall.div_euclid(86_400));
    let secs = wall.rem_euclid(86_400).unsigned_abs();
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], year.clamp(0, 9999).unsigned_abs());
    put_digits(&mut text[5..7], u64::from(month));
    put_digits(&mut text[8..10], u64::from(day));
    put_digits(&mut text[11..13], secs / 3600);
    put_digits(&mut text[14..16], secs % 3600 / 60);
    put_digits(&mut text[17..19], secs % 60);
    text
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days: days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil (as in `clock`, which keeps its copy private).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

/// The first `needle` in `hay` (memchr: vectorised, where safe Rust alone is not).
fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const T0: &str = "2024-05-01T10:00:00.000000001Z";
    const T5: &str = "2024-05-01T10:00:05Z";
    const T10: &str = "2024-05-01T10:00:10.5Z";

    fn cri(time: &str, tag: &str, message: &str) -> String {
        format!("{time} stdout {tag} {message}\n")
    }

    fn log_file(dir: &tempfile::TempDir, content: &[u8]) -> PathBuf {
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

    fn at(time: &str) -> Timestamp {
        parse_time(time.as_bytes()).expect("time").0.timestamp()
    }

    fn query(q: &str) -> LogQuery {
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
        let (summary, out) =
            tokio::join!(stream(path, q, now, || async { false }, tx), collect(rx));
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

    #[test]
    fn tail_start_is_after_the_newline_before_the_last_n_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..50_000u32)
            .flat_map(|i| {
                let mut line = vec![b'a'; (i % 7) as usize];
                line.push(b'\n');
                line
            })
            .chain(*b"unterminated")
            .collect();
        let path = log_file(&dir, &content);
        let file = File::open(&path).expect("open");
        let newlines: Vec<usize> = content
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        for n in [0u64, 1, 2, 10_000, 49_999, 50_000, 60_000] {
            let want = newlines
                .len()
                .checked_sub(n as usize + 1)
                .map_or(0, |k| newlines[k] as u64 + 1);
            let got = tail_start(&file, content.len() as u64, n).expect("tail");
            assert_eq!(got, want, "tailLines={n}");
        }
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
            format!(
                "2024-05-01T10:00:00.000000001Z {huge}end\n2024-05-01T10:00:05.000000000Z after\n"
            )
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

    #[test]
    fn query_decodes_parameters_as_the_kubelet_does() {
        let q = query(
            "follow=true&timestamps=1&previous=false&tailLines=10&limitBytes=100\
             &sinceTime=2024-05-01T10%3A00%3A05Z&container=ignored&unknown=x",
        );
        assert_eq!(
            q,
            LogQuery {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(10),
                limit_bytes: Some(100),
                since: Some(Since::Time(at(T5))),
            }
        );
        assert_eq!(query(""), LogQuery::default());
        // apimachinery booleans: false only when absent, "0" or "false" in any case.
        assert!(query("follow").follow);
        assert!(query("follow=yes").follow);
        assert!(!query("follow=FALSE").follow);
        assert!(!query("follow=0").follow);
        // The first value wins; the legacy `tail` overrides tailLines, `tail=all` drops it.
        assert_eq!(query("tailLines=3&tailLines=-1").tail_lines, Some(3));
        assert_eq!(query("tailLines=3&tail=7").tail_lines, Some(7));
        assert_eq!(query("tailLines=3&tail=all").tail_lines, None);
        assert_eq!(query("tailLines=3&tail=").tail_lines, Some(3));
        // A pair that does not unescape, or holds a semicolon, is dropped.
        assert_eq!(query("tailLines=%zz").tail_lines, None);
        assert_eq!(query("tailLines=4;x").tail_lines, None);
        assert_eq!(query("sinceSeconds=%2B30").since, Some(Since::Seconds(30)));
        assert_eq!(query("sinceTime=").since, None);
        assert_eq!(query("sinceTime=null").since, None);
        assert_eq!(query("stream=All").since, None);
    }

    #[test]
    fn invalid_query_values_are_errors_naming_the_parameter() {
        let cases: [(&str, &str); 10] = [
            ("tailLines=-1", "tailLines"),
            ("tail=-3", "tail"),
            ("limitBytes=0", "limitBytes"),
            ("sinceSeconds=0", "sinceSeconds"),
            ("sinceSeconds=-5", "sinceSeconds"),
            ("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z", "sinceTime"),
            ("tailLines=ten", "tailLines"),
            ("limitBytes=99999999999999999999", "limitBytes"),
            ("sinceTime=yesterday", "sinceTime"),
            ("stream=Stdout", "stream"),
        ];
        for (q, param) in cases {
            let err = LogQuery::parse(q).expect_err(q);
            assert!(err.to_string().contains(param), "{q}: {err}");
        }
        assert!(matches!(
            LogQuery::parse("tailLines=-1"),
            Err(LogQueryError::Negative {
                param: "tailLines",
                value: -1
            })
        ));
        assert!(matches!(
            LogQuery::parse("limitBytes=0"),
            Err(LogQueryError::NotPositive {
                param: "limitBytes",
                value: 0
            })
        ));
        assert!(matches!(
            LogQuery::parse("sinceSeconds=1&sinceTime="),
            Err(LogQueryError::SinceConflict)
        ));
        assert!(matches!(
            LogQuery::parse("sinceTime=2024-05-01"),
            Err(LogQueryError::Decode {
                param: "sinceTime",
                ..
            })
        ));
    }

    #[test]
    fn times_parse_as_go_parses_rfc3339_nano() {
        let parse = |s: &str| {
            parse_time(s.as_bytes())
                .filter(|(_, n)| *n == s.len())
                .map(|(t, _)| t)
        };
        let t = parse("2024-02-29T23:59:59.123456789123Z").expect("leap day, long fraction");
        assert_eq!((t.secs, t.nanos, t.offset), (1_709_251_199, 123_456_789, 0));
        assert_eq!(
            parse("2024-05-01T9:00:00,5Z").map(|t| t.nanos),
            Some(500_000_000)
        );
        assert_eq!(
            parse("1970-01-01T00:00:00+24:60").map(|t| t.secs),
            Some(-90_000)
        );
        assert_eq!(parse("1969-12-31T23:59:59Z").map(|t| t.secs), Some(-1));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-05-01t10:00:00Z",
            "2024-05-01T10:00:00",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:60:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+2:00",
            "2024-13-01T10:00:00Z",
            "24-05-01T10:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn find_byte_finds_the_first_match_anywhere() {
        let mut hay = vec![b'a'; 40];
        assert_eq!(find_byte(b'\n', &hay), None);
        for at in [0, 7, 8, 15, 33, 39] {
            hay[at] = b'\n';
            assert_eq!(find_byte(b'\n', &hay), Some(at));
            hay[39] = b'\n';
            assert_eq!(find_byte(b'\n', &hay), Some(at));
            hay.fill(b'a');
        }
        // A byte just above the needle must not confuse the word test.
        assert_eq!(
            find_byte(b'\n', b"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\n"),
            Some(9)
        );
    }
}
