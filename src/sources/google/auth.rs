//! Service-account auth of the `google` source: reads and checks the JSON
//! key file, signs the RS256 JWT assertion (RFC 7523) that impersonates the
//! admin `subject` through domain-wide delegation, trades it at the token
//! endpoint for an access token and keeps that until shortly before expiry.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::answer_error;
use crate::sources::http::no_answer;
use crate::sources::SourceError;

/// Read-only directory access; nothing else is asked for.
pub const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly \
                          https://www.googleapis.com/auth/admin.directory.group.readonly";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google caps assertions at one hour.
const ASSERTION_LIFETIME: u64 = 3600;
/// A token this close to its expiry is renewed rather than sent.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The parts of a service-account key file used here.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

pub struct ServiceAccount {
    client_email: String,
    key_id: Option<String>,
    key: RsaKeyPair,
    token_uri: Url,
    /// The admin impersonated; empty: the service account itself.
    subject: String,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    renew_at: Instant,
}

// By hand: neither the key nor a token belongs in a log line.
impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("subject", &self.subject)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl ServiceAccount {
    /// Reads the key file. `token_uri`, when not empty, wins over the file's.
    /// Errors name the file and the field, never the key.
    pub fn load(
        path: &Path,
        subject: &str,
        token_uri: &str,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {at}: {e}"))?;
        // serde's message could quote a value: keep only where it broke.
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{at} is not a service-account key file: not JSON as expected (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        match file.kind.as_deref() {
            Some("service_account") => {}
            Some(other) => {
                return Err(format!(
                    "{at} holds {other:?} credentials; a service-account key (\"type\": \"service_account\") is needed"
                ))
            }
            None => return Err(format!("{at} has no \"type\"; is it a service-account key?")),
        }
        let client_email = file
            .client_email
            .filter(|e| e.contains('@'))
            .ok_or_else(|| format!("{at}: \"client_email\" is missing or not an email"))?;
        let pem = file
            .private_key
            .ok_or_else(|| format!("{at}: \"private_key\" is missing"))?;
        let key = rsa_key(&pem).map_err(|why| format!("{at}: \"private_key\" {why}"))?;
        let uri = Some(token_uri.trim())
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .or(file.token_uri)
            .ok_or_else(|| format!("{at}: no \"token_uri\" in the file nor in the config"))?;
        let token_uri = Url::parse(&uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| format!("token_uri {uri:?} is not an http(s) URL"))?;
        Ok(Self {
            client_email,
            key_id: file.private_key_id.filter(|k| !k.is_empty()),
            key,
            token_uri,
            subject: subject.trim().to_string(),
            client,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The `Authorization` value for the next call: cached, or newly minted.
    pub async fn bearer(&self) -> Result<HeaderValue, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.header.clone());
        }
        let fresh = self.mint().await?;
        let header = fresh.header.clone();
        *cached = Some(fresh);
        Ok(header)
    }

    /// Drops the cached token after the API refused it (revoked, or the
    /// delegation changed), so the next sync asks for a new one.
    pub async fn forget(&self) {
        self.cached.lock().await.take();
    }

    async fn mint(&self) -> Result<Cached, SourceError> {
        let started = Instant::now();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &self.assertion()?)
            .finish();
        let what = format!("Google token endpoint POST {}", self.token_uri.path());
        let response = self
            .client
            .post(self.token_uri.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| no_answer(&what, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| no_answer(&what, &e))?;
        if !status.is_success() {
            // invalid_grant, unauthorized_client (delegation not granted),
            // invalid_client: all mean the credentials do not work.
            return Err(match answer_error(&what, status, &headers, &text) {
                SourceError::Invalid(m) if status.is_client_error() => SourceError::Auth(m),
                other => other,
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|_| {
            SourceError::Invalid(format!(
                "{what} answered {} without a readable access_token",
                status.as_u16()
            ))
        })?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| {
                SourceError::Invalid(format!("{what}: the access token is not header-safe"))
            })?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        // Short-lived tokens (rare, but allowed) still serve half their life.
        let margin = RENEW_BEFORE.min(lifetime / 2);
        Ok(Cached {
            header,
            renew_at: started + lifetime - margin,
        })
    }

    /// `header.claims.signature`, RS256.
    fn assertion(&self) -> Result<String, SourceError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let mut claims = json!({
            "iss": self.client_email,
            "scope": SCOPES,
            "aud": self.token_uri.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        if !self.subject.is_empty() {
            claims["sub"] = self.subject.as_str().into();
        }
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SourceError::Auth("cannot sign the JWT assertion".into()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A PKCS#8 PEM RSA key, as Google writes it. Errors say what is wrong in
/// words and never quote the key.
fn rsa_key(pem: &str) -> Result<RsaKeyPair, String> {
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return Err("is a PKCS#1 key; convert it with `openssl pkcs8 -topk8 -nocrypt`".into());
    }
    let begin = "-----BEGIN PRIVATE KEY-----";
    let end = "-----END PRIVATE KEY-----";
    let body = pem
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(body, _)| body)
        .ok_or("is not a PEM \"PRIVATE KEY\" block")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "is not valid base64 inside its PEM block")?;
    RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("is not a usable RSA key ({e})"))
}
