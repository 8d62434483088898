//! A stream request's `types=` / `channels=` filters and its `Last-Event-ID`:
//! bounded, trimmed lists, and resuming gives exactly the missed events or a reset.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::edge::fuzz_stream_request(data));
