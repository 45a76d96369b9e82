//! The text forms: `--access-rule ADDR:PORT`, and the address strings of the JSON form.

use std::net::IpAddr;
use std::str::FromStr;

use thiserror::Error;

use super::{key, AccessRule, AddrSpec, PortSpec};

/// Why a rule, address spec or port spec was refused. Every message quotes the offending text
/// and says which forms are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessRuleError {
    /// The whole `--access-rule` value was empty.
    #[error("empty access rule: want ADDR:PORT, e.g. 10.0.0.0/8:22")]
    Empty,

    /// No `:PORT` at the end (a port is required; there is no wildcard).
    #[error(
        "invalid access rule {rule:?}: want ADDR:PORT with a port 1-65535 or a range LO-HI, \
         e.g. 10.0.0.0/8:22, ::1:22 or 192.168.1.1-255:8000-9000 (IPv6 without brackets)"
    )]
    MissingPort {
        /// The rule as given.
        rule: String,
    },

    /// An `--access-rule` value whose address or port part is wrong.
    #[error("invalid access rule {rule:?}: {reason}")]
    InRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with its address or port part.
        reason: Box<AccessRuleError>,
    },

    /// An empty address spec.
    #[error(
        "empty address: want an IP, a CIDR (10.0.0.0/8), a range (10.0.0.1-10.0.0.9) \
         or an IPv4 last-octet range (192.168.1.1-255)"
    )]
    EmptyAddr,

    /// An IPv6 address in brackets, the `[::1]:22` of URLs.
    #[error(
        "invalid address {addr:?}: write IPv6 without brackets; the rule is split at the last \
         ':', e.g. ::1:22 or fe80::/10:443"
    )]
    Bracketed {
        /// The address spec as given.
        addr: String,
    },

    /// Not an IP (a host name, most often).
    #[error(
        "invalid address {addr:?}: want an IP (10.0.0.1, ::1), a CIDR (10.0.0.0/8, fe80::/10), \
         a range (10.0.0.1-10.0.0.9, ::1-::ff) or an IPv4 last-octet range (192.168.1.1-255); \
         host names are not accepted"
    )]
    Addr {
        /// The address spec as given.
        addr: String,
    },

    /// A malformed CIDR.
    #[error(
        "invalid CIDR {addr:?}: want IP/PREFIX with a prefix of 0-32 for IPv4 or 0-128 for \
         IPv6, e.g. 10.0.0.0/8 or fe80::/10"
    )]
    Cidr {
        /// The address spec as given.
        addr: String,
    },

    /// A malformed range.
    #[error(
        "invalid address range {addr:?}: want FIRST-LAST with two IPs (10.0.0.1-10.0.0.9, \
         ::1-::ff) or an IPv4 address and a last octet 0-255 (192.168.1.1-255)"
    )]
    Range {
        /// The address spec as given.
        addr: String,
    },

    /// A range from an IPv4 to an IPv6 address or back.
    #[error(
        "invalid address range {addr:?}: both ends must be IPv4 or both IPv6 \
         (write a v4-mapped end as ::ffff:a.b.c.d on both sides)"
    )]
    MixedRange {
        /// The address spec as given.
        addr: String,
    },

    /// A range whose end comes before its start.
    #[error("invalid address range {addr:?}: the last address is before the first")]
    ReversedRange {
        /// The address spec as given.
        addr: String,
    },

    /// A port that is not a number in 1–65535.
    #[error("invalid port {port:?}: want a number 1-65535 or a range LO-HI, e.g. 22 or 8000-9000")]
    Port {
        /// The port spec as given.
        port: String,
    },

    /// A malformed or backwards port range.
    #[error(
        "invalid port range {range:?}: want LO-HI with 1 <= LO <= HI <= 65535, e.g. 8000-9000"
    )]
    PortRange {
        /// The port range as given.
        range: String,
    },

    /// More items than the decoding limits allow.
    #[error("too many {what}: at most {limit} are accepted")]
    TooMany {
        /// What there were too many of (address specs, port specs, rules).
        what: &'static str,
        /// The most accepted.
        limit: usize,
    },
}

/// A decimal port in 1–65535. Digits only: no sign and no spaces, which Go's `Atoi` would
/// take (`+22`) but no one writes on purpose.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>()
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n >= 1)
}

/// The address spec of a rule, as the reference's `parseAddrSpec`: surrounding spaces are
/// ignored; a `/` makes it a CIDR, a `-` a range, anything else must be an IP.
impl FromStr for AddrSpec {
    type Err = AccessRuleError;

    fn from_str(s: &str) -> Result<AddrSpec, AccessRuleError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AccessRuleError::EmptyAddr);
        }
        if s.starts_with('[') {
            return Err(AccessRuleError::Bracketed { addr: s.into() });
        }
        if let Some((ip, prefix)) = s.split_once('/') {
            let err = || AccessRuleError::Cidr { addr: s.into() };
            let addr: IpAddr = ip.parse().map_err(|_| err())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            // Leading zeros are fine, as with Go's dtoi; a sign or spaces are not.
            let prefix = (!prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()))
                .then(|| prefix.parse::<u8>().ok())
                .flatten()
                .filter(|&p| p <= max)
                .ok_or_else(err)?;
            return Ok(AddrSpec::Cidr { addr, prefix });
        }
        if let Some((first, last)) = s.split_once('-') {
            let (first, last) = (first.trim(), last.trim());
            let Ok(start) = first.parse::<IpAddr>() else {
                // `my-host` is more likely than a broken range: say host names are refused.
                return Err(AccessRuleError::Addr { addr: s.into() });
            };
            if let Ok(end) = last.parse::<IpAddr>() {
                if start.is_ipv4() != end.is_ipv4() {
                    return Err(AccessRuleError::MixedRange { addr: s.into() });
                }
                if key(start) > key(end) {
                    return Err(AccessRuleError::ReversedRange { addr: s.into() });
                }
                return Ok(AddrSpec::Range { start, end });
            }
            let start = match start {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            };
            let last_octet = (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
                .then(|| last.parse::<u8>().ok())
                .flatten();
            let (Some(start), Some(last)) = (start, last_octet) else {
                return Err(AccessRuleError::Range { addr: s.into() });
            };
            if last < start.octets()[3] {
                return Err(AccessRuleError::ReversedRange { addr: s.into() });
            }
            return Ok(AddrSpec::LastOctet { start, last });
        }
        s.parse()
            .map(AddrSpec::Ip)
            .map_err(|_| AccessRuleError::Addr { addr: s.into() })
    }
}

/// The command-line port form: `22` or `8000-9000` (spaces around the parts are ignored).
impl FromStr for PortSpec {
    type Err = AccessRuleError;

    fn from_str(s: &str) -> Result<PortSpec, AccessRuleError> {
        let s = s.trim();
        match s.split_once('-') {
            Some((lo, hi)) => parse_port(lo.trim())
                .zip(parse_port(hi.trim()))
                .and_then(|(lo, hi)| PortSpec::range(lo, hi))
                .ok_or_else(|| AccessRuleError::PortRange { range: s.into() }),
            None => parse_port(s)
                .and_then(PortSpec::single)
                .ok_or_else(|| AccessRuleError::Port { port: s.into() }),
        }
    }
}

/// The `--access-rule` form `ADDR:PORT`, split at the last `:`, giving a rule with one
/// address spec and one port spec (the reference's `parseAccessRuleSpec`).
impl FromStr for AccessRule {
    type Err = AccessRuleError;

    fn from_str(spec: &str) -> Result<AccessRule, AccessRuleError> {
        if spec.trim().is_empty() {
            return Err(AccessRuleError::Empty);
        }
        let missing_port = || AccessRuleError::MissingPort { rule: spec.into() };
        let Some((addr, port)) = spec.rsplit_once(':') else {
            return Err(missing_port());
        };
        if port.trim().is_empty() {
            return Err(missing_port());
        }
        let in_rule = |reason| AccessRuleError::InRule {
            rule: spec.into(),
            reason: Box::new(reason),
        };
        let addr = match addr.parse::<AddrSpec>() {
            Ok(a) => a,
            // `fe80::1` or `fe80::/10` alone split into a nonsense address (`fe80:`) and a
            // "port": the user forgot the port, so say that rather than blame `fe80:`. An
            // address part that is a real but wrong range (`::ff-::1`) keeps its own error.
            Err(
                AccessRuleError::EmptyAddr
                | AccessRuleError::Addr { .. }
                | AccessRuleError::Cidr { .. }
                | AccessRuleError::Range { .. },
            ) if spec.parse::<AddrSpec>().is_ok() => return Err(missing_port()),
            Err(e) => return Err(in_rule(e)),
        };
        let port = port.parse::<PortSpec>().map_err(in_rule)?;
        Ok(AccessRule {
            addrs: vec![addr],
            ports: vec![port],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AccessRule {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> String {
        match s.parse::<AccessRule>() {
            Ok(r) => panic!("{s:?} should be refused, parsed as {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_address_form() {
        let cases: &[(&str, AddrSpec, &str)] = &[
            ("10.0.0.1:22", AddrSpec::Ip(ip("10.0.0.1")), "10.0.0.1:22"),
            ("::1:22", AddrSpec::Ip(ip("::1")), "::1:22"),
            (
                "::ffff:10.0.0.1:22",
                AddrSpec::Ip(ip("::ffff:10.0.0.1")),
                "::ffff:10.0.0.1:22",
            ),
            (
                "10.0.0.0/8:22",
                AddrSpec::Cidr {
                    addr: ip("10.0.0.0"),
                    prefix: 8,
                },
                "10.0.0.0/8:22",
            ),
            (
                "10.1.2.3/08:22",
                AddrSpec::Cidr {
                    addr: ip("10.1.2.3"),
                    prefix: 8,
                },
                "10.1.2.3/8:22",
            ),
            (
                "FE80::/10:443",
                AddrSpec::Cidr {
                    addr: ip("fe80::"),
                    prefix: 10,
                },
                "fe80::/10:443",
            ),
            (
                "::/0:1",
                AddrSpec::Cidr {
                    addr: ip("::"),
                    prefix: 0,
                },
                "::/0:1",
            ),
            (
                "10.0.0.1-10.0.0.9:22",
                AddrSpec::Range {
                    start: ip("10.0.0.1"),
                    end: ip("10.0.0.9"),
                },
                "10.0.0.1-10.0.0.9:22",
            ),
            (
                "10.0.0.1 - 10.0.0.1:22",
                AddrSpec::Range {
                    start: ip("10.0.0.1"),
                    end: ip("10.0.0.1"),
                },
                "10.0.0.1-10.0.0.1:22",
            ),
            (
                "::1-::ff:22",
                AddrSpec::Range {
                    start: ip("::1"),
                    end: ip("::ff"),
                },
                "::1-::ff:22",
            ),
            (
                "192.168.1.1-255:22",
                AddrSpec::LastOctet {
                    start: "192.168.1.1".parse().unwrap(),
                    last: 255,
                },
                "192.168.1.1-255:22",
            ),
            (
                "192.168.1.7-7:22",
                AddrSpec::LastOctet {
                    start: "192.168.1.7".parse().unwrap(),
                    last: 7,
                },
                "192.168.1.7-7:22",
            ),
            (
                "::ffff:192.168.1.1-9:22",
                AddrSpec::LastOctet {
                    start: "192.168.1.1".parse().unwrap(),
                    last: 9,
                },
                "192.168.1.1-9:22",
            ),
        ];
        for (text, addr, shown) in cases {
            let r = rule(text);
            assert_eq!(r.addrs, vec![*addr], "{text}");
            assert_eq!(
                r.ports,
                vec![PortSpec::single(text.rsplit(':').next().unwrap().parse().unwrap()).unwrap()],
                "{text}"
            );
            assert_eq!(r.to_string(), *shown, "{text}");
            // What Display writes parses back to the same rule.
            assert_eq!(rule(shown), r, "{text}");
        }
    }

    #[test]
    fn every_port_form() {
        let p = |s: &str| rule(s).ports[0];
        assert_eq!(p("10.0.0.1:1"), PortSpec::single(1).unwrap());
        assert_eq!(p("10.0.0.1:65535"), PortSpec::single(65535).unwrap());
        assert_eq!(p("10.0.0.1:0022"), PortSpec::single(22).unwrap());
        assert_eq!(
            p("10.0.0.1:8000-9000"),
            PortSpec::range(8000, 9000).unwrap()
        );
        assert_eq!(
            p("10.0.0.1: 8000 - 9000 "),
            PortSpec::range(8000, 9000).unwrap()
        );
        assert_eq!(p("10.0.0.1:1-65535"), PortSpec::range(1, 65535).unwrap());
        // A one-port range is a single port, written back as such.
        assert_eq!(p("10.0.0.1:22-22"), PortSpec::single(22).unwrap());
        assert_eq!(rule("10.0.0.1:22-22").to_string(), "10.0.0.1:22");
        assert_eq!(rule("10.0.0.1:90-150").to_string(), "10.0.0.1:90-150");
    }

    #[test]
    fn refused_forms_and_their_messages() {
        let cases: &[(&str, &str)] = &[
            (
                "[::1]:22",
                "invalid access rule \"[::1]:22\": invalid address \"[::1]\": write IPv6 \
                 without brackets; the rule is split at the last ':', e.g. ::1:22 or \
                 fe80::/10:443",
            ),
            (
                "host:22",
                "invalid access rule \"host:22\": invalid address \"host\": want an IP \
                 (10.0.0.1, ::1), a CIDR (10.0.0.0/8, fe80::/10), a range (10.0.0.1-10.0.0.9, \
                 ::1-::ff) or an IPv4 last-octet range (192.168.1.1-255); host names are not \
                 accepted",
            ),
            (
                "10.0.0.1",
                "invalid access rule \"10.0.0.1\": want ADDR:PORT with a port 1-65535 or a \
                 range LO-HI, e.g. 10.0.0.0/8:22, ::1:22 or 192.168.1.1-255:8000-9000 (IPv6 \
                 without brackets)",
            ),
            (
                "10.0.0.1:0",
                "invalid access rule \"10.0.0.1:0\": invalid port \"0\": want a number \
                 1-65535 or a range LO-HI, e.g. 22 or 8000-9000",
            ),
            (
                "10.0.0.1:70000",
                "invalid access rule \"10.0.0.1:70000\": invalid port \"70000\": want a \
                 number 1-65535 or a range LO-HI, e.g. 22 or 8000-9000",
            ),
            (
                "10.0.0.1:30-20",
                "invalid access rule \"10.0.0.1:30-20\": invalid port range \"30-20\": want \
                 LO-HI with 1 <= LO <= HI <= 65535, e.g. 8000-9000",
            ),
            (
                "10.0.0.5-1:22",
                "invalid access rule \"10.0.0.5-1:22\": invalid address range \"10.0.0.5-1\": \
                 the last address is before the first",
            ),
            (
                "1.2.3.4-::1:22",
                "invalid access rule \"1.2.3.4-::1:22\": invalid address range \
                 \"1.2.3.4-::1\": both ends must be IPv4 or both IPv6 (write a v4-mapped end \
                 as ::ffff:a.b.c.d on both sides)",
            ),
            ("", "empty access rule: want ADDR:PORT, e.g. 10.0.0.0/8:22"),
            (
                "   ",
                "empty access rule: want ADDR:PORT, e.g. 10.0.0.0/8:22",
            ),
        ];
        for (text, msg) in cases {
            assert_eq!(err(text), *msg, "{text:?}");
        }
    }

    #[test]
    fn more_refused_forms() {
        let missing = "want ADDR:PORT with a port";
        for text in [
            "10.0.0.1:",
            "fe80::1",
            "fe80::/10",
            "::1",
            "10.0.0.1-9",
            "::",
        ] {
            assert!(err(text).contains(missing), "{text:?}: {}", err(text));
        }
        let cases: &[(&str, &str)] = &[
            (":22", "empty address"),
            ("[fe80::1]:443", "without brackets"),
            ("example.com:443", "host names are not accepted"),
            ("my-host:443", "invalid address \"my-host\""),
            ("fe80::1%eth0:22", "invalid address \"fe80::1%eth0\""),
            ("10.0.0.0/33:22", "invalid CIDR \"10.0.0.0/33\""),
            ("::/129:22", "invalid CIDR \"::/129\""),
            ("10.0.0.0/:22", "invalid CIDR"),
            ("10.0.0.0/+8:22", "invalid CIDR"),
            ("10.0.0.0/ 8:22", "invalid CIDR"),
            ("host/8:22", "invalid CIDR \"host/8\""),
            ("10.0.0.0/8-9:22", "invalid CIDR"),
            ("10.0.0.1-256:22", "invalid address range \"10.0.0.1-256\""),
            ("10.0.0.1-:22", "invalid address range"),
            ("10.0.0.1-x:22", "invalid address range"),
            ("10.0.0.1-+5:22", "invalid address range"),
            ("::1-5:22", "invalid address range \"::1-5\""),
            ("::1-1.2.3.4:22", "both ends must be IPv4 or both IPv6"),
            (
                "10.0.0.9-10.0.0.1:22",
                "the last address is before the first",
            ),
            ("::ff-::1:22", "the last address is before the first"),
            ("10.0.0.1:x", "invalid port \"x\""),
            ("10.0.0.1:+22", "invalid port \"+22\""),
            ("10.0.0.1:-22", "invalid port range \"-22\""),
            ("10.0.0.1:22-", "invalid port range \"22-\""),
            ("10.0.0.1:0-10", "invalid port range \"0-10\""),
            ("10.0.0.1:1-65536", "invalid port range \"1-65536\""),
            ("10.0.0.1:99999999999999999999", "invalid port"),
        ];
        for (text, part) in cases {
            let e = err(text);
            assert!(e.contains(part), "{text:?}: {e}");
        }
    }

    #[test]
    fn addr_specs_alone() {
        assert_eq!(
            " 10.0.0.0/8 ".parse::<AddrSpec>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "".parse::<AddrSpec>().unwrap_err(),
            AccessRuleError::EmptyAddr
        );
        assert_eq!(
            "2001:DB8::1".parse::<AddrSpec>().unwrap(),
            AddrSpec::Ip(ip("2001:db8::1"))
        );
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let pieces = [
            "",
            ":",
            "-",
            "/",
            "[",
            "]",
            "1",
            "0",
            "255",
            "256",
            "65536",
            "::",
            "1.2.3.4",
            "ffff",
            "%",
            " ",
            "é",
            "99999999999999999999999",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let s = format!("{a}{b}{c}");
                    let _ = s.parse::<AccessRule>();
                    let _ = s.parse::<AddrSpec>();
                    let _ = s.parse::<PortSpec>();
                }
            }
        }
    }
}
