//! Value parsers for flags that take durations and byte sizes.

use std::time::Duration;

/// A duration: plain seconds (`5`, `2.5`) or a Go duration (`5s`, `500ms`, `1m30s`, `1.5h`),
/// since the reference's `--connector-wait-provider` is a Go `time.Duration` flag and scripts
/// written for it pass Go syntax.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    // Plain number: seconds. Checked by hand because `f64::from_str` also takes "inf"/"nan".
    if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = t.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("duration {s:?} is out of range"));
    }
    let bad = || format!("invalid duration {s:?} (use seconds, or e.g. 500ms, 5s, 2m, 1h30m)");
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad());
        }
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut nanos = int.checked_mul(per).ok_or_else(bad)?;
        // Fractions are scaled digit by digit so "1.5h" is exact and huge fractions cannot
        // overflow (digits past nanosecond precision simply stop contributing).
        let mut scale = per;
        for d in frac.bytes() {
            scale /= 10;
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(bad)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("duration {s:?} is out of range"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// A byte size: a plain number of bytes, or with a binary suffix (`K`/`KB`/`KiB`, `M`..,
/// `G`..; all powers of 1024, case-insensitive). Zero is refused: every size flag bounds
/// something that must hold at least one byte.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (bytes, or with a suffix such as 64KiB, 32MiB)");
    if num.is_empty() {
        return Err(bad());
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let v = n.checked_mul(mult).ok_or_else(bad)?;
    if v == 0 {
        return Err(format!("size {s:?} must be greater than zero"));
    }
    usize::try_from(v).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_are_seconds() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration(" 2.5 ").unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("1m30.5s").unwrap(),
            Duration::from_millis(90_500)
        );
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("250µs").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("10ns").unwrap(), Duration::from_nanos(10));
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("+3s").unwrap(), Duration::from_secs(3));
    }

    #[test]
    fn bad_durations_are_refused() {
        for s in [
            "",
            " ",
            "-5s",
            "-1",
            "5x",
            "s",
            "5 s",
            "1.2.3s",
            "inf",
            "nan",
            "5sm",
            "1e3",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("32 MB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        for s in [
            "",
            "0",
            "0KiB",
            "-1",
            "1.5M",
            "12q",
            "MiB",
            "99999999999999999999",
        ] {
            assert!(parse_size(s).is_err(), "{s:?} accepted");
        }
    }
}
