//! STUB — owned by the sinks helper.
