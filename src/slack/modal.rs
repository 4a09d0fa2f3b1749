//! Reading a submitted modal: the state of an input by block and action id,
//! and the durations people type into one.

use std::collections::HashMap;
use std::time::Duration;

use slack_morphism::prelude::*;

use super::views::text::{clip, fmt_duration};

/// A submitted modal's inputs: block id → action id → state.
pub type StateValues = HashMap<SlackBlockId, HashMap<SlackActionId, SlackViewStateValue>>;

/// Every input of the submitted modal.
pub fn state_values(submission: &SlackInteractionViewSubmissionEvent) -> StateValues {
    submission
        .view
        .state_params
        .state
        .as_ref()
        .map(|s| s.values.clone())
        .unwrap_or_default()
}

/// One input of [`state_values`], by block and action id.
pub fn input<'a>(
    values: &'a StateValues,
    block: &str,
    action: &str,
) -> Option<&'a SlackViewStateValue> {
    values
        .get(&SlackBlockId(block.into()))?
        .get(&SlackActionId(action.into()))
}

/// A modal input's state as submitted (text, selected option, user …).
pub fn state_of<'a>(
    submission: &'a SlackInteractionViewSubmissionEvent,
    block: &str,
    action: &str,
) -> Option<&'a SlackViewStateValue> {
    input(
        &submission.view.state_params.state.as_ref()?.values,
        block,
        action,
    )
}

/// The text a user typed into a modal's input, by block and action id.
pub fn value_of(
    submission: &SlackInteractionViewSubmissionEvent,
    block: &str,
    action: &str,
) -> Option<String> {
    state_of(submission, block, action)?.value.clone()
}

/// `8h`, `2d`, `90m`: humantime; bare numbers are hours, as people type them.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(hours) = text.parse::<u64>() {
        return Ok(Duration::from_secs(hours.saturating_mul(3600)));
    }
    humantime::parse_duration(text).map_err(|_| {
        format!(
            "\u{201c}{}\u{201d} is not a duration; write e.g. 2h or 1d.",
            clip(text, 40)
        )
    })
}

/// Checks a typed duration against the cap.
pub fn checked_duration(text: &str, cap: Duration) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.as_secs() == 0 {
        return Err("The duration must be more than zero.".into());
    }
    if duration > cap {
        return Err(format!("At most {} for this request.", fmt_duration(cap)));
    }
    Ok(duration)
}
