//! Discord gateway payloads fed to a live session: never a panic, never fatal.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        relay_protocol::discord::session::fuzz_payload(text);
    }
});
