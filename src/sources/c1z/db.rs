//! Reading the SQLite database inside a c1z v1 file: which sync to trust,
//! which resources are user accounts, and which grants become their
//! entitlements.

use std::collections::{HashMap, HashSet};

use prost::Message;
use rusqlite::{Connection, OptionalExtension};

use super::pb;
use crate::sources::{Account, AccountStatus, Snapshot};

/// The resource type id Baton connectors use for people, by convention; also
/// treated as a user type when the file's resource type rows lack the trait.
const USER_TYPE: &str = "user";

/// Errors are plain text: the caller adds the file name and turns them into
/// `SourceError::Invalid`.
pub fn read_snapshot(conn: &Connection, app: &str) -> Result<Snapshot, String> {
    let sync_id = latest_full_sync(conn)?;
    let user_types = user_resource_types(conn, &sync_id)?;

    let mut accounts: Vec<Account> = Vec::new();
    let mut by_principal: HashMap<(String, String), usize> = HashMap::new();
    let mut stmt = conn
        .prepare(
            "SELECT id, resource_type_id, data FROM v1_resources WHERE sync_id = ?1 ORDER BY id",
        )
        .map_err(sql("v1_resources"))?;
    let mut rows = stmt.query([&sync_id]).map_err(sql("v1_resources"))?;
    while let Some(row) = rows.next().map_err(sql("v1_resources"))? {
        let row_id: i64 = row.get(0).map_err(sql("v1_resources"))?;
        let type_id: String = row.get(1).map_err(sql("v1_resources"))?;
        let data: Vec<u8> = row.get(2).map_err(sql("v1_resources"))?;
        let resource = pb::Resource::decode(data.as_slice())
            .map_err(|e| format!("v1_resources row {row_id}: not a Resource message: {e}"))?;
        let user_trait = decode_annotation::<pb::UserTrait>(&resource.annotations, pb::USER_TRAIT)
            .map_err(|e| format!("v1_resources row {row_id}: {e}"))?;
        if user_trait.is_none() && !user_types.contains(&type_id) {
            continue;
        }
        let resource_id = resource
            .id
            .as_ref()
            .map(|id| id.resource.clone())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("v1_resources row {row_id}: the resource has no id"))?;
        let link = decode_annotation::<pb::ExternalLink>(&resource.annotations, pb::EXTERNAL_LINK)
            .map_err(|e| format!("v1_resources row {row_id}: {e}"))?;
        let account = Account {
            app: app.to_string(),
            id: account_id(&type_id, &resource_id),
            email: user_trait.as_ref().and_then(primary_email),
            name: Some(resource.display_name.clone())
                .filter(|n| !n.trim().is_empty())
                .or_else(|| {
                    user_trait
                        .as_ref()
                        .map(|t| t.login.clone())
                        .filter(|l| !l.trim().is_empty())
                }),
            status: status(&resource, user_trait.as_ref()),
            // Baton has no manager field; some connectors put one in the
            // free-form profile under differing keys, so none is guessed.
            manager: None,
            entitlements: Vec::new(),
            url: link.map(|l| l.url).filter(|u| !u.is_empty()),
        };
        by_principal.insert((type_id, resource_id), accounts.len());
        accounts.push(account);
    }
    drop(rows);

    // Principal and entitlement come from the indexed columns, not the blob:
    // newer SDKs store slimmed grant blobs without them. Grants to groups and
    // other non-user principals are skipped because Baton's syncer has
    // already expanded them into per-user grants before it ends the sync.
    // Filtering on the principal types in SQL spares allocating a row for
    // every group-to-group grant of a large directory.
    let principal_types: Vec<&str> = by_principal
        .keys()
        .map(|(t, _)| t.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if principal_types.is_empty() {
        return Ok(Snapshot {
            apps: Vec::new(),
            accounts,
        });
    }
    let placeholders = vec!["?"; principal_types.len()].join(", ");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT entitlement_id, principal_resource_type_id, principal_resource_id \
             FROM v1_grants WHERE sync_id = ? AND principal_resource_type_id IN ({placeholders})"
        ))
        .map_err(sql("v1_grants"))?;
    let params = std::iter::once(sync_id.as_str()).chain(principal_types.iter().copied());
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(sql("v1_grants"))?;
    while let Some(row) = rows.next().map_err(sql("v1_grants"))? {
        let entitlement: String = row.get(0).map_err(sql("v1_grants"))?;
        let principal_type: String = row.get(1).map_err(sql("v1_grants"))?;
        let principal_id: String = row.get(2).map_err(sql("v1_grants"))?;
        if let Some(&i) = by_principal.get(&(principal_type, principal_id)) {
            accounts[i].entitlements.push(entitlement);
        }
    }

    Ok(Snapshot {
        apps: Vec::new(),
        accounts,
    })
}

/// The newest finished *full* sync, as Baton's own reader picks it (ended_at,
/// then sync_id, descending). Partial, resources-only and diff syncs hold a
/// subset of the app: reading one would look like people leaving.
fn latest_full_sync(conn: &Connection) -> Result<String, String> {
    let has_type: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('v1_sync_runs') WHERE name = 'sync_type'",
            [],
            |r| r.get(0),
        )
        .map_err(sql("v1_sync_runs"))?;
    // Files written before sync types existed only had full syncs.
    let filter = if has_type {
        "AND sync_type = 'full'"
    } else {
        ""
    };
    let query = format!(
        "SELECT sync_id FROM v1_sync_runs WHERE ended_at IS NOT NULL {filter} \
         ORDER BY ended_at DESC, sync_id DESC LIMIT 1"
    );
    let found: Option<String> = conn
        .query_row(&query, [], |r| r.get(0))
        .optional()
        .map_err(sql("v1_sync_runs"))?;
    found.ok_or_else(|| {
        "holds no finished full sync (is the connector still running, or did it only \
         write partial syncs?)"
            .to_string()
    })
}

/// Resource types of this sync that carry the user trait, plus `user`.
fn user_resource_types(conn: &Connection, sync_id: &str) -> Result<HashSet<String>, String> {
    let mut types = HashSet::from([USER_TYPE.to_string()]);
    let mut stmt = conn
        .prepare("SELECT id, data FROM v1_resource_types WHERE sync_id = ?1")
        .map_err(sql("v1_resource_types"))?;
    let mut rows = stmt.query([sync_id]).map_err(sql("v1_resource_types"))?;
    while let Some(row) = rows.next().map_err(sql("v1_resource_types"))? {
        let row_id: i64 = row.get(0).map_err(sql("v1_resource_types"))?;
        let data: Vec<u8> = row.get(1).map_err(sql("v1_resource_types"))?;
        let rt = pb::ResourceType::decode(data.as_slice()).map_err(|e| {
            format!("v1_resource_types row {row_id}: not a ResourceType message: {e}")
        })?;
        if rt.traits.contains(&pb::TRAIT_USER) {
            types.insert(rt.id);
        }
    }
    Ok(types)
}

/// Ids of the conventional `user` type stay as the connector wrote them;
/// other user types (service accounts, bots) are prefixed with their type
/// so two types cannot collide on one id.
pub fn account_id(type_id: &str, resource_id: &str) -> String {
    if type_id == USER_TYPE {
        resource_id.to_string()
    } else {
        format!("{type_id}:{resource_id}")
    }
}

/// The primary address, else the first one listed.
fn primary_email(user: &pb::UserTrait) -> Option<String> {
    user.emails
        .iter()
        .find(|e| e.is_primary && !e.address.trim().is_empty())
        .or_else(|| user.emails.iter().find(|e| !e.address.trim().is_empty()))
        .map(|e| e.address.clone())
}

/// Resource-level status wins over the deprecated user-trait one (the SDK
/// only copies the trait's onto the resource when the resource has none).
/// Unspecified, enabled and values this build does not know mean active.
pub fn status(resource: &pb::Resource, user: Option<&pb::UserTrait>) -> AccountStatus {
    let code = |s: &Option<pb::Status>| s.as_ref().map(|s| s.status).filter(|&c| c != 0);
    let code = code(&resource.status).or_else(|| user.and_then(|u| code(&u.status)));
    match code {
        Some(pb::STATUS_DISABLED) => AccountStatus::Suspended,
        Some(pb::STATUS_DELETED) => AccountStatus::Deprovisioned,
        _ => AccountStatus::Active,
    }
}

fn decode_annotation<M: Message + Default>(
    annotations: &[pb::Any],
    type_name: &str,
) -> Result<Option<M>, String> {
    annotations
        .iter()
        .find(|a| a.type_name() == type_name)
        .map(|a| M::decode(a.value.as_slice()).map_err(|e| format!("bad {type_name}: {e}")))
        .transpose()
}

fn sql(table: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("cannot read {table}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(resource: Option<i32>, user: Option<i32>) -> AccountStatus {
        let r = pb::Resource {
            status: resource.map(|status| pb::Status { status }),
            ..Default::default()
        };
        let u = pb::UserTrait {
            status: user.map(|status| pb::Status { status }),
            ..Default::default()
        };
        status(&r, Some(&u))
    }

    #[test]
    fn resource_status_wins_and_unknown_means_active() {
        assert_eq!(with_status(None, None), AccountStatus::Active);
        assert_eq!(with_status(None, Some(2)), AccountStatus::Suspended);
        assert_eq!(with_status(Some(3), Some(1)), AccountStatus::Deprovisioned);
        assert_eq!(with_status(Some(0), Some(3)), AccountStatus::Deprovisioned);
        assert_eq!(with_status(Some(1), Some(2)), AccountStatus::Active);
        assert_eq!(with_status(Some(9), None), AccountStatus::Active);
    }

    #[test]
    fn only_the_conventional_user_type_keeps_bare_ids() {
        assert_eq!(account_id("user", "00u1"), "00u1");
        assert_eq!(
            account_id("service_account", "sa-1"),
            "service_account:sa-1"
        );
    }
}
