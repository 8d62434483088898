//! TODO: discord::rest
