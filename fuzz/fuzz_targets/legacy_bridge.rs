//! The legacy `/api/ws` bridge: any first frame is an auth frame or a clean error;
//! any event data re-wraps into an old envelope or nothing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::legacy::fuzz_legacy(data));
