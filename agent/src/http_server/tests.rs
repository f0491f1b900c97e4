//! Tests of the shared HTTP server's limits: connections that send nothing, an HTTP/2 preface
//! alone, slow headers and slow bodies are cut off; bodies share the byte budget; failed
//! accepts back off and are logged once per period. Time limits are short here and asserted
//! only as "closed eventually, within a generous deadline".

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;

/// Longest wait for anything here; a deadline, never a speed check.
const DEADLINE: Duration = Duration::from_secs(60);

/// Time limits short enough for a test.
fn short() -> Limits {
    Limits {
        timeouts: Timeouts {
            handshake: Duration::from_millis(300),
            header_read: Duration::from_millis(300),
            body_read: Duration::from_millis(300),
            idle: Duration::from_millis(300),
            keep_alive: Duration::from_millis(300),
        },
        max_connections: 16,
    }
}

/// A server whose handler reads the body with [`read_body`] (budget of `budget` bytes) and
/// answers 200, or 408 / 413 / 429 / 400 for the [`BodyError`]s.
async fn start(limits: Limits, budget: usize) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let budget = RequestBudget::new(budget);
    tokio::spawn(serve(
        listener,
        "test_http",
        limits,
        move |request: Request<Incoming>| {
            let budget = budget.clone();
            async move {
                let read = read_body(
                    request.into_body(),
                    None,
                    Framing::Plain,
                    1 << 20,
                    &budget,
                    limits.timeouts.body_read,
                )
                .await;
                let status = match read {
                    Ok(_) => StatusCode::OK,
                    Err(BodyError::TimedOut) => StatusCode::REQUEST_TIMEOUT,
                    Err(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
                    Err(BodyError::OverBudget) => StatusCode::TOO_MANY_REQUESTS,
                    Err(BodyError::Unreadable) => StatusCode::BAD_REQUEST,
                };
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = status;
                response
            }
        },
        shutdown,
    ));
    (addr, stop)
}

/// Reads until the server closes the connection (or resets it); returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    assert!(read.await.is_ok(), "the server kept the connection open");
    received
}

/// A connection that never sends anything is closed.
#[tokio::test]
async fn silent_connection_is_closed() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    until_closed(&mut stream).await;
}

/// A connection that sends the HTTP/2 preface and nothing more is closed; so is one that
/// also sends its settings but never a request.
#[tokio::test]
async fn http2_preface_only_connection_is_closed() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    until_closed(&mut stream).await;

    // The preface and an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    until_closed(&mut stream).await;
}

/// An HTTP/2 client that made a request and then stays idle (answering pings, as h2 does) is
/// sent away once the idle time is over.
#[tokio::test]
async fn idle_http2_connection_is_closed() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::post(format!("http://{addr}/")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
    // The connection ends (GOAWAY) without the client doing anything more.
    let ended = tokio::time::timeout(DEADLINE, connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
}

/// An HTTP/1.1 keep-alive connection left idle after a request is closed.
#[tokio::test]
async fn idle_http1_connection_is_closed() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: agent\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let received = until_closed(&mut stream).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

/// A client that sends part of its headers and stops is cut off.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: agent\r\n")
        .await
        .unwrap();
    until_closed(&mut stream).await;
}

/// A client that sends its headers and part of its body, then stops, is answered 408 (the
/// handler's body read gave up) and its connection closed.
#[tokio::test]
async fn slow_body_is_cut_off() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: agent\r\ncontent-length: 1000\r\n\r\nsome")
        .await
        .unwrap();
    let received = until_closed(&mut stream).await;
    assert!(
        received.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

/// The same over HTTP/2: a stream whose body stalls is answered 408, and the client's
/// connection is not kept busy by it.
#[tokio::test]
async fn slow_http2_body_is_cut_off() {
    let (addr, _stop) = start(short(), 1 << 20).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let request = Request::post(format!("http://{addr}/")).body(()).unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(b"part of a body"), false)
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, response).await.unwrap();
    assert_eq!(response.unwrap().status(), StatusCode::REQUEST_TIMEOUT);
}

/// Bodies share the budget: while one request holds it, another is refused (429 here, the
/// handler's choice), and served once the first is done; a body larger than the whole budget
/// is too large, not "later".
#[tokio::test]
async fn bodies_share_the_budget() {
    let budget = RequestBudget::new(1000);
    let mut first = None;
    budget.take(&mut first, 600).unwrap();
    assert_eq!(budget.available(), 400);
    let mut second = None;
    assert_eq!(budget.take(&mut second, 500), Err(BodyError::OverBudget));
    assert!(second.is_none());
    budget.take(&mut second, 400).unwrap();
    assert_eq!(budget.available(), 0);
    drop(first);
    assert_eq!(budget.available(), 600);
    drop(second);
    assert_eq!(budget.available(), 1000);

    let (addr, _stop) = start(Limits::default(), 1000).await;
    let post = |body: &'static [u8]| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: agent\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response[..12]).into_owned()
    };
    // A chunked body (no length) of 600 bytes that stalls holds 600 bytes of the budget.
    let mut holder = TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(b"POST / HTTP/1.1\r\nhost: agent\r\ntransfer-encoding: chunked\r\n\r\n258\r\n")
        .await
        .unwrap();
    holder.write_all(&[b'x'; 600]).await.unwrap();
    holder.write_all(b"\r\n").await.unwrap();
    // Wait until the server holds it (the next request fits no more).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = post(&[b'y'; 500]).await;
        if status == "HTTP/1.1 429" {
            break;
        }
        assert_eq!(status, "HTTP/1.1 200");
        assert!(
            Instant::now() < deadline,
            "the first body never held the budget"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        post(&[b'y'; 300]).await,
        "HTTP/1.1 200",
        "300 bytes still fit"
    );
    assert_eq!(post(&[b'z'; 1001]).await, "HTTP/1.1 413");
    holder.write_all(b"0\r\n\r\n").await.unwrap();
    let mut head = [0; 12];
    holder.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(
        post(&[b'y'; 500]).await,
        "HTTP/1.1 200",
        "the budget came back"
    );
}

/// Failed accepts pause the loop, doubling from 50 ms to at most 1 s, and are logged once per
/// period with their count (a paused clock: no time is measured).
#[tokio::test(start_paused = true)]
async fn accept_errors_back_off_and_are_logged_once_per_period() {
    let component = "test_accept_backoff";
    let logged = || crate::telemetry::errors_total(component, "Accept");
    let mut errors = AcceptErrors::new(component);
    let error = std::io::Error::from_raw_os_error(24); // EMFILE
    let mut pauses = Vec::new();
    for _ in 0..7 {
        let pause = errors.failed(&error);
        pauses.push(pause.as_millis());
        tokio::time::advance(pause).await;
    }
    assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000]);
    assert_eq!(logged(), 1, "one report for the first period");
    assert_eq!(errors.unlogged, 6);
    tokio::time::advance(ACCEPT_ERROR_LOG_PERIOD).await;
    errors.failed(&error);
    assert_eq!(logged(), 2, "the next report once the period is over");
    assert_eq!(errors.unlogged, 0);
    errors.succeeded();
    assert_eq!(
        errors.failed(&error).as_millis(),
        50,
        "a success resets the pause"
    );
}
