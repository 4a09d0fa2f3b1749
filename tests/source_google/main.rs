//! The `google` source against loopback fakes (`fake.rs`) of Google's
//! token endpoint and Directory API: paging, status and entitlement mapping,
//! token caching and renewal, and every way a sync must fail whole.

mod fake;

use std::collections::HashMap;
use std::time::Duration;

use accessd::sources::google::GoogleSource;
use accessd::sources::{AccountStatus, Snapshot, SourceError};
use fake::*;
use serde_json::{json, Value};

async fn fetch(source: &GoogleSource) -> Result<Snapshot, SourceError> {
    source.fetch().await.and_then(Snapshot::normalized)
}

fn user(id: &str, email: &str, name: &str) -> Value {
    json!({ "kind": "admin#directory#user", "id": id, "primaryEmail": email,
            "name": { "givenName": name, "familyName": "Test", "fullName": format!("{name} Test") },
            "isAdmin": false, "suspended": false, "archived": false,
            "orgUnitPath": "/", "customerId": CUSTOMER })
}

fn member(id: &str, email: &str, kind: &str) -> Value {
    json!({ "kind": "admin#directory#member", "etag": "\"m\"", "id": id, "email": email,
            "role": "MEMBER", "type": kind, "status": "ACTIVE" })
}

fn directory() -> Fake {
    let mut ann = user("100", "Ann@Example.com", "Ann");
    ann["relations"] = json!([{ "value": "boss@example.com", "type": "manager" },
                              { "value": "Assistant@example.com", "type": "assistant" }]);
    let mut cho = user("102", "cho@example.com", "Cho");
    cho["suspended"] = true.into();
    cho["suspensionReason"] = "ADMIN".into();
    let mut dee = user("103", "dee@example.com", "Dee");
    dee["archived"] = true.into();
    dee["suspended"] = true.into();
    let groups = vec![
        json!({ "kind": "admin#directory#group", "id": "g-eng", "email": "eng@example.com", "name": "Engineering", "directMembersCount": "4" }),
        json!({ "kind": "admin#directory#group", "id": "g-ops", "email": "ops@example.com", "name": "Ops", "directMembersCount": "1" }),
        json!({ "kind": "admin#directory#group", "id": "g-all", "email": "all@example.com", "name": "Everyone", "directMembersCount": "0" }),
    ];
    let members = HashMap::from([
        (
            "g-eng".to_string(),
            vec![
                member("100", "ann@example.com", "USER"),
                // Matched by email alone (case differs).
                json!({ "kind": "admin#directory#member", "email": "Cho@Example.com", "role": "OWNER", "type": "USER", "status": "ACTIVE" }),
                member("g-ops", "ops@example.com", "GROUP"),
                member("999", "stranger@other.example", "USER"),
                member("104", "eve@example.com", "USER"),
            ],
        ),
        (
            "g-ops".to_string(),
            vec![member("104", "eve@example.com", "USER")],
        ),
        ("g-all".to_string(), vec![]),
    ]);
    Fake {
        users: vec![
            ann,
            user("101", "boss@example.com", "Boss"),
            cho,
            dee,
            user("104", "eve@example.com", "Eve"),
        ],
        groups,
        members,
        ..Fake::default()
    }
}

#[tokio::test]
async fn reads_users_groups_and_members_across_pages_with_one_token() {
    let (source, fake, _dir) = start(directory()).await;
    let snap = fetch(&source).await.expect("a complete snapshot");

    assert!(snap.apps.is_empty());
    let by_id: HashMap<&str, _> = snap.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut ids: Vec<&str> = by_id.keys().copied().collect();
    ids.sort();
    assert_eq!(ids, vec!["100", "101", "102", "103", "104"]);
    assert!(snap.accounts.iter().all(|a| a.app == "workspace"));

    let ann = by_id["100"];
    assert_eq!(ann.email.as_deref(), Some("ann@example.com"));
    assert_eq!(ann.name.as_deref(), Some("Ann Test"));
    assert_eq!(ann.status, AccountStatus::Active);
    assert_eq!(ann.manager.as_deref(), Some("boss@example.com"));
    assert_eq!(ann.entitlements, vec!["eng@example.com"]);
    assert_eq!(
        ann.url.as_deref(),
        Some("https://admin.google.com/ac/users/100")
    );
    assert_eq!(by_id["101"].manager, None);
    assert!(by_id["101"].entitlements.is_empty());
    assert_eq!(by_id["102"].status, AccountStatus::Suspended);
    assert_eq!(by_id["102"].entitlements, vec!["eng@example.com"]);
    assert_eq!(by_id["103"].status, AccountStatus::Deprovisioned);
    assert_eq!(
        by_id["104"].entitlements,
        vec!["eng@example.com", "ops@example.com"]
    );

    {
        let fake = fake.lock().unwrap();
        assert_eq!(
            fake.seen,
            vec![
                "/users?first",
                "/users?page-1",
                "/users?page-2",
                "/groups?first",
                "/groups?page-1",
                "/groups/g-eng/members?first",
                "/groups/g-eng/members?page-1",
                "/groups/g-eng/members?page-2",
                "/groups/g-ops/members?first",
                "/groups/g-all/members?first",
            ]
        );
        assert_eq!(fake.minted.len(), 1, "one token for all ten calls");
        let claims = &fake.claims[0];
        assert_eq!(claims["sub"], ADMIN);
        assert_eq!(claims["iss"], CLIENT_EMAIL);
    }
    // The next sync reuses the token while it is fresh.
    let again = fetch(&source).await.unwrap();
    assert_eq!(again, snap);
    assert_eq!(fake.lock().unwrap().minted.len(), 1);
}

#[tokio::test]
async fn a_token_near_its_expiry_is_renewed() {
    // A one-second token is renewed after half its life.
    let (source, fake, _dir) = start(Fake {
        expires_in: 1,
        ..directory()
    })
    .await;
    fetch(&source).await.unwrap();
    let before = fake.lock().unwrap().minted.len();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fetch(&source).await.unwrap();
    assert!(fake.lock().unwrap().minted.len() > before);
}

#[tokio::test]
async fn delegation_not_granted_is_an_auth_error() {
    let (source, fake, _dir) = start(Fake {
        subject: "someone-else@example.com".into(),
        ..directory()
    })
    .await;
    let err = fetch(&source).await.expect_err("refused");
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, SourceError::Auth(m) if m.contains("401") && m.contains("unauthorized_client") && m.contains("/token")),
        "{shown}"
    );
    assert!(
        fake.lock().unwrap().seen.is_empty(),
        "no API call without a token"
    );
    assert!(!shown.contains("MIIE") && !shown.contains("eyJ"), "{shown}");
}

#[tokio::test]
async fn an_assertion_signed_with_an_unknown_key_is_an_auth_error() {
    let (_, fake, dir) = start(directory()).await;
    let token_uri = fake.lock().unwrap().token_uri.clone();
    let mut j = key_json();
    j["private_key"] = TEST_ONLY_OTHER_PRIVATE_KEY.into();
    let source = GoogleSource::new(&key_file(&dir, j), CUSTOMER, ADMIN, &token_uri, "w".into())
        .unwrap()
        .with_api_base(token_uri.trim_end_matches("/token"));
    let err = fetch(&source).await.expect_err("bad signature");
    assert!(
        matches!(&err, SourceError::Auth(m) if m.contains("400") && m.contains("Invalid JWT Signature")),
        "{err:?}"
    );
    assert!(fake.lock().unwrap().minted.is_empty());
}

#[tokio::test]
async fn a_refused_access_token_is_auth_and_replaced_next_time() {
    let (source, fake, _dir) = start(directory()).await;
    fetch(&source).await.unwrap();
    let first = fake.lock().unwrap().minted[0].clone();
    fake.lock().unwrap().revoked.push(first.clone());

    let err = fetch(&source).await.expect_err("revoked");
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, SourceError::Auth(m) if m.contains("401") && m.contains("/admin/directory/v1/users")),
        "{shown}"
    );
    assert!(
        !shown.contains(&first) && !shown.contains("secret"),
        "{shown}"
    );
    assert!(fetch(&source).await.is_ok(), "a new token was minted");
    assert_eq!(fake.lock().unwrap().minted.len(), 2);
}

#[tokio::test]
async fn an_error_on_a_later_page_fails_the_whole_fetch() {
    let mut fake = directory();
    fake.faults.insert(
        ("/users".into(), 1),
        Fault {
            status: 503,
            retry_after: None,
            body: google_error(
                503,
                "The service is currently unavailable.",
                "backendError",
                "UNAVAILABLE",
            ),
        },
    );
    let (source, _, _dir) = start(fake).await;
    let err = fetch(&source).await.expect_err("no partial snapshot");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("503") && m.contains("/users")),
        "{err:?}"
    );

    let mut fake = directory();
    fake.faults.insert(
        ("/groups/g-eng/members".into(), 2),
        Fault {
            status: 500,
            retry_after: None,
            body: google_error(
                500,
                "Internal error encountered.",
                "backendError",
                "INTERNAL",
            ),
        },
    );
    let (source, _, _dir) = start(fake).await;
    let err = fetch(&source).await.expect_err("no partial snapshot");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("500") && m.contains("g-eng")),
        "{err:?}"
    );
}

#[tokio::test]
async fn rate_limits_carry_the_retry_hint() {
    let mut fake = directory();
    fake.faults.insert(
        ("/groups".into(), 1),
        Fault {
            status: 429,
            retry_after: Some("30"),
            body: google_error(
                429,
                "Quota exceeded",
                "rateLimitExceeded",
                "RESOURCE_EXHAUSTED",
            ),
        },
    );
    let (source, _, _dir) = start(fake).await;
    let err = fetch(&source).await.expect_err("rate limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{err:?}");

    // Google's usual form: 403 with a quota reason, not refused credentials.
    let mut fake = directory();
    fake.faults.insert(
        ("/users".into(), 2),
        Fault {
            status: 403,
            retry_after: None,
            body: json!({ "error": { "code": 403, "message": "Quota exceeded for quota metric 'Queries'",
                "errors": [{ "message": "Quota exceeded", "domain": "usageLimits", "reason": "userRateLimitExceeded" }] } }),
        },
    );
    let (source, _, _dir) = start(fake).await;
    let err = fetch(&source).await.expect_err("rate limited");
    assert!(
        matches!(err, SourceError::RateLimited { retry_after: None }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_page_token_that_leads_back_is_refused() {
    let (source, fake, _dir) = start(Fake {
        looping: true,
        ..directory()
    })
    .await;
    let err = fetch(&source).await.expect_err("loop");
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("nextPageToken")),
        "{err:?}"
    );
    assert!(fake.lock().unwrap().seen.len() <= 3);
}

#[tokio::test]
async fn an_api_that_is_down_is_unavailable() {
    let (source, _, _dir) = start(directory()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = source.with_api_base(&format!("http://127.0.0.1:{port}"));
    let err = fetch(&source).await.expect_err("nobody listens");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("connect")),
        "{err:?}"
    );
}

#[test]
fn key_file_problems_are_named_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let body_line = TEST_ONLY_PRIVATE_KEY.lines().nth(3).unwrap();
    let try_key = |json: Value| {
        let path = key_file(&dir, json);
        GoogleSource::new(&path, "", ADMIN, "", "workspace".into()).map(|_| ())
    };
    let check = |result: Result<(), String>, wanted: &str| {
        let err = result.expect_err(wanted);
        assert!(err.contains(wanted), "{err}");
        assert!(
            err.contains("key.json") || wanted.contains("token_uri"),
            "{err}"
        );
        assert!(!err.contains(body_line) && !err.contains("MIIE"), "{err}");
    };

    let missing = dir.path().join("nope.json");
    let err = GoogleSource::new(&missing, "", ADMIN, "", "w".into()).unwrap_err();
    assert!(
        err.contains("cannot read") && err.contains("nope.json"),
        "{err}"
    );

    let path = dir.path().join("key.json");
    std::fs::write(&path, format!("{{\"private_key\": \"{body_line}\" oops")).unwrap();
    let err = GoogleSource::new(&path, "", ADMIN, "", "w".into()).unwrap_err();
    assert!(
        err.contains("not JSON") && !err.contains(body_line),
        "{err}"
    );

    let mut j = key_json();
    j["type"] = "authorized_user".into();
    check(try_key(j), "\"authorized_user\" credentials");

    let mut j = key_json();
    j["private_key"] = TEST_ONLY_PRIVATE_KEY
        .replace("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY")
        .into();
    check(try_key(j), "PKCS#1");

    let mut j = key_json();
    j["private_key"] = TEST_ONLY_PRIVATE_KEY.replace(body_line, "!!!!").into();
    check(try_key(j), "base64");

    let mut j = key_json();
    let truncated: String = TEST_ONLY_PRIVATE_KEY
        .lines()
        .take(10)
        .collect::<Vec<_>>()
        .join("\n");
    j["private_key"] = format!("{truncated}\n-----END PRIVATE KEY-----\n").into();
    check(try_key(j), "not a usable RSA key");

    let mut j = key_json();
    j.as_object_mut().unwrap().remove("client_email");
    check(try_key(j), "client_email");

    let mut j = key_json();
    j.as_object_mut().unwrap().remove("token_uri");
    check(try_key(j), "token_uri");

    // A good file: the configured token_uri is optional, the file's is used.
    let source = GoogleSource::new(&key_file(&dir, key_json()), "", ADMIN, "", "w".into()).unwrap();
    let shown = format!("{source:?}");
    assert!(
        shown.contains("oauth2.googleapis.com/token") && shown.contains("my_customer"),
        "{shown}"
    );
    assert!(
        !shown.contains("MIIE") && !shown.contains(body_line),
        "{shown}"
    );
}
