//! The fake API server over real HTTP on loopback, so processes (`vigil-operator run`,
//! `kubectl`) talk to it through a kubeconfig, as to a cluster.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::task::{JoinHandle, JoinSet};

use super::FakeApiServer;

/// A running HTTP listener of a [`FakeApiServer`]; stops (with its connections) when dropped.
#[derive(Debug)]
pub struct FakeHttpServer {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeHttpServer {
    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// An administrator's kubeconfig for this server, with `namespace` as the context's
    /// namespace.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        self.kubeconfig_with_token(namespace, "fake-admin-token")
    }

    /// A kubeconfig that authenticates with `token` (such as
    /// [`FakeApiServer::service_account_token`], so that RBAC applies).
    pub fn kubeconfig_with_token(&self, namespace: &str, token: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster:
      server: {url}
users:
  - name: admin
    user:
      token: {token}
contexts:
  - name: fake
    context:
      cluster: fake
      user: admin
      namespace: {namespace}
current-context: fake
",
            url = self.url()
        )
    }
}

impl Drop for FakeHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Serves this server over HTTP/1.1 on `address` (use port 0 for a free one) until the
    /// returned handle is dropped. Must be called within a Tokio runtime.
    pub async fn serve_http(&self, address: SocketAddr) -> std::io::Result<FakeHttpServer> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let server = self.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every connection, open watches
            // included.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _peer)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let server = server.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let server = server.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, Infallible>(
                                server
                                    .respond(parts.method, parts.uri, parts.headers, bytes)
                                    .await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                // Reap finished connections so the set does not grow without bound.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(FakeHttpServer { address, task })
    }
}
