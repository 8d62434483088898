//! TODO: discord::session
