//! `reference = { label, required, pattern, link }`: the outside reference
//! (a Jira or ServiceNow ticket) a request may or must carry, checked
//! against `pattern` and shown as a link with `{}` replaced by the value.

use std::fmt;

use regex_automata::meta::Regex;

/// Longest reference accepted (Slack's input is capped to it too).
pub const REFERENCE_MAX_CHARS: usize = 100;

#[derive(Debug, Clone)]
pub struct ReferenceConfig {
    /// The field's label (`Ticket`).
    pub label: String,
    pub required: bool,
    pub pattern: Option<ReferencePattern>,
    /// `https://…` with `{}` where the value goes.
    pub link: Option<String>,
}

/// A compiled `pattern`; its `Debug` shows the source.
#[derive(Clone)]
pub struct ReferencePattern {
    source: String,
    regex: Regex,
}

impl fmt::Debug for ReferencePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl ReferencePattern {
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = Regex::new(source).map_err(|e| format!("invalid pattern {source:?}: {e}"))?;
        Ok(Self {
            source: source.to_string(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl ReferenceConfig {
    /// Why `value` (trimmed) is not acceptable, for the field's inline error.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let value = value.trim();
        if value.is_empty() {
            return if self.required {
                Err(format!("Give the {}.", self.label))
            } else {
                Ok(())
            };
        }
        if value.chars().count() > REFERENCE_MAX_CHARS {
            return Err(format!("At most {REFERENCE_MAX_CHARS} characters."));
        }
        match &self.pattern {
            Some(p) if !p.matches(value) => Err(format!(
                "That is not a {} this workspace accepts (expected to match `{}`).",
                self.label,
                p.as_str()
            )),
            _ => Ok(()),
        }
    }

    /// The link for `value`, the value percent-encoded into `{}`.
    pub fn link_for(&self, value: &str) -> Option<String> {
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        self.link.as_ref().map(|l| l.replace("{}", &encoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jira(required: bool) -> ReferenceConfig {
        ReferenceConfig {
            label: "Ticket".into(),
            required,
            pattern: Some(ReferencePattern::new("^[A-Z]+-[0-9]+$").unwrap()),
            link: Some("https://jira.example.com/browse/{}".into()),
        }
    }

    #[test]
    fn a_reference_is_checked_and_linked() {
        assert!(jira(false).check("").is_ok());
        assert_eq!(jira(true).check(" ").unwrap_err(), "Give the Ticket.");
        assert!(jira(true).check("OPS-12").is_ok());
        assert!(jira(true)
            .check("ops 12")
            .unwrap_err()
            .contains("^[A-Z]+-[0-9]+$"));
        assert_eq!(
            jira(false).link_for("OPS-12").as_deref(),
            Some("https://jira.example.com/browse/OPS-12")
        );
        assert_eq!(
            jira(false).link_for("a|b>c").as_deref(),
            Some("https://jira.example.com/browse/a%7Cb%3Ec")
        );
        assert!(ReferencePattern::new("([").is_err());
    }
}
