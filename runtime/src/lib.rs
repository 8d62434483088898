//! relay-runtime: the IO drivers (filled in by the edge and gateway work).
