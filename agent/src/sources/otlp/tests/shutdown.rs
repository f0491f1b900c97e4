//! Graceful stop: on shutdown the listeners stop accepting and requests in flight are still
//! answered and stored.

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A request whose body has not arrived yet when shutdown begins is answered 200 and stored;
/// new connections are refused meanwhile.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let mut agent = TestAgent::start(Setup::new("sink_shutdown")).await;
    let body = traces_request(vec![span([3; 16], 1, "in-flight")]).encode_to_vec();
    let mut stream = tokio::net::TcpStream::connect(agent.http).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: agent\r\ncontent-type: application/x-protobuf\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes once the handler reads the body: the request is in flight.
    let mut interim = [0; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

    agent.stop.send_replace(true);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(agent.http).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still accepting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stream.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let batches = agent.stored_until(|b| !b.is_empty()).await;
    assert_eq!(spans(&batches)[0].1.name, "in-flight");
    agent.stop().await;
}
