//! The SSE parser: never panics, and chunk boundaries never change what it yields.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::sse::fuzz_parse(data));
