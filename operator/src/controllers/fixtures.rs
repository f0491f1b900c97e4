//! Test fixtures shared by the controllers' behaviour tests: the `MonitoredApp` most resources
//! refer to, creating resources from YAML in the in-memory API server, and reading conditions,
//! Events and reload requests back.

use std::sync::Arc;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::fake_api::FakeApiServer;

/// The namespace of every fixture.
pub const NAMESPACE: &str = "shop";

/// The app `checkout` in `shop` that policies, objectives and views refer to.
pub const APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
"#;

/// A crash-rate policy `crashes` on `checkout` with two engineering receivers.
pub const POLICY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: crashes, namespace: shop}
spec:
  appRef: {name: checkout}
  rules:
    - name: CheckoutCrash
      severity: critical
      audiences: [engineering]
      crashRate: {threshold: 0, window: 15m}
  audiences:
    - audience: engineering
      receivers:
        - name: oncall
          email: {to: oncall@shop.example}
        - name: team
          email: {to: team@shop.example}
"#;

/// Parses a resource from YAML.
pub fn parse<K: DeserializeOwned>(yaml: &str) -> K {
    serde_yaml::from_str(yaml).unwrap()
}

/// Creates the resource `yaml` describes and returns it as stored (uid, generation set).
pub fn create<K>(server: &FakeApiServer, yaml: &str) -> Arc<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
{
    let object: K = parse(yaml);
    server.create(&object);
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    stored(server, &name, &namespace)
}

/// The resource `name` of `namespace` as the server holds it now.
pub fn stored<K>(server: &FakeApiServer, name: &str, namespace: &str) -> Arc<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    Arc::new(server.fetch(&K::plural(&()), namespace, name).unwrap())
}

/// The condition of `type_` in the object's status.
pub fn condition(object: &Value, type_: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {object:#}"))
}

/// Reasons of the Events recorded in [`NAMESPACE`].
pub fn event_reasons(server: &FakeApiServer) -> Vec<String> {
    server
        .list("events", NAMESPACE)
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect()
}

/// Accepts one HTTP request, answers 200 and returns its request line.
pub async fn one_request(listener: TcpListener) -> String {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8_lossy(&buffer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
