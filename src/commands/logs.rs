//! `podvisor logs POD [-c CONTAINER] [-f] [--previous]`: reads the CRI log files the runtime
//! writes under the pod log directory, without the `<time> <stream> <tag>` prefixes. It
//! streams, a line at a time: a log of any size costs a line's memory.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::api::client::{ClientError, get_json};
use crate::api::views::{ContainerView, PodDetail};
use crate::cli::LogsArgs;
use crate::logfiles;

/// Decodes CRI log text: each line `<time> <stream> <P|F> <message>`; partial (`P`) lines
/// join the next. Returns the messages and the unfinished tail of a partial line.
pub fn decode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for line in raw.lines() {
        let mut parts = line.splitn(4, ' ');
        let (_time, _stream, tag, msg) = (parts.next(), parts.next(), parts.next(), parts.next());
        match (tag, msg) {
            (Some("P"), Some(m)) => out.push_str(m),
            (Some(_), Some(m)) => {
                out.push_str(m);
                out.push('\n');
            }
            (Some(_), None) => out.push('\n'), // an empty line: "<time> stdout F"
            _ => {}
        }
    }
    out
}

/// Copies every complete line `reader` has now to `out`, decoded; returns how many. The
/// bytes of an unfinished last line stay in `pending`.
fn copy_lines(
    reader: &mut impl BufRead,
    pending: &mut Vec<u8>,
    out: &mut dyn Write,
) -> std::io::Result<usize> {
    let mut lines = 0;
    loop {
        let read = reader.read_until(b'\n', pending)?;
        if read == 0 || pending.last() != Some(&b'\n') {
            return Ok(lines);
        }
        out.write_all(decode(&String::from_utf8_lossy(pending)).as_bytes())?;
        pending.clear();
        lines += 1;
    }
}

fn identity_of(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

fn pick<'a>(
    detail: &'a PodDetail,
    container: Option<&str>,
) -> Result<&'a ContainerView, ClientError> {
    let containers = &detail.summary.containers;
    let found = match container {
        Some(name) => containers.iter().find(|c| c.name == name),
        None => containers
            .iter()
            .find(|c| c.kind == "app")
            .or(containers.first()),
    };
    found.ok_or_else(|| ClientError::Status {
        status: http::StatusCode::NOT_FOUND,
        message: format!(
            "pod {} has no container {:?}; it has {}",
            detail.summary.name,
            container.unwrap_or(""),
            containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Runs `podvisor logs`, writing to `out`.
pub async fn run(args: &LogsArgs, out: &mut dyn Write) -> Result<(), ClientError> {
    let socket = super::socket(&args.client);
    let path = format!("/pods/{}", args.pod.replace('/', "%2F"));
    let detail: PodDetail = get_json(&socket, &path).await?;
    let c = pick(&detail, args.container.as_deref())?;
    let file = if args.previous {
        c.previous_log_path.clone()
    } else {
        c.log_path.clone()
    };
    let Some(file) = file else {
        let which = if args.previous {
            "a previous instance"
        } else {
            "started yet"
        };
        return Err(ClientError::Status {
            status: http::StatusCode::NOT_FOUND,
            message: format!("container {} has no log: not {which}", c.name),
        });
    };
    let io = |e: std::io::Error| ClientError::Http(format!("{file}: {e}"));
    let live = std::path::Path::new(&file);
    // The rotated files first (oldest first, compressed ones gunzipped), then the live one.
    let older = logfiles::files::rotated(live).map_err(io)?;
    let mut pending = Vec::new();
    copy_lines(
        &mut BufReader::new(logfiles::files::chain(&older).map_err(io)?),
        &mut pending,
        out,
    )
    .map_err(io)?;
    pending.clear();
    let opened = std::fs::File::open(live).map_err(io)?;
    let mut identity = identity_of(&opened.metadata().map_err(io)?);
    let mut reader = BufReader::new(opened);
    // A line being written (no newline yet) waits in `pending` for the rest.
    copy_lines(&mut reader, &mut pending, out).map_err(io)?;
    if !args.follow || args.previous {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if copy_lines(&mut reader, &mut pending, out).map_err(io)? > 0 {
            out.flush().map_err(io)?;
            continue;
        }
        // rotated: the old file is read to its end; go on with the fresh one from its start
        if let Ok(meta) = std::fs::metadata(live)
            && identity_of(&meta) != identity
            && let Ok(fresh) = std::fs::File::open(live)
        {
            identity = identity_of(&meta);
            reader = BufReader::new(fresh);
            pending.clear();
            continue;
        }
        // nothing new: stop once this instance is no longer the running one
        let now: PodDetail = get_json(&socket, &path).await?;
        let still = now.summary.containers.iter().any(|x| {
            x.name == c.name && x.log_path.as_deref() == Some(file.as_str()) && x.state == "running"
        });
        if !still {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_lose_their_prefixes_and_partial_lines_join() {
        let raw = "2024-01-01T00:00:00.1Z stdout F hello\n2024-01-01T00:00:00.2Z stderr P par\n2024-01-01T00:00:00.3Z stderr F tial\n2024-01-01T00:00:00.4Z stdout F\n";
        assert_eq!(decode(raw), "hello\npartial\n\n");
    }

    #[test]
    fn lines_are_copied_as_they_complete_issue_11() {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let mut first: &[u8] = b"t stdout F one\nt stdout F tw";
        assert_eq!(
            copy_lines(&mut first, &mut pending, &mut out).expect("copy"),
            1
        );
        assert_eq!(out, b"one\n");
        let mut rest: &[u8] = b"o\n";
        assert_eq!(
            copy_lines(&mut rest, &mut pending, &mut out).expect("copy"),
            1
        );
        assert_eq!(out, b"one\ntwo\n");
    }
}
