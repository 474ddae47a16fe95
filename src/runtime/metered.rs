//! A tower layer over the CRI channel that times every unary call by method and counts
//! failures, for the `podvisor_cri_call_*` metrics. Errors are seen where gRPC puts them in a
//! failed call: a transport error, or a `grpc-status` other than 0 in the response headers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;

use crate::metrics::Metrics;

/// The CRI channel, timed.
#[derive(Clone)]
pub struct Metered {
    inner: Channel,
    metrics: Option<Arc<Metrics>>,
}

impl Metered {
    /// Wraps `inner`; without metrics it only forwards.
    pub fn new(inner: Channel, metrics: Option<Arc<Metrics>>) -> Metered {
        Metered { inner, metrics }
    }

    /// The channel underneath, for streaming calls that are not timed.
    pub fn channel(&self) -> &Channel {
        &self.inner
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, tonic::transport::Error>> + Send>>;

impl Service<http::Request<Body>> for Metered {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            if let Some(m) = metrics {
                let ok = match &result {
                    Ok(resp) => resp
                        .headers()
                        .get("grpc-status")
                        .is_none_or(|s| s.as_bytes() == b"0"),
                    Err(_) => false,
                };
                m.cri_call(&method, start.elapsed(), ok);
            }
            result
        })
    }
}
