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
//! Speed: reads are 128 KiB, a line's header is parsed in place and its newline found by
//! `memchr` (vectorised), the date-time text consecutive
//! lines share is parsed once, and output goes out in `CHUNK`-sized `Bytes`. (Reading ahead
//! on a second thread was tried: moving the data between cores cost what it saved.)
//!
//! The parts: `query` decodes the URL query; `reader` is the IO edge (open, read, poll,
//! send); `render` holds the pure per-line decisions; `time` parses and formats the lines'
//! times. Only `reader` touches files or channels.
//!
//! An axum handler can hand the receiver to the response body:
//!
//! ```ignore
//! let (tx, mut rx) = tokio::sync::mpsc::channel(4);
//! tokio::spawn(async move { stream(&path, &query, clock.now(), running, tx).await });
//! let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>)));
//! Response::new(Body::from_stream(body))
//! ```

use std::time::Duration;

mod query;
mod reader;
mod render;
#[cfg(test)]
mod tests;
mod time;

pub use query::{LogQuery, LogQueryError, Since};
pub use reader::{LogsError, StreamSummary, stream};

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
