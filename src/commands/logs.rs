//! `podvisor logs POD [-c CONTAINER] [-f] [--previous]`: reads the CRI log files the runtime
//! writes under the pod log directory, without the `<time> <stream> <tag>` prefixes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::api::client::{ClientError, get_json};
use crate::api::views::{ContainerView, PodDetail};
use crate::cli::LogsArgs;

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
    let mut f = std::fs::File::open(&file).map_err(io)?;
    let mut raw = String::new();
    f.read_to_string(&mut raw).map_err(io)?;
    out.write_all(decode(&raw).as_bytes()).map_err(io)?;
    if !args.follow || args.previous {
        return Ok(());
    }
    let mut pos = f.stream_position().map_err(io)?;
    let mut pending = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(pos);
        if len > pos {
            f.seek(SeekFrom::Start(pos)).map_err(io)?;
            let mut chunk = String::new();
            f.read_to_string(&mut chunk).map_err(io)?;
            pos = f.stream_position().map_err(io)?;
            pending.push_str(&chunk);
            // only complete lines; a line being written is kept for the next round
            if let Some(end) = pending.rfind('\n') {
                let complete: String = pending.drain(..=end).collect();
                out.write_all(decode(&complete).as_bytes()).map_err(io)?;
                out.flush().map_err(io)?;
            }
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
}
