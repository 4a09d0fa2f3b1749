//! Pure domain logic: the ticket state machine, the approval policy and snapshot diffs. No
//! I/O, no Slack, no SQL, no clock — everything here is table-tested.

pub mod alert;
pub mod catalog;
pub mod diff;
pub mod jobs;
pub mod policy;
pub mod snapshot;
pub mod ticket;
