#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_agent::fuzzing::join_and_analyse(data));
