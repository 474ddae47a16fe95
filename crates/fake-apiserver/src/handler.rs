//! The HTTP edge: one request in, the store consulted under the lock, one response out (or,
//! for a watch, a stream that goes on reading the store). Failure modes, scripted errors,
//! authentication and the request log are applied here; the state they read is `shared`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{Value, json};

use super::csr;
use super::patch::{self, ACCEPTED, PatchKind};
use super::resource::{Resource, Route};
use super::review::{self, Endpoint};
use super::selector::Selector;
use super::shared::{Body, Shared, State};
use super::status::{self, ApiError};
use super::store::{Caller, Change, DeleteOptions, Deleted};
use super::watch::{self, Watch};
use super::{Mode, RequestRecord};
use podvisor::mirror::watch_truthy;

/// A response body before encoding.
enum Reply {
    Json(StatusCode, Value),
    Text(StatusCode, &'static str),
    Watch(Box<Watch>),
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Reply {
        Reply::Json(err.code(), to_json(err.body()))
    }
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What `dispatch` needs from the request.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    params: Vec<(String, String)>,
    content_type: &'a str,
    body: &'a [u8],
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.extend(u8::try_from(high * 16 + low).ok());
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

fn delete_options(call: &Call<'_>) -> Result<DeleteOptions, ApiError> {
    if !call.body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(call.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")));
    }
    let grace_period_seconds = match call.param("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}")))?,
        ),
        None => None,
    };
    Ok(DeleteOptions {
        grace_period_seconds,
        preconditions: None,
        propagation_policy: call.param("propagationPolicy").map(str::to_owned),
    })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "emulationMajor": "1",
        "emulationMinor": "34",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": "v1.34.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// Answers a TokenReview or SubjectAccessReview: 201 with the review and its status. The
/// policy deciding a SubjectAccessReview runs with the state unlocked.
fn serve_review(shared: &Shared, endpoint: Endpoint, call: &Call<'_>) -> Reply {
    if *call.method != Method::POST {
        return ApiError::generic(StatusCode::METHOD_NOT_ALLOWED).into();
    }
    let answered = parse_body(call.body).and_then(|body| match endpoint {
        Endpoint::TokenReviews => review::token_review(&mut shared.lock().reviews, body),
        Endpoint::SubjectAccessReviews => {
            let pending = review::receive_access_review(&mut shared.lock().reviews, body)?;
            pending.decide()
        }
    });
    match answered {
        Ok(review) => Reply::Json(StatusCode::CREATED, review),
        Err(err) => err.into(),
    }
}

/// Serves one call against the state.
fn dispatch(state: &mut State, call: &Call<'_>) -> Reply {
    match (call.method, call.path) {
        (&Method::GET, "/version") => return Reply::Json(StatusCode::OK, version()),
        (&Method::GET, "/healthz" | "/livez" | "/readyz") => {
            return Reply::Text(StatusCode::OK, "ok");
        }
        _ => {}
    }
    let Some(route) = Route::parse(call.path) else {
        return ApiError::generic(StatusCode::NOT_FOUND).into();
    };
    match serve_route(state, call, &route) {
        Ok(reply) => reply,
        Err(err) => err.into(),
    }
}

fn serve_route(state: &mut State, call: &Call<'_>, route: &Route) -> Result<Reply, ApiError> {
    let dry_run_body = serde_json::from_slice::<Value>(call.body)
        .ok()
        .is_some_and(|b| b.get("dryRun").is_some_and(|d| !d.is_null()));
    if call.param("dryRun").is_some() || dry_run_body {
        // Better refused than performed for real.
        return Err(ApiError::bad_request(
            "the fake API server does not support dryRun",
        ));
    }
    let restriction = state.restriction();
    let caller = Caller::Client(restriction.as_ref());
    let bookmark_interval = state.bookmark_interval.unwrap_or(watch::BOOKMARK_INTERVAL);
    let resource = route.resource;
    let ns = route.namespace.as_deref().unwrap_or_default();
    let store = &mut state.store;
    let method_not_allowed = || Err(ApiError::generic(StatusCode::METHOD_NOT_ALLOWED));
    let Some(name) = route.name.as_deref() else {
        let selector = || {
            Selector::parse(
                resource,
                call.param("fieldSelector"),
                call.param("labelSelector"),
            )
        };
        return match *call.method {
            Method::GET if call.param("watch").is_some_and(watch_truthy) => {
                let param = |name: &str| call.param(name);
                let watch = Watch::start(store, route, param, bookmark_interval)?;
                Ok(Reply::Watch(Box::new(watch)))
            }
            Method::GET => Ok(Reply::Json(
                StatusCode::OK,
                store.list(resource, route.namespace.as_deref(), &selector()?),
            )),
            Method::POST if resource.namespaced() && route.namespace.is_none() => {
                method_not_allowed()
            }
            Method::POST => {
                let created = store.create(resource, ns, parse_body(call.body)?, caller)?;
                if resource == Resource::Csrs {
                    csr::on_create(store, &state.csr_signer, &created);
                }
                Ok(Reply::Json(StatusCode::CREATED, created))
            }
            Method::DELETE => {
                let options = delete_options(call)?;
                let list = store.delete_collection(
                    resource,
                    route.namespace.as_deref(),
                    &selector()?,
                    &options,
                    caller,
                )?;
                Ok(Reply::Json(StatusCode::OK, list))
            }
            _ => method_not_allowed(),
        };
    };
    match *call.method {
        Method::GET => Ok(Reply::Json(StatusCode::OK, store.get(resource, ns, name)?)),
        Method::PUT => {
            let change = Change::Replace(parse_body(call.body)?);
            let (code, obj) = store.update(resource, ns, name, route.status, change, caller)?;
            Ok(Reply::Json(code, obj))
        }
        Method::PATCH => {
            let Some(kind) = PatchKind::from_content_type(call.content_type) else {
                return Err(ApiError::unsupported_media_type(&ACCEPTED));
            };
            if kind == PatchKind::Apply && call.param("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::invalid_kind(
                    "PatchOptions.meta.k8s.io",
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    &[status::FieldError::Required {
                        field: "fieldManager".into(),
                        detail: "is required for apply patch".into(),
                    }],
                ));
            }
            let change = Change::Patch(kind, patch::parse_body(kind, call.body)?);
            let (code, obj) = store.update(resource, ns, name, route.status, change, caller)?;
            Ok(Reply::Json(code, obj))
        }
        Method::DELETE if !route.status => {
            let options = delete_options(call)?;
            Ok(match store.delete(resource, ns, name, &options, caller)? {
                Deleted::Gone(obj) if !resource.returns_deleted_object() => {
                    let uid = obj
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Reply::Json(
                        StatusCode::OK,
                        to_json(&status::delete_success(resource, name, uid)),
                    )
                }
                Deleted::Gone(obj) | Deleted::Pending(obj) => Reply::Json(StatusCode::OK, obj),
            })
        }
        _ => method_not_allowed(),
    }
}

fn respond(reply: Reply, shared: &Arc<Shared>) -> Response<Body> {
    let (code, content_type, body) = match reply {
        Reply::Json(code, value) => (
            code,
            "application/json",
            Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())).boxed_unsync(),
        ),
        Reply::Text(code, text) => (
            code,
            "text/plain; charset=utf-8",
            Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync(),
        ),
        Reply::Watch(watch) => (
            StatusCode::OK,
            "application/json",
            watch.into_body(Arc::clone(shared)),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = code;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// What happens before the request is served: logged, then maybe answered by the mode, a
/// scripted error, or an authentication failure.
enum Gate {
    Serve(usize),
    Hang,
    Answer(usize, ApiError),
}

fn gate(state: &mut State, record: RequestRecord, bearer: Option<&str>) -> Gate {
    let index = state.log.len();
    let (method, path) = (record.method.clone(), record.path.clone());
    state.log.push(record);
    match state.mode {
        Mode::Hang => return Gate::Hang,
        Mode::Fail(code) => return Gate::Answer(index, ApiError::generic(code)),
        Mode::Normal => {}
    }
    let scripted = state
        .injections
        .iter_mut()
        .find(|i| i.times > 0 && i.method == method && path.starts_with(&i.path_prefix));
    if let Some(injection) = scripted {
        injection.times -= 1;
        let code = injection.status;
        state.injections.retain(|i| i.times > 0);
        return Gate::Answer(index, ApiError::generic(code));
    }
    if let Some(token) = &state.token
        && bearer != Some(token.as_str())
    {
        return Gate::Answer(index, ApiError::unauthorized());
    }
    Gate::Serve(index)
}

/// Serves one HTTP request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let record = RequestRecord {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: query.clone(),
        content_type: content_type.clone(),
        status: None,
    };
    let gated = gate(&mut shared.lock(), record, bearer.as_deref());
    let index = match gated {
        Gate::Hang => std::future::pending().await,
        Gate::Answer(index, err) => {
            if let Some(record) = shared.lock().log.get_mut(index) {
                record.status = Some(err.code());
            }
            return Ok(respond(err.into(), &shared));
        }
        Gate::Serve(index) => index,
    };
    let mut reply = match body.collect().await {
        Ok(collected) => {
            let body = collected.to_bytes();
            let call = Call {
                method: &parts.method,
                path: parts.uri.path(),
                params: query_params(&query),
                content_type: content_type.as_deref().unwrap_or_default(),
                body: &body,
            };
            match Endpoint::from_path(call.path) {
                Some(endpoint) => serve_review(&shared, endpoint, &call),
                None => dispatch(&mut shared.lock(), &call),
            }
        }
        Err(e) => ApiError::bad_request(format!("error reading request body: {e}")).into(),
    };
    if let Reply::Watch(watch) = &mut reply {
        watch.wait_until_fresh(&shared).await;
    }
    let response = respond(reply, &shared);
    if let Some(record) = shared.lock().log.get_mut(index) {
        record.status = Some(response.status());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let params = query_params("fieldSelector=spec.nodeName%3Dn1&labelSelector=a+in+%28b%29&x");
        assert_eq!(
            params[0],
            ("fieldSelector".into(), "spec.nodeName=n1".into())
        );
        assert_eq!(params[1], ("labelSelector".into(), "a in (b)".into()));
        assert_eq!(params[2], ("x".into(), String::new()));
    }
}
