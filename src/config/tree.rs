//! Span-annotated TOML tree, and a serde `Deserializer` over it whose errors carry the key path and source span.
//!
//! toml's own deserializer knows spans but not array indices, and hides the
//! key path it does track; parsing once into this tree and deserializing the
//! raw structs from it lets every error say `apps[1].roles[0].id` and point at
//! the right line.

use std::fmt;
use std::ops::Range;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;

// toml 0.8 (serde_spanned 0.6) hands out spans through these names. We speak
// the protocol ourselves instead of using `toml::Spanned` because implicit
// tables (`[alerts.channels]` without `[alerts]`) have no span, and
// `toml::Spanned` fails on them where we just go without a location.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
const DATETIME_FIELD: &str = "$__toml_private_datetime";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `apps[1].roles[0].stages[0].required`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn join(&self, rest: &KeyPath) -> Self {
        let mut segs = self.0.clone();
        segs.extend(rest.0.iter().cloned());
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        write!(f, ".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if bare {
                        write!(f, "{k}")?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Option<Range<usize>>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Option<Range<usize>>,
    pub node: Node,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.node)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Table(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Array(items) => items,
            _ => &[],
        }
    }

    /// The span that best locates `path`: the value's, else its key's, else
    /// the nearest ancestor's.
    pub fn locate(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut node = self;
        let mut best = self.span.clone();
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => match node.entry(k) {
                    Some(e) => {
                        best = e.node.span.clone().or(e.key_span.clone()).or(best);
                        &e.node
                    }
                    None => return best,
                },
                Seg::Index(i) => match node.items().get(*i) {
                    Some(n) => {
                        best = n.span.clone().or(best);
                        n
                    }
                    None => return best,
                },
            };
            node = next;
        }
        best
    }

    /// Visits every node with its path, parents before children.
    pub fn walk(&self, path: &KeyPath, f: &mut dyn FnMut(&KeyPath, Option<&Entry>, &Node)) {
        match &self.value {
            Value::Table(entries) => {
                for e in entries {
                    let p = path.key(&e.key);
                    f(&p, Some(e), &e.node);
                    e.node.walk(&p, f);
                }
            }
            Value::Array(items) => {
                for (i, n) in items.iter().enumerate() {
                    let p = path.index(i);
                    f(&p, None, n);
                    n.walk(&p, f);
                }
            }
            _ => {}
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

// ---- building the tree from toml ------------------------------------------

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

/// A node whose span (if any) is supplied by the caller.
struct Unspanned;

impl<'de> DeserializeSeed<'de> for Unspanned {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct Key {
    name: String,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_owned(),
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let (mut start, mut end, mut name) = (None, None, None);
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                SPANNED_START => start = Some(map.next_value::<usize>()?),
                SPANNED_END => end = Some(map.next_value::<usize>()?),
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::custom("unexpected key layout from toml")),
            }
        }
        let name = name.ok_or_else(|| de::Error::custom("key without a name"))?;
        Ok(Key {
            name,
            span: start.zip(end).map(|(s, e)| s..e),
        })
    }
}

struct NodeVisitor;

fn leaf<E>(value: Value) -> Result<Node, E> {
    Ok(Node { span: None, value })
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        leaf(Value::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        leaf(Value::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(|v| Node {
                span: None,
                value: Value::Integer(v),
            })
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        leaf(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        leaf(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        leaf(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        leaf(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return leaf(Value::Table(Vec::new()));
        };
        if first.name == SPANNED_START {
            let start: usize = map.next_value()?;
            let mut end = start;
            let mut node = None;
            while let Some(k) = map.next_key::<String>()? {
                match k.as_str() {
                    SPANNED_END => end = map.next_value()?,
                    SPANNED_VALUE => node = Some(map.next_value_seed(Unspanned)?),
                    _ => return Err(de::Error::custom("unexpected span layout from toml")),
                }
            }
            let mut node = node.ok_or_else(|| de::Error::custom("span without a value"))?;
            node.span = Some(start..end);
            return Ok(node);
        }
        if first.name == DATETIME_FIELD {
            let text: String = map.next_value()?;
            return leaf(Value::Datetime(text));
        }
        let mut entries = Vec::new();
        let mut key = Some(first);
        while let Some(k) = key {
            let node: Node = map.next_value()?;
            entries.push(Entry {
                key: k.name,
                key_span: k.span,
                node,
            });
            key = map.next_key::<Key>()?;
        }
        leaf(Value::Table(entries))
    }
}

// ---- deserializing typed structs from the tree ----------------------------

/// A deserialization error with the path (relative to where deserialization
/// started) and the span of the offending key or value.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub path: KeyPath,
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl DeError {
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        DeError {
            path: KeyPath::root(),
            span,
            message: message.into(),
        }
    }

    fn within(mut self, seg: Seg, span: &Option<Range<usize>>) -> Self {
        self.path.0.insert(0, seg);
        self.spanned(span)
    }

    fn spanned(mut self, span: &Option<Range<usize>>) -> Self {
        if self.span.is_none() {
            self.span = span.clone();
        }
        self
    }

    pub fn under(mut self, prefix: &KeyPath) -> Self {
        self.path = prefix.join(&self.path);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), None)
    }
}

/// Which keys of the top-level table a `NodeDe` exposes; lets one table feed
/// a common struct and a kind-specific struct, each with deny_unknown_fields.
#[derive(Clone, Copy)]
pub(crate) enum Filter {
    All,
    Only(&'static [&'static str]),
    Except(&'static [&'static str]),
}

impl Filter {
    fn keeps(self, key: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(keys) => keys.contains(&key),
            Filter::Except(keys) => !keys.contains(&key),
        }
    }
}

pub(crate) struct NodeDe<'a> {
    node: &'a Node,
    filter: Filter,
}

impl<'a> NodeDe<'a> {
    pub fn new(node: &'a Node) -> Self {
        NodeDe {
            node,
            filter: Filter::All,
        }
    }

    pub fn filtered(node: &'a Node, filter: Filter) -> Self {
        NodeDe { node, filter }
    }
}

/// Deserializes `T` from `node`, reporting errors with paths relative to it.
pub(crate) fn from_node<'a, T: Deserialize<'a>>(
    node: &'a Node,
    filter: Filter,
) -> Result<T, DeError> {
    T::deserialize(NodeDe::filtered(node, filter))
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.node;
        let result = match &node.value {
            Value::String(s) | Value::Datetime(s) => visitor.visit_borrowed_str(s),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Boolean(b) => visitor.visit_bool(*b),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
            }),
            Value::Table(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                filter: self.filter,
                pending: None,
            }),
        };
        result.map_err(|e| e.spanned(&node.span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // TOML has no null: a present key is always `Some`.
        let span = self.node.span.clone();
        visitor.visit_some(self).map_err(|e| e.spanned(&span))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.spanned(&self.node.span)),
            _ => Err(DeError::new(
                format!("expected a string, found {}", self.node.type_name()),
                self.node.span.clone(),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => seed
                .deserialize(NodeDe::new(node))
                .map(Some)
                .map_err(|e| e.within(Seg::Index(i), &node.span)),
        }
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, Entry>,
    filter: Filter,
    pending: Option<&'a Entry>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let filter = self.filter;
        let Some(entry) = self.entries.by_ref().find(|e| filter.keeps(&e.key)) else {
            return Ok(None);
        };
        self.pending = Some(entry);
        seed.deserialize(KeyDe(&entry.key))
            .map(Some)
            .map_err(|e| e.within(Seg::Key(entry.key.clone()), &entry.key_span))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self
            .pending
            .take()
            .ok_or_else(|| DeError::new("value requested before key", None))?;
        let span = entry.node.span.clone().or(entry.key_span.clone());
        seed.deserialize(NodeDe::new(&entry.node))
            .map_err(|e| e.within(Seg::Key(entry.key.clone()), &span))
    }
}

struct KeyDe<'a>(&'a str);

impl<'de> Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        match toml::from_str::<Node>(text) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn spans_survive_implicit_tables() {
        let text = "[alerts.channels]\nnew_app = \"#x\"\n";
        let t = tree(text);
        let path = KeyPath::root().key("alerts").key("channels").key("new_app");
        let span = t.locate(&path).expect("span");
        assert_eq!(&text[span], "\"#x\"");
    }

    #[test]
    fn path_display() {
        let p = KeyPath::root()
            .key("apps")
            .index(1)
            .key("roles")
            .index(0)
            .key("a.b");
        assert_eq!(p.to_string(), "apps[1].roles[0].\"a.b\"");
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        x: Vec<Inner>,
    }

    #[test]
    fn errors_carry_path_and_span() {
        let text = "[[x]]\na = 1\n[[x]]\na = 1\nb = 2\n";
        let t = tree(text);
        let e = from_node::<Outer>(&t, Filter::All).expect_err("unknown key");
        assert_eq!(e.path.to_string(), "x[1].b");
        assert!(e.message.contains("unknown field `b`"), "{}", e.message);
        assert_eq!(&text[e.span.expect("span")], "b");

        let t = tree("[[x]]\na = \"no\"\n");
        let e = from_node::<Outer>(&t, Filter::All).expect_err("type");
        assert_eq!(e.path.to_string(), "x[0].a");
    }
}
