//! The agent's own telemetry as typed events: [`emit`] both logs an event (structured JSON
//! through `tracing`) and counts it in the agent's registry, so logs and `/metrics` agree.
//!
//! Events carry counts, sizes, component names and error descriptions — never payloads, so no
//! secret from a log line or a request can reach the agent's own logs.
//!
//! Series (all with a `component` label such as `otlp_grpc`, `logs`, `sink_loki`):
//! `vigil_agent_received_events_total{signal}`, `vigil_agent_received_bytes_total`,
//! `vigil_agent_sent_events_total`, `vigil_agent_sent_bytes_total`, `vigil_agent_retries_total`,
//! `vigil_agent_dropped_events_total{reason}`, `vigil_agent_buffered_bytes`,
//! `vigil_agent_errors_total{error}`, `vigil_agent_config_reloads_total{result}`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Something worth counting and logging that happened inside the agent.
#[derive(Debug)]
pub enum InternalEvent<'a> {
    /// A source accepted events.
    Received {
        component: &'a str,
        signal: &'a str,
        events: u64,
        bytes: u64,
    },
    /// A sink's backend accepted events.
    Sent {
        component: &'a str,
        events: u64,
        bytes: u64,
    },
    /// A send failed and will be retried after `after`.
    Retried {
        component: &'a str,
        reason: &'a str,
        after: Duration,
    },
    /// Events were discarded; `reason` is a stable snake_case word (`buffer_full`, `rejected`,
    /// `corrupt_record`, `no_sink`).
    Dropped {
        component: &'a str,
        events: u64,
        reason: &'a str,
    },
    /// Bytes currently held in a component's buffer.
    Buffered { component: &'a str, bytes: u64 },
    /// A recoverable error; `error` is a stable PascalCase category, `message` a description
    /// that never contains payload data.
    Error {
        component: &'a str,
        error: &'a str,
        message: &'a str,
    },
    /// The configuration file was reloaded (`accepted`) or rejected and the old one kept.
    ConfigReload { accepted: bool, message: &'a str },
}

struct Metrics {
    registry: Registry,
    received_events: IntCounterVec,
    received_bytes: IntCounterVec,
    sent_events: IntCounterVec,
    sent_bytes: IntCounterVec,
    retries: IntCounterVec,
    dropped: IntCounterVec,
    buffered: IntGaugeVec,
    errors: IntCounterVec,
    reloads: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_metric(name));
    // Registration only fails for duplicate names; each name below is registered once.
    let _ = registry.register(Box::new(vec.clone()));
    vec
}

#[allow(clippy::panic)] // names and labels are the literals below, valid by construction
fn unreachable_metric(name: &str) -> ! {
    panic!("invalid metric definition {name}")
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = Registry::new();
        let buffered = IntGaugeVec::new(
            Opts::new(
                "vigil_agent_buffered_bytes",
                "Bytes held in the component's buffer.",
            ),
            &["component"],
        )
        .unwrap_or_else(|_| unreachable_metric("vigil_agent_buffered_bytes"));
        let _ = registry.register(Box::new(buffered.clone()));
        Metrics {
            received_events: counter(
                &registry,
                "vigil_agent_received_events_total",
                "Events accepted by a source.",
                &["component", "signal"],
            ),
            received_bytes: counter(
                &registry,
                "vigil_agent_received_bytes_total",
                "Bytes accepted by a source.",
                &["component"],
            ),
            sent_events: counter(
                &registry,
                "vigil_agent_sent_events_total",
                "Events accepted by a sink's backend.",
                &["component"],
            ),
            sent_bytes: counter(
                &registry,
                "vigil_agent_sent_bytes_total",
                "Bytes accepted by a sink's backend.",
                &["component"],
            ),
            retries: counter(
                &registry,
                "vigil_agent_retries_total",
                "Sends retried after a failure.",
                &["component"],
            ),
            dropped: counter(
                &registry,
                "vigil_agent_dropped_events_total",
                "Events discarded, by reason.",
                &["component", "reason"],
            ),
            errors: counter(
                &registry,
                "vigil_agent_errors_total",
                "Recoverable errors, by category.",
                &["component", "error"],
            ),
            reloads: counter(
                &registry,
                "vigil_agent_config_reloads_total",
                "Configuration reloads, by result.",
                &["result"],
            ),
            buffered,
            registry,
        }
    })
}

/// Logs and counts one event.
pub fn emit(event: InternalEvent<'_>) {
    let m = metrics();
    match event {
        InternalEvent::Received {
            component,
            signal,
            events,
            bytes,
        } => {
            m.received_events
                .with_label_values(&[component, signal])
                .inc_by(events);
            m.received_bytes
                .with_label_values(&[component])
                .inc_by(bytes);
            tracing::trace!(component, signal, events, bytes, "received");
        }
        InternalEvent::Sent {
            component,
            events,
            bytes,
        } => {
            m.sent_events.with_label_values(&[component]).inc_by(events);
            m.sent_bytes.with_label_values(&[component]).inc_by(bytes);
            tracing::debug!(component, events, bytes, "sent");
        }
        InternalEvent::Retried {
            component,
            reason,
            after,
        } => {
            m.retries.with_label_values(&[component]).inc();
            tracing::warn!(
                component,
                reason,
                retry_in_ms = after.as_millis() as u64,
                "retrying"
            );
        }
        InternalEvent::Dropped {
            component,
            events,
            reason,
        } => {
            m.dropped
                .with_label_values(&[component, reason])
                .inc_by(events);
            tracing::warn!(component, events, reason, "dropped");
        }
        InternalEvent::Buffered { component, bytes } => {
            m.buffered
                .with_label_values(&[component])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        InternalEvent::Error {
            component,
            error,
            message,
        } => {
            m.errors.with_label_values(&[component, error]).inc();
            tracing::error!(component, error, message, "error");
        }
        InternalEvent::ConfigReload { accepted, message } => {
            let result = if accepted { "accepted" } else { "rejected" };
            m.reloads.with_label_values(&[result]).inc();
            if accepted {
                tracing::info!(result, message, "config reload");
            } else {
                tracing::error!(result, message, "config reload");
            }
        }
    }
}

/// The agent's own registry, for `/metrics`.
pub fn registry() -> &'static Registry {
    &metrics().registry
}

/// Current value of a counter, for tests and the shutdown summary.
pub fn dropped_total(component: &str, reason: &str) -> u64 {
    metrics()
        .dropped
        .with_label_values(&[component, reason])
        .get()
}

/// Sends counted for a component, for tests and the shutdown summary.
pub fn sent_total(component: &str) -> u64 {
    metrics().sent_events.with_label_values(&[component]).get()
}

/// Errors reported for a component under an `error` name, for tests.
pub fn errors_total(component: &str, error: &str) -> u64 {
    metrics()
        .errors
        .with_label_values(&[component, error])
        .get()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `emit` counts: a dropped event shows up in the registry under its reason.
    #[test]
    fn emit_counts_what_it_logs() {
        let before = dropped_total("test_component", "buffer_full");
        emit(InternalEvent::Dropped {
            component: "test_component",
            events: 3,
            reason: "buffer_full",
        });
        assert_eq!(dropped_total("test_component", "buffer_full"), before + 3);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry().gather())
            .unwrap();
        assert!(text.contains(
            "vigil_agent_dropped_events_total{component=\"test_component\",reason=\"buffer_full\"}"
        ));
    }
}
