//! A minimal in-memory API server that serves what kube's `watcher` needs — LIST and a
//! streaming WATCH from a resource version — for any namespaced kind, so the signal watchers
//! run their real request code. (The controllers' fake API does not serve WATCH.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::client::Body;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

#[derive(Default)]
struct State {
    resource_version: u64,
    /// plural → (namespace, name) → object.
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    /// Every change: (resource version, plural, namespace, watch event line).
    log: Vec<(u64, String, String, Bytes)>,
    /// Open watches: plural, namespace filter, sender.
    watches: Vec<(String, Option<String>, mpsc::UnboundedSender<Bytes>)>,
    /// Number of WATCH requests received.
    watch_requests: usize,
}

/// The fake server; clones share state.
#[derive(Clone, Default)]
pub struct FakeWatchApi {
    state: Arc<Mutex<State>>,
}

impl FakeWatchApi {
    pub fn client(&self) -> Client {
        Client::new(self.clone(), "default")
    }

    /// Creates or replaces `object` (an ADDED or MODIFIED event).
    pub fn apply<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K) {
        self.change::<K>(object, false);
    }

    /// Deletes `object` (a DELETED event).
    pub fn delete<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K) {
        self.change::<K>(object, true);
    }

    /// WATCH requests received so far.
    pub fn watch_requests(&self) -> usize {
        self.state.lock().unwrap().watch_requests
    }

    fn change<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K, delete: bool) {
        let plural = K::plural(&()).into_owned();
        let mut value = serde_json::to_value(object).unwrap();
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = value["metadata"]["name"].as_str().unwrap().to_owned();
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let rv = state.resource_version;
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        let objects = state.objects.entry(plural.clone()).or_default();
        let key = (namespace.clone(), name);
        let kind = if delete {
            objects.remove(&key);
            "DELETED"
        } else if objects.insert(key, value.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": value})).unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        state
            .log
            .push((rv, plural.clone(), namespace.clone(), line.clone()));
        state.watches.retain(|(p, ns, tx)| {
            if *p != plural || ns.as_ref().is_some_and(|ns| *ns != namespace) {
                return !tx.is_closed();
            }
            tx.send(line.clone()).is_ok()
        });
    }

    fn handle(&self, request: &Request<Body>) -> Response<BoxBody<Bytes, Infallible>> {
        let path = request.uri().path().to_owned();
        let query: BTreeMap<String, String> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let plural = segments.last().copied().unwrap_or_default().to_owned();
        let namespace = segments
            .iter()
            .position(|s| *s == "namespaces")
            .and_then(|i| segments.get(i + 1))
            .map(|s| (*s).to_owned());
        let mut state = self.state.lock().unwrap();
        if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            state.watch_requests += 1;
            let since: u64 = query
                .get("resourceVersion")
                .and_then(|rv| rv.parse().ok())
                .unwrap_or(0);
            let (tx, rx) = mpsc::unbounded_channel();
            for (rv, p, ns, line) in &state.log {
                if *rv > since && *p == plural && namespace.as_ref().is_none_or(|n| n == ns) {
                    let _ = tx.send(line.clone());
                }
            }
            state.watches.push((plural, namespace, tx));
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                let line = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(line)), rx))
            });
            return Response::new(BodyExt::boxed(StreamBody::new(stream)));
        }
        let items: Vec<Value> = state
            .objects
            .get(&plural)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((ns, _), _)| namespace.as_ref().is_none_or(|n| n == ns))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        let list = json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": state.resource_version.to_string()},
            "items": items,
        });
        let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from(
            serde_json::to_vec(&list).unwrap(),
        ))));
        *response.status_mut() = StatusCode::OK;
        response
    }
}

impl tower::Service<Request<Body>> for FakeWatchApi {
    type Response = Response<BoxBody<Bytes, Infallible>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let response = self.handle(&request);
        Box::pin(async move { Ok(response) })
    }
}
