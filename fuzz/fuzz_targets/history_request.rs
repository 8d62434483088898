//! `GET /api/channels/{id}/messages?…`: any path and query give a history query
//! or 400 issues, never a panic; an accepted query reads back the same.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::history_request::fuzz_request(data));
