//! The `c1z` source against `.c1z` v1 files written here the way baton-sdk's
//! SQLite engine writes them (`c1z_support`): sync selection, user mapping,
//! grants, and every way a file can be unusable.

mod c1z_support;

use std::path::{Path, PathBuf};

use accessd::sources::c1z::C1zSource;
use accessd::sources::{Account, AccountStatus, AnySource, Snapshot, SourceError};
use c1z_support::{wrap, C1z, User, DELETED, DISABLED, ENABLED, TRAIT_ROLE, TRAIT_USER};

const OLD: &str = "2QAAAAAAAAAAAAAAAAAAAAAAAA1";
const LATEST: &str = "2QAAAAAAAAAAAAAAAAAAAAAAAA2";
const RUNNING: &str = "2QAAAAAAAAAAAAAAAAAAAAAAAA3";
const PARTIAL: &str = "2QAAAAAAAAAAAAAAAAAAAAAAAA4";

struct Fixture {
    dir: tempfile::TempDir,
    scratch: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        Fixture { dir, scratch }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn source(&self, path: &Path) -> C1zSource {
        C1zSource::new(path.to_path_buf(), "okta".into()).with_temp_dir(self.scratch.clone())
    }

    async fn fetch(&self, bytes: &[u8]) -> Result<Snapshot, SourceError> {
        let path = self.write("okta.c1z", bytes);
        self.source(&path).fetch().await
    }

    /// Nothing decompressed is left behind, whatever the outcome.
    fn assert_scratch_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.scratch).unwrap().collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

fn account<'a>(snap: &'a Snapshot, id: &str) -> &'a Account {
    snap.accounts
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("no account {id} in {:?}", snap.accounts))
}

fn ids(snap: &Snapshot) -> Vec<&str> {
    let mut ids: Vec<&str> = snap.accounts.iter().map(|a| a.id.as_str()).collect();
    ids.sort();
    ids
}

fn invalid(result: Result<Snapshot, SourceError>) -> String {
    match result {
        Err(SourceError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn only_the_newest_finished_full_sync_is_read() {
    let db = C1z::new();
    db.sync(
        OLD,
        "2026-05-01 08:00:00",
        Some("2026-05-01 08:05:00.5"),
        "full",
    );
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00.25"),
        "full",
    );
    db.sync(RUNNING, "2026-05-03 08:00:00", None, "full");
    db.sync(
        PARTIAL,
        "2026-05-03 09:00:00",
        Some("2026-05-03 09:00:01"),
        "partial",
    );
    for sync in [OLD, LATEST, RUNNING, PARTIAL] {
        db.standard_types(sync);
    }
    db.user(
        OLD,
        &User::new("00u-gone", "Gone Person", "gone@example.com"),
    );
    db.user(
        OLD,
        &User::new("00u-ann", "Ann Old Name", "ann@example.com"),
    );
    db.user(
        LATEST,
        &User::new("00u-ann", "Ann Lee", "Ann.Lee@Example.com"),
    );
    db.user(LATEST, &User::new("00u-bob", "Bob Ray", "bob@example.com"));
    db.user(
        RUNNING,
        &User::new("00u-ghost", "Half Synced", "ghost@example.com"),
    );
    db.user(
        PARTIAL,
        &User::new("00u-part", "Partial Only", "part@example.com"),
    );
    db.group(LATEST, "00g-eng", "Engineering");

    let fx = Fixture::new();
    let snap = fx.fetch(&db.c1z()).await.unwrap();
    assert_eq!(ids(&snap), vec!["00u-ann", "00u-bob"]);
    let ann = account(&snap, "00u-ann");
    assert_eq!(ann.app, "okta");
    assert_eq!(ann.name.as_deref(), Some("Ann Lee"));
    assert_eq!(ann.email.as_deref(), Some("Ann.Lee@Example.com"));
    assert_eq!(ann.status, AccountStatus::Active);
    assert!(snap.apps.is_empty());
    fx.assert_scratch_empty();
}

#[tokio::test]
async fn a_file_from_before_sync_types_uses_its_newest_finished_sync() {
    let db = C1z::legacy();
    db.legacy_sync(OLD, "2026-05-01 08:00:00", Some("2026-05-01 08:05:00"));
    db.legacy_sync(LATEST, "2026-05-02 08:00:00", Some("2026-05-02 08:05:00"));
    db.legacy_sync(RUNNING, "2026-05-03 08:00:00", None);
    db.user(OLD, &User::new("u-old", "Old", "old@example.com"));
    db.user(LATEST, &User::new("u-new", "New", "new@example.com"));
    db.user(RUNNING, &User::new("u-run", "Running", "run@example.com"));
    let snap = Fixture::new().fetch(&db.c1z()).await.unwrap();
    assert_eq!(ids(&snap), vec!["u-new"]);
}

#[tokio::test]
async fn user_statuses_emails_names_and_links() {
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    db.standard_types(LATEST);
    db.resource_type(LATEST, "service_account", &[TRAIT_USER]);
    db.resource_type(LATEST, "role", &[TRAIT_ROLE]);
    db.user(
        LATEST,
        &User::new("u-on", "Enabled", "on@example.com").trait_status(ENABLED),
    );
    db.user(
        LATEST,
        &User::new("u-off", "Disabled", "off@example.com").trait_status(DISABLED),
    );
    db.user(
        LATEST,
        &User::new("u-del", "Deleted", "del@example.com").trait_status(DELETED),
    );
    db.user(
        LATEST,
        &User::new("u-none", "No Status", "none@example.com"),
    );
    // The resource-level status (newer SDKs) wins over the deprecated trait one.
    db.user(
        LATEST,
        &User {
            resource_status: Some(DISABLED),
            ..User::new("u-res", "Resource Status", "res@example.com").trait_status(ENABLED)
        },
    );
    // Primary email is chosen even when listed second; login names a nameless user.
    db.user(
        LATEST,
        &User {
            resource_type: "user".into(),
            id: "u-multi".into(),
            login: "multi.login".into(),
            emails: vec![
                ("alias@example.com".into(), false),
                ("primary@example.com".into(), true),
            ],
            link: Some("https://admin.example.com/users/u-multi".into()),
            ..User::default()
        },
    );
    db.user(
        LATEST,
        &User {
            emails: vec![("only@example.com".into(), false)],
            ..User::new("u-noprimary", "No Primary", "")
        },
    );
    // Another user-trait type: its ids are prefixed with the type.
    db.user(
        LATEST,
        &User {
            resource_type: "service_account".into(),
            ..User::new("u-on", "CI bot", "ci@example.com").trait_status(DISABLED)
        },
    );
    // A type the file does not mark as users, but whose resource carries the user trait.
    db.user(
        LATEST,
        &User {
            resource_type: "member".into(),
            ..User::new("m-1", "Trait Only", "trait@example.com")
        },
    );
    // A `user` resource without the trait is still an account (no email).
    db.user(
        LATEST,
        &User {
            no_trait: true,
            ..User::new("u-bare", "Bare", "ignored@example.com")
        },
    );
    db.group(LATEST, "g-1", "Not A User");

    let fx = Fixture::new();
    let snap = fx.fetch(&db.c1z()).await.unwrap();
    assert_eq!(
        ids(&snap),
        vec![
            "member:m-1",
            "service_account:u-on",
            "u-bare",
            "u-del",
            "u-multi",
            "u-none",
            "u-noprimary",
            "u-off",
            "u-on",
            "u-res",
        ]
    );
    let status = |id| account(&snap, id).status;
    assert_eq!(status("u-on"), AccountStatus::Active);
    assert_eq!(status("u-off"), AccountStatus::Suspended);
    assert_eq!(status("u-del"), AccountStatus::Deprovisioned);
    assert_eq!(status("u-none"), AccountStatus::Active);
    assert_eq!(status("u-res"), AccountStatus::Suspended);
    assert_eq!(status("service_account:u-on"), AccountStatus::Suspended);

    let multi = account(&snap, "u-multi");
    assert_eq!(multi.email.as_deref(), Some("primary@example.com"));
    assert_eq!(multi.name.as_deref(), Some("multi.login"));
    assert_eq!(
        multi.url.as_deref(),
        Some("https://admin.example.com/users/u-multi")
    );
    assert_eq!(
        account(&snap, "u-noprimary").email.as_deref(),
        Some("only@example.com")
    );
    assert_eq!(
        account(&snap, "member:m-1").email.as_deref(),
        Some("trait@example.com")
    );
    let bare = account(&snap, "u-bare");
    assert_eq!(
        (bare.email.as_deref(), bare.name.as_deref()),
        (None, Some("Bare"))
    );
    assert_eq!(bare.manager, None);
}

#[tokio::test]
async fn grants_to_users_become_entitlement_ids() {
    let db = C1z::new();
    db.sync(
        OLD,
        "2026-05-01 08:00:00",
        Some("2026-05-01 08:05:00"),
        "full",
    );
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    for sync in [OLD, LATEST] {
        db.standard_types(sync);
        db.user(sync, &User::new("u-ann", "Ann", "ann@example.com"));
        db.group(sync, "g-eng", "Engineering");
        db.group(sync, "g-all", "Everyone");
    }
    db.user(LATEST, &User::new("u-bob", "Bob", "bob@example.com"));
    db.resource_type(LATEST, "role", &[TRAIT_ROLE]);
    db.entitlement(LATEST, "group", "g-eng", "member");
    db.entitlement(LATEST, "role", "admin", "assigned");
    db.grant(LATEST, ("group", "g-eng", "member"), ("user", "u-ann"));
    db.grant(LATEST, ("role", "admin", "assigned"), ("user", "u-ann"));
    db.grant(LATEST, ("group", "g-eng", "member"), ("user", "u-bob"));
    // A group nested in a group: not an account; the syncer has already
    // written the expanded per-user grants.
    db.grant(LATEST, ("group", "g-all", "member"), ("group", "g-eng"));
    db.grant(LATEST, ("group", "g-all", "member"), ("user", "u-ann"));
    // A principal the sync never listed as a resource.
    db.grant(LATEST, ("group", "g-eng", "member"), ("user", "u-unknown"));
    // An older sync's grant is not read.
    db.grant(OLD, ("role", "owner", "assigned"), ("user", "u-ann"));

    // The system temp dir this time, as in production.
    let fx = Fixture::new();
    let any = AnySource::C1z(C1zSource::new(
        fx.write("okta.c1z", &db.c1z()),
        "okta".into(),
    ));
    let snap = any.fetch().await.unwrap();
    assert_eq!(ids(&snap), vec!["u-ann", "u-bob"]);
    assert_eq!(
        account(&snap, "u-ann").entitlements,
        vec![
            "group:g-all:member",
            "group:g-eng:member",
            "role:admin:assigned"
        ]
    );
    assert_eq!(
        account(&snap, "u-bob").entitlements,
        vec!["group:g-eng:member"]
    );
    // AnySource normalizes: emails lowercased.
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    db.user(LATEST, &User::new("u-1", "Cy", "Cy@Example.COM"));
    let any = AnySource::C1z(fx.source(&fx.write("x.c1z", &db.c1z())));
    let snap = any.fetch().await.unwrap();
    assert_eq!(snap.accounts[0].email.as_deref(), Some("cy@example.com"));
}

#[tokio::test]
async fn configured_through_accessd_toml() {
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    db.user(
        LATEST,
        &User::new("u-1", "Dee", "dee@example.com").trait_status(DISABLED),
    );
    let fx = Fixture::new();
    fx.write("github.c1z", &db.c1z());
    let toml = "[[sources]]\nid = \"baton-github\"\nkind = \"c1z\"\npath = \"github.c1z\"\napp = \"github\"\n";
    let config = accessd::config::parse(toml, &fx.dir.path().join("accessd.toml")).unwrap();
    let source = AnySource::from_config(&config.sources[0], None).unwrap();
    let snap = source.fetch().await.unwrap();
    assert_eq!(snap.accounts.len(), 1);
    assert_eq!(snap.accounts[0].app, "github");
    assert_eq!(snap.accounts[0].status, AccountStatus::Suspended);
}

#[tokio::test]
async fn v3_pebble_files_are_refused_with_the_storage_engine_hint() {
    let mut bytes = b"C1Z3\0".to_vec();
    bytes.extend([0x0a, 0x02, 0x08, 0x01]);
    bytes.extend(zstd::encode_all(&b"pebble checkpoint tar"[..], 3).unwrap());
    let fx = Fixture::new();
    let msg = invalid(fx.fetch(&bytes).await);
    assert!(msg.contains("BATON_STORAGE_ENGINE=sqlite"), "{msg}");
    assert!(msg.contains("okta.c1z"), "{msg}");
    assert!(msg.contains("v3"), "{msg}");
    fx.assert_scratch_empty();
}

#[tokio::test]
async fn files_without_the_magic_are_refused_naming_the_file() {
    let fx = Fixture::new();
    let msg = invalid(fx.fetch(b"{\"apps\": [], \"accounts\": []}").await);
    assert!(
        msg.contains("okta.c1z") && msg.contains("not a c1z file"),
        "{msg}"
    );
    let msg = invalid(fx.fetch(b"C1Z").await);
    assert!(
        msg.contains("okta.c1z") && msg.contains("not a c1z file"),
        "{msg}"
    );
    // A bare zstd stream of the database, magic missing.
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    let zstd_only = zstd::encode_all(&db.database()[..], 3).unwrap();
    assert!(invalid(fx.fetch(&zstd_only).await).contains("not a c1z file"));
    fx.assert_scratch_empty();
}

#[tokio::test]
async fn a_truncated_or_corrupt_zstd_stream_is_an_error_not_a_smaller_snapshot() {
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    for i in 0..200 {
        db.user(
            LATEST,
            &User::new(&format!("u-{i}"), "Someone", &format!("p{i}@example.com")),
        );
    }
    let whole = db.c1z();
    let fx = Fixture::new();
    assert_eq!(fx.fetch(&whole).await.unwrap().accounts.len(), 200);

    let truncated = &whole[..whole.len() / 2];
    let msg = invalid(fx.fetch(truncated).await);
    assert!(msg.contains("okta.c1z") && msg.contains("zstd"), "{msg}");

    let mut garbled = whole.clone();
    for b in &mut garbled[40..80] {
        *b ^= 0x5a;
    }
    assert!(matches!(
        fx.fetch(&garbled).await,
        Err(SourceError::Invalid(_))
    ));

    let msg = invalid(fx.fetch(b"C1ZF\0this is not zstd at all").await);
    assert!(msg.contains("zstd"), "{msg}");
    fx.assert_scratch_empty();
}

#[tokio::test]
async fn a_payload_that_is_not_a_baton_database_is_invalid() {
    let fx = Fixture::new();
    let msg = invalid(
        fx.fetch(&wrap(
            b"plain text, not SQLite, long enough to be a header maybe",
        ))
        .await,
    );
    assert!(msg.contains("okta.c1z"), "{msg}");
    // A real SQLite database without Baton's tables.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("create table people (id integer primary key, email text);")
        .unwrap();
    conn.close().unwrap();
    let msg = invalid(fx.fetch(&wrap(&std::fs::read(&other).unwrap())).await);
    assert!(msg.contains("v1_sync_runs"), "{msg}");
    // A protobuf blob that does not decode names its row.
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    db.user(LATEST, &User::new("u-1", "Ok", "ok@example.com"));
    let bytes = db.database();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, &bytes).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("update v1_resources set data = x'0aff'", [])
        .unwrap();
    conn.close().unwrap();
    let msg = invalid(fx.fetch(&wrap(&std::fs::read(&path).unwrap())).await);
    assert!(msg.contains("v1_resources row 1"), "{msg}");
    fx.assert_scratch_empty();
}

#[tokio::test]
async fn a_file_with_no_finished_full_sync_is_invalid() {
    let db = C1z::new();
    db.sync(RUNNING, "2026-05-03 08:00:00", None, "full");
    db.sync(
        PARTIAL,
        "2026-05-03 09:00:00",
        Some("2026-05-03 09:01:00"),
        "partial",
    );
    db.user(RUNNING, &User::new("u-1", "Half", "half@example.com"));
    db.user(PARTIAL, &User::new("u-2", "Part", "part@example.com"));
    let fx = Fixture::new();
    let msg = invalid(fx.fetch(&db.c1z()).await);
    assert!(
        msg.contains("no finished full sync") && msg.contains("okta.c1z"),
        "{msg}"
    );
    fx.assert_scratch_empty();
}

#[tokio::test]
async fn a_missing_file_is_unavailable() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("not-written-yet.c1z");
    match fx.source(&path).fetch().await {
        Err(SourceError::Unavailable(m)) => assert!(m.contains("not-written-yet.c1z"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn decompression_is_bounded() {
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    let bytes = db.c1z();
    let fx = Fixture::new();
    let path = fx.write("big.c1z", &bytes);
    let small = fx.source(&path).with_max_decompressed(4096);
    let msg = invalid(small.fetch().await);
    assert!(
        msg.contains("more than 4096 bytes") && msg.contains("big.c1z"),
        "{msg}"
    );
    fx.assert_scratch_empty();
    // The same file within the default bound reads (an empty sync).
    assert!(fx.source(&path).fetch().await.unwrap().accounts.is_empty());
}

#[tokio::test]
async fn an_unwritable_temp_dir_is_unavailable() {
    let db = C1z::new();
    db.sync(
        LATEST,
        "2026-05-02 08:00:00",
        Some("2026-05-02 08:04:00"),
        "full",
    );
    let fx = Fixture::new();
    let path = fx.write("x.c1z", &db.c1z());
    let source = C1zSource::new(path, "okta".into()).with_temp_dir(fx.dir.path().join("nope"));
    match source.fetch().await {
        Err(SourceError::Unavailable(m)) => assert!(m.contains("temporary file"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
