//! Destination access rules, as the reference 1.10 has them: the `--access-rule ADDR:PORT` flag,
//! the per-token `rules` of `POST /api/token`, and `GET`/`PUT /api/config/access`.
//!
//! This module only parses, encodes and matches. It resolves no names and does no IO: a
//! caller checking a domain target resolves it itself and hands the IPs to
//! [`AccessRules::check_resolved`].
//!
//! # Syntax
//!
//! A rule on the command line is `ADDR:PORT`, split at the **last** `:`, so IPv6 is written
//! without brackets. A port is required.
//!
//! | Part | Form | Example | Covers |
//! |------|------|---------|--------|
//! | ADDR | IP | `10.0.0.1`, `::1` | that address |
//! | ADDR | CIDR | `10.0.0.0/8`, `fe80::/10` | the prefix (host bits are ignored) |
//! | ADDR | range | `10.0.0.1-10.0.0.9`, `::1-::ff` | both ends included, same family |
//! | ADDR | IPv4 last-octet range | `192.168.1.1-255` | `192.168.1.1`–`192.168.1.255` |
//! | PORT | single | `22` | 1–65535 |
//! | PORT | range | `8000-9000` | both ends included, `LO ≤ HI` |
//!
//! So `::1:22`, `fe80::/10:443` and `192.168.1.1-255:8000-9000` are rules; `[::1]:22`,
//! `example.com:22` and `10.0.0.1` are not.
//!
//! In JSON a rule is `{"Addrs":["10.0.0.0/8"],"Ports":[22,[90,150]]}`: any number of address
//! specs and port specs, where an empty (or `null`) list means "any". See [`AccessRule`].
//!
//! # Matching
//!
//! An empty [`AccessRules`] allows everything. Otherwise a destination is allowed when some
//! rule matches both its address and its port. IPv4 addresses are compared in their
//! v4-mapped IPv6 form, so `::ffff:10.0.0.1` is inside `10.0.0.0/8` and an IPv6 rule that
//! covers `::ffff:0:0/96` (such as `::/0`) covers every IPv4 address.
//!
//! ```
//! use linksocks_core::access::{AccessRule, AccessRules};
//!
//! let rule: AccessRule = "10.0.0.0/8:22".parse().unwrap();
//! let rules = AccessRules::new(vec![rule]).unwrap();
//! assert!(rules.check_ip("10.1.2.3".parse().unwrap(), 22));
//! assert!(!rules.check_ip("192.168.1.1".parse().unwrap(), 22));
//! assert!(!rules.check_ip("10.1.2.3".parse().unwrap(), 80));
//! ```

mod json;
mod parse;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::addr::TargetAddr;

pub use json::{AccessConfig, AccessConfigUpdate, AccessJsonError};
pub use parse::AccessRuleError;

/// At most this many rules in one [`AccessRules`]; more is refused when decoding (a bound on
/// what an API caller can make every connection check against).
pub const MAX_RULES: usize = 1024;
/// At most this many address specs in one [`AccessRule`].
pub const MAX_ADDRS_PER_RULE: usize = 1024;
/// At most this many port specs in one [`AccessRule`].
pub const MAX_PORTS_PER_RULE: usize = 1024;

/// One address spec of a rule. Parse it with [`str::parse`]; [`fmt::Display`] writes it back
/// in the same syntax (IPs in their standard text form, see the variants).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AddrSpec {
    /// A single address, `10.0.0.1` or `::1`.
    Ip(IpAddr),
    /// A prefix, `10.0.0.0/8` or `fe80::/10`. `addr` is kept as written, host bits included
    /// (`10.0.0.1/8` covers `10.0.0.0/8`, as Go's `ParseCIDR` does); `prefix` is at most 32
    /// for IPv4 and 128 for IPv6 (a larger one, only possible by building the value by
    /// hand, counts as the full length).
    Cidr {
        /// The address as written, host bits included.
        addr: IpAddr,
        /// Prefix length in bits.
        prefix: u8,
    },
    /// `start-end`, both included. Parsed ranges have ends of the same family with
    /// `start ≤ end`; one built by hand that runs backwards matches nothing.
    Range {
        /// First address of the range.
        start: IpAddr,
        /// Last address of the range (included).
        end: IpAddr,
    },
    /// The IPv4 shorthand `192.168.1.1-255`: from `start` to `start` with its last octet
    /// replaced by `last`. A v4-mapped IPv6 start (`::ffff:192.168.1.1-255`) is accepted as the
    /// reference does and kept as its IPv4 form.
    LastOctet {
        /// First address of the range.
        start: Ipv4Addr,
        /// Last octet of the last address (included).
        last: u8,
    },
}

/// One port spec of a rule: a single port or an inclusive range, always within 1–65535 with
/// `lo ≤ hi`. On the command line `22` or `90-150`; in JSON `22` or `[90,150]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PortSpec {
    lo: u16,
    hi: u16,
}

/// One allow entry: a destination matches when its address matches one of `addrs` **and** its
/// port one of `ports`. An empty list matches anything, so a rule with both lists empty (JSON
/// `{}`) allows every destination.
///
/// [`str::parse`] reads the command-line form (`10.0.0.0/8:22`, one address and one port spec);
/// the serde impls read and write the JSON form of the HTTP API.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct AccessRule {
    /// Address specs; empty means any address.
    pub addrs: Vec<AddrSpec>,
    /// Port specs; empty means any port.
    pub ports: Vec<PortSpec>,
}

/// A set of rules, as one side (entry or dial, or one token) holds them. Empty allows
/// everything; otherwise a destination must match at least one rule.
///
/// In JSON it is an array of [`AccessRule`]s, written `null` when empty (the reference's nil
/// slice); decoding accepts an array or `null`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct AccessRules {
    rules: Vec<AccessRule>,
}

/// The 128-bit key addresses are compared by: IPv4 in its v4-mapped form, as the reference's
/// `net.IP.To16` comparison does, so the two spellings of an IPv4 address are one point.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl AddrSpec {
    /// First and last key covered (inclusive).
    fn bounds(&self) -> (u128, u128) {
        match *self {
            AddrSpec::Ip(ip) => (key(ip), key(ip)),
            AddrSpec::Cidr {
                addr: IpAddr::V4(a),
                prefix,
            } => {
                let host_bits = 32 - u32::from(prefix.min(32));
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                let a = u32::from(a);
                (
                    key(Ipv4Addr::from(a & mask).into()),
                    key(Ipv4Addr::from(a | !mask).into()),
                )
            }
            // Computed in IPv6 space for every IPv6-written prefix. The reference differs for
            // v4-mapped ones (`::ffff:10.0.0.0/104`): its `ipNetEnd` takes the 4-byte view of
            // the address with the first 4 bytes of the 16-byte mask, so the range collapses
            // to the base address alone. The prefix is what the writer meant.
            AddrSpec::Cidr {
                addr: IpAddr::V6(a),
                prefix,
            } => {
                let host_bits = 128 - u32::from(prefix.min(128));
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                let a = u128::from(a);
                (a & mask, a | !mask)
            }
            AddrSpec::Range { start, end } => (key(start), key(end)),
            AddrSpec::LastOctet { start, last } => {
                let [a, b, c, _] = start.octets();
                (key(start.into()), key(Ipv4Addr::new(a, b, c, last).into()))
            }
        }
    }

    /// Whether `ip` is covered, comparing IPv4 in v4-mapped form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (lo, hi) = self.bounds();
        (lo..=hi).contains(&key(ip))
    }
}

impl PortSpec {
    /// A single port; `None` for 0.
    pub fn single(port: u16) -> Option<PortSpec> {
        PortSpec::range(port, port)
    }

    /// The inclusive range `lo..=hi`; `None` unless `1 ≤ lo ≤ hi`.
    pub fn range(lo: u16, hi: u16) -> Option<PortSpec> {
        (lo >= 1 && lo <= hi).then_some(PortSpec { lo, hi })
    }

    /// First port covered.
    pub fn lo(&self) -> u16 {
        self.lo
    }

    /// Last port covered (equal to [`lo`](Self::lo) for a single port).
    pub fn hi(&self) -> u16 {
        self.hi
    }

    /// Whether `port` is covered.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl AccessRule {
    /// Whether this rule allows `ip` at `port`.
    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        (self.ports.is_empty() || self.ports.iter().any(|p| p.contains(port)))
            && (self.addrs.is_empty() || self.addrs.iter().any(|a| a.contains(ip)))
    }

    /// Refuse lists longer than the decoding limits.
    fn check_limits(&self) -> Result<(), AccessRuleError> {
        if self.addrs.len() > MAX_ADDRS_PER_RULE {
            return Err(AccessRuleError::TooMany {
                what: "addresses in one rule",
                limit: MAX_ADDRS_PER_RULE,
            });
        }
        if self.ports.len() > MAX_PORTS_PER_RULE {
            return Err(AccessRuleError::TooMany {
                what: "ports in one rule",
                limit: MAX_PORTS_PER_RULE,
            });
        }
        Ok(())
    }
}

impl AccessRules {
    /// The set of `rules`, refused beyond [`MAX_RULES`] rules or the per-rule limits.
    pub fn new(rules: Vec<AccessRule>) -> Result<AccessRules, AccessRuleError> {
        if rules.len() > MAX_RULES {
            return Err(AccessRuleError::TooMany {
                what: "access rules",
                limit: MAX_RULES,
            });
        }
        rules.iter().try_for_each(AccessRule::check_limits)?;
        Ok(AccessRules { rules })
    }

    /// The rules of repeated `--access-rule` flags, one rule per flag.
    pub fn parse_cli<I, S>(specs: I) -> Result<AccessRules, AccessRuleError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let rules = specs
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<AccessRule>, _>>()?;
        AccessRules::new(rules)
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    /// Whether there are no rules (everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether `ip` at `port` is allowed.
    pub fn check_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.is_empty() || self.rules.iter().any(|r| r.matches(ip, port))
    }

    /// Whether a domain target that resolved to `ips` is allowed at `port`: allowed when
    /// **any** of the IPs is. A name that resolved to nothing (or failed to resolve) is denied
    /// when there are rules, even by a rule without addresses, as the reference's `Allow`
    /// returns `false` on a lookup error before it looks at a rule.
    pub fn check_resolved(&self, ips: &[IpAddr], port: u16) -> bool {
        self.is_empty() || ips.iter().any(|&ip| self.check_ip(ip, port))
    }

    /// The verdict for `target` when it can be given without resolving a name: `Some` for an
    /// IP target (or a domain that is an IP literal, which the reference also takes as an IP)
    /// and for any target when there are no rules; `None` when the caller must resolve the
    /// name and call [`check_resolved`](Self::check_resolved).
    pub fn check_target(&self, target: &TargetAddr) -> Option<bool> {
        if self.is_empty() {
            return Some(true);
        }
        match target {
            TargetAddr::Ip(sa) => Some(self.check_ip(sa.ip(), sa.port())),
            TargetAddr::Domain(host, port) => host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| self.check_ip(ip, *port)),
        }
    }

    /// Whether checking `target` needs a name resolution first: never when there are no
    /// rules, so callers skip the lookup entirely in the common case.
    pub fn needs_resolution(&self, target: &TargetAddr) -> bool {
        self.check_target(target).is_none()
    }

    /// Whether a SOCKS5 UDP ASSOCIATE may go ahead under these rules: only when there are none.
    ///
    /// The reference's server checks a token's rules on a UDP Connect with an empty address
    /// (the UDP Connect carries none): "Server-side token rules are called with an empty
    /// address for UDP Connects, so token rules deny UDP ASSOCIATE outright". An empty host
    /// does not resolve, so any rule set denies it, and an empty set allows it.
    pub fn allows_udp_associate(&self) -> bool {
        self.is_empty()
    }
}

impl fmt::Display for AddrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrSpec::Ip(ip) => write!(f, "{ip}"),
            AddrSpec::Cidr { addr, prefix } => write!(f, "{addr}/{prefix}"),
            AddrSpec::Range { start, end } => write!(f, "{start}-{end}"),
            AddrSpec::LastOctet { start, last } => write!(f, "{start}-{last}"),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// The command-line form `ADDR:PORT` for a rule with one address and one port spec (what
/// [`str::parse`] accepts back). A rule from JSON with other list lengths is written with
/// its lists comma-separated and an empty list as `*` (`10.0.0.1,::1:22,80`, `*:*`): readable
/// in logs, but not a form the parser takes.
impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
            if items.is_empty() {
                return f.write_str("*");
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        list(f, &self.addrs)?;
        f.write_str(":")?;
        list(f, &self.ports)
    }
}

/// The rules separated by `, `, or `(none)` for the empty set; for logs.
impl fmt::Display for AccessRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rules.is_empty() {
            return f.write_str("(none)");
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn rules(specs: &[&str]) -> AccessRules {
        AccessRules::parse_cli(specs).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_cidr() {
        let r = rules(&["10.0.0.0/8:22"]);
        assert!(r.check_ip(ip("10.0.0.0"), 22));
        assert!(r.check_ip(ip("10.255.255.255"), 22));
        assert!(!r.check_ip(ip("11.0.0.0"), 22));
        assert!(!r.check_ip(ip("9.255.255.255"), 22));
        assert!(!r.check_ip(ip("10.0.0.1"), 23));
        // Host bits in the rule are ignored, as Go's ParseCIDR masks them.
        let r = rules(&["10.1.2.3/16:22"]);
        assert!(r.check_ip(ip("10.1.0.0"), 22));
        assert!(r.check_ip(ip("10.1.255.255"), 22));
        assert!(!r.check_ip(ip("10.2.0.0"), 22));
        // /0 and /32.
        assert!(rules(&["0.0.0.0/0:22"]).check_ip(ip("255.255.255.255"), 22));
        let r = rules(&["10.0.0.1/32:22"]);
        assert!(r.check_ip(ip("10.0.0.1"), 22));
        assert!(!r.check_ip(ip("10.0.0.2"), 22));
    }

    #[test]
    fn v6_cidr() {
        let r = rules(&["fe80::/10:443"]);
        assert!(r.check_ip(ip("fe80::1"), 443));
        assert!(r.check_ip(ip("febf:ffff::1"), 443));
        assert!(!r.check_ip(ip("fec0::"), 443));
        assert!(!r.check_ip(ip("::1"), 443));
        assert!(!r.check_ip(ip("fe80::1"), 80));
        let r = rules(&["::1/128:22"]);
        assert!(r.check_ip(ip("::1"), 22));
        assert!(!r.check_ip(ip("::2"), 22));
    }

    #[test]
    fn single_ips() {
        let r = rules(&["10.0.0.1:22", "::1:22"]);
        assert!(r.check_ip(ip("10.0.0.1"), 22));
        assert!(!r.check_ip(ip("10.0.0.2"), 22));
        assert!(r.check_ip(ip("::1"), 22));
        assert!(!r.check_ip(ip("::2"), 22));
    }

    #[test]
    fn full_and_last_octet_ranges() {
        let r = rules(&["10.0.0.250-10.0.1.5:80"]);
        assert!(r.check_ip(ip("10.0.0.250"), 80));
        assert!(r.check_ip(ip("10.0.0.255"), 80));
        assert!(r.check_ip(ip("10.0.1.5"), 80));
        assert!(!r.check_ip(ip("10.0.1.6"), 80));
        assert!(!r.check_ip(ip("10.0.0.249"), 80));

        let r = rules(&["::1-::ff:80"]);
        assert!(r.check_ip(ip("::80"), 80));
        assert!(!r.check_ip(ip("::100"), 80));
        assert!(!r.check_ip(ip("::"), 80));

        let r = rules(&["192.168.1.10-20:80"]);
        assert!(r.check_ip(ip("192.168.1.10"), 80));
        assert!(r.check_ip(ip("192.168.1.20"), 80));
        assert!(!r.check_ip(ip("192.168.1.21"), 80));
        assert!(!r.check_ip(ip("192.168.1.9"), 80));
        assert!(!r.check_ip(ip("192.168.2.15"), 80));
    }

    #[test]
    fn v4_mapped_compares_as_v4() {
        let r = rules(&["10.0.0.0/8:22"]);
        assert!(r.check_ip(ip("::ffff:10.0.0.1"), 22));
        assert!(!r.check_ip(ip("::ffff:11.0.0.1"), 22));
        // IPv4-compatible (not mapped) is a different address, as in the reference.
        assert!(!r.check_ip(ip("::10.0.0.1"), 22));

        let r = rules(&["::ffff:10.0.0.1:22"]);
        assert!(r.check_ip(ip("10.0.0.1"), 22));

        // An IPv6 rule spanning the v4-mapped block covers IPv4 targets, as in the reference.
        let r = rules(&["::/0:22"]);
        assert!(r.check_ip(ip("10.0.0.1"), 22));
        assert!(r.check_ip(ip("2001:db8::1"), 22));
        let r = rules(&["::-::ffff:ffff:ffff:80"]);
        assert!(r.check_ip(ip("1.2.3.4"), 80));
        // ...and one beside it does not.
        assert!(!rules(&["2000::/3:22"]).check_ip(ip("10.0.0.1"), 22));
        // An IPv4 rule covers no IPv6 target outside the mapped block.
        assert!(!rules(&["0.0.0.0/0:22"]).check_ip(ip("2001:db8::1"), 22));

        // A v4-mapped IPv6 prefix covers the whole prefix (the reference collapses it to the
        // base address; see AddrSpec::bounds).
        let r = rules(&["::ffff:10.0.0.0/104:22"]);
        assert!(r.check_ip(ip("10.0.0.0"), 22));
        assert!(r.check_ip(ip("10.200.0.1"), 22));
        assert!(!r.check_ip(ip("11.0.0.0"), 22));
        assert!(rules(&["::ffff:0:0/96:22"]).check_ip(ip("192.0.2.1"), 22));

        // A last-octet range written with a v4-mapped start.
        let r = rules(&["::ffff:192.168.1.1-5:22"]);
        assert!(r.check_ip(ip("192.168.1.5"), 22));
        assert!(r.check_ip(ip("::ffff:192.168.1.3"), 22));
        assert!(!r.check_ip(ip("192.168.1.6"), 22));
    }

    #[test]
    fn port_ranges() {
        let r = rules(&["10.0.0.1:8000-9000"]);
        assert!(r.check_ip(ip("10.0.0.1"), 8000));
        assert!(r.check_ip(ip("10.0.0.1"), 9000));
        assert!(!r.check_ip(ip("10.0.0.1"), 7999));
        assert!(!r.check_ip(ip("10.0.0.1"), 9001));
        let r = rules(&["0.0.0.0/0:1-65535"]);
        assert!(r.check_ip(ip("1.1.1.1"), 1));
        assert!(r.check_ip(ip("1.1.1.1"), 65535));
        assert!(!r.check_ip(ip("1.1.1.1"), 0));
    }

    #[test]
    fn any_rule_allows_and_both_parts_must_match_in_one_rule() {
        let r = rules(&["10.0.0.0/8:22", "192.168.0.0/16:80"]);
        assert!(r.check_ip(ip("10.0.0.1"), 22));
        assert!(r.check_ip(ip("192.168.1.1"), 80));
        // The address of one rule with the port of the other is not a match.
        assert!(!r.check_ip(ip("10.0.0.1"), 80));
        assert!(!r.check_ip(ip("192.168.1.1"), 22));

        // Several specs inside one rule: any address with any port.
        let rule = AccessRule {
            addrs: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            ports: vec![
                PortSpec::single(22).unwrap(),
                PortSpec::range(90, 150).unwrap(),
            ],
        };
        let r = AccessRules::new(vec![rule]).unwrap();
        assert!(r.check_ip(ip("::1"), 100));
        assert!(r.check_ip(ip("10.0.0.1"), 22));
        assert!(!r.check_ip(ip("10.0.0.1"), 151));
    }

    #[test]
    fn empty_lists_mean_any() {
        let port_only = AccessRule {
            addrs: vec![],
            ports: vec![PortSpec::single(443).unwrap()],
        };
        let r = AccessRules::new(vec![port_only]).unwrap();
        assert!(r.check_ip(ip("203.0.113.9"), 443));
        assert!(r.check_ip(ip("2001:db8::9"), 443));
        assert!(!r.check_ip(ip("203.0.113.9"), 80));

        let addr_only = AccessRule {
            addrs: vec!["10.0.0.0/8".parse().unwrap()],
            ports: vec![],
        };
        let r = AccessRules::new(vec![addr_only]).unwrap();
        assert!(r.check_ip(ip("10.0.0.1"), 1));
        assert!(!r.check_ip(ip("11.0.0.1"), 1));

        let r = AccessRules::new(vec![AccessRule::default()]).unwrap();
        assert!(r.check_ip(ip("11.0.0.1"), 9));
        assert!(!r.allows_udp_associate());
    }

    #[test]
    fn empty_set_allows_all() {
        let r = AccessRules::default();
        assert!(r.is_empty());
        assert!(r.check_ip(ip("1.2.3.4"), 0));
        assert!(r.check_resolved(&[], 22));
        let domain = TargetAddr::Domain("unresolvable.invalid".into(), 22);
        assert_eq!(r.check_target(&domain), Some(true));
        assert!(!r.needs_resolution(&domain));
        assert!(r.allows_udp_associate());
    }

    #[test]
    fn resolved_domains() {
        let r = rules(&["10.0.0.0/8:22"]);
        // Allowed when any resolved IP matches.
        assert!(r.check_resolved(&[ip("192.0.2.1"), ip("10.0.0.7")], 22));
        assert!(!r.check_resolved(&[ip("192.0.2.1"), ip("2001:db8::1")], 22));
        assert!(!r.check_resolved(&[ip("10.0.0.7")], 80));
        // A name that does not resolve is denied, even by a port-only rule.
        assert!(!r.check_resolved(&[], 22));
        let port_only = AccessRules::new(vec![AccessRule {
            addrs: vec![],
            ports: vec![PortSpec::single(22).unwrap()],
        }])
        .unwrap();
        assert!(!port_only.check_resolved(&[], 22));
        assert!(port_only.check_resolved(&[ip("192.0.2.1")], 22));
    }

    #[test]
    fn targets() {
        let r = rules(&["10.0.0.0/8:22"]);
        let sa = |s: &str| TargetAddr::Ip(s.parse::<SocketAddr>().unwrap());
        assert_eq!(r.check_target(&sa("10.0.0.1:22")), Some(true));
        assert_eq!(r.check_target(&sa("10.0.0.1:23")), Some(false));
        assert_eq!(r.check_target(&sa("[::ffff:10.0.0.1]:22")), Some(true));
        let name = TargetAddr::Domain("example.com".into(), 22);
        assert_eq!(r.check_target(&name), None);
        assert!(r.needs_resolution(&name));
        // A domain that is an IP literal is checked as that IP, as net.ParseIP does first.
        let literal = TargetAddr::Domain("10.0.0.1".into(), 22);
        assert_eq!(r.check_target(&literal), Some(true));
        assert!(!r.needs_resolution(&literal));
        assert!(!r.allows_udp_associate());
    }

    #[test]
    fn limits() {
        let many = vec![AccessRule::default(); MAX_RULES + 1];
        let err = AccessRules::new(many).unwrap_err();
        assert_eq!(
            err.to_string(),
            "too many access rules: at most 1024 are accepted"
        );
        assert!(AccessRules::new(vec![AccessRule::default(); MAX_RULES]).is_ok());
        let wide = AccessRule {
            addrs: vec![AddrSpec::Ip(ip("::1")); MAX_ADDRS_PER_RULE + 1],
            ports: vec![],
        };
        assert_eq!(
            AccessRules::new(vec![wide]).unwrap_err().to_string(),
            "too many addresses in one rule: at most 1024 are accepted"
        );
    }

    #[test]
    fn hand_built_values_never_panic() {
        let odd = [
            AddrSpec::Cidr {
                addr: ip("10.0.0.1"),
                prefix: 200,
            },
            AddrSpec::Cidr {
                addr: ip("::1"),
                prefix: 255,
            },
            AddrSpec::Cidr {
                addr: ip("::1"),
                prefix: 0,
            },
            AddrSpec::Range {
                start: ip("10.0.0.9"),
                end: ip("10.0.0.1"),
            },
        ];
        assert!(odd[0].contains(ip("10.0.0.1")));
        assert!(!odd[0].contains(ip("10.0.0.2")));
        assert!(odd[1].contains(ip("::1")));
        assert!(odd[2].contains(ip("1.2.3.4")));
        assert!(!odd[3].contains(ip("10.0.0.5")));
    }

    #[test]
    fn display() {
        let r = rules(&["10.0.0.0/8:22", " fe80::/10 : 443 "]);
        assert_eq!(r.to_string(), "10.0.0.0/8:22, fe80::/10:443");
        assert_eq!(AccessRules::default().to_string(), "(none)");
        let rule = AccessRule {
            addrs: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            ports: vec![
                PortSpec::single(22).unwrap(),
                PortSpec::range(80, 81).unwrap(),
            ],
        };
        assert_eq!(rule.to_string(), "10.0.0.1,::1:22,80-81");
        assert_eq!(AccessRule::default().to_string(), "*:*");
    }
}
