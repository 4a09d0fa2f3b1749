//! Finding an app from what a person typed after `/access`: id, alias or name
//! (any case), then a unique prefix, then one close typo.

use crate::config::{AppConfig, Config};

/// The one app `text` designates, or `None` when nothing (or more than one
/// app, equally well) matches.
pub fn match_app<'a>(config: &'a Config, text: &str) -> Option<&'a AppConfig> {
    let wanted = text.trim().to_lowercase();
    if wanted.is_empty() {
        return None;
    }
    if let Some(app) = config.find_app(&wanted) {
        return Some(app);
    }
    let keys = |app: &'a AppConfig| {
        std::iter::once(app.id.clone())
            .chain(app.aliases.iter().cloned())
            .chain(std::iter::once(app.name.to_lowercase()))
    };
    let unique = |matches: Vec<&'a AppConfig>| -> Option<&'a AppConfig> {
        let mut ids: Vec<&str> = matches.iter().map(|a| a.id.as_str()).collect();
        ids.dedup();
        (ids.len() == 1).then(|| matches[0])
    };
    let prefixed: Vec<&AppConfig> = config
        .apps
        .iter()
        .filter(|app| keys(app).any(|k| k.starts_with(&wanted)))
        .collect();
    if !prefixed.is_empty() {
        return unique(prefixed);
    }
    // One edit per four characters, at most two: "githb" → github, not "a" → anything.
    let budget = (wanted.chars().count() / 4).min(2);
    if budget == 0 {
        return None;
    }
    let best = config
        .apps
        .iter()
        .filter_map(|app| {
            keys(app)
                .map(|k| edit_distance(&k, &wanted))
                .min()
                .map(|d| (d, app))
        })
        .filter(|(d, _)| *d <= budget)
        .collect::<Vec<_>>();
    let closest = best.iter().map(|(d, _)| *d).min()?;
    unique(
        best.into_iter()
            .filter(|(d, _)| *d == closest)
            .map(|(_, app)| app)
            .collect(),
    )
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours ("notoin") each count one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            r#"
[slack]
[requests]
fallback_approvers = ["it@example.com"]
[[apps]]
id = "github"
name = "GitHub"
aliases = ["gh"]
[[apps]]
id = "gitlab"
name = "GitLab"
[[apps]]
id = "notion"
name = "Notion"
"#,
            std::path::Path::new("/tmp/accessd.toml"),
        )
        .expect("test config")
    }

    #[test]
    fn matches_ids_aliases_names_prefixes_and_typos() {
        let config = config();
        let cases = [
            ("github", Some("github")),
            ("GH", Some("github")),
            ("GitLab", Some("gitlab")),
            ("not", Some("notion")),
            ("git", None),
            ("githb", Some("github")),
            ("notoin", Some("notion")),
            ("zzz", None),
            ("", None),
            ("x", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                match_app(&config, text).map(|a| a.id.as_str()),
                expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("github", "githb"), 1);
        assert_eq!(edit_distance("notion", "notoin"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
