//! The few `c1.connector.v2` protobuf messages the c1z source decodes, with
//! only the fields it reads. Tag numbers follow baton-sdk's
//! `proto/c1/connector/v2/{resource,annotation_trait,annotation_external_link}.proto`;
//! prost skips every field not declared here, so newer connector versions
//! that add fields still decode.

/// `google.protobuf.Any`: annotations are stored as Any.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl Any {
    /// The message name after the type URL's last `/`, e.g. `c1.connector.v2.UserTrait`.
    pub fn type_name(&self) -> &str {
        self.type_url.rsplit('/').next().unwrap_or_default()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceId {
    #[prost(string, tag = "1")]
    pub resource_type: String,
    #[prost(string, tag = "2")]
    pub resource: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, optional, tag = "1")]
    pub id: Option<ResourceId>,
    #[prost(string, tag = "3")]
    pub display_name: String,
    #[prost(message, repeated, tag = "4")]
    pub annotations: Vec<Any>,
    /// Resource-level status; newer connectors set it here instead of on the
    /// (deprecated) user trait status, and it wins when both are set.
    #[prost(message, optional, tag = "11")]
    pub status: Option<Status>,
}

/// `c1.connector.v2.Status` and `UserTrait.Status` share this shape and these
/// numbers: 0 unspecified, 1 enabled, 2 disabled, 3 deleted.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const STATUS_DISABLED: i32 = 2;
pub const STATUS_DELETED: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceType {
    #[prost(string, tag = "1")]
    pub id: String,
    /// `ResourceType.Trait` values.
    #[prost(int32, repeated, tag = "3")]
    pub traits: Vec<i32>,
}

pub const TRAIT_USER: i32 = 1;

pub const USER_TRAIT: &str = "c1.connector.v2.UserTrait";
pub const EXTERNAL_LINK: &str = "c1.connector.v2.ExternalLink";

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserTrait {
    #[prost(message, repeated, tag = "1")]
    pub emails: Vec<Email>,
    #[prost(message, optional, tag = "2")]
    pub status: Option<Status>,
    #[prost(string, tag = "6")]
    pub login: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Email {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(bool, tag = "2")]
    pub is_primary: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExternalLink {
    #[prost(string, tag = "1")]
    pub url: String,
}
