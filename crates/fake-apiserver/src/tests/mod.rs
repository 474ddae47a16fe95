//! The fake driven by the real kube-rs client over HTTP: what a mirror-pod implementation
//! will see from a real API server. Shared fixtures here, tests by area below.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Container, Event, Node, ObjectReference, Pod, PodSpec, Volume, VolumeProjection,
};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::Status;
use kube::{Client, Error};
use serde_json::json;

use super::{FakeApiServer, Mode};

mod admission;
mod availability;
mod pods;
mod resources;
mod reviews;
mod watch;

const NS: &str = "kube-system";

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

/// A mirror pod as the kubelet builds it: mirror annotation, the Node as controller owner.
fn mirror_pod(name: &str, node_name: &str, node_uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([("component".into(), name.into())])),
            annotations: Some(BTreeMap::from([
                ("kubernetes.io/config.hash".into(), "abc".into()),
                ("kubernetes.io/config.mirror".into(), "abc".into()),
                ("kubernetes.io/config.source".into(), "file".into()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.into(),
                uid: node_uid.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node_name.into()),
            containers: vec![Container {
                name: "main".into(),
                image: Some("registry.k8s.io/etcd:3.5.9-0".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// A started fake, a client for it, and the uid of node `n1`, created through the API.
async fn cluster() -> (FakeApiServer, Client, String) {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    let created = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node("n1"))
        .await
        .unwrap();
    (fake, client, created.metadata.uid.unwrap())
}

fn pods(client: &Client) -> Api<Pod> {
    Api::namespaced(client.clone(), NS)
}

/// The `Status` of an API error; anything else fails the test.
fn api_error(result: Result<impl std::fmt::Debug, Error>) -> Box<Status> {
    match result {
        Err(Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn delete_now(uid: &str) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    }
}

async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<String, Error> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.as_bytes().to_vec())
        .unwrap();
    client.request_text(request).await
}
