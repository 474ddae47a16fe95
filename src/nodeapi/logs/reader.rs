//! Streaming: the IO edge. Opens, reads and polls the log file and sends what `Renderer`
//! produced; every per-line decision is left to `render`.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::sync::mpsc;

use super::query::LogQuery;
use super::render::{Flow, LongLine, Renderer, parse_head};
use super::{CHUNK, FOLLOW_POLL, MAX_LINE, READ_SIZE, TAIL_BLOCK};
use crate::clock::Timestamp;
use crate::logfiles;

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

/// The open log file, the buffer it is read into, and what is done with the lines.
struct Reader {
    /// The rotated files before the live one, read first (oldest first).
    history: Option<History>,
    source: Source,
    lines: Lines,
    /// `MAX_LINE` bytes of room for the start of an unfinished line, then `READ_SIZE` for a
    /// read; empty between the reads of a follower.
    buffer: Box<[u8]>,
    follow: bool,
}

/// The container's rotated log files as one reader, and how many of their lines to skip
/// (those before `tailLines`).
struct History {
    reader: Box<dyn Read + Send>,
    skip: u64,
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
        // Lines from before the last rotations come first, as far as they are wanted.
        let older = logfiles::files::rotated(&resolved).map_err(read_error)?;
        let history_of = |skip: u64| -> Result<Option<History>, LogsError> {
            Ok(Some(History {
                reader: logfiles::files::chain(&older).map_err(read_error)?,
                skip,
            }))
        };
        let (offset, history) = match tail {
            None if older.is_empty() => (0, None),
            None => (0, history_of(0)?),
            Some(n) => {
                let offset = tail_start(&file, meta.len(), n).map_err(read_error)?;
                let live_lines = if offset == 0 && !older.is_empty() {
                    count_lines(&mut (&file)).map_err(read_error)?
                } else {
                    n
                };
                match n.saturating_sub(live_lines) {
                    0 => (offset, None),
                    wanted => {
                        let mut all = logfiles::files::chain(&older).map_err(read_error)?;
                        let total = count_lines(&mut all).map_err(read_error)?;
                        (0, history_of(total.saturating_sub(wanted))?)
                    }
                }
            }
        };
        Ok(Reader {
            history,
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
                _ => match self.read_history()? {
                    Flow::Done => Flow::Done,
                    Flow::More => self.read_to_end()?,
                },
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

    /// Reads and renders the rotated files, once, skipping the lines before `tailLines`.
    fn read_history(&mut self) -> Result<Flow, LogsError> {
        let Some(mut h) = self.history.take() else {
            return Ok(Flow::More);
        };
        if self.buffer.is_empty() {
            self.buffer = new_buffer();
        }
        loop {
            let n = loop {
                match h.reader.read(&mut self.buffer[MAX_LINE..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => {
                        break other.map_err(|source| LogsError::Read {
                            path: self.source.path.clone(),
                            source,
                        })?;
                    }
                }
            };
            if n == 0 {
                return Ok(Flow::More);
            }
            let (mut start, end) = (MAX_LINE, MAX_LINE + n);
            while h.skip > 0 && start < end {
                match find_byte(b'\n', &self.buffer[start..end]) {
                    Some(i) => {
                        start += i + 1;
                        h.skip -= 1;
                    }
                    None => start = end,
                }
            }
            if start == end {
                continue;
            }
            self.buffer.copy_within(start..end, MAX_LINE);
            if self.lines.feed(&mut self.buffer, end - start) == Flow::Done {
                return Ok(Flow::Done);
            }
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

/// The newlines in what `r` reads.
fn count_lines(r: &mut dyn Read) -> io::Result<u64> {
    let mut block = vec![0; TAIL_BLOCK];
    let mut count = 0u64;
    loop {
        match r.read(&mut block) {
            Ok(0) => return Ok(count),
            Ok(n) => count += memchr::memchr_iter(b'\n', &block[..n]).count() as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The first `needle` in `hay` (memchr: vectorised, where safe Rust alone is not).
fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeapi::logs::tests::log_file;

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
        // A byte just above the needle is not a match.
        assert_eq!(
            find_byte(b'\n', b"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\n"),
            Some(9)
        );
    }
}
