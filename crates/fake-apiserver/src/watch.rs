//! Watch: a `GET` of a collection with `?watch=true`, answered as the API server's watch cache
//! answers it. The response is a 200 with a chunked body of newline-delimited watch events,
//! `{"type":"ADDED","object":{...}}`, one per chunk, replayed from the store's [`History`]:
//!
//! * `resourceVersion` unset or `0`: an `ADDED` event for every matching object as stored,
//!   then every later change; otherwise the changes after that revision, in order.
//! * A revision older than the history window: one `ERROR` event carrying the `410 Expired`
//!   `Status`, then the end of the stream. A revision the store has not reached is waited
//!   for up to 3 s, then answered with an `ERROR` event carrying a `504 Timeout` `Status`.
//! * Selectors apply to both sides of a change: an object that starts matching is `ADDED`,
//!   one that stops matching is `DELETED` (its last matching state at the event's revision);
//!   a removed object is `DELETED` with its last state at the removal's revision.
//! * `timeoutSeconds` ends the stream cleanly; without it, after 30 to 60 minutes. With
//!   `allowWatchBookmarks`, a `BOOKMARK` carries the current revision every bookmark interval
//!   and 2 s before the timeout, as the cacher sends them.
//! * Under [`Mode::Hang`] a live stream goes silent; under [`Mode::Fail`] it ends, so the
//!   client's next watch meets the failure.
//!
//! [`History`]: super::history::History

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::watch::Receiver;
use tokio::time::Instant;

use super::Mode;
use super::history::Entry;
use super::meta::meta_mut;
use super::resource::{Resource, Route};
use super::selector::Selector;
use super::shared::{Body, Shared};
use super::status::ApiError;
use super::store::Store;
use podvisor::mirror::watch_truthy;

/// How long a watch from a revision the store has not reached waits for it, as the watch
/// cache's `waitUntilFreshAndBlock` does.
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// The API server's `--min-request-timeout` default: a watch without `timeoutSeconds` lasts
/// between this and twice this.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// How often a watch that allows bookmarks gets one, unless a test sets another interval
/// (the cacher's bookmark frequency).
pub(super) const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// How long before its timeout a watch gets its last bookmark.
const BOOKMARK_BEFORE_TIMEOUT: Duration = Duration::from_secs(2);

/// One watch request, from its parameters to the end of its stream.
#[derive(Debug)]
pub(super) struct Watch {
    resource: Resource,
    /// Set for a namespaced URL.
    namespace: Option<String>,
    selector: Selector,
    /// Every change up to this revision has been queued or filtered out.
    position: u64,
    /// Encoded events waiting to be sent, oldest first.
    ready: VecDeque<Bytes>,
    /// The stream ends once `ready` is drained (an `ERROR` was queued).
    last: bool,
    /// A revision the store has not reached yet, which the watch starts from.
    awaited: Option<u64>,
    deadline: Instant,
    /// `Some` when bookmarks are allowed: how often they are sent.
    bookmark_interval: Option<Duration>,
    next_bookmark: Option<Instant>,
}

/// Go's `strconv` error for a number that does not parse, e.g.
/// `strconv.ParseUint: parsing "x": invalid syntax`.
fn strconv_error(function: &str, s: &str) -> String {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let why = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        "value out of range"
    } else {
        "invalid syntax"
    };
    format!("strconv.{function}: parsing {s:?}: {why}")
}

/// The revision a resourceVersion names.
fn parse_revision(rv: &str) -> Result<u64, ApiError> {
    rv.parse().map_err(|_| {
        // The storage layer's InvalidError, which reaches the client as a plain 500.
        ApiError::unknown_internal(&format!(
            "resourceVersion: Invalid value: {rv:?}: {}",
            strconv_error("ParseUint", rv)
        ))
    })
}

/// How long the watch lasts: `timeoutSeconds`, or a random 30 to 60 minutes when it is absent
/// or 0. A negative timeout ends the watch at once.
fn timeout(param: Option<&str>) -> Result<Duration, ApiError> {
    let seconds: i64 = match param {
        None => 0,
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(strconv_error("ParseInt", s)))?,
    };
    Ok(match u64::try_from(seconds) {
        Ok(0) => MIN_REQUEST_TIMEOUT.mul_f64(1.0 + rand::random::<f64>()),
        Ok(s) => Duration::from_secs(s),
        Err(_) => Duration::ZERO,
    })
}

/// The next bookmark after `now`: one interval on, or 2 s before the deadline if sooner;
/// none when that is not after `now`.
fn next_bookmark(now: Instant, interval: Duration, deadline: Instant) -> Option<Instant> {
    let before_timeout = deadline.checked_sub(BOOKMARK_BEFORE_TIMEOUT);
    let at = match (now.checked_add(interval), before_timeout) {
        (Some(periodic), Some(before)) => periodic.min(before),
        (periodic, before) => periodic.or(before)?,
    };
    (at > now).then_some(at)
}

/// One line of the stream: `{"type":"ADDED","object":{...}}` and a newline.
fn encode(kind: &str, object: &Value) -> Bytes {
    let object = serde_json::to_string(object).unwrap_or_default();
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n"))
}

impl Watch {
    /// Reads the watch parameters and takes the starting point, under the state lock so that
    /// no write falls between the initial state and the first change sent.
    ///
    /// # Errors
    /// What the API server answers before the stream starts: 400 for a bad selector or
    /// timeout, for `sendInitialEvents` (not supported here), 500 for a malformed
    /// resourceVersion.
    pub(super) fn start<'p>(
        store: &Store,
        route: &Route,
        param: impl Fn(&str) -> Option<&'p str>,
        bookmark_interval: Duration,
    ) -> Result<Watch, ApiError> {
        if param("sendInitialEvents").is_some() || param("resourceVersionMatch").is_some() {
            return Err(ApiError::bad_request(
                "the fake API server does not support sendInitialEvents or resourceVersionMatch on watch",
            ));
        }
        let resource = route.resource;
        let selector = Selector::parse(resource, param("fieldSelector"), param("labelSelector"))?;
        let from = match param("resourceVersion").unwrap_or_default() {
            "" | "0" => None,
            rv => Some(parse_revision(rv)?),
        };
        let now = Instant::now();
        let lasting = timeout(param("timeoutSeconds"))?;
        // Beyond what the clock can count: a year is as good as forever for a test.
        let deadline = now
            .checked_add(lasting)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let bookmark_interval = param("allowWatchBookmarks")
            .is_some_and(watch_truthy)
            .then_some(bookmark_interval);
        let mut watch = Watch {
            resource,
            namespace: route.namespace.clone(),
            selector,
            position: store.current(),
            ready: VecDeque::new(),
            last: false,
            awaited: None,
            deadline,
            bookmark_interval,
            next_bookmark: bookmark_interval.and_then(|i| next_bookmark(now, i, deadline)),
        };
        match from {
            None => {
                let objects = store.select(resource, watch.namespace.as_deref(), &watch.selector);
                watch
                    .ready
                    .extend(objects.iter().map(|obj| encode("ADDED", obj)));
            }
            Some(rv) if rv > store.current() => {
                watch.position = rv;
                watch.awaited = Some(rv);
            }
            Some(rv) => {
                watch.position = rv;
                watch.catch_up(store);
            }
        }
        Ok(watch)
    }

    /// Before the response starts: waits up to 3 s for a resourceVersion the store has not
    /// reached, then gives up with an `ERROR` event, as the watch cache does.
    pub(super) async fn wait_until_fresh(&mut self, shared: &Shared) {
        let Some(wanted) = self.awaited.take() else {
            return;
        };
        let give_up = Instant::now() + FRESHNESS_WAIT;
        let mut changes = shared.subscribe();
        loop {
            changes.borrow_and_update();
            let current = shared.lock().store.current();
            if current >= wanted {
                return;
            }
            let changed = tokio::time::timeout_at(give_up, changes.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                self.fail(&ApiError::too_large_resource_version(wanted, current));
                return;
            }
        }
    }

    /// The response body: the events as they come, until the timeout, an error event, a
    /// failing mode, or the connection's end (the fake stopped, or the client left).
    pub(super) fn into_body(self, shared: Arc<Shared>) -> Body {
        let changes = shared.subscribe();
        let events = futures::stream::unfold(
            (self, shared, changes),
            |(mut watch, shared, mut changes)| async move {
                let chunk = watch.next_chunk(&shared, &mut changes).await?;
                Some((
                    Ok::<_, Infallible>(Frame::data(chunk)),
                    (watch, shared, changes),
                ))
            },
        );
        StreamBody::new(events).boxed_unsync()
    }

    /// Queues an `ERROR` event with the status and ends the stream after it.
    fn fail(&mut self, err: &ApiError) {
        let status = serde_json::to_value(err.body()).unwrap_or(Value::Null);
        self.ready.push_back(encode("ERROR", &status));
        self.last = true;
    }

    /// Queues the events for the changes after `position`, up to the store's revision.
    fn catch_up(&mut self, store: &Store) {
        let events: Vec<Bytes> = match store.history().since(self.position) {
            Ok(entries) => entries.filter_map(|e| self.event(e)).collect(),
            Err(expired) => {
                self.fail(&expired);
                return;
            }
        };
        self.ready.extend(events);
        self.position = store.current();
    }

    /// The event a change is to this watch, if any.
    fn event(&self, entry: &Entry) -> Option<Bytes> {
        if entry.resource != self.resource
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != entry.namespace)
        {
            return None;
        }
        let passing = |obj: &Option<Value>| obj.clone().filter(|o| self.selector.matches(o));
        match (passing(&entry.old), passing(&entry.new)) {
            (Some(_), Some(new)) => Some(encode("MODIFIED", &new)),
            (None, Some(new)) => Some(encode("ADDED", &new)),
            (Some(mut old), None) => {
                meta_mut(&mut old)
                    .insert("resourceVersion".into(), json!(entry.revision.to_string()));
                Some(encode("DELETED", &old))
            }
            (None, None) => None,
        }
    }

    /// A `BOOKMARK` event at the current position, if one is due.
    fn bookmark(&mut self, now: Instant) -> Option<Bytes> {
        let interval = self.bookmark_interval?;
        if self.next_bookmark.is_none_or(|at| now < at) {
            return None;
        }
        self.next_bookmark = next_bookmark(now, interval, self.deadline);
        let object = json!({
            "kind": self.resource.kind(),
            "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": self.position.to_string()},
        });
        Some(encode("BOOKMARK", &object))
    }

    /// The next chunk to send; `None` ends the stream.
    async fn next_chunk(&mut self, shared: &Shared, changes: &mut Receiver<()>) -> Option<Bytes> {
        loop {
            changes.borrow_and_update();
            let wake = {
                let state = shared.lock();
                match state.mode {
                    // A hung server sends nothing, not even the end of the stream.
                    Mode::Hang => None,
                    Mode::Fail(_) => return None,
                    Mode::Normal => {
                        if let Some(chunk) = self.ready.pop_front() {
                            return Some(chunk);
                        }
                        let now = Instant::now();
                        if self.last || now >= self.deadline {
                            return None;
                        }
                        self.catch_up(&state.store);
                        if let Some(chunk) = self.ready.pop_front().or_else(|| self.bookmark(now)) {
                            return Some(chunk);
                        }
                        Some(
                            self.next_bookmark
                                .map_or(self.deadline, |at| at.min(self.deadline)),
                        )
                    }
                }
            };
            let changed = match wake {
                None => changes.changed().await,
                Some(at) => tokio::select! {
                    changed = changes.changed() => changed,
                    () = tokio::time::sleep_until(at) => Ok(()),
                },
            };
            if changed.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_come_every_interval_and_last_two_seconds_before_the_timeout() {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let far = now + Duration::from_secs(3600);
        assert_eq!(next_bookmark(now, minute, far), Some(now + minute));
        let soon = now + Duration::from_secs(10);
        assert_eq!(
            next_bookmark(now, minute, soon),
            Some(now + Duration::from_secs(8))
        );
        let too_soon = now + Duration::from_secs(1);
        assert_eq!(next_bookmark(now, minute, too_soon), None);
        assert_eq!(next_bookmark(now, Duration::ZERO, far), None);
    }

    #[test]
    fn timeout_defaults_to_thirty_to_sixty_minutes() {
        for param in [None, Some("0")] {
            let t = timeout(param).unwrap();
            assert!((1800..=3600).contains(&t.as_secs()), "{t:?}");
        }
        assert_eq!(timeout(Some("5")).unwrap(), Duration::from_secs(5));
        assert_eq!(timeout(Some("-1")).unwrap(), Duration::ZERO);
        let err = timeout(Some("x")).unwrap_err();
        assert_eq!(err.code(), http::StatusCode::BAD_REQUEST);
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(
            body["message"],
            r#"strconv.ParseInt: parsing "x": invalid syntax"#
        );
        let huge = timeout(Some("9223372036854775807")).unwrap();
        assert_eq!(huge.as_secs(), 9_223_372_036_854_775_807);
    }

    #[test]
    fn malformed_resource_version_is_the_storage_layers_plain_500() {
        let err = parse_revision("abc").unwrap_err();
        assert_eq!(err.code(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(
            body["message"],
            r#"resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax"#
        );
        assert_eq!(parse_revision("42").unwrap(), 42);
    }
}
