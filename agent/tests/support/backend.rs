//! A stand-in for an HTTP push backend (a remote-write receiver, Loki, an OTLP/HTTP collector
//! behind a gateway): a hyper server on 127.0.0.1 that records every request — method, path,
//! headers, body and whether the client presented a certificate — and answers 204. Served
//! plain, over TLS, or over TLS that requires a client certificate signed by its CA (mutual
//! TLS), with certificates from [`TestPki`].
//!
//! What a real backend does that this one does not: it decodes nothing, checks no credential
//! (the tests assert the headers it recorded), applies no limits and never refuses a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support
#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as the backend saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// Whether the TLS client presented a certificate the server verified.
    pub client_certified: bool,
}

impl Recorded {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A certificate authority with a server certificate for `localhost` and a client
/// certificate, all in PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vigil test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&server_key, &issuer)
                .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vigil-agent shop/checkout");
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// A server configuration presenting the server certificate; with `require_client`, the
    /// handshake fails unless the client presents a certificate signed by the CA.
    pub fn server_config(&self, require_client: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
                .unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// The recording backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    tls: bool,
    requests: Arc<Mutex<Vec<Recorded>>>,
    refused_handshakes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// A plain HTTP backend.
    pub async fn plain() -> Backend {
        Self::start(None).await
    }

    /// An HTTPS backend with the given server configuration.
    pub async fn tls(config: rustls::ServerConfig) -> Backend {
        Self::start(Some(Arc::new(config))).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let (task_requests, task_refused) = (requests.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let requests = task_requests.clone();
                let refused = task_refused.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => {
                                let certified = tls.get_ref().1.peer_certificates().is_some();
                                let service = recorder(requests, certified);
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                            Err(_) => {
                                refused.fetch_add(1, Ordering::SeqCst);
                            }
                        },
                        None => {
                            let service = recorder(requests, false);
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            tls: tls.is_some(),
            requests,
            refused_handshakes: refused,
            task,
        }
    }

    /// The URL of `path` (`https://localhost:…` over TLS, so the certificate's name matches).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests to `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// TLS handshakes the server refused (no or an untrusted client certificate).
    pub fn refused_handshakes(&self) -> u64 {
        self.refused_handshakes.load(Ordering::SeqCst)
    }
}

fn recorder(
    requests: Arc<Mutex<Vec<Recorded>>>,
    client_certified: bool,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<hyper::Response<Full<Bytes>>, std::convert::Infallible>,
    > + Send,
> + Clone {
    service_fn(move |request: hyper::Request<Incoming>| {
        let requests = requests.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            requests.lock().unwrap().push(Recorded {
                path: parts.uri.path().to_owned(),
                headers: parts.headers,
                body,
                client_certified,
            });
            Ok::<_, std::convert::Infallible>(
                hyper::Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    })
}
