//! A minimal client of the status API over its unix socket, for the CLI.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::net::UnixStream;

/// Why a request to the daemon failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The socket cannot be reached: no daemon, or no permission.
    #[error("cannot reach podvisor at {}: {source} (is it running? are you root?)", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("talking to podvisor failed: {0}")]
    Http(String),
    /// The daemon answered with an error.
    #[error("podvisor answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Its message.
        message: String,
    },
    /// The answer is not what this CLI expects (a version mismatch).
    #[error("unexpected answer from podvisor: {0}")]
    Decode(String),
}

/// GETs `path` and returns the status and body.
pub async fn get_raw(socket: &Path, path: &str) -> Result<(StatusCode, Bytes), ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, "podvisor")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// GETs `path` and decodes a JSON answer; an error status becomes [`ClientError::Status`].
pub async fn get_json<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T, ClientError> {
    let (status, body) = get_raw(socket, path).await?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        return Err(ClientError::Status { status, message });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
}
