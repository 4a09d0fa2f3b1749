//! Writes `.c1z` v1 fixtures the way baton-sdk's SQLite engine does: the
//! `v1_*` table definitions of `pkg/dotc1z` (sync_runs, resource_types,
//! resources, entitlements, grants), protobuf rows encoded with test-side
//! copies of the `c1.connector.v2` messages (kept separate from the source's
//! own declarations so a wrong tag number on either side shows up), then
//! zstd and the `C1ZF\0` magic.

#![allow(dead_code)]

use prost::Message;
use rusqlite::{params, Connection};

pub const TRAIT_USER: i32 = 1;
pub const TRAIT_GROUP: i32 = 2;
pub const TRAIT_ROLE: i32 = 3;

pub const ENABLED: i32 = 1;
pub const DISABLED: i32 = 2;
pub const DELETED: i32 = 3;

mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceId {
        #[prost(string, tag = "1")]
        pub resource_type: String,
        #[prost(string, tag = "2")]
        pub resource: String,
        #[prost(bool, tag = "3")]
        pub baton_resource: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, optional, tag = "1")]
        pub id: Option<ResourceId>,
        #[prost(message, optional, tag = "2")]
        pub parent_resource_id: Option<ResourceId>,
        #[prost(string, tag = "3")]
        pub display_name: String,
        #[prost(message, repeated, tag = "4")]
        pub annotations: Vec<Any>,
        #[prost(string, tag = "5")]
        pub description: String,
        #[prost(message, optional, tag = "11")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub status: i32,
        #[prost(string, tag = "2")]
        pub details: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceType {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub display_name: String,
        #[prost(int32, repeated, tag = "3")]
        pub traits: Vec<i32>,
        #[prost(message, repeated, tag = "4")]
        pub annotations: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserTrait {
        #[prost(message, repeated, tag = "1")]
        pub emails: Vec<Email>,
        #[prost(message, optional, tag = "2")]
        pub status: Option<Status>,
        #[prost(int32, tag = "5")]
        pub account_type: i32,
        #[prost(string, tag = "6")]
        pub login: String,
        #[prost(string, repeated, tag = "7")]
        pub login_aliases: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Email {
        #[prost(string, tag = "1")]
        pub address: String,
        #[prost(bool, tag = "2")]
        pub is_primary: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GroupTrait {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExternalLink {
        #[prost(string, tag = "1")]
        pub url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entitlement {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(string, tag = "2")]
        pub id: String,
        #[prost(string, tag = "3")]
        pub display_name: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(int32, tag = "7")]
        pub purpose: i32,
        #[prost(string, tag = "8")]
        pub slug: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Grant {
        #[prost(message, optional, tag = "1")]
        pub entitlement: Option<Entitlement>,
        #[prost(message, optional, tag = "2")]
        pub principal: Option<Resource>,
        #[prost(string, tag = "3")]
        pub id: String,
    }
}

fn any<M: Message>(name: &str, m: &M) -> pb::Any {
    pb::Any {
        type_url: format!("type.googleapis.com/c1.connector.v2.{name}"),
        value: m.encode_to_vec(),
    }
}

fn rid(resource_type: &str, resource: &str) -> pb::ResourceId {
    pb::ResourceId {
        resource_type: resource_type.into(),
        resource: resource.into(),
        baton_resource: false,
    }
}

/// baton-sdk's current `v1_sync_runs`.
const SYNC_RUNS: &str = "
create table if not exists v1_sync_runs (
    id integer primary key,
    sync_id text not null,
    started_at datetime not null,
    ended_at datetime,
    sync_token text not null,
    sync_type text not null default 'full',
    parent_sync_id text not null default '',
    linked_sync_id text not null default '',
    supports_diff integer not null default 0,
    grants_backfilled integer not null default 0,
    stats text,
    ingest_invariant_generation text not null default '',
    ingest_invariant_coverage text not null default '',
    ingest_invariant_mode text not null default ''
);
create unique index if not exists idx_sync_runs_sync_id_v1 on v1_sync_runs (sync_id);";

/// `v1_sync_runs` of files written before sync types existed.
const SYNC_RUNS_LEGACY: &str = "
create table if not exists v1_sync_runs (
    id integer primary key,
    sync_id text not null,
    started_at datetime not null,
    ended_at datetime,
    sync_token text not null
);
create unique index if not exists idx_sync_runs_sync_id_v1 on v1_sync_runs (sync_id);";

const OBJECT_TABLES: &str = "
create table if not exists v1_resource_types (
    id integer primary key,
    external_id text not null,
    data blob not null,
    sync_id text not null,
    discovered_at datetime not null
);
create unique index if not exists idx_resource_types_external_sync_v1 on v1_resource_types (external_id, sync_id);
create table if not exists v1_resources (
    id integer primary key,
    resource_type_id text not null,
    external_id text not null,
    parent_resource_type_id text,
    parent_resource_id text,
    data blob not null,
    sync_id text not null,
    discovered_at datetime not null
);
create index if not exists idx_resources_resource_type_id_v1 on v1_resources (resource_type_id);
create index if not exists idx_resources_parent_resource_id_v1 on v1_resources (parent_resource_type_id, parent_resource_id);
create unique index if not exists idx_resources_external_sync_v1 on v1_resources (external_id, sync_id);
create table if not exists v1_entitlements (
    id integer primary key,
    resource_type_id text not null,
    resource_id text not null,
    external_id text not null,
    data blob not null,
    sync_id text not null,
    discovered_at datetime not null
);
create index if not exists idx_entitlements_resource_id_v1 on v1_entitlements (resource_type_id, resource_id);
create unique index if not exists idx_entitlements_external_sync_v1 on v1_entitlements (external_id, sync_id);
create table if not exists v1_grants (
    id integer primary key,
    resource_type_id text not null,
    resource_id text not null,
    entitlement_id text not null,
    principal_resource_type_id text not null,
    principal_resource_id text not null,
    external_id text not null,
    expansion blob,
    needs_expansion integer not null default 0,
    data blob not null,
    sync_id text not null,
    discovered_at datetime not null
);
create index if not exists idx_grants_resource_type_id_resource_id_v1 on v1_grants (resource_type_id, resource_id);
create index if not exists idx_grants_principal_id_v1 on v1_grants (principal_resource_type_id, principal_resource_id);
create index if not exists idx_grants_entitlement_id_principal_id_v1 on v1_grants (entitlement_id, principal_resource_type_id, principal_resource_id);
create unique index if not exists idx_grants_external_sync_v1 on v1_grants (external_id, sync_id);
create index if not exists idx_grants_entitlement_sync_id_v1 on v1_grants (entitlement_id, sync_id, id);";

const DISCOVERED: &str = "2026-05-01 09:00:00.000000001";

/// A user resource as a connector would describe it.
#[derive(Default, Clone)]
pub struct User {
    pub resource_type: String,
    pub id: String,
    pub name: String,
    /// (address, is_primary)
    pub emails: Vec<(String, bool)>,
    pub login: String,
    /// The deprecated `UserTrait.status`.
    pub trait_status: Option<i32>,
    /// `Resource.status`.
    pub resource_status: Option<i32>,
    pub link: Option<String>,
    /// Leave the `UserTrait` annotation off.
    pub no_trait: bool,
}

impl User {
    pub fn new(id: &str, name: &str, email: &str) -> User {
        User {
            resource_type: "user".into(),
            id: id.into(),
            name: name.into(),
            emails: vec![(email.into(), true)],
            ..User::default()
        }
    }

    pub fn trait_status(mut self, status: i32) -> User {
        self.trait_status = Some(status);
        self
    }
}

/// A c1z database under construction.
pub struct C1z {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    conn: Connection,
}

impl C1z {
    pub fn new() -> C1z {
        C1z::with_sync_runs(SYNC_RUNS)
    }

    pub fn legacy() -> C1z {
        C1z::with_sync_runs(SYNC_RUNS_LEGACY)
    }

    fn with_sync_runs(sync_runs: &str) -> C1z {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sync_runs).unwrap();
        conn.execute_batch(OBJECT_TABLES).unwrap();
        C1z {
            _dir: dir,
            path,
            conn,
        }
    }

    /// A sync run; `ended: None` is one still running (or crashed).
    pub fn sync(&self, sync_id: &str, started: &str, ended: Option<&str>, sync_type: &str) {
        self.conn
            .execute(
                "insert into v1_sync_runs (sync_id, started_at, ended_at, sync_token, sync_type) values (?1, ?2, ?3, '', ?4)",
                params![sync_id, started, ended, sync_type],
            )
            .unwrap();
    }

    pub fn legacy_sync(&self, sync_id: &str, started: &str, ended: Option<&str>) {
        self.conn
            .execute(
                "insert into v1_sync_runs (sync_id, started_at, ended_at, sync_token) values (?1, ?2, ?3, '')",
                params![sync_id, started, ended],
            )
            .unwrap();
    }

    pub fn resource_type(&self, sync: &str, id: &str, traits: &[i32]) {
        let rt = pb::ResourceType {
            id: id.into(),
            display_name: id.into(),
            traits: traits.to_vec(),
            annotations: vec![],
        };
        self.conn
            .execute(
                "insert into v1_resource_types (external_id, data, sync_id, discovered_at) values (?1, ?2, ?3, ?4)",
                params![id, rt.encode_to_vec(), sync, DISCOVERED],
            )
            .unwrap();
    }

    /// The usual `user` and `group` types of a connector.
    pub fn standard_types(&self, sync: &str) {
        self.resource_type(sync, "user", &[TRAIT_USER]);
        self.resource_type(sync, "group", &[TRAIT_GROUP]);
    }

    fn put_resource(&self, sync: &str, r: &pb::Resource) {
        let id = r.id.clone().unwrap_or_default();
        self.conn
            .execute(
                "insert into v1_resources (resource_type_id, external_id, parent_resource_type_id, parent_resource_id, data, sync_id, discovered_at) values (?1, ?2, NULL, NULL, ?3, ?4, ?5)",
                params![
                    id.resource_type,
                    format!("{}:{}", id.resource_type, id.resource),
                    r.encode_to_vec(),
                    sync,
                    DISCOVERED
                ],
            )
            .unwrap();
    }

    pub fn user(&self, sync: &str, user: &User) {
        let mut annotations = Vec::new();
        if !user.no_trait {
            let t = pb::UserTrait {
                emails: user
                    .emails
                    .iter()
                    .map(|(a, p)| pb::Email {
                        address: a.clone(),
                        is_primary: *p,
                    })
                    .collect(),
                status: user.trait_status.map(|status| pb::Status {
                    status,
                    details: String::new(),
                }),
                account_type: 1,
                login: user.login.clone(),
                login_aliases: vec![],
            };
            annotations.push(any("UserTrait", &t));
        }
        if let Some(url) = &user.link {
            annotations.push(any("ExternalLink", &pb::ExternalLink { url: url.clone() }));
        }
        self.put_resource(
            sync,
            &pb::Resource {
                id: Some(rid(&user.resource_type, &user.id)),
                parent_resource_id: None,
                display_name: user.name.clone(),
                annotations,
                description: String::new(),
                status: user.resource_status.map(|status| pb::Status {
                    status,
                    details: String::new(),
                }),
            },
        );
    }

    pub fn group(&self, sync: &str, id: &str, name: &str) {
        self.put_resource(
            sync,
            &pb::Resource {
                id: Some(rid("group", id)),
                parent_resource_id: None,
                display_name: name.into(),
                annotations: vec![any("GroupTrait", &pb::GroupTrait {})],
                description: String::new(),
                status: None,
            },
        );
    }

    fn entitlement_msg(resource_type: &str, resource: &str, slug: &str) -> pb::Entitlement {
        pb::Entitlement {
            resource: Some(pb::Resource {
                id: Some(rid(resource_type, resource)),
                ..Default::default()
            }),
            id: format!("{resource_type}:{resource}:{slug}"),
            display_name: format!("{resource} {slug}"),
            description: String::new(),
            purpose: 1,
            slug: slug.into(),
        }
    }

    /// An entitlement with the SDK's id form `TYPE:ID:SLUG`; returns the id.
    pub fn entitlement(
        &self,
        sync: &str,
        resource_type: &str,
        resource: &str,
        slug: &str,
    ) -> String {
        let e = C1z::entitlement_msg(resource_type, resource, slug);
        self.conn
            .execute(
                "insert into v1_entitlements (resource_type_id, resource_id, external_id, data, sync_id, discovered_at) values (?1, ?2, ?3, ?4, ?5, ?6)",
                params![resource_type, resource, e.id, e.encode_to_vec(), sync, DISCOVERED],
            )
            .unwrap();
        e.id
    }

    /// A grant of entitlement `TYPE:ID:SLUG` to a principal, with the
    /// indexed columns filled as the SDK fills them.
    pub fn grant(&self, sync: &str, entitlement: (&str, &str, &str), principal: (&str, &str)) {
        let (rt, r, slug) = entitlement;
        let e = C1z::entitlement_msg(rt, r, slug);
        let (pt, p) = principal;
        let id = format!("{}:{pt}:{p}", e.id);
        let g = pb::Grant {
            entitlement: Some(e.clone()),
            principal: Some(pb::Resource {
                id: Some(rid(pt, p)),
                ..Default::default()
            }),
            id: id.clone(),
        };
        self.conn
            .execute(
                "insert into v1_grants (resource_type_id, resource_id, entitlement_id, principal_resource_type_id, principal_resource_id, external_id, data, sync_id, discovered_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![rt, r, e.id, pt, p, id, g.encode_to_vec(), sync, DISCOVERED],
            )
            .unwrap();
    }

    /// The SQLite file's bytes.
    pub fn database(self) -> Vec<u8> {
        let C1z { _dir, path, conn } = self;
        conn.close().unwrap();
        std::fs::read(&path).unwrap()
    }

    /// The finished `.c1z` bytes: magic, then zstd of the database.
    pub fn c1z(self) -> Vec<u8> {
        wrap(&self.database())
    }
}

/// `C1ZF\0` + zstd(payload).
pub fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut out = b"C1ZF\0".to_vec();
    out.extend(zstd::encode_all(payload, 3).unwrap());
    out
}
