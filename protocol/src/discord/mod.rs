//! The Discord side: Gateway v10 session, dispatch translation, REST rate limits,
//! and the guild permission model (who may see and do what, where).
//!
//! Everything here follows Discord's developer documentation; `shared/reference/discord.md`
//! sums up the facts with their sources.
pub mod command_access;
pub mod dispatch;
pub mod guild;
pub mod guild_tracker;
pub mod messages;
pub mod permissions;
pub mod ratelimit;
pub mod rest;
pub mod session;
pub mod voice_cache;
pub mod webhook;
