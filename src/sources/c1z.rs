//! The `c1z` source: ConductorOne Baton `.c1z` v1 files (zstd-compressed SQLite, protobuf rows).

use super::{Snapshot, SourceError};
#[allow(unused_imports)]
use crate::config::Secret;

pub struct C1zSource {
    app: String,
}

impl std::fmt::Debug for C1zSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("C1zSource")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl C1zSource {
    pub fn new(_path: std::path::PathBuf, app: String) -> Self {
        Self { app }
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        Err(SourceError::Unavailable(format!(
            "the c1z source of {} is not built yet",
            self.app
        )))
    }
}
