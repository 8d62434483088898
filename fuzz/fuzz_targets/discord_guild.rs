//! The guild permission model: GUILD_CREATE, guild dispatches and REST members.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_protocol::discord::guild::fuzz_guild(data));
