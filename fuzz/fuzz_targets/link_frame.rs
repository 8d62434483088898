//! Link frames (gateway ⇄ edge): any bytes parse or fail cleanly; parsed frames round-trip.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::frame::fuzz_parse(data));
