//! Rendering: pure. The kubelet's per-line decisions over lines in memory: CRI line parsing,
//! since, timestamps, limitBytes and tailLines. No IO, no clock reads.

use bytes::BytesMut;

use super::STAMP_MAX;
use super::query::{LogQuery, Since};
use super::time::{LogTime, TimeCache};
use crate::clock::Timestamp;

/// Whether rendering goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// More lines are wanted.
    More,
    /// The output is complete (limitBytes or tailLines reached).
    Done,
}

/// A line longer than [`MAX_LINE`](super::MAX_LINE), being streamed in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LongLine {
    /// Its header parsed: its message goes through `Renderer`.
    Render {
        /// A `P` line: its newline is dropped.
        partial: bool,
    },
    /// Malformed: skipped up to its newline.
    Skip,
}

/// The kubelet's `ReadLogs` loop body and `logWriter.write`, over lines in memory.
#[derive(Debug)]
pub(super) struct Renderer {
    /// Lines older than this (Unix nanoseconds) are skipped.
    since: Option<i128>,
    timestamps: bool,
    /// limitBytes left (`u64::MAX` when unlimited).
    remaining: u64,
    /// tailLines without follow: lines still to render.
    pub(super) lines_left: Option<u64>,
    /// The kubelet's `isNewLine`: the last message ended a line, so the next gets a prefix.
    at_line_start: bool,
    /// Whether the current line passes `since`.
    emitting: bool,
    /// The last byte of the current line's message.
    last_byte: Option<u8>,
    pub(super) times: TimeCache,
    pub(super) malformed: u64,
}

/// The parsed start of a CRI log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    time: LogTime,
    partial: bool,
    /// Where the message starts in the line.
    pub(super) body: usize,
}

impl Renderer {
    pub(super) fn new(query: &LogQuery, now: Timestamp) -> Renderer {
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
    pub(super) fn line(&mut self, line: &[u8], out: &mut BytesMut) -> Flow {
        match self.head(line) {
            Some(head) => self.render(&head, line, out),
            None => Flow::More,
        }
    }

    /// Renders a file line whose head is parsed.
    #[inline(always)]
    pub(super) fn render(&mut self, head: &Head, line: &[u8], out: &mut BytesMut) -> Flow {
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
    pub(super) fn begin_long(&mut self, bytes: &[u8], out: &mut BytesMut) -> (LongLine, Flow) {
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
    pub(super) fn continue_long(
        &mut self,
        long: LongLine,
        bytes: &[u8],
        out: &mut BytesMut,
    ) -> Flow {
        match long {
            LongLine::Render { .. } => self.body(bytes, out),
            LongLine::Skip => Flow::More,
        }
    }

    /// The end of a long line, up to and including its newline.
    pub(super) fn finish_long(&mut self, long: LongLine, bytes: &[u8], out: &mut BytesMut) -> Flow {
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
    pub(super) fn end(&mut self) -> Flow {
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
pub(super) fn parse_head(line: &[u8], times: &mut TimeCache) -> Option<Head> {
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
