//! The memory budget for parsing one manifest: how many values (scalars, sequences, mappings)
//! a file may amount to, counted before anything is built.
//!
//! A file's bytes are capped ([`super::MAX_MANIFEST_BYTES`], the kubelet's 10 MiB), but
//! what it costs in memory depends on its shape: 5 MiB of JSON in 40,000 small objects
//! became some 150 MB of values, pods and hashes, where 5 MiB in a few long strings costs
//! little more than its bytes. So the number of values is capped too. The largest real static
//! pods (kube-apiserver, etcd, with every flag and volume) are a few hundred values; the cap
//! leaves two orders of magnitude beyond that. YAML counts with its parser's own budget; JSON
//! is counted here, in one pass that allocates nothing, before it is parsed.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// The most values one manifest file may amount to (aliases expanded, for YAML).
pub const MAX_VALUES: usize = 50_000;

/// Counts the values in a JSON document: `Err` when there are more than `limit`. Syntax
/// errors are left to the real parse.
pub fn json_within(bytes: &[u8], limit: usize) -> Result<(), ()> {
    let left = Cell::new(limit);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match (Count { left: &left }).deserialize(&mut de) {
        Ok(()) => Ok(()),
        // Over budget, or a syntax error the real parse will report in full.
        Err(_) if left.get() == 0 => Err(()),
        Err(_) => Ok(()),
    }
}

#[derive(Clone, Copy)]
struct Count<'a> {
    left: &'a Cell<usize>,
}

impl Count<'_> {
    fn tick<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.left.get() {
            0 => Err(E::custom("over the value budget")),
            n => {
                self.left.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.tick()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.tick()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.tick()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.tick()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.tick()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while let Some(()) = map.next_key_seed(Key)? {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A mapping key: counted with its value, read without allocating.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(serde::de::IgnoredAny).map(|_| ())
    }
}

/// The error text for a file over the budget.
pub fn over_budget() -> String {
    format!(
        "more than {MAX_VALUES} values (counting each use of an alias): far beyond any real pod, refused to keep parsing within a memory budget"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_counted_without_building_them() {
        assert_eq!(json_within(br#"{"a": [1, 2, {"b": null}]}"#, 6), Ok(()));
        assert_eq!(json_within(br#"{"a": [1, 2, {"b": null}]}"#, 5), Err(()));
        // A syntax error is the parser's to report.
        assert_eq!(json_within(br#"{"a": "#, 5), Ok(()));
    }
}
