//! TODO: queue
