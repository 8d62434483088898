//! Discord dispatch payloads under every event name, and sequences of them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::discord::dispatch::fuzz_dispatch(data));
