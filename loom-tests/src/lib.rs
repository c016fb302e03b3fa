//! loom models of the core live in tests/.
