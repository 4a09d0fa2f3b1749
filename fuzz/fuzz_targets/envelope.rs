//! Fuzz target: one Socket Mode text frame through the transport's frame
//! parsing and the router, as a live socket would see it.

#![no_main]

use accessd::router;
use accessd::slack::transport::{parse_frame, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by protocol; tungstenite rejects the rest
    // before the transport sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_frame(text, 0) {
        Frame::Envelope(envelope) => match router::parse(&envelope) {
            Ok(route) => {
                std::hint::black_box(route.name());
            }
            Err(err) => {
                std::hint::black_box(err.to_string());
            }
        },
        Frame::Unparseable { error, envelope_id } => {
            std::hint::black_box((error.to_string(), envelope_id));
        }
        other => {
            std::hint::black_box(other);
        }
    }
});
