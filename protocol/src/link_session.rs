//! TODO: link_session
