//! Cross-process tests live in `tests/`; this library only anchors the crate.
