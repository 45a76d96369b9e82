//! The JSON forms of the HTTP API, byte-compatible with the reference's `encoding/json` output.
//!
//! Decoding is done in two steps so that a caller can answer as the reference does: the shape
//! (types, port numbers, list sizes) is what Go's decoder checks, and a failure there is the
//! reference's 400 "invalid request body"; the address strings are only checked afterwards by
//! its `NewAccessControl`, whose message the API returns. [`AccessJsonError`] keeps the two
//! apart. The plain serde impls do both steps and report either as a serde error.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    AccessRule, AccessRuleError, AccessRules, AddrSpec, PortSpec, MAX_ADDRS_PER_RULE,
    MAX_PORTS_PER_RULE, MAX_RULES,
};

/// Why a JSON body with access rules was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessJsonError {
    /// Not JSON, or not of the expected shape: a wrong type, a port outside 1–65535, a list
    /// over the limits. The reference's decoder refuses these, and its API answers
    /// 400 `{"success":false,"error":"invalid request body"}`.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but an address spec is invalid. The reference finds these in
    /// `NewAccessControl` and its API returns this message (`POST /api/token` with status 200
    /// and `"success":false`, `PUT /api/config/access` with status 400).
    #[error(transparent)]
    Invalid(#[from] AccessRuleError),
}

/// `GET /api/config/access`: the server-wide runtime rules, each side `null` when empty
/// (`{"entry":[...]|null,"dial":[...]|null}`).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessConfig {
    /// Rules checked where a SOCKS or HTTP request enters.
    pub entry: AccessRules,
    /// Rules checked before dialling a destination.
    pub dial: AccessRules,
}

/// `PUT /api/config/access`: `{"entry":[...]?,"dial":[...]?}`. A side that is missing or
/// `null` is `None` and keeps its current value; `[]` is `Some` of an empty set, which allows
/// everything but still replaces the current rules.
///
/// Keys match case-insensitively and a repeated key takes the last value, as Go's decoder
/// does; a body of `null` changes nothing. Encoding writes only the `Some` sides, each as an
/// array (`[]` when empty, so the meaning survives a round trip).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AccessConfigUpdate {
    /// New entry rules, or `None` to keep them.
    pub entry: Option<AccessRules>,
    /// New dial rules, or `None` to keep them.
    pub dial: Option<AccessRules>,
}

impl AccessConfigUpdate {
    /// Decode a PUT body. Like Go's `json.Decoder`, bytes after the first JSON value are
    /// ignored. Both sides are validated before anything is returned, so applying the result
    /// is all or nothing (the reference applies `entry` before it validates `dial`).
    pub fn from_json_slice(body: &[u8]) -> Result<AccessConfigUpdate, AccessJsonError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let raw = Sides::<RawRule>::deserialize(&mut de)
            .map_err(|e| AccessJsonError::Malformed(e.to_string()))?;
        Ok(AccessConfigUpdate {
            entry: raw.entry.map(rules_from_raw).transpose()?,
            dial: raw.dial.map(rules_from_raw).transpose()?,
        })
    }

    /// Replace the sides this update names.
    pub fn apply_to(self, config: &mut AccessConfig) {
        if let Some(entry) = self.entry {
            config.entry = entry;
        }
        if let Some(dial) = self.dial {
            config.dial = dial;
        }
    }
}

impl AccessRules {
    /// Decode the `rules` of a `POST /api/token` body (an array of rules, or `null` for none),
    /// telling a malformed value from an invalid rule as the reference's API does.
    pub fn from_json_value(value: &serde_json::Value) -> Result<AccessRules, AccessJsonError> {
        let raw = OptionSeed(Bounded::<RawRule>::new("access rules", MAX_RULES))
            .deserialize(value)
            .map_err(|e| AccessJsonError::Malformed(e.to_string()))?;
        rules_from_raw(raw.unwrap_or_default())
    }
}

fn rules_from_raw(raw: Vec<RawRule>) -> Result<AccessRules, AccessJsonError> {
    let rules = raw
        .into_iter()
        .map(RawRule::into_rule)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AccessRules::new(rules)?)
}

/// A rule as Go's decoder sees it: addresses still strings, ports already checked.
#[derive(Default)]
struct RawRule {
    addrs: Vec<String>,
    ports: Vec<PortSpec>,
}

impl RawRule {
    fn into_rule(self) -> Result<AccessRule, AccessRuleError> {
        let addrs = self
            .addrs
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<AddrSpec>, _>>()?;
        Ok(AccessRule {
            addrs,
            ports: self.ports,
        })
    }
}

/// Go's `encoding/json` matches a field name case-insensitively (ASCII here; Go also folds
/// `ſ` to `s`, which no one sends).
fn is_field(key: &str, name: &str) -> bool {
    key.eq_ignore_ascii_case(name)
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawRule, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an access rule object {"Addrs":[...],"Ports":[...]}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRule, A::Error> {
                let mut rule = RawRule::default();
                // A repeated key replaces the earlier value, as in Go.
                while let Some(k) = map.next_key::<String>()? {
                    if is_field(&k, "Addrs") {
                        let seed = Bounded::new("addresses in one rule", MAX_ADDRS_PER_RULE);
                        rule.addrs = map.next_value_seed(OptionSeed(seed))?.unwrap_or_default();
                    } else if is_field(&k, "Ports") {
                        let seed = Bounded::new("ports in one rule", MAX_PORTS_PER_RULE);
                        rule.ports = map.next_value_seed(OptionSeed(seed))?.unwrap_or_default();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(rule)
            }
        }
        d.deserialize_map(V)
    }
}

/// Case-insensitive `entry` and `dial`, each an optional list of `R`.
struct Sides<R> {
    entry: Option<Vec<R>>,
    dial: Option<Vec<R>>,
}

impl<'de, R: Deserialize<'de>> Deserialize<'de> for Sides<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sides<R>, D::Error> {
        struct V<R>(PhantomData<R>);
        impl<'de, R: Deserialize<'de>> Visitor<'de> for V<R> {
            type Value = Sides<R>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object {"entry":[...],"dial":[...]}"#)
            }
            // A `null` body decodes into Go's struct as a no-op.
            fn visit_none<E: de::Error>(self) -> Result<Sides<R>, E> {
                Ok(Sides {
                    entry: None,
                    dial: None,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Sides<R>, E> {
                self.visit_none()
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Sides<R>, D::Error> {
                d.deserialize_map(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sides<R>, A::Error> {
                let mut sides = Sides {
                    entry: None,
                    dial: None,
                };
                while let Some(k) = map.next_key::<String>()? {
                    let slot = if is_field(&k, "entry") {
                        &mut sides.entry
                    } else if is_field(&k, "dial") {
                        &mut sides.dial
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    *slot =
                        map.next_value_seed(OptionSeed(Bounded::new("access rules", MAX_RULES)))?;
                }
                Ok(sides)
            }
        }
        d.deserialize_option(V(PhantomData))
    }
}

impl<'de> Deserialize<'de> for AccessConfigUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AccessConfigUpdate, D::Error> {
        let sides = Sides::<AccessRule>::deserialize(d)?;
        let set = |rules: Option<Vec<AccessRule>>| {
            rules
                .map(AccessRules::new)
                .transpose()
                .map_err(de::Error::custom)
        };
        Ok(AccessConfigUpdate {
            entry: set(sides.entry)?,
            dial: set(sides.dial)?,
        })
    }
}

impl Serialize for AccessConfigUpdate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = usize::from(self.entry.is_some()) + usize::from(self.dial.is_some());
        let mut st = s.serialize_struct("AccessConfigUpdate", n)?;
        if let Some(entry) = &self.entry {
            st.serialize_field("entry", &List(entry.rules()))?;
        } else {
            st.skip_field("entry")?;
        }
        if let Some(dial) = &self.dial {
            st.serialize_field("dial", &List(dial.rules()))?;
        } else {
            st.skip_field("dial")?;
        }
        st.end()
    }
}

/// A list of at most `limit` items, refused with [`AccessRuleError::TooMany`] beyond, so a
/// hostile body cannot make us hold more than the limits.
struct Bounded<T> {
    what: &'static str,
    limit: usize,
    item: PhantomData<T>,
}

impl<T> Bounded<T> {
    fn new(what: &'static str, limit: usize) -> Self {
        Bounded {
            what,
            limit,
            item: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Bounded<T> {
    type Value = Vec<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {}", self.what)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            if items.len() == self.limit {
                return Err(de::Error::custom(AccessRuleError::TooMany {
                    what: self.what,
                    limit: self.limit,
                }));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// `null` as `None`, anything else through the inner seed: Go's nil slice.
struct OptionSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A slice written as an array even when empty.
struct List<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for List<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

/// A slice written as `null` when empty, as Go writes a nil slice.
struct NullIfEmpty<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for NullIfEmpty<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_none()
        } else {
            List(self.0).serialize(s)
        }
    }
}

/// As its text form ([`fmt::Display`]): IPs in their standard text form, so `FE80::/10` comes
/// back as `fe80::/10` and surrounding spaces are gone (the reference echoes the string it was
/// given).
impl Serialize for AddrSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddrSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AddrSpec, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A number for a single port, `[lo,hi]` for a range.
impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            [self.lo, self.hi].serialize(s)
        }
    }
}

/// A port number as JSON has it: any integer (range-checked later), never a fraction.
struct PortNumber(i128);

impl<'de> Deserialize<'de> for PortNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortNumber, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number 1-65535")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortNumber, E> {
                Ok(PortNumber(n.into()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortNumber, E> {
                Ok(PortNumber(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<PortNumber, E> {
                Err(E::custom(format_args!(
                    "invalid port {n:?}: want a whole number 1-65535"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `22` or `[90,150]`, each port 1–65535 and `lo ≤ hi`, as the reference's
/// `PortSpec.UnmarshalJSON` (which also takes `[22,22]`, the same as `22`).
impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port 1-65535 or an array [LO, HI]")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortSpec, E> {
                u16::try_from(n)
                    .ok()
                    .and_then(PortSpec::single)
                    .ok_or_else(|| E::custom(format_args!("invalid port {n}: ports are 1-65535")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortSpec, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format_args!(
                        "invalid port {n}: ports are 1-65535"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<PortSpec, E> {
                Err(E::custom(format_args!(
                    "invalid port {n:?}: want a whole number 1-65535 or an array [LO, HI]"
                )))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PortSpec, A::Error> {
                let two = "a port range is an array of two ports [LO, HI]";
                let lo = seq.next_element::<PortNumber>()?;
                let hi = seq.next_element::<PortNumber>()?;
                let (Some(PortNumber(lo)), Some(PortNumber(hi))) = (lo, hi) else {
                    return Err(de::Error::custom(two));
                };
                // Go's [2]int would drop a third element silently; refusing says it was wrong.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(two));
                }
                u16::try_from(lo)
                    .ok()
                    .zip(u16::try_from(hi).ok())
                    .and_then(|(lo, hi)| PortSpec::range(lo, hi))
                    .ok_or_else(|| {
                        de::Error::custom(format_args!(
                            "invalid port range [{lo}, {hi}]: want [LO, HI] with \
                             1 <= LO <= HI <= 65535"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

/// `{"Addrs":[...],"Ports":[...]}` with Go's field names, each list `null` when empty.
impl Serialize for AccessRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("AccessRule", 2)?;
        st.serialize_field("Addrs", &NullIfEmpty(&self.addrs))?;
        st.serialize_field("Ports", &NullIfEmpty(&self.ports))?;
        st.end()
    }
}

/// Keys `Addrs` and `Ports` in any case (`addrs`, `ADDRS`), each an array or `null`; other keys
/// are ignored and a repeated key takes the last value, as Go's decoder does. An invalid
/// address fails with its message.
impl<'de> Deserialize<'de> for AccessRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AccessRule, D::Error> {
        RawRule::deserialize(d)?
            .into_rule()
            .map_err(de::Error::custom)
    }
}

/// An array of rules, `null` when empty.
impl Serialize for AccessRules {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NullIfEmpty(self.rules()).serialize(s)
    }
}

/// An array of at most [`MAX_RULES`] rules, or `null` for none.
impl<'de> Deserialize<'de> for AccessRules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AccessRules, D::Error> {
        let rules = OptionSeed(Bounded::<AccessRule>::new("access rules", MAX_RULES))
            .deserialize(d)?
            .unwrap_or_default();
        AccessRules::new(rules).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(s: &str) -> AccessRule {
        s.parse().unwrap()
    }

    fn enc<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    fn dec_err<T: for<'de> Deserialize<'de> + fmt::Debug>(s: &str) -> String {
        serde_json::from_str::<T>(s).unwrap_err().to_string()
    }

    #[test]
    fn port_spec_json() {
        assert_eq!(enc(&PortSpec::single(22).unwrap()), "22");
        assert_eq!(enc(&PortSpec::range(90, 150).unwrap()), "[90,150]");
        let p = |s: &str| serde_json::from_str::<PortSpec>(s).unwrap();
        assert_eq!(p("22"), PortSpec::single(22).unwrap());
        assert_eq!(p("[90,150]"), PortSpec::range(90, 150).unwrap());
        assert_eq!(p(" [ 1 , 65535 ] "), PortSpec::range(1, 65535).unwrap());
        assert_eq!(p("[22,22]"), PortSpec::single(22).unwrap());
        assert_eq!(enc(&p("[22,22]")), "22");

        let bad: &[(&str, &str)] = &[
            ("0", "invalid port 0: ports are 1-65535"),
            ("70000", "invalid port 70000: ports are 1-65535"),
            ("-1", "invalid port -1: ports are 1-65535"),
            ("22.5", "invalid port 22.5: want a whole number"),
            ("1e2", "invalid port 100.0: want a whole number"),
            (
                "99999999999999999999",
                "invalid port 1e20: want a whole number",
            ),
            (
                "[30,20]",
                "invalid port range [30, 20]: want [LO, HI] with 1 <= LO <= HI <= 65535",
            ),
            ("[0,20]", "invalid port range [0, 20]"),
            ("[1,70000]", "invalid port range [1, 70000]"),
            ("[-5,20]", "invalid port range [-5, 20]"),
            ("[90]", "a port range is an array of two ports [LO, HI]"),
            ("[]", "a port range is an array of two ports [LO, HI]"),
            (
                "[90,150,200]",
                "a port range is an array of two ports [LO, HI]",
            ),
            ("[90.5,150]", "invalid port 90.5"),
            (
                "\"22\"",
                "invalid type: string \"22\", expected a port 1-65535 or an array [LO, HI]",
            ),
            (
                "null",
                "invalid type: null, expected a port 1-65535 or an array [LO, HI]",
            ),
            (
                "[\"a\",1]",
                "invalid type: string \"a\", expected a port number 1-65535",
            ),
            ("{}", "expected a port 1-65535 or an array [LO, HI]"),
        ];
        for (text, msg) in bad {
            let e = dec_err::<PortSpec>(text);
            assert!(e.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn rule_encodes_with_go_field_names() {
        let r = AccessRule {
            addrs: vec!["10.0.0.0/8".parse().unwrap()],
            ports: vec![
                PortSpec::single(22).unwrap(),
                PortSpec::range(90, 150).unwrap(),
            ],
        };
        assert_eq!(enc(&r), r#"{"Addrs":["10.0.0.0/8"],"Ports":[22,[90,150]]}"#);
        assert_eq!(
            enc(&AccessRule::default()),
            r#"{"Addrs":null,"Ports":null}"#
        );
        assert_eq!(
            enc(&rule("fe80::/10:443")),
            r#"{"Addrs":["fe80::/10"],"Ports":[443]}"#
        );
        // Addresses come back in canonical text form.
        let r: AccessRule =
            serde_json::from_str(r#"{"Addrs":[" FE80::1 ","10.0.0.1/8","::FFFF:1.2.3.4-9"]}"#)
                .unwrap();
        assert_eq!(
            enc(&r),
            r#"{"Addrs":["fe80::1","10.0.0.1/8","1.2.3.4-9"],"Ports":null}"#
        );
    }

    #[test]
    fn rule_round_trips() {
        let texts = [
            r#"{"Addrs":["10.0.0.0/8"],"Ports":[22,[90,150]]}"#,
            r#"{"Addrs":["10.0.0.1","::1","192.168.1.1-255","::1-::ff","1.1.1.1-1.1.2.2"],"Ports":null}"#,
            r#"{"Addrs":null,"Ports":[443]}"#,
            r#"{"Addrs":null,"Ports":null}"#,
        ];
        for t in texts {
            let r: AccessRule = serde_json::from_str(t).unwrap();
            assert_eq!(enc(&r), t);
        }
        for cli in ["10.0.0.0/8:22", "::1:8000-9000", "192.168.1.1-20:80"] {
            let r = rule(cli);
            let back: AccessRule = serde_json::from_str(&enc(&r)).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.to_string(), cli);
        }
    }

    #[test]
    fn rule_decodes_case_insensitively() {
        let want = rule("10.0.0.0/8:22");
        for t in [
            r#"{"addrs":["10.0.0.0/8"],"ports":[22]}"#,
            r#"{"Addrs":["10.0.0.0/8"],"Ports":[22]}"#,
            r#"{"ADDRS":["10.0.0.0/8"],"PORTS":[22]}"#,
            r#"{"aDdRs":["10.0.0.0/8"],"pOrTs":[22]}"#,
            // Unknown keys are ignored; a repeated key (in any case) takes the last value.
            r#"{"comment":{"x":[1]},"addrs":["1.1.1.1"],"Addrs":["10.0.0.0/8"],"ports":[22]}"#,
        ] {
            assert_eq!(serde_json::from_str::<AccessRule>(t).unwrap(), want, "{t}");
        }
        let r: AccessRule = serde_json::from_str(r#"{"addrs":null,"ports":[]}"#).unwrap();
        assert_eq!(r, AccessRule::default());
        let r: AccessRule = serde_json::from_str("{}").unwrap();
        assert_eq!(r, AccessRule::default());
    }

    #[test]
    fn bad_rule_json() {
        let bad: &[(&str, &str)] = &[
            (r#"{"addrs":["host"]}"#, "invalid address \"host\""),
            (r#"{"addrs":["[::1]"]}"#, "write IPv6 without brackets"),
            (
                r#"{"addrs":["10.0.0.0/40"]}"#,
                "invalid CIDR \"10.0.0.0/40\"",
            ),
            (
                r#"{"addrs":["10.0.0.9-1"]}"#,
                "invalid address range \"10.0.0.9-1\"",
            ),
            (r#"{"addrs":[""]}"#, "empty address"),
            (
                r#"{"addrs":"10.0.0.1"}"#,
                "expected an array of addresses in one rule",
            ),
            (
                r#"{"addrs":[1]}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (r#"{"ports":22}"#, "expected an array of ports in one rule"),
            (r#"{"ports":[0]}"#, "invalid port 0"),
            (r#"{"ports":[[5,1]]}"#, "invalid port range [5, 1]"),
            ("null", "expected an access rule object"),
            ("[]", "expected an access rule object"),
            ("\"10.0.0.0/8:22\"", "expected an access rule object"),
            (r#"{"addrs":["10.0.0.1"]"#, "EOF"),
        ];
        for (text, msg) in bad {
            let e = dec_err::<AccessRule>(text);
            assert!(e.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn rule_sets() {
        let rules = AccessRules::parse_cli(["10.0.0.0/8:22", "::1:80-81"]).unwrap();
        let text = r#"[{"Addrs":["10.0.0.0/8"],"Ports":[22]},{"Addrs":["::1"],"Ports":[[80,81]]}]"#;
        assert_eq!(enc(&rules), text);
        assert_eq!(serde_json::from_str::<AccessRules>(text).unwrap(), rules);
        assert_eq!(enc(&AccessRules::default()), "null");
        assert!(serde_json::from_str::<AccessRules>("null")
            .unwrap()
            .is_empty());
        assert!(serde_json::from_str::<AccessRules>("[]")
            .unwrap()
            .is_empty());
        // A null rule would be Go's zero rule, which allows everything: refused, `{}` says so.
        let e = dec_err::<AccessRules>("[null]");
        assert!(e.contains("expected an access rule object"), "{e}");
    }

    #[test]
    fn limits_are_enforced_while_decoding() {
        let many = format!("[{}]", vec!["{}"; MAX_RULES + 1].join(","));
        let e = dec_err::<AccessRules>(&many);
        assert!(
            e.contains("too many access rules: at most 1024 are accepted"),
            "{e}"
        );
        let enough = format!("[{}]", vec!["{}"; MAX_RULES].join(","));
        assert_eq!(
            serde_json::from_str::<AccessRules>(&enough).unwrap().len(),
            MAX_RULES
        );

        let addrs = vec!["\"::1\""; MAX_ADDRS_PER_RULE + 1].join(",");
        let e = dec_err::<AccessRule>(&format!("{{\"Addrs\":[{addrs}]}}"));
        assert!(
            e.contains("too many addresses in one rule: at most 1024"),
            "{e}"
        );
        let ports = vec!["22"; MAX_PORTS_PER_RULE + 1].join(",");
        let e = dec_err::<AccessRule>(&format!("{{\"Ports\":[{ports}]}}"));
        assert!(
            e.contains("too many ports in one rule: at most 1024"),
            "{e}"
        );

        let v = serde_json::from_str::<serde_json::Value>(&many).unwrap();
        assert!(matches!(
            AccessRules::from_json_value(&v),
            Err(AccessJsonError::Malformed(e)) if e.contains("too many access rules")
        ));
    }

    #[test]
    fn token_rules_tell_malformed_from_invalid() {
        let body = json!({"type": "reverse", "rules": [{"addrs": ["10.0.0.0/8"], "ports": [22]}]});
        assert_eq!(
            AccessRules::from_json_value(&body["rules"]).unwrap(),
            AccessRules::parse_cli(["10.0.0.0/8:22"]).unwrap()
        );
        // Missing or null: no rules.
        assert!(AccessRules::from_json_value(&body["nothing"])
            .unwrap()
            .is_empty());
        assert!(AccessRules::from_json_value(&json!(null))
            .unwrap()
            .is_empty());

        // Go's decoder refuses these: the API's 400 "invalid request body".
        for bad in [
            json!({"addrs": []}),
            json!([{"ports": [0]}]),
            json!([{"ports": ["22"]}]),
            json!([{"addrs": "10.0.0.1"}]),
            json!([null]),
            json!("10.0.0.0/8:22"),
        ] {
            let e = AccessRules::from_json_value(&bad).unwrap_err();
            assert!(matches!(e, AccessJsonError::Malformed(_)), "{bad}: {e:?}");
        }
        // NewAccessControl refuses these: the API returns the message.
        let e = AccessRules::from_json_value(&json!([{"addrs": ["10.0.0.0/8", "example.com"]}]))
            .unwrap_err();
        assert!(
            matches!(e, AccessJsonError::Invalid(AccessRuleError::Addr { .. })),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("invalid address \"example.com\""),
            "{e}"
        );
    }

    #[test]
    fn config_get_shape() {
        let mut config = AccessConfig::default();
        assert_eq!(enc(&config), r#"{"entry":null,"dial":null}"#);
        config.dial = AccessRules::parse_cli(["10.0.0.0/8:22"]).unwrap();
        assert_eq!(
            enc(&config),
            r#"{"entry":null,"dial":[{"Addrs":["10.0.0.0/8"],"Ports":[22]}]}"#
        );
        let back: AccessConfig = serde_json::from_str(&enc(&config)).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn config_put_shape() {
        let upd = |s: &str| AccessConfigUpdate::from_json_slice(s.as_bytes()).unwrap();
        let one = AccessRules::parse_cli(["10.0.0.0/8:22"]).unwrap();

        let u = upd(r#"{"entry":[{"addrs":["10.0.0.0/8"],"ports":[22]}]}"#);
        assert_eq!(u.entry.as_ref(), Some(&one));
        assert_eq!(u.dial, None);

        // Missing and null keep; [] sets empty.
        let u = upd(r#"{"entry":null,"dial":[]}"#);
        assert_eq!(u.entry, None);
        assert_eq!(u.dial, Some(AccessRules::default()));
        assert_eq!(upd("{}"), AccessConfigUpdate::default());
        assert_eq!(upd("null"), AccessConfigUpdate::default());
        // Keys in any case, the last of a repeated key wins, unknown keys are ignored, bytes
        // after the value are ignored (Go's json.Decoder).
        let u = upd(r#"{"ENTRY":[],"Entry":null,"Dial":[{}],"x":1} trailing"#);
        assert_eq!(u.entry, None);
        assert_eq!(u.dial.as_ref().map(AccessRules::len), Some(1));

        // Applying.
        let mut config = AccessConfig {
            entry: one.clone(),
            dial: one.clone(),
        };
        upd(r#"{"dial":[]}"#).apply_to(&mut config);
        assert_eq!(config.entry, one);
        assert!(config.dial.is_empty());
        upd(r#"{"entry":null}"#).apply_to(&mut config);
        assert_eq!(config.entry, one);

        // Encoding keeps the difference between "keep" and "set empty".
        let u = AccessConfigUpdate {
            entry: None,
            dial: Some(AccessRules::default()),
        };
        assert_eq!(enc(&u), r#"{"dial":[]}"#);
        assert_eq!(
            serde_json::from_str::<AccessConfigUpdate>(&enc(&u)).unwrap(),
            u
        );
        let u = AccessConfigUpdate {
            entry: Some(one.clone()),
            dial: None,
        };
        assert_eq!(
            enc(&u),
            r#"{"entry":[{"Addrs":["10.0.0.0/8"],"Ports":[22]}]}"#
        );
        assert_eq!(
            serde_json::from_str::<AccessConfigUpdate>(&enc(&u)).unwrap(),
            u
        );
    }

    #[test]
    fn config_put_errors() {
        let err = |s: &str| AccessConfigUpdate::from_json_slice(s.as_bytes()).unwrap_err();
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"entry":{}}"#,
            r#"{"entry":"10.0.0.0/8:22"}"#,
            r#"{"dial":[{"ports":[70000]}]}"#,
            r#"{"entry":[{"addrs":["10.0.0.1"]}"#,
        ] {
            assert!(
                matches!(err(bad), AccessJsonError::Malformed(_)),
                "{bad}: {:?}",
                err(bad)
            );
        }
        // A bad dial side refuses the whole update, entry included.
        let e = err(r#"{"entry":[],"dial":[{"addrs":["nope"]}]}"#);
        assert_eq!(
            e,
            AccessJsonError::Invalid(AccessRuleError::Addr {
                addr: "nope".into()
            })
        );
        // Through plain serde, both kinds are serde errors with the message.
        let e = dec_err::<AccessConfigUpdate>(r#"{"dial":[{"addrs":["nope"]}]}"#);
        assert!(e.starts_with("invalid address \"nope\""), "{e}");
        let e = dec_err::<AccessConfigUpdate>(r#"{"dial":[{"ports":[0]}]}"#);
        assert!(e.starts_with("invalid port 0"), "{e}");
    }

    #[test]
    fn hostile_json_never_panics() {
        let inputs = [
            "[".repeat(10_000),
            "{\"entry\":".repeat(10_000),
            format!("{{\"entry\":[{{\"Ports\":[{}]}}]}}", "[".repeat(5000)),
            "{\"entry\":[{\"Addrs\":[\"\u{0}\"]}]}".to_string(),
            "{\"entry\":[{\"Ports\":[[1e999,2]]}]}".to_string(),
            "\u{feff}{}".to_string(),
        ];
        for s in &inputs {
            let _ = AccessConfigUpdate::from_json_slice(s.as_bytes());
            let _ = serde_json::from_str::<AccessRules>(s);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
                let _ = AccessRules::from_json_value(&v);
            }
        }
    }
}
