//! STUB — owned by the buffer helper: the loop that drains a buffer into a sink with retry.
