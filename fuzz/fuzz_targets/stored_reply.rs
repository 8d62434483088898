//! A `requestId` reply as another gateway stored it in Redis: any bytes are
//! read as a reply or refused, never a panic, and what is read encodes back
//! to the same reply.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::gateway::replies::fuzz_stored_reply(data));
