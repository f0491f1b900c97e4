//! Tests of the shared HTTP server.
