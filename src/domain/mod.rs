//! Pure domain logic: the ticket state machine and the approval policy. No
//! I/O, no Slack, no SQL, no clock — everything here is table-tested.

pub mod catalog;
pub mod policy;
pub mod ticket;
