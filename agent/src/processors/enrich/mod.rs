//! STUB — owned by the scrape/redact helper. Interface contract below; replace the bodies.
//!
//! Enrichment with the pod identity, and the shaping of log events into OTLP.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use crate::batch::Batch;
use crate::event::LogEvent;
use crate::identity::Identity;

/// Adds the pod identity: missing resource attributes on OTLP batches (`k8s.namespace.name`,
/// `k8s.pod.name`, `k8s.pod.uid`, `k8s.node.name`, `service.name`, `service.version`), and the
/// `namespace`, `app`, `pod`, `version` labels on samples when absent.
pub fn enrich_batch(_identity: &Identity, _batch: &mut Batch) {}

/// Log events as one OTLP logs request under the pod's resource: body, severity, time,
/// attributes (`k8s.container.name`, `log.iostream`, parsed fields, and for crashes
/// `exception.type`, `vigil.crash.fingerprint`, `vigil.crash.language`).
pub fn logs_request(_identity: &Identity, _events: Vec<LogEvent>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest::default()
}
