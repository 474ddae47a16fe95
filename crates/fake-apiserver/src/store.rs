//! The object store: what etcd plus the generic registry do with creates, updates, deletes
//! and lists. Objects are kept as JSON in their normalized (typed round-trip) form, and every
//! committed write is appended to the [`History`] that watches replay.

use std::collections::BTreeMap;

use http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::admission::{self, NodeIdentity, Operation, Write};
use super::history::{Entry, History};
use super::meta::{generated_name, meta_mut, new_uid, text, time_from_now};
use super::patch::{self, PatchKind};
use super::resource::Resource;
use super::selector::Selector;
use super::status::{ApiError, FieldError};
use super::strategy;

/// Who performs a write: an API client (admission applies) or the test itself.
#[derive(Clone, Copy, Debug)]
pub(super) enum Caller<'a> {
    /// Written through the fake's methods, as a cluster admin would: no NodeRestriction.
    Admin,
    /// An HTTP request; `Some` when NodeRestriction is on.
    Client(Option<&'a NodeIdentity>),
}

impl<'a> Caller<'a> {
    fn restriction(self) -> Option<&'a NodeIdentity> {
        match self {
            Caller::Admin => None,
            Caller::Client(r) => r,
        }
    }
}

/// A write to an existing object.
#[derive(Clone, Debug)]
pub(super) enum Change {
    /// PUT: the full new object.
    Replace(Value),
    /// PATCH: a parsed body of the given type.
    Patch(PatchKind, Value),
}

/// `metav1.DeleteOptions`, from the body or the query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteOptions {
    pub(super) grace_period_seconds: Option<i64>,
    pub(super) preconditions: Option<Preconditions>,
    pub(super) propagation_policy: Option<String>,
}

/// `metav1.Preconditions`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Preconditions {
    pub(super) uid: Option<String>,
    pub(super) resource_version: Option<String>,
}

/// What a DELETE did.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Deleted {
    /// Removed from storage; the object as last stored.
    Gone(Value),
    /// Marked with `deletionTimestamp` (graceful pod deletion or finalizers); still stored.
    Pending(Value),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    resource: Resource,
    namespace: String,
    name: String,
}

/// All stored objects, the revision counter behind `resourceVersion`, and the history of
/// writes. Every revision is one write: an entry of the history.
#[derive(Debug, Default)]
pub(super) struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    history: History,
}

fn key(resource: Resource, namespace: &str, name: &str) -> Key {
    Key {
        resource,
        namespace: if resource.namespaced() {
            namespace.to_owned()
        } else {
            String::new()
        },
        name: name.to_owned(),
    }
}

impl Store {
    /// Stores an object under the next revision, which becomes its `resourceVersion`, and
    /// records the write. Returns the object as stored.
    fn commit(&mut self, k: Key, mut obj: Value) -> Value {
        self.revision += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.revision.to_string()));
        let old = self.objects.insert(k.clone(), obj.clone());
        self.history.push(Entry {
            revision: self.revision,
            resource: k.resource,
            namespace: k.namespace,
            old,
            new: Some(obj.clone()),
        });
        obj
    }

    /// Removes an object at the next revision and records the removal. Returns the revision.
    fn remove(&mut self, k: &Key) -> u64 {
        self.revision += 1;
        let old = self.objects.remove(k);
        self.history.push(Entry {
            revision: self.revision,
            resource: k.resource,
            namespace: k.namespace.clone(),
            old,
            new: None,
        });
        self.revision
    }

    /// The latest `resourceVersion` handed out.
    pub(super) fn revision(&self) -> String {
        self.revision.to_string()
    }

    /// The latest revision, as a number.
    pub(super) fn current(&self) -> u64 {
        self.revision
    }

    /// The writes watches replay.
    pub(super) fn history(&self) -> &History {
        &self.history
    }

    /// The writes watches replay, to trim or compact.
    pub(super) fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// GET of one object.
    pub(super) fn get(&self, resource: Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&key(resource, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Every stored object of a resource, decoded.
    pub(super) fn all<K: DeserializeOwned>(&self, resource: Resource) -> Vec<K> {
        self.objects
            .iter()
            .filter(|(k, _)| k.resource == resource)
            .filter_map(|(_, v)| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    /// One stored object, decoded.
    pub(super) fn typed<K: DeserializeOwned>(
        &self,
        resource: Resource,
        ns: &str,
        name: &str,
    ) -> Option<K> {
        let v = self.objects.get(&key(resource, ns, name))?;
        serde_json::from_value(v.clone()).ok()
    }

    fn matching(&self, resource: Resource, ns: Option<&str>, selector: &Selector) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(k, v)| {
                k.resource == resource
                    && ns.is_none_or(|ns| k.namespace == ns)
                    && selector.matches(v)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn list_value(&self, resource: Resource, items: Vec<Value>) -> Value {
        let items: Vec<Value> = items
            .into_iter()
            .map(|mut v| {
                // The server writes list items without their type meta.
                if let Some(map) = v.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                v
            })
            .collect();
        json!({
            "kind": format!("{}List", resource.kind()),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.revision()},
            "items": items,
        })
    }

    /// The stored objects a selector matches, in key order, as stored (with type meta).
    pub(super) fn select(
        &self,
        resource: Resource,
        ns: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        self.matching(resource, ns, selector)
            .iter()
            .filter_map(|k| self.objects.get(k).cloned())
            .collect()
    }

    /// LIST, in key order, as `{Kind}List`.
    pub(super) fn list(&self, resource: Resource, ns: Option<&str>, selector: &Selector) -> Value {
        let items = self.select(resource, ns, selector);
        self.list_value(resource, items)
    }

    fn node_uid(&self, name: &str) -> Option<String> {
        self.objects
            .get(&key(Resource::Nodes, "", name))
            .map(|n| text(n, "/metadata/uid").to_owned())
    }

    /// POST: decode, default, admit, prepare, validate, then store with server metadata.
    pub(super) fn create(
        &mut self,
        resource: Resource,
        ns: &str,
        body: Value,
        caller: Caller<'_>,
    ) -> Result<Value, ApiError> {
        let mut obj = strategy::normalize(resource, body)?;
        {
            let meta = meta_mut(&mut obj);
            match meta.get("namespace").and_then(Value::as_str) {
                _ if !resource.namespaced() => {
                    meta.remove("namespace");
                }
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        }
        if resource == Resource::Pods {
            strategy::default_pod(&mut obj);
            admission::pod_create(&mut obj, caller.restriction(), |n| self.node_uid(n))?;
        } else if let Some(identity) = caller.restriction() {
            let name = text(&obj, "/metadata/name").to_owned();
            let write = Write {
                resource,
                op: Operation::Create,
                status: false,
                namespace: ns,
                name: &name,
                old: None,
                new: Some(&obj),
            };
            admission::node_write(write, identity)?;
        }
        strategy::prepare_for_create(resource, &mut obj);
        let preset_version = !text(&obj, "/metadata/resourceVersion").is_empty();
        {
            let meta = meta_mut(&mut obj);
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
                .map(str::to_owned);
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if let (Some(prefix), false) = (generate, has_name) {
                meta.insert("name".into(), json!(generated_name(&prefix)));
            }
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("creationTimestamp".into(), time_from_now(0));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if resource.tracks_generation() {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        strategy::validate(resource, &obj)?;
        if preset_version {
            return Err(ApiError::unknown_internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = text(&obj, "/metadata/name").to_owned();
        let k = key(resource, ns, &name);
        if self.objects.contains_key(&k) {
            return Err(ApiError::already_exists(resource, &name));
        }
        Ok(self.commit(k, obj))
    }

    /// PUT or PATCH, of the object or its `status`. Answers 201 when it created the object
    /// (apply patches, and PUT of events).
    pub(super) fn update(
        &mut self,
        resource: Resource,
        ns: &str,
        name: &str,
        status: bool,
        change: Change,
        caller: Caller<'_>,
    ) -> Result<(StatusCode, Value), ApiError> {
        let k = key(resource, ns, name);
        let Some(old) = self.objects.get(&k).cloned() else {
            let body = match change {
                Change::Replace(body) if resource.allow_create_on_update() && !status => body,
                Change::Patch(PatchKind::Apply, body) if !status => body,
                _ => return Err(ApiError::not_found(resource, name)),
            };
            let mut body = body;
            meta_mut(&mut body).insert("name".into(), json!(name));
            return Ok((
                StatusCode::CREATED,
                self.create(resource, ns, body, caller)?,
            ));
        };
        let given = match change {
            Change::Replace(body) => body,
            Change::Patch(kind, p) => patch::apply(kind, &old, &p)?,
        };
        let given_name = text(&given, "/metadata/name");
        if !given_name.is_empty() && given_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given_name}) does not match the name on the URL ({name})"
            )));
        }
        let given_ns = text(&given, "/metadata/namespace");
        if resource.namespaced() && !given_ns.is_empty() && given_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old_uid = text(&old, "/metadata/uid");
        let given_uid = text(&given, "/metadata/uid");
        if !given_uid.is_empty() && given_uid != old_uid {
            let why = format!(
                "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {given_uid}, UID in object meta: {old_uid}",
                resource.etcd_key(ns, name)
            );
            return Err(ApiError::conflict(resource, name, &why));
        }
        let given_rv = text(&given, "/metadata/resourceVersion").to_owned();
        let mut new = strategy::normalize(resource, given)?;
        if resource == Resource::Pods {
            strategy::default_pod(&mut new);
        }
        self.carry_over(resource, status, &old, &mut new);
        if let Some(identity) = caller.restriction() {
            let write = Write {
                resource,
                op: Operation::Update,
                status,
                namespace: ns,
                name,
                old: Some(&old),
                new: Some(&new),
            };
            admission::node_write(write, identity)?;
        }
        // Mutating admission runs before the storage layer compares resource versions.
        if !given_rv.is_empty() && given_rv != text(&old, "/metadata/resourceVersion") {
            return Err(ApiError::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        strategy::validate_update(resource, &old, &new)?;
        if new == old {
            return Ok((StatusCode::OK, old));
        }
        if resource.tracks_generation() && old.get("spec") != new.get("spec") {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if finalized(&new) {
            // The registry deletes instead of writing: watches see DELETED, not MODIFIED.
            let rv = self.remove(&k);
            meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
            return Ok((StatusCode::OK, new));
        }
        Ok((StatusCode::OK, self.commit(k, new)))
    }

    /// What an update may not change: system metadata always; status through the main
    /// resource, and everything but status (and pod labels and annotations) through `status`.
    fn carry_over(&self, resource: Resource, status: bool, old: &Value, new: &mut Value) {
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut keep: Vec<&str> = vec![
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ];
        if status {
            keep.push("ownerReferences");
            keep.push("finalizers");
            if resource != Resource::Pods {
                keep.push("labels");
                keep.push("annotations");
            }
        }
        let meta = meta_mut(new);
        for field in keep {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.to_owned(), v.clone()),
                None => meta.remove(field),
            };
        }
        if !resource.has_status() {
            return;
        }
        let Some(map) = new.as_object_mut() else {
            return;
        };
        let carried = if status { "spec" } else { "status" };
        match old.get(carried) {
            Some(v) => map.insert(carried.to_owned(), v.clone()),
            None => map.remove(carried),
        };
    }

    /// DELETE: preconditions, then graceful deletion for bound pods, `deletionTimestamp` for
    /// objects with finalizers, removal otherwise.
    pub(super) fn delete(
        &mut self,
        resource: Resource,
        ns: &str,
        name: &str,
        options: &DeleteOptions,
        caller: Caller<'_>,
    ) -> Result<Deleted, ApiError> {
        let k = key(resource, ns, name);
        let Some(old) = self.objects.get(&k).cloned() else {
            return Err(ApiError::not_found(resource, name));
        };
        if let Some(policy) = &options.propagation_policy
            && !["Foreground", "Background", "Orphan"].contains(&policy.as_str())
        {
            return Err(ApiError::invalid_kind(
                "DeleteOptions.meta.k8s.io",
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[FieldError::NotSupported {
                    field: "propagationPolicy".into(),
                    value: policy.clone(),
                    supported: &["Foreground", "Background", "Orphan"],
                }],
            ));
        }
        if let Some(identity) = caller.restriction() {
            let write = Write {
                resource,
                op: Operation::Delete,
                status: false,
                namespace: ns,
                name,
                old: Some(&old),
                new: None,
            };
            admission::node_write(write, identity)?;
        }
        let pre = options.preconditions.clone().unwrap_or_default();
        let old_uid = text(&old, "/metadata/uid");
        if let Some(uid) = pre.uid.filter(|u| u != old_uid) {
            let why = format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({old_uid}). The object might have been deleted and then recreated"
            );
            return Err(ApiError::delete_precondition_conflict(resource, name, &why));
        }
        let old_rv = text(&old, "/metadata/resourceVersion");
        if let Some(rv) = pre.resource_version.filter(|r| r != old_rv) {
            let why = format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({old_rv}). The object might have been modified"
            );
            return Err(ApiError::delete_precondition_conflict(resource, name, &why));
        }
        let grace = if resource == Resource::Pods {
            pod_grace_period(&old, options.grace_period_seconds)
        } else {
            0
        };
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let pending_grace = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if grace == 0 && !has_finalizers {
            self.remove(&k);
            return Ok(Deleted::Gone(old));
        }
        if pending_grace.is_some_and(|p| p <= grace) {
            // Already terminating at least this soon: nothing changes.
            return Ok(Deleted::Pending(old));
        }
        let mut new = old.clone();
        let meta = meta_mut(&mut new);
        meta.insert("deletionTimestamp".into(), time_from_now(grace));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if resource.tracks_generation() {
            let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            meta.insert("generation".into(), json!(generation + 1));
        }
        Ok(Deleted::Pending(self.commit(k, new)))
    }

    /// DELETE of a collection: every match, each as a single DELETE would.
    pub(super) fn delete_collection(
        &mut self,
        resource: Resource,
        ns: Option<&str>,
        selector: &Selector,
        options: &DeleteOptions,
        caller: Caller<'_>,
    ) -> Result<Value, ApiError> {
        let mut items = Vec::new();
        for k in self.matching(resource, ns, selector) {
            match self.delete(resource, &k.namespace, &k.name, options, caller)? {
                Deleted::Gone(v) | Deleted::Pending(v) => items.push(v),
            }
        }
        Ok(self.list_value(resource, items))
    }

    /// Stores an object as an admin would: created or replaced unconditionally, server
    /// metadata assigned, no NodeRestriction, and its `status` written as given.
    pub(super) fn upsert(&mut self, resource: Resource, mut obj: Value) -> Result<Value, ApiError> {
        let ns = match text(&obj, "/metadata/namespace") {
            "" if resource.namespaced() => "default".to_owned(),
            ns => ns.to_owned(),
        };
        let name = text(&obj, "/metadata/name").to_owned();
        let status = obj.get("status").cloned();
        meta_mut(&mut obj).remove("resourceVersion");
        let k = key(resource, &ns, &name);
        let mut stored = if self.objects.contains_key(&k) {
            self.update(
                resource,
                &ns,
                &name,
                false,
                Change::Replace(obj),
                Caller::Admin,
            )?
            .1
        } else {
            self.create(resource, &ns, obj, Caller::Admin)?
        };
        if let Some(status) =
            status.filter(|s| resource.has_status() && stored.get("status") != Some(s))
        {
            if let Some(map) = stored.as_object_mut() {
                map.insert("status".into(), status);
            }
            stored = self.commit(k, stored);
        }
        Ok(stored)
    }
}

/// `podStrategy.CheckGracefulDelete`: the grace period a pod DELETE gets.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let period = match requested {
        Some(p) if p < 0 => 1,
        Some(p) => p,
        None => pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    };
    let phase = text(pod, "/status/phase");
    if text(pod, "/spec/nodeName").is_empty() || phase == "Failed" || phase == "Succeeded" {
        0
    } else {
        period
    }
}

/// A terminating object whose last finalizer went away and that waits for no grace period.
fn finalized(obj: &Value) -> bool {
    let terminating = obj.pointer("/metadata/deletionTimestamp").is_some();
    let no_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let no_grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0;
    terminating && no_finalizers && no_grace
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str) -> Value {
        json!({"metadata": {"name": "l", "namespace": "ns"}, "spec": {"holderIdentity": holder}})
    }

    #[test]
    fn every_committed_write_is_one_history_entry_at_its_revision() {
        let mut store = Store::default();
        let created = store
            .create(Resource::Leases, "ns", lease("a"), Caller::Admin)
            .unwrap();
        let replace = |holder| Change::Replace(lease(holder));
        let (_, updated) = store
            .update(
                Resource::Leases,
                "ns",
                "l",
                false,
                replace("b"),
                Caller::Admin,
            )
            .unwrap();
        // A write that changes nothing is no revision and no event.
        store
            .update(
                Resource::Leases,
                "ns",
                "l",
                false,
                replace("b"),
                Caller::Admin,
            )
            .unwrap();
        store
            .delete(
                Resource::Leases,
                "ns",
                "l",
                &DeleteOptions::default(),
                Caller::Admin,
            )
            .unwrap();
        let entries: Vec<&Entry> = store.history().since(0).unwrap().collect();
        let revisions: Vec<u64> = entries.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [1, 2, 3]);
        assert_eq!(store.current(), 3);
        assert_eq!(
            (entries[0].old.as_ref(), entries[0].new.as_ref()),
            (None, Some(&created))
        );
        assert_eq!(
            (entries[1].old.as_ref(), entries[1].new.as_ref()),
            (Some(&created), Some(&updated))
        );
        assert_eq!(
            (entries[2].old.as_ref(), entries[2].new.as_ref()),
            (Some(&updated), None)
        );
        assert_eq!(entries[2].namespace, "ns");
    }
}
