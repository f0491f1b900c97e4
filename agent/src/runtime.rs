//! STUB — wiring from an `AgentConfig` to running tasks, reload and shutdown (lead engineer).
