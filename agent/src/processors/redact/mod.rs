//! STUB — owned by the scrape/redact helper. Interface contract below; replace the bodies.
//!
//! Redaction of secrets and personal data before anything leaves the pod.

use vigil_crds::agent_config::RedactionConfig;

use crate::batch::Batch;
use crate::event::LogEvent;

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("redaction.patterns[{index}] ({name}): invalid regular expression")]
    Pattern {
        index: usize,
        name: String,
        #[source]
        source: regex::Error,
    },
}

/// Applies the configured detectors and patterns.
#[derive(Debug)]
pub struct Redactor {}

impl Redactor {
    pub fn new(_config: &RedactionConfig) -> Result<Self, RedactError> {
        Ok(Redactor {})
    }

    /// The redacted text, or `None` when nothing matched (no allocation on the common path).
    pub fn redact(&self, _text: &str) -> Option<String> {
        None
    }

    /// Redacts the message and attribute values of a log event.
    pub fn redact_event(&self, _event: &mut LogEvent) {}

    /// Redacts log bodies and attributes, and span attributes and event attributes, in place.
    pub fn redact_batch(&self, _batch: &mut Batch) {}
}
