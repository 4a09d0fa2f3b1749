//! Fuzz target: arbitrary text as `accessd.toml` through `config::parse`,
//! including the Display of whatever error it returns.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The error is what an operator reads, so formatting it is part of the surface.
    if let Err(err) = accessd::config::parse(text, Path::new("/fuzz/accessd.toml")) {
        std::hint::black_box(err.to_string());
    }
});
