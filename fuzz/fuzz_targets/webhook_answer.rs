//! Discord's webhook answers (Create / Get Channel Webhooks, Execute with
//! `wait=true`, Get Channel Messages) and the username rules: no panic, no
//! token in a route key, every sanitized name one Discord accepts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::discord::webhook::fuzz_answer(data));
