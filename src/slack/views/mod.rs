//! Block Kit builders: every view and message the bot shows, as JSON values,
//! kept apart from the handlers that decide when to show them.

pub mod alert;
pub mod audit;
pub mod grant;
pub mod home;
pub mod request;
pub mod review;
pub mod text;
pub mod ticket;
