//! The `scim` provisioner: grants and revokes by changing group membership
//! over SCIM 2.0 (RFC 7643/7644). The entitlement names a group by its
//! `displayName`; grant = PATCH add the user to `members`, revoke = PATCH
//! remove `members[value eq "<id>"]` (docs/formats.md). A grant reports the
//! user's and the group's SCIM ids, and the revoke addresses exactly those:
//! a user renamed, re-mailed or a group renamed since is still found, and
//! one that is gone is a failure for a person to look at, never "done".
//! No call follows a redirect.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::{
    gone_after_grant, settled, Action, Answer, Outcome, Provisioner, Request, Target, BODY_EXCERPT,
};
use crate::config::Secret;
use crate::net;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub struct ScimProvisioner {
    base: Url,
    /// `Bearer <token>`, marked sensitive so reqwest and `http` never print it.
    auth: HeaderValue,
    client: reqwest::Client,
    timeout: Duration,
}

// By hand: the client's Debug lists its headers, and nothing about the token
// belongs in a log line.
impl std::fmt::Debug for ScimProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimProvisioner")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A user or group as far as this provisioner reads it.
#[derive(Debug, Deserialize)]
struct Resource {
    id: String,
    #[serde(rename = "displayName")]
    display_name: Option<String>,
    /// `None` when the server left it out: an empty group (RFC 7643 §2.5
    /// omits empty attributes) or a server that does not list members.
    members: Option<Vec<Member>>,
}

#[derive(Debug, Deserialize)]
struct Member {
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct ListResponse {
    // Servers omit `Resources` when nothing matched (RFC 7644 §3.4.2).
    #[serde(rename = "Resources", default)]
    resources: Vec<Resource>,
}

/// Every step either yields a value or ends the call with its outcome.
type Step<T> = Result<T, Outcome>;

impl ScimProvisioner {
    /// `base_url` is the SCIM service root (`https://idp.example.com/scim/v2`);
    /// `timeout` bounds each HTTP call.
    pub fn new(base_url: String, token: Secret, timeout: Duration) -> Result<Self, String> {
        let base = Url::parse(&base_url).map_err(|e| format!("SCIM url {base_url:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("SCIM url {base_url:?} must be an http(s) URL"));
        }
        let auth = net::auth_header("Bearer", &token, "SCIM")?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/scim+json, application/json"),
        );
        // Never followed: a redirected PATCH would be repeated as a GET,
        // answer 200, and look applied. A 3xx is a failure naming where to.
        let client = net::client(headers, timeout, Policy::none(), "SCIM")?;
        Ok(Self {
            base,
            auth,
            client,
            timeout,
        })
    }

    /// The service root plus `segments`, each percent-encoded as one segment,
    /// so an id from the server can never change the path's shape.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call; answers the status, headers and body text, or the outcome
    /// when the server could not be heard.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Step<(StatusCode, HeaderMap, String)> {
        let what = format!("SCIM {method} {}", url.path());
        let mut call = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = body {
            call = call.header(CONTENT_TYPE, SCIM_JSON).body(body.to_string());
        }
        let response = call.send().await.map_err(|e| no_answer(&what, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| no_answer(&what, &e))?;
        Ok((status, headers, text))
    }

    /// `GET /{kind}?filter=…`, answered as is. The first page of matches is
    /// plenty for the unique-ish attributes looked up here.
    async fn query(&self, kind: &str, filter: &str, attributes: &str) -> Step<Answer> {
        let mut url = self.endpoint(&[kind]);
        url.query_pairs_mut()
            .append_pair("filter", filter)
            .append_pair("attributes", attributes);
        let (status, headers, text) = self.send(Method::GET, url, None).await?;
        Ok(Answer {
            what: format!("SCIM search of {kind} ({filter})"),
            status,
            headers,
            text,
        })
    }

    async fn search(&self, kind: &str, filter: &str, attributes: &str) -> Step<Vec<Resource>> {
        self.query(kind, filter, attributes).await?.resources()
    }

    /// The user's id: by `userName`, else by email (many IdPs use an
    /// employee id or handle as `userName`).
    async fn find_user(&self, email: &str) -> Step<Option<String>> {
        let value = filter_string(email);
        for filter in [
            format!("userName eq {value}"),
            format!("emails.value eq {value}"),
        ] {
            let mut found = self.search("Users", &filter, "id").await?;
            match found.len() {
                0 => continue,
                1 => return Ok(found.pop().map(|user| user.id)),
                n => {
                    return Err(Outcome::Permanent {
                        message: format!("{n} SCIM users match {email}; cannot tell which one"),
                    })
                }
            }
        }
        Ok(None)
    }

    /// The group named `name`, with its members. `displayName` compares
    /// case-insensitively (RFC 7643 §4.2), so an exact spelling wins a tie.
    async fn find_group(&self, name: &str) -> Step<Option<Resource>> {
        let filter = format!("displayName eq {}", filter_string(name));
        let mut found = self
            .search("Groups", &filter, "id,displayName,members")
            .await?;
        if found.len() > 1 {
            found.retain(|g| g.display_name.as_deref() == Some(name));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(Outcome::Permanent {
                message: format!("{n} SCIM groups are named {name:?}; cannot tell which one"),
            }),
        }
    }

    /// Whether `user` is in `group`; `None` when the server will not say.
    /// An omitted `members` is asked about with a filter rather than taken as
    /// empty, so a server that never lists members cannot make a revoke look
    /// done when it is not.
    async fn is_member(&self, group: &Resource, user: &str) -> Step<Option<bool>> {
        if let Some(members) = &group.members {
            return Ok(Some(members.iter().any(|m| m.value == user)));
        }
        self.ask_membership(group, user).await
    }

    /// Whether `user` is in `group`, where "no" must come from the server
    /// itself: an inline list that holds the user is believed, one that does
    /// not is asked again with a filter (a server may truncate the list).
    async fn is_member_asked(&self, group: &Resource, user: &str) -> Step<Option<bool>> {
        if group
            .members
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.value == user))
        {
            return Ok(Some(true));
        }
        self.ask_membership(group, user).await
    }

    /// `None` when the server cannot filter on members (the PATCH decides).
    async fn ask_membership(&self, group: &Resource, user: &str) -> Step<Option<bool>> {
        let filter = format!(
            "id eq {} and members.value eq {}",
            filter_string(&group.id),
            filter_string(user)
        );
        let answer = self.query("Groups", &filter, "id").await?;
        if answer.status == StatusCode::BAD_REQUEST {
            // invalidFilter: no filtering on members here; the PATCH decides.
            return Ok(None);
        }
        Ok(Some(answer.resources()?.iter().any(|g| g.id == group.id)))
    }

    /// PATCH one operation on a group; the caller reads the answer, since a
    /// 404 or 409 means different things to a grant and a revoke.
    async fn patch_group(&self, group: &str, operation: Value) -> Step<Answer> {
        let body = json!({ "schemas": [PATCH_OP], "Operations": [operation] });
        let url = self.endpoint(&["Groups", group]);
        let (status, headers, text) = self.send(Method::PATCH, url, Some(&body)).await?;
        Ok(Answer {
            what: format!("SCIM PATCH of group {group}"),
            status,
            headers,
            text,
        })
    }

    /// One resource by its id; `None` when the server says it is gone.
    async fn by_id(&self, kind: &str, id: &str, attributes: &str) -> Step<Option<Resource>> {
        let mut url = self.endpoint(&[kind, id]);
        url.query_pairs_mut().append_pair("attributes", attributes);
        let (status, headers, text) = self.send(Method::GET, url, None).await?;
        let answer = Answer {
            what: format!("SCIM GET of {kind} {id}"),
            status,
            headers,
            text,
        };
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(answer.failed());
        }
        serde_json::from_str::<Resource>(&answer.text)
            .map(Some)
            .map_err(|e| Outcome::Permanent {
                message: format!(
                    "{}: unreadable answer ({e}): {}",
                    answer.what,
                    net::excerpt(&answer.text, BODY_EXCERPT)
                ),
            })
    }

    async fn grant(&self, request: &Request) -> Step<(Outcome, Option<Target>)> {
        let email = &request.user.email;
        let entitlement = &request.entitlement;
        let Some(user) = self.find_user(email).await? else {
            return Err(Outcome::Permanent {
                message: format!("no SCIM user has userName or email {email}"),
            });
        };
        let Some(group) = self.find_group(entitlement).await? else {
            return Err(Outcome::Permanent {
                message: format!("no SCIM group is named {entitlement:?}"),
            });
        };
        let target = Target {
            account: user.clone(),
            group: Some(group.id.clone()),
        };
        if self.is_member(&group, &user).await? == Some(true) {
            return Ok((Outcome::AlreadyInState, Some(target)));
        }
        let add = json!({ "op": "add", "path": "members", "value": [{ "value": user }] });
        let answer = self.patch_group(&group.id, add).await?;
        let outcome = match answer.status {
            s if s.is_success() => Outcome::Applied,
            // Added by someone else since the lookup, on a server that
            // refuses duplicates instead of ignoring them (RFC 7644 §3.12).
            StatusCode::CONFLICT => Outcome::AlreadyInState,
            StatusCode::BAD_REQUEST
                if answer.scim_type().as_deref() == Some("uniqueness")
                    || says_already_member(&answer.text) =>
            {
                Outcome::AlreadyInState
            }
            _ => answer.failed(),
        };
        let held = matches!(outcome, Outcome::Applied | Outcome::AlreadyInState);
        Ok((outcome, held.then_some(target)))
    }

    /// The user and group the grant made, by the ids it recorded; by email
    /// and group name only for grants recorded before ids were. Either way
    /// one that cannot be found is a failure: access granted cannot be
    /// taken as gone because a lookup missed.
    async fn granted_membership(&self, request: &Request) -> Step<(String, Resource)> {
        let gone = |what: String| gone_after_grant(what, "the SCIM server");
        if let Some(Target {
            account,
            group: Some(group),
        }) = &request.target
        {
            if self.by_id("Users", account, "id").await?.is_none() {
                return Err(gone(format!("SCIM user {account} is not found")));
            }
            let Some(found) = self
                .by_id("Groups", group, "id,displayName,members")
                .await?
            else {
                return Err(gone(format!(
                    "SCIM group {group} ({:?}) is not found",
                    request.entitlement
                )));
            };
            return Ok((account.clone(), found));
        }
        let email = &request.user.email;
        let Some(user) = self.find_user(email).await? else {
            return Err(gone(format!("no SCIM user has userName or email {email}")));
        };
        let Some(group) = self.find_group(&request.entitlement).await? else {
            return Err(gone(format!(
                "no SCIM group is named {:?}",
                request.entitlement
            )));
        };
        Ok((user, group))
    }

    async fn revoke(&self, request: &Request) -> Step<Outcome> {
        let (user, group) = self.granted_membership(request).await?;
        // Only the server's own "not a member" counts (a filter on members,
        // or the PATCH's noTarget), never an inline list, which servers may
        // cut short.
        if self.is_member_asked(&group, &user).await? == Some(false) {
            return Ok(Outcome::AlreadyInState);
        }
        let path = format!("members[value eq {}]", filter_string(&user));
        let remove = json!({ "op": "remove", "path": path });
        let answer = self.patch_group(&group.id, remove).await?;
        Ok(match answer.status {
            s if s.is_success() => Outcome::Applied,
            // The member gone since the lookup, which RFC 7644 §3.5.2.2
            // reports as 400 noTarget. (A 404 here is the group gone: a
            // failure, as above.)
            StatusCode::BAD_REQUEST if answer.scim_type().as_deref() == Some("noTarget") => {
                Outcome::AlreadyInState
            }
            _ => answer.failed(),
        })
    }
}

impl Answer {
    /// The `scimType` of an RFC 7644 §3.12 error body, if it is one.
    fn scim_type(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct ScimError {
            #[serde(rename = "scimType")]
            scim_type: Option<String>,
        }
        serde_json::from_str::<ScimError>(&self.text)
            .ok()
            .and_then(|e| e.scim_type)
    }

    /// The resources of a list response; any other answer ends the call.
    fn resources(self) -> Step<Vec<Resource>> {
        if !self.status.is_success() {
            return Err(self.failed());
        }
        serde_json::from_str::<ListResponse>(&self.text)
            .map(|list| list.resources)
            .map_err(|e| Outcome::Permanent {
                message: format!(
                    "{}: unreadable answer ({e}): {}",
                    self.what,
                    net::excerpt(&self.text, BODY_EXCERPT)
                ),
            })
    }

    fn failed(&self) -> Outcome {
        failed(&self.what, self.status, &self.headers, &self.text)
    }
}

impl Provisioner for ScimProvisioner {
    async fn provision(&self, request: &Request) -> Outcome {
        self.provision_for_record(request).await.0
    }

    async fn provision_for_record(&self, request: &Request) -> (Outcome, Option<Target>) {
        match request.action {
            Action::Grant => settled(self.grant(request).await),
            Action::Revoke => settled(self.revoke(request).await.map(|outcome| (outcome, None))),
        }
    }
}

/// A filter comparison value: RFC 7644 §3.4.2.2 takes JSON string syntax, so
/// quotes and backslashes in a name cannot end the string early.
fn filter_string(value: &str) -> String {
    Value::String(value.to_string()).to_string()
}

/// No answer at all: the server may be back soon.
fn no_answer(what: &str, err: &reqwest::Error) -> Outcome {
    Outcome::Transient {
        message: net::no_answer(what, err),
        retry_after: None,
    }
}

/// A non-2xx answer. Rate limits and server errors are worth retrying;
/// other 4xx mean the request or the setup is wrong.
fn failed(what: &str, status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    if status.is_redirection() {
        return Outcome::Permanent {
            message: net::redirect_refused(
                what,
                status,
                headers,
                "set the provisioner's url to the final address",
            ),
        };
    }
    let message = net::answered(what, status, &net::excerpt(body, BODY_EXCERPT));
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Outcome::Transient {
            message,
            retry_after: net::retry_after_header(headers, chrono::Utc::now()),
        }
    } else {
        Outcome::Permanent { message }
    }
}

/// Some servers refuse a duplicate member with a plain 400 whose text says so.
fn says_already_member(body: &str) -> bool {
    let lower = body.to_lowercase();
    lower.contains("already") && (lower.contains("member") || lower.contains("exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let none = HeaderMap::new();
        assert_eq!(
            failed(
                "x",
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", "7")]),
                ""
            ),
            Outcome::Transient {
                message: "x answered 429".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert!(matches!(
            failed("x", StatusCode::BAD_GATEWAY, &none, "<html>oops</html>"),
            Outcome::Transient { message, retry_after: None } if message.contains("502 <html>oops")
        ));
        assert!(matches!(
            failed("x", StatusCode::FORBIDDEN, &none, "{\"detail\":\"no\"}"),
            Outcome::Permanent { message } if message == "x answered 403 {\"detail\":\"no\"}"
        ));
        // A Retry-After date is read against the clock (parsing: crate::net).
        let date = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = match failed(
            "x",
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", &date)]),
            "",
        ) {
            Outcome::Transient {
                retry_after: Some(wait),
                ..
            } => wait,
            other => panic!("{other:?}"),
        };
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
    }

    #[test]
    fn duplicates_are_recognised_and_bodies_are_cut() {
        assert!(says_already_member("User is already a member of the group"));
        assert!(says_already_member(
            "{\"detail\": \"Member already exists\"}"
        ));
        assert!(!says_already_member("invalid path"));
        let answer = |text: &str| Answer {
            what: "x".into(),
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            text: text.into(),
        };
        assert_eq!(
            answer(r#"{"status":"400","scimType":"noTarget"}"#)
                .scim_type()
                .as_deref(),
            Some("noTarget")
        );
        assert_eq!(answer("<html>").scim_type(), None);
        // Failure messages keep at most BODY_EXCERPT bytes of the body.
        let long = failed(
            "x",
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &"é".repeat(600),
        );
        let Outcome::Permanent { message } = long else {
            panic!("{long:?}")
        };
        let body = message.trim_start_matches("x answered 403 ");
        assert!(body.len() <= BODY_EXCERPT && body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn filter_values_are_json_strings_and_ids_stay_one_segment() {
        assert_eq!(
            filter_string(r#"ops "blue" \ team"#),
            r#""ops \"blue\" \\ team""#
        );
        let p = ScimProvisioner::new(
            "https://idp.example.com/scim/v2/".into(),
            Secret::new("tok".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            p.endpoint(&["Groups", "a/../b?c"]).as_str(),
            "https://idp.example.com/scim/v2/Groups/a%2F..%2Fb%3Fc"
        );
        assert!(ScimProvisioner::new(
            "ftp://x".into(),
            Secret::new("t".into()),
            Duration::from_secs(1)
        )
        .is_err());
        let err = ScimProvisioner::new(
            "http://x".into(),
            Secret::new("bad\ntoken".into()),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(!err.contains("bad"), "{err}");
    }
}
