//! Handlers for each Slack surface, one module per surface; the router picks
//! one per typed route. No surface calls another: what two share sits in
//! `tell` (telling a person) and `who` (who is asking). Handlers commit state before they return (the ack
//! follows) and push slow work (Web API calls) into [`Reply::then`].

pub mod access;
pub mod alert;
pub mod approval;
pub mod command;
pub mod home;
pub mod request;
pub mod requester;
pub mod review;
pub mod tell;
pub mod who;

pub use crate::app::{App, AppParts, Live};

/// The ids moved to `slack::ids`; this path stays for existing callers.
pub use crate::slack::ids as actions;

/// The clicking user's id; Slack always sends it for clicks in views and messages.
pub fn user_of(event: &slack_morphism::prelude::SlackInteractionBlockActionsEvent) -> String {
    event
        .user
        .as_ref()
        .map(|u| u.id.0.clone())
        .unwrap_or_default()
}
