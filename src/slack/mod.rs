//! Everything that speaks Slack's protocols to people: the Socket Mode
//! transport, the app manifest and the Block Kit views (the Web API client is
//! `slack_api`, a layer lower, so sources and provisioners can call Slack).

pub mod envelope;
pub mod frame;
pub mod ids;
mod inbound;
pub mod manifest;
pub mod modal;
pub mod seen;
pub mod transport;
pub mod views;
