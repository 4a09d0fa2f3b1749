//! The loopback fakes of the `google` source tests, following Google's
//! documented answers: an OAuth token endpoint that verifies the RS256 JWT
//! assertion with the test key's public key and checks `iss`, `sub`,
//! `scope`, `aud` and the lifetime, and a Directory API that checks the
//! bearer token and pages users, groups and members with `nextPageToken`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use accessd::sources::google::GoogleSource;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

/// TEST-ONLY RSA key, generated for this file with
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`.
/// It protects nothing and must never be used anywhere else.
pub const TEST_ONLY_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDbzE2yCYCuKT+r
yuVPvIvFybxKjmjXCiYky+1Wi/HTUCGTR96x7/vWCZRqydrtk5cCX1Z6j5Juk4z5
2KBiQtrDSsY76X/QhvTZGM465bfN18+EIYdaruJ25UX+ALlqs877gEWKus/62pzq
9WAaxXNv8PswzJuMd5PukBkug7gywidQKSGzVCpgT4svYwq3TlmJz1FTj7layBR2
xv3jS0JXOiQDTwtjvGqrfZOGIOyFma2HWEHI//+lLFzuktQue23KSAU4d8O5VOwi
mzFw8b/VXj4wxR3fRdEVaprpO8w3vLf1y4I498JaVrfCcJLWneYH/wNNuTuXLmxJ
2YnfczNZAgMBAAECggEATrCzNEVQq4mbAP8v378p71LNNYgMoshAZbYYr36EwlmS
267EXMIFUFi3qQ/BcIMBclj9lf1muG3c7+oNaYBz360akYKEPvzCFiNaWh26E1jr
M2vpkJ7B9z0YNNq/hyL+vG3s98DwCuhPe5MDqDH+pRoKZCssmTqKXMN8MHn57TmJ
g2Yw5zEND/Nj3wZ5bACrwaNjAhUjOZuMoFvQ5F0nmbbVRdEtyK1eg3jijyfTMbJW
KXIpGVkfn0NLZ60N4nhPpjafIAUwXL/y5fiMPcxrVDnnUlq+T+DRpP/hAVATbVuw
+Mi6cDsyle86kS0UWSrpDOYTpfu2CQtxLdd0EyCmvQKBgQDygdiZ83THNmR+3gH6
eEBFANJ7gi6hbvXYH+GKbf5QdFhB4zda7H6S081fX4IVZNdWgQMxzMHEXqhgb9OV
q89xMIfwfAFMmw+omKO6ZWL7BmVCDaJ+Yzag9ALtAytpcwdS1c9+w/eXzTf2BNLP
ZOQdwSXhb4JZ/cc1Q1gjcfURIwKBgQDoBv/XdahqfutSpPO7fzhqrvHaFv0SIVzr
lvLhJHkOvyqlxUm4PGBMHuB70AGiP6GCylHC7YALuNQx+B/oX/kt5peTkTKxtbsX
5Yk96ZXOCvq8Tmgg3nOSkdXE6E+NHo7EZ1rvXBsu75pe4mwXf5GVpxoRQA74J44C
4/oQQkGXUwKBgHo+Uf1o59jz5jy9lKm5rEwcWf3AZdkiofLMP1kUkTnlLAgqjWDc
DgHdmo0VC/HU32fPqNiVqqdeP+o89J9h+DPKjvv+xnjjQUVvjDkNmpOHacueK+ci
BAumdUMccem5/lsXRH1WM5zl6euuCsZYyVTmZD37g+3xK1YCGI/lhe+ZAoGBAIVE
j+onECaq42rCh6OnvLW56fvDvHOPahl+x9383vNTZaF1IZSKSR0vluxGWsngFlpS
7ocxdpxE+swAogMMLMjqayE9AosDwIRHOH6xDXQc5ksGFdTbMDJ9RPUmIZsCdCnm
21oj4xEgWeAp2L/ea7YzFkvWKULrJSwP2W9BPv81AoGABU9SG1YVI5wzD6ykHW6z
UyRXRhjWJ5F10KrMfVJ6NPjeQgrkruI3VBul0rxW803bI3ZDCx3KH7m+69FddQ+K
+FRHQZpHWNvulmQZA4inQHAmOnWinIsXGVK7gUWiJ6RdzTVLYKhxVzQrHsiUrZTO
cWoAztHXsch+ULkwXth2ZMw=
-----END PRIVATE KEY-----
";

/// Its public half (`openssl rsa -RSAPublicKey_out`): the fake token endpoint
/// verifies assertions with it.
const TEST_ONLY_PUBLIC_KEY: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA28xNsgmArik/q8rlT7yLxcm8So5o1womJMvtVovx01Ahk0fese/7
1gmUasna7ZOXAl9Weo+SbpOM+digYkLaw0rGO+l/0Ib02RjOOuW3zdfPhCGHWq7i
duVF/gC5arPO+4BFirrP+tqc6vVgGsVzb/D7MMybjHeT7pAZLoO4MsInUCkhs1Qq
YE+LL2MKt05Zic9RU4+5WsgUdsb940tCVzokA08LY7xqq32ThiDshZmth1hByP//
pSxc7pLULnttykgFOHfDuVTsIpsxcPG/1V4+MMUd30XRFWqa6TvMN7y39cuCOPfC
Wla3wnCS1p3mB/8DTbk7ly5sSdmJ33MzWQIDAQAB
-----END RSA PUBLIC KEY-----
";

/// A second TEST-ONLY key (same origin, same warning) that the token
/// endpoint does not know: a stand-in for a rotated or deleted key.
pub const TEST_ONLY_OTHER_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCpI2rqDL1Xuyg7
PP9zC/HAjc2KUxIgB4IZ7d3lGeIUr4U1xBLuhmOz5esFsI8VEH4ICucQvi1SLd8q
4bhZfgqfSsx0FeBOadOo4mpX7nvwvL+AapXpKjuAm3YjTJWZA7FQAFY4Qw1US+hE
pMwS1W274CY2mOOg7O1j+rwvA6NXYwNA62MNDm/GH+1pJOmdJJvfFFnmOKIvMSi+
3cwxmRCHXhZZnJ47Ru+7hHhDJOkKMk/MBV7W0Gc2hAO6qDrS7abwTZcdzb7TlbtF
YcEQ2Tmw+EQakp+W09Kuq/D+wiVn4BKdlmhO3gR8ZnKyWfnclIuNnGALmP2Q6PsV
GPhVZYIpAgMBAAECggEAFBrp7U7c3fYZGuuOCPCpSMSCY3gq7iQ+VpM0HnTUbzWK
/eBkCLbwWJTSuk8pvu0CMjYLj+2vSPa7cac5qOem3xb+1Si5jFCfkJJzZibq1Cu3
js38qmXzAz9XjGwg1zq9Y79agF8WEUhhoHE/cditbdj/6dsEKd+n+0u1fVgvHSau
HyV9XQvJhMk3xO5f8zPsj4OswVZ5rE93rSfKZbunS4HHKTvjehczsGW9HzLtMWVc
wMSqeWjohq6FmLRXU8pcJLH823WV8dwBmEyMknylSpUKTxtro7sqDWN0IozIx5ok
HBaU1I2J1g99sQIlcZs3Mh+oKNQID+dYu52K6y67RQKBgQDXavYX5RX0BX8h0iEC
0AH/KrxcMkI48q0oenOfaAWk6tDpQxfPW2m3je/t497myVnyq0LH2omLcjQXbuYd
2SOlz/GSgBltA9PPeQ+W8hG5Y2zQje55AQ2jmArEd3q31+xt/O7eWLKDmg29RGki
ECDW3Rq4hHYwOiWAsPjhbBeNfQKBgQDJAIS77X8oArBFcanOpT7QrVYiOmyyLgLF
9WI6mtyHPBFEFzcoTtcOkm9Q3+iYVogxavKkUyRdNsJjIechdxnA4VOcqP6EF3JZ
JsaljBP4G9jcRCYzWMgBtG5FQ88BCmejNPxCPrdZfw19DBWVc3UiMqKOVOzlce07
gv97QUlXHQKBgQCrLo1XGa2jV4baam/fG0qq6dv669liBb6CbyRYZUIu9oaDBtTx
63OL8JfcE/t6rED1LREJXel1TZCFmpP03iuMxTzzrSYHUkZMFajEy6I4DwFWjaMW
tzaObPEJhOSZGVYBZUCwog1htNb8M1PURLrD47orLN/6nQpWRMvR3qKsxQKBgEua
AFLXD36zFC3qhJ4PFUNUDxOsufmCyNRAaYP1f4D2HOBpgvuMO+NlPK1Eqq2xzmQX
/8/C3eiZkh/LPq4dp/geSF6iSajRUNcreIgH2fL2NmkS0PN7Ly9E+DzhNlkD2ttO
MJuSD1CAM0iXZP7jgGkudmnmk3vxj/NUYFexxK4ZAoGAMxgNiju8lyye6GW7kzwQ
xmpNNhOmzSUdnvk9IuY1AaGIaNoASInTwW8YzM+NoqlRjAnApaId9yL4tSWRhLu0
wKuE6XaFHKNjWn9x+sNp3u1gFv2+o17r6Dxzx+0QlYWoy61BEzWG6jcwThNYnwbk
Cs8nqvrTFDU/OoLYZh/1suA=
-----END PRIVATE KEY-----
";

pub const CLIENT_EMAIL: &str = "accessd-reader@accessd-test.iam.gserviceaccount.com";
pub const KEY_ID: &str = "0123456789abcdef-test-key";
pub const ADMIN: &str = "admin@example.com";
pub const CUSTOMER: &str = "C01abc23d";
const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly \
                      https://www.googleapis.com/auth/admin.directory.group.readonly";

/// What the fake answers at one page of one path.
#[derive(Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub body: Value,
}

#[derive(Default)]
pub struct Fake {
    /// The full URL of the token endpoint: the JWT's `aud` must equal it.
    pub token_uri: String,
    /// The one admin delegation was granted for.
    pub subject: String,
    pub expires_in: u64,
    /// Access tokens issued, in order; the Directory API accepts these.
    pub minted: Vec<String>,
    pub revoked: Vec<String>,
    /// Claims of every verified assertion.
    pub claims: Vec<Value>,
    pub users: Vec<Value>,
    pub groups: Vec<Value>,
    pub members: HashMap<String, Vec<Value>>,
    /// Items per page the fake answers (Google may send fewer than maxResults).
    pub page: usize,
    /// (path, page number from 0) → fault.
    pub faults: HashMap<(String, usize), Fault>,
    /// Every nextPageToken leads back to the first page.
    pub looping: bool,
    /// Every Directory request as `path?pageToken`.
    pub seen: Vec<String>,
}

pub type Shared = Arc<Mutex<Fake>>;

pub fn google_error(status: u16, message: &str, reason: &str, state: &str) -> Value {
    json!({ "error": { "code": status, "message": message,
                       "errors": [{ "message": message, "domain": "global", "reason": reason }],
                       "status": state } })
}

fn answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// OAuth 2.0 token endpoint, JWT bearer grant (RFC 7523), Google's errors.
async fn token(State(fake): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut fake = fake.lock().unwrap();
    let invalid_grant = |why: &str| {
        answer(
            400,
            json!({ "error": "invalid_grant", "error_description": why }),
        )
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return answer(
            400,
            json!({ "error": "unsupported_grant_type", "error_description": "Invalid grant_type" }),
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return invalid_grant("Missing required parameter: assertion");
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return invalid_grant("Invalid JWT: Token must be a short-lived token");
    }
    let public_der = pem_body(TEST_ONLY_PUBLIC_KEY, "RSA PUBLIC KEY");
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
    let signed = format!("{}.{}", parts[0], parts[1]);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &public_der,
    );
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return invalid_grant("Invalid JWT Signature.");
    }
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], KEY_ID);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().unwrap_or_default();
    if claims["iss"] != CLIENT_EMAIL
        || claims["aud"] != fake.token_uri.as_str()
        || iat.abs_diff(now) > 60
        || claims["exp"].as_u64() != Some(iat + 3600)
    {
        return invalid_grant("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
    }
    if claims["sub"] != fake.subject.as_str() || claims["scope"] != SCOPES {
        return answer(
            401,
            json!({ "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested." }),
        );
    }
    fake.claims.push(claims);
    let access = format!("ya29.test-access-{}-secret", fake.minted.len() + 1);
    fake.minted.push(access.clone());
    answer(
        200,
        json!({ "access_token": access, "expires_in": fake.expires_in, "token_type": "Bearer" }),
    )
}

fn pem_body(pem: &str, label: &str) -> Vec<u8> {
    let b64: String = pem
        .replace(&format!("-----BEGIN {label}-----"), "")
        .replace(&format!("-----END {label}-----"), "")
        .split_whitespace()
        .collect();
    STANDARD.decode(b64).unwrap()
}

/// One page of a Directory listing, as users.list / groups.list /
/// members.list answer it.
fn directory_page(
    fake: &mut Fake,
    path: &str,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    kind: &str,
    field: &str,
    all: Vec<Value>,
) -> Response {
    let token = q.get("pageToken").cloned();
    fake.seen.push(format!(
        "{path}?{}",
        token.clone().unwrap_or_else(|| "first".into())
    ));
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !fake.minted.contains(&bearer) || fake.revoked.contains(&bearer) {
        return answer(
            401,
            google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "authError",
                "UNAUTHENTICATED",
            ),
        );
    }
    let number: usize = token
        .as_deref()
        .and_then(|t| t.strip_prefix("page-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if let Some(fault) = fake.faults.get(&(path.to_string(), number)).cloned() {
        let mut response = answer(fault.status, fault.body);
        if let Some(wait) = fault.retry_after {
            response
                .headers_mut()
                .insert("retry-after", wait.parse().unwrap());
        }
        return response;
    }
    let items: Vec<Value> = all
        .iter()
        .skip(number * fake.page)
        .take(fake.page)
        .cloned()
        .collect();
    let mut body = json!({ "kind": kind, "etag": "\"etag-1\"" });
    if !items.is_empty() {
        body[field] = items.into();
    }
    if (number + 1) * fake.page < all.len() {
        let next = if fake.looping { 0 } else { number + 1 };
        body["nextPageToken"] = format!("page-{next}").into();
    }
    answer(200, body)
}

async fn users(
    State(fake): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut fake = fake.lock().unwrap();
    assert_eq!(q["customer"], CUSTOMER);
    assert_eq!(q["projection"], "full");
    assert_eq!(q["maxResults"], "500");
    let all = fake.users.clone();
    directory_page(
        &mut fake,
        "/users",
        &headers,
        &q,
        "admin#directory#users",
        "users",
        all,
    )
}

async fn groups(
    State(fake): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut fake = fake.lock().unwrap();
    assert_eq!(q["customer"], CUSTOMER);
    assert_eq!(q["maxResults"], "200");
    let all = fake.groups.clone();
    directory_page(
        &mut fake,
        "/groups",
        &headers,
        &q,
        "admin#directory#groups",
        "groups",
        all,
    )
}

async fn members(
    State(fake): State<Shared>,
    Path(group): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut fake = fake.lock().unwrap();
    assert_eq!(q["includeDerivedMembership"], "true");
    let Some(all) = fake.members.get(&group).cloned() else {
        return answer(
            404,
            google_error(404, "Resource Not Found: groupKey", "notFound", "NOT_FOUND"),
        );
    };
    directory_page(
        &mut fake,
        &format!("/groups/{group}/members"),
        &headers,
        &q,
        "admin#directory#members",
        "members",
        all,
    )
}

/// Starts the fakes; answers the source pointed at them and the fake.
pub async fn start(mut fake: Fake) -> (GoogleSource, Shared, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    fake.token_uri = format!("{base}/token");
    if fake.subject.is_empty() {
        fake.subject = ADMIN.into();
    }
    if fake.expires_in == 0 {
        fake.expires_in = 3599;
    }
    if fake.page == 0 {
        fake.page = 2;
    }
    let token_uri = fake.token_uri.clone();
    let shared = Arc::new(Mutex::new(fake));
    let app = Router::new()
        .route("/token", post(token))
        .route("/admin/directory/v1/users", get(users))
        .route("/admin/directory/v1/groups", get(groups))
        .route("/admin/directory/v1/groups/{group}/members", get(members))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir, key_json());
    let source = GoogleSource::new(&file, CUSTOMER, ADMIN, &token_uri, "workspace".into())
        .expect("valid key file")
        .with_api_base(&base);
    (source, shared, dir)
}

/// A key file as the Cloud console downloads it. Its own token_uri is
/// Google's: the configured loopback one must win.
pub fn key_json() -> Value {
    json!({
        "type": "service_account",
        "project_id": "accessd-test",
        "private_key_id": KEY_ID,
        "private_key": TEST_ONLY_PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com"
    })
}

pub fn key_file(dir: &tempfile::TempDir, json: Value) -> PathBuf {
    let path = dir.path().join("key.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}
