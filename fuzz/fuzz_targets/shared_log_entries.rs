//! Stream entries read back from Redis (the shared event log): any ids and
//! fields give a contiguous run of frames or a reset, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::shared_log::fuzz_entries(data));
