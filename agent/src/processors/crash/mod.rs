//! STUB — owned by the multiline/crash helper. Interface contract below; replace the bodies.
//!
//! Crash detection and fingerprints.

use crate::event::{CrashInfo, LogEvent};
use crate::identity::Identity;
use crate::prompb::WriteRequest;

/// Finds crashes in joined events, fingerprints and counts them.
#[derive(Debug)]
pub struct CrashDetector {}

impl CrashDetector {
    /// `user_field`: the log attribute naming the end user, for `vigil_crash_affected_users`
    /// and `vigil_active_users`.
    pub fn new(_identity: &Identity, _user_field: Option<String>) -> Self {
        CrashDetector {}
    }

    /// Sets `event.crash` when the event is a crash, counts it, and returns it.
    pub fn observe(&self, _event: &mut LogEvent) -> Option<CrashInfo> {
        None
    }

    /// `vigil_crashes_total`, `vigil_crash_affected_users`, `vigil_active_users` in the
    /// Prometheus text format (for `/metrics`).
    pub fn exposition(&self) -> String {
        String::new()
    }

    /// The same series as samples stamped `now_ms`, for remote write.
    pub fn samples(&self, _now_ms: i64) -> WriteRequest {
        WriteRequest::default()
    }
}
