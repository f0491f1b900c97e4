//! The router: hands each [`Batch`] to the buffer of every sink that takes its signal. A batch
//! counts as accepted ("acknowledged" to an OTLP client, checkpointed for a log file) only once
//! every such buffer has stored it.

use crate::batch::{Batch, Signal};
use crate::buffer::{BufferError, BufferWriter, Pushed};
use crate::telemetry::{emit, InternalEvent};
use vigil_crds::monitored_app::WhenFull;

/// One sink's entrance.
#[derive(Clone, Debug)]
pub struct Route {
    /// Component name of the sink (`sink_otlp`, `sink_loki`, `sink_loki_<name>`, …).
    pub sink: String,
    /// Signals the sink takes.
    pub signals: Vec<Signal>,
    /// The sink's buffer.
    pub writer: BufferWriter,
}

/// What became of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Stored in every buffer that takes it (or no sink takes this signal).
    Accepted,
    /// At least one buffer was full under `dropNewest`; the batch was dropped there.
    Dropped,
}

/// Fan-out from sources to sink buffers. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router { routes }
    }

    fn routes_for(&self, signal: Signal) -> impl Iterator<Item = &Route> {
        self.routes
            .iter()
            .filter(move |r| r.signals.contains(&signal))
    }

    /// Whether any sink takes `signal`.
    pub fn takes(&self, signal: Signal) -> bool {
        self.routes_for(signal).next().is_some()
    }

    /// Stores `batch` in every buffer that takes it, waiting for room under `block`.
    pub async fn send(&self, batch: &Batch) -> Result<Routed, BufferError> {
        let signal = batch.signal();
        let events = batch.item_count() as u64;
        if !self.takes(signal) {
            return Ok(self.no_sink(events));
        }
        self.send_record(signal, events, batch.encode()).await
    }

    /// [`Router::send`] for a batch given as its buffer record (the encoding of
    /// [`Batch::encode`], or one that decodes to the same batch): `events` items of `signal`.
    pub async fn send_record(
        &self,
        signal: Signal,
        events: u64,
        record: Vec<u8>,
    ) -> Result<Routed, BufferError> {
        if !self.takes(signal) {
            return Ok(self.no_sink(events));
        }
        let mut record = Some(record);
        let mut routed = Routed::Accepted;
        let mut routes = self.routes_for(signal).peekable();
        while let Some(route) = routes.next() {
            // The last buffer gets the record itself, the others a copy.
            let copy = if routes.peek().is_some() {
                record.clone()
            } else {
                record.take()
            };
            let Some(copy) = copy else { break };
            if route.writer.push(copy).await? == Pushed::Dropped {
                emit(InternalEvent::Dropped {
                    component: &route.sink,
                    events,
                    reason: "buffer_full",
                });
                routed = Routed::Dropped;
            }
        }
        Ok(routed)
    }

    /// A batch no sink takes: counted as dropped, and accepted.
    fn no_sink(&self, events: u64) -> Routed {
        emit(InternalEvent::Dropped {
            component: "router",
            events,
            reason: "no_sink",
        });
        Routed::Accepted
    }

    /// [`Router::try_send`] for a batch given as its buffer record (the encoding of
    /// [`Batch::encode`], or one that decodes to the same batch): `events` items of `signal`.
    pub fn try_send_record(
        &self,
        signal: Signal,
        events: u64,
        record: Vec<u8>,
    ) -> Result<Routed, BufferError> {
        if !self.takes(signal) {
            emit(InternalEvent::Dropped {
                component: "router",
                events,
                reason: "no_sink",
            });
            return Ok(Routed::Accepted);
        }
        self.check_room(signal, record.len())?;
        self.push_to_all(signal, events, record)
    }

    /// Like [`Router::send`] but never waits: when a `block` buffer lacks room, nothing is
    /// stored anywhere and `BufferError::Full` tells the caller to push back on its sender.
    pub fn try_send(&self, batch: &Batch) -> Result<Routed, BufferError> {
        let signal = batch.signal();
        if !self.takes(signal) {
            emit(InternalEvent::Dropped {
                component: "router",
                events: batch.item_count() as u64,
                reason: "no_sink",
            });
            return Ok(Routed::Accepted);
        }
        let record = batch.encode();
        self.check_room(signal, record.len())?;
        self.push_to_all(signal, batch.item_count() as u64, record)
    }

    /// Checks every buffer that takes `signal` before anything is pushed, so a record is stored
    /// in all of them or in none: a record that can never fit is `TooLarge` (retrying cannot
    /// help: the sender is told so, rather than "full"), a `block` buffer without room `Full`.
    fn check_room(&self, signal: Signal, len: usize) -> Result<(), BufferError> {
        for route in self.routes_for(signal) {
            if len > route.writer.max_record_len() {
                return Err(BufferError::TooLarge {
                    component: route.sink.clone(),
                    bytes: len as u64,
                    max_bytes: route.writer.max_record_len() as u64,
                });
            }
            if !route.writer.has_room(len) && route.writer.when_full() == WhenFull::Block {
                return Err(BufferError::Full {
                    component: route.sink.clone(),
                });
            }
        }
        Ok(())
    }

    /// Pushes `record` into every buffer that takes `signal` without waiting; the last buffer
    /// gets `record` itself, the others a copy (a large request is not held twice for one sink).
    fn push_to_all(
        &self,
        signal: Signal,
        events: u64,
        record: Vec<u8>,
    ) -> Result<Routed, BufferError> {
        let mut routed = Routed::Accepted;
        let mut routes = self.routes_for(signal).peekable();
        let mut record = Some(record);
        while let Some(route) = routes.next() {
            let copy = if routes.peek().is_some() {
                record.clone()
            } else {
                record.take()
            };
            let Some(copy) = copy else { break };
            if route.writer.try_push(copy)? == Pushed::Dropped {
                emit(InternalEvent::Dropped {
                    component: &route.sink,
                    events,
                    reason: "buffer_full",
                });
                routed = Routed::Dropped;
            }
        }
        Ok(routed)
    }
}
