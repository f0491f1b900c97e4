//! WATCH for the fake API server: one open watch's filter and its event stream, written as
//! the newline-delimited JSON `WatchEvent`s a real API server streams.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use kube::core::ApiResource;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{fields_of, labels_of, partial, Change, ChangeKind, FakeBody, Requirement};

/// One open watch: what it selects and where its events go.
#[derive(Debug)]
pub(super) struct Watcher {
    key: (String, String),
    namespace: Option<String>,
    pub(super) selector: Vec<Requirement>,
    pub(super) fields: Vec<Requirement>,
    metadata_only: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// The receiving end of a watch, turned into the response body by [`response`].
#[derive(Debug)]
pub(super) struct Events {
    rx: mpsc::UnboundedReceiver<Bytes>,
    timeout: Option<Duration>,
}

impl Watcher {
    /// A watch of the resource `key` in `namespace` (all when `None`).
    pub(super) fn open(
        key: (String, String),
        namespace: Option<String>,
        selector: Vec<Requirement>,
        fields: Vec<Requirement>,
        metadata_only: bool,
        timeout: Option<Duration>,
    ) -> (Watcher, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Watcher {
                key,
                namespace,
                selector,
                fields,
                metadata_only,
                tx,
            },
            Events { rx, timeout },
        )
    }

    /// Whether the client went away.
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn selects(&self, labels: &super::Labels, object: &Value) -> bool {
        let fields = fields_of(object);
        self.selector.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches(&fields))
    }

    /// Sends `change` if this watch sees it; `false` once the client is gone.
    pub(super) fn send(&self, change: &Change) -> bool {
        if self.is_closed() {
            return false;
        }
        if change.key != self.key
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
        {
            return true;
        }
        let now = self.selects(&labels_of(&change.object), &change.object);
        let before = change
            .old_labels
            .as_ref()
            .map(|labels| self.selects(labels, &change.object));
        // An object entering or leaving the selection is added or deleted for this watch.
        let kind = match (change.kind, before, now) {
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Modified, Some(true) | None, true) => "MODIFIED",
            (ChangeKind::Modified, Some(false), true) => "ADDED",
            (ChangeKind::Modified, Some(true), false) => "DELETED",
            (ChangeKind::Deleted, _, true) => "DELETED",
            _ => return true,
        };
        self.send_event(kind, &change.object)
    }

    /// Sends one event of `kind` about `object`.
    pub(super) fn send_event(&self, kind: &str, object: &Value) -> bool {
        let object = if self.metadata_only {
            partial(object)
        } else {
            object.clone()
        };
        self.send_line(&json!({"type": kind, "object": object}))
    }

    /// Sends a `BOOKMARK` at `resource_version`; `initial_end` marks the end of the initial
    /// events of a streaming list.
    pub(super) fn send_bookmark(
        &self,
        resource: &ApiResource,
        resource_version: u64,
        initial_end: bool,
    ) -> bool {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (api_version, kind) = if self.metadata_only {
            (
                "meta.k8s.io/v1".to_owned(),
                "PartialObjectMetadata".to_owned(),
            )
        } else {
            (resource.api_version.clone(), resource.kind.clone())
        };
        self.send_line(&json!({
            "type": "BOOKMARK",
            "object": {"apiVersion": api_version, "kind": kind, "metadata": metadata},
        }))
    }

    /// Sends the `410 Expired` error a watch from a compacted resource version gets.
    pub(super) fn send_expired(&self, since: u64, oldest: u64) -> bool {
        self.send_line(&json!({
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": format!("too old resource version: {since} ({oldest})"),
                "reason": "Expired",
                "code": StatusCode::GONE.as_u16(),
            },
        }))
    }

    fn send_line(&self, event: &Value) -> bool {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).is_ok()
    }
}

/// The streaming response of a watch: events until the client goes or `timeoutSeconds`
/// passes.
pub(super) fn response(events: Events) -> Response<FakeBody> {
    let Events { rx, timeout } = events;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        let line = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, rx.recv()).await.ok()??,
            None => rx.recv().await?,
        };
        Some((Ok::<_, std::convert::Infallible>(Frame::data(line)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
