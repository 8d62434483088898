//! Discord REST response bodies: a safe reply, never a panic, never body text echoed.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::discord::rest::fuzz_response(data));
