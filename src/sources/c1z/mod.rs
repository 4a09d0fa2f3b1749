//! The `c1z` source: ConductorOne Baton `.c1z` v1 files (magic `C1ZF\0`, then
//! a zstd stream of an SQLite database whose rows are protobuf blobs), as
//! written by any Baton connector. Owns the file handling — magic check,
//! bounded decompression to a private temporary file, read-only SQLite — and
//! hands the database to `db` for the mapping to accounts.
//!
//! Mapping (see `db`): resources of a user-trait type → accounts of `app`
//! (id = resource id, `TYPE:id` for user types other than `user`; name =
//! display name; email = primary email; status from the resource status or
//! the user trait); each grant whose principal is such a user → the
//! entitlement id (`group:eng:member`), the same id a Baton provisioner takes
//! as `--grant-entitlement`. Only the newest finished full sync is read.

mod db;
mod pb;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{Snapshot, SourceError};

const MAGIC_V1: &[u8; 5] = b"C1ZF\0";
/// v3 files (`C1Z3\0`) hold a Pebble checkpoint, not SQLite.
const MAGIC_V3: &[u8; 4] = b"C1Z3";

/// Refuse databases that decompress to more than this: a corrupt or hostile
/// file must not fill the disk.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 4 << 30;

#[derive(Debug)]
pub struct C1zSource {
    path: PathBuf,
    app: String,
    max_decompressed: u64,
    /// Where the decompressed database goes; `None`: the system temp dir.
    temp_dir: Option<PathBuf>,
}

impl C1zSource {
    pub fn new(path: PathBuf, app: String) -> Self {
        Self {
            path,
            app,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            temp_dir: None,
        }
    }

    /// Caps the decompressed database size (default 4 GiB).
    pub fn with_max_decompressed(mut self, bytes: u64) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// Decompresses into `dir` instead of the system temp dir.
    pub fn with_temp_dir(mut self, dir: PathBuf) -> Self {
        self.temp_dir = Some(dir);
        self
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let path = self.path.clone();
        let app = self.app.clone();
        let max = self.max_decompressed;
        let temp_dir = self.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        tokio::task::spawn_blocking(move || read_c1z(&path, &app, max, &temp_dir))
            .await
            .map_err(|e| SourceError::Unavailable(format!("reading the c1z file failed: {e}")))?
    }
}

fn read_c1z(path: &Path, app: &str, max: u64, temp_dir: &Path) -> Result<Snapshot, SourceError> {
    let shown = path.display();
    let mut file = File::open(path)
        .map_err(|e| SourceError::Unavailable(format!("cannot read {shown}: {e}")))?;
    let mut magic = [0u8; 5];
    match file.read_exact(&mut magic) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(SourceError::Invalid(format!(
                "{shown} is not a c1z file (shorter than its 5-byte header)"
            )))
        }
        Err(e) => {
            return Err(SourceError::Unavailable(format!(
                "cannot read {shown}: {e}"
            )))
        }
    }
    if magic.starts_with(MAGIC_V3) {
        return Err(SourceError::Invalid(format!(
            "{shown} is a c1z v3 (Pebble) file, which accessd cannot read; run the connector \
             with BATON_STORAGE_ENGINE=sqlite to write a v1 file"
        )));
    }
    if &magic != MAGIC_V1 {
        return Err(SourceError::Invalid(format!(
            "{shown} is not a c1z file (it does not start with C1ZF)"
        )));
    }

    let temp = TempFile::create(temp_dir)?;
    decompress(file, &temp, max).map_err(|e| match e {
        Decompress::Corrupt(e) => SourceError::Invalid(format!(
            "{shown}: the zstd stream is corrupt or truncated: {e}"
        )),
        Decompress::TooLarge => SourceError::Invalid(format!(
            "{shown}: the database inside decompresses to more than {max} bytes"
        )),
        Decompress::Write(e) => SourceError::Unavailable(format!(
            "cannot write the decompressed database to {}: {e}",
            temp.path.display()
        )),
    })?;

    let conn = open_read_only(&temp.path).map_err(|e| {
        SourceError::Invalid(format!(
            "{shown}: the database inside cannot be opened: {e}"
        ))
    })?;
    let snapshot =
        db::read_snapshot(&conn, app).map_err(|e| SourceError::Invalid(format!("{shown}: {e}")));
    drop(conn);
    drop(temp);
    snapshot
}

enum Decompress {
    Corrupt(std::io::Error),
    TooLarge,
    Write(std::io::Error),
}

/// Streams the zstd payload after the magic into `out`, at most `max` bytes.
fn decompress(input: File, out: &TempFile, max: u64) -> Result<(), Decompress> {
    let decoder = zstd::stream::read::Decoder::new(input).map_err(Decompress::Corrupt)?;
    let mut limited = decoder.take(max.saturating_add(1));
    let mut writer = BufWriter::new(&out.file);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Decompress::Corrupt(e)),
        };
        total += n as u64;
        if total > max {
            return Err(Decompress::TooLarge);
        }
        writer.write_all(&buf[..n]).map_err(Decompress::Write)?;
    }
    writer.flush().map_err(Decompress::Write)?;
    Ok(())
}

/// Read-only and `immutable`: SQLite then neither locks nor looks for
/// `-wal`/`-shm` files next to the copy, and never writes.
fn open_read_only(path: &Path) -> Result<Connection, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))?;
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => escaped.push_str(&format!("%{:02X}", c as u32)),
            c => escaped.push(c),
        }
    }
    let uri = format!("file:{escaped}?immutable=1");
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    // Opening is lazy: make a non-database fail here, with a clear message.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// A decompressed database, private to this process and removed on drop
/// (also when reading fails half-way).
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn create(dir: &Path) -> Result<TempFile, SourceError> {
        let name = format!(
            "accessd-c1z-{}-{:016x}.db",
            std::process::id(),
            rand::random::<u64>()
        );
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(|e| {
            SourceError::Unavailable(format!(
                "cannot create a temporary file in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(TempFile { path, file })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a decompressed c1z database");
        }
    }
}
