//! Everything that speaks Slack's protocols: the Socket Mode transport, the Web
//! API client, the app manifest and the Block Kit views.

pub mod api;
pub mod envelope;
pub mod frame;
pub mod ids;
mod inbound;
pub mod manifest;
pub mod modal;
pub mod seen;
pub mod transport;
pub mod views;
