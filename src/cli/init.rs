//! `accessd init [--dir D]`: the starter config (the shipped example) and the
//! example data it reads, written where the operator asks and never over a
//! file that is already there.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::output::{clean, print_out, Failure, Outcome};

const CONFIG: &str = include_str!("../../config.example.toml");
const PEOPLE: &str = include_str!("../../examples/people.json");
const PROVISIONER: &str = include_str!("../../examples/provision-log.sh");

/// (path under D, content, mode). The config names people, so only its
/// owner reads it; the example provisioner must run.
const FILES: [(&str, &str, u32); 3] = [
    ("accessd.toml", CONFIG, 0o600),
    ("examples/people.json", PEOPLE, 0o600),
    ("examples/provision-log.sh", PROVISIONER, 0o700),
];

pub(crate) fn execute(dir: &Path) -> Outcome {
    let targets: Vec<(PathBuf, &str, u32)> = FILES
        .iter()
        .map(|(name, content, mode)| (dir.join(name), *content, *mode))
        .collect();
    // All or nothing: an existing file stops it before anything is written.
    if let Some((taken, ..)) = targets.iter().find(|(path, ..)| path.exists()) {
        return Err(Failure::runtime(clean(&format!(
            "accessd: {} already exists; nothing written (move it away, or init another --dir)",
            taken.display()
        ))));
    }
    for (path, content, mode) in &targets {
        write_new(path, content, *mode).map_err(|err| {
            Failure::runtime(clean(&format!(
                "accessd: writing {}: {err}",
                path.display()
            )))
        })?;
    }
    let shown = |path: &Path| clean(&path.display().to_string());
    let config = shown(&dir.join("accessd.toml"));
    print_out(&format!(
        "wrote {config}, {people} and {script}\n\
         next: replace the example.com emails with your people's, then\n  \
         export SLACK_APP_TOKEN=xapp-… SLACK_BOT_TOKEN=xoxb-…\n  \
         accessd check-config --config {config}\n  \
         accessd run --config {config}",
        people = shown(&targets[1].0),
        script = shown(&targets[2].0),
    ))
}

/// Creates `path` (and its folder) with `mode`; fails if it appeared meanwhile.
fn write_new(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}
