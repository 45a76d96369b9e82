//! One markdown table from the result files of several setups, with ratios to a baseline.

use std::collections::HashMap;
use std::fs;
use std::io;

pub struct Setup {
    pub label: String,
    pub vals: HashMap<String, String>,
    pub order: Vec<String>,
}

pub fn load(path: &str) -> io::Result<Setup> {
    let text = fs::read_to_string(path)?;
    let mut vals = HashMap::new();
    let mut order = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('\t') {
            if !vals.contains_key(k) {
                order.push(k.to_string());
            }
            vals.insert(k.to_string(), v.to_string());
        }
    }
    let label = vals
        .get("label")
        .cloned()
        .unwrap_or_else(|| path.to_string());
    Ok(Setup { label, vals, order })
}

impl Setup {
    fn num(&self, k: &str) -> Option<f64> {
        self.vals.get(k)?.parse().ok()
    }
}

/// Merges the rounds of each setup (files with the same label), in order of first appearance:
/// numbers become the median of the rounds that have them (the RSS at start: the first
/// round's), texts are kept once each.
pub fn merge(files: Vec<Setup>) -> Vec<Setup> {
    let mut out: Vec<(Setup, Vec<Setup>)> = Vec::new();
    for f in files {
        match out.iter_mut().find(|(s, _)| s.label == f.label) {
            Some((_, rounds)) => rounds.push(f),
            None => out.push((
                Setup {
                    label: f.label.clone(),
                    vals: HashMap::new(),
                    order: Vec::new(),
                },
                vec![f],
            )),
        }
    }
    out.into_iter()
        .map(|(mut m, rounds)| {
            for r in &rounds {
                for k in &r.order {
                    if !m.order.contains(k) {
                        m.order.push(k.clone());
                    }
                }
            }
            for k in m.order.clone() {
                let nums: Vec<f64> = rounds.iter().filter_map(|r| r.num(&k)).collect();
                let any = rounds.iter().filter(|r| r.vals.contains_key(&k)).count();
                let v = if k != "label" && !nums.is_empty() && nums.len() == any {
                    if k.starts_with("idle_rss") {
                        nums[0].to_string()
                    } else {
                        let mut n = nums;
                        n.sort_by(|a, b| a.total_cmp(b));
                        let mid = n.len() / 2;
                        let med = if n.len() % 2 == 1 {
                            n[mid]
                        } else {
                            (n[mid - 1] + n[mid]) / 2.0
                        };
                        med.to_string()
                    }
                } else {
                    let mut texts: Vec<&str> = Vec::new();
                    for r in &rounds {
                        if let Some(t) = r.vals.get(&k) {
                            if !texts.contains(&t.as_str()) {
                                texts.push(t);
                            }
                        }
                    }
                    texts.join(" | ")
                };
                m.vals.insert(k, v);
            }
            let ok = rounds
                .iter()
                .filter(|r| !r.vals.contains_key("error"))
                .count();
            m.vals.insert("rounds".into(), format!("{ok}"));
            m
        })
        .collect()
}

/// `(key, label, divisor, decimals)`; a key starting with `=` is a section header.
const ROWS: &[(&str, &str, f64, usize)] = &[
    (
        "rounds",
        "rounds measured (each figure: their median)",
        1.0,
        0,
    ),
    ("=", "**Bulk** (incompressible data)", 1.0, 0),
    ("down1_mb_per_s", "bulk MB/s, 1 stream, download", 1.0, 0),
    ("up1_mb_per_s", "bulk MB/s, 1 stream, upload", 1.0, 0),
    ("down4_mb_per_s", "bulk MB/s, 4 streams, download", 1.0, 0),
    (
        "bulk_cpu_s_per_gib",
        "CPU-s per GiB, both proxy processes, all bulk tests",
        1.0,
        2,
    ),
    (
        "down1_cpu_s_per_gib",
        "CPU-s per GiB, 1-stream download",
        1.0,
        2,
    ),
    (
        "up1_cpu_s_per_gib",
        "CPU-s per GiB, 1-stream upload",
        1.0,
        2,
    ),
    (
        "down4_cpu_s_per_gib",
        "CPU-s per GiB, 4-stream download",
        1.0,
        2,
    ),
    (
        "down1_peak_rss_local_kib",
        "peak RSS MiB during the download, local side",
        1024.0,
        1,
    ),
    (
        "down1_peak_rss_exit_kib",
        "peak RSS MiB during the download, exit side",
        1024.0,
        1,
    ),
    (
        "up1_peak_rss_local_kib",
        "peak RSS MiB during the upload, local side",
        1024.0,
        1,
    ),
    (
        "up1_peak_rss_exit_kib",
        "peak RSS MiB during the upload, exit side",
        1024.0,
        1,
    ),
    (
        "=",
        "**Connections** (CONNECT + one 32 B echo + close)",
        1.0,
        0,
    ),
    ("rate50_conns_per_s", "connections/s, 50 concurrent", 1.0, 0),
    ("rate50_p50_ms", "latency p50 ms, 50 concurrent", 1.0, 2),
    ("rate50_p99_ms", "latency p99 ms, 50 concurrent", 1.0, 2),
    ("rate50_errors", "failed connections, 50 concurrent", 1.0, 0),
    (
        "rate50_cpu_ms_per_1000",
        "CPU-ms per 1,000 connections, both processes",
        1.0,
        0,
    ),
    ("rate1_conns_per_s", "connections/s, 1 at a time", 1.0, 0),
    ("rate1_p50_ms", "latency p50 ms, 1 at a time", 1.0, 3),
    ("rate1_p99_ms", "latency p99 ms, 1 at a time", 1.0, 3),
    (
        "rate1_setup_p50_ms",
        "unloaded CONNECT setup p50 ms",
        1.0,
        3,
    ),
    ("rate1_echo_p50_ms", "unloaded first echo p50 ms", 1.0, 3),
    (
        "echo_rtt_p50_ms",
        "32 B echo RTT p50 ms, idle established connection",
        1.0,
        3,
    ),
    (
        "echo_rtt_p99_ms",
        "32 B echo RTT p99 ms, idle established connection",
        1.0,
        3,
    ),
    (
        "=",
        "**Held connections** (idle, each checked with an echo)",
        1.0,
        0,
    ),
    ("held_opened", "connections opened", 1.0, 0),
    ("held_alive", "still answering after 1 s", 1.0, 0),
    (
        "held_kib_per_conn_local",
        "RSS KiB per held connection, local side",
        1.0,
        1,
    ),
    (
        "held_kib_per_conn_exit",
        "RSS KiB per held connection, exit side",
        1.0,
        1,
    ),
    (
        "held_kib_per_conn_both",
        "RSS KiB per held connection, both sides",
        1.0,
        1,
    ),
    (
        "held_rss_local_kib",
        "RSS MiB with them open, local side",
        1024.0,
        1,
    ),
    (
        "held_rss_exit_kib",
        "RSS MiB with them open, exit side",
        1024.0,
        1,
    ),
    (
        "idle_rss_local_kib",
        "RSS MiB at start, local side",
        1024.0,
        1,
    ),
    (
        "idle_rss_exit_kib",
        "RSS MiB at start, exit side",
        1024.0,
        1,
    ),
    ("=", "**UDP** (ASSOCIATE; one datagram at a time)", 1.0, 0),
    ("udp_received", "datagrams echoed back", 1.0, 0),
    ("udp_loss_pct", "loss %", 1.0, 2),
    ("udp_rtt_p50_ms", "RTT p50 ms", 1.0, 3),
    ("udp_rtt_p99_ms", "RTT p99 ms", 1.0, 3),
    ("udp_round_trips_per_s", "round trips/s", 1.0, 0),
];

/// Counts, where a ratio says nothing.
const NO_RATIO: &[&str] = &[
    "rounds",
    "held_opened",
    "held_alive",
    "udp_received",
    "udp_loss_pct",
];

fn group(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), format!(".{f}")),
        None => (s.clone(), String::new()),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}{out}{frac}", if v < 0.0 { "-" } else { "" })
}

fn ratio(v: f64, b: f64) -> String {
    if b == 0.0 || !v.is_finite() || !b.is_finite() {
        return String::new();
    }
    let r = v / b;
    if r >= 10.0 {
        format!(" ({r:.0}x)")
    } else {
        format!(" ({r:.2}x)")
    }
}

/// The table, then notes (errors, capped transfers) per setup.
pub fn render(setups: &[Setup], baseline: Option<&str>) -> String {
    let base = baseline.and_then(|b| setups.iter().find(|s| s.label == b));
    let mut out = String::new();
    out.push_str("| measure |");
    for s in setups {
        out.push_str(&format!(" {} |", s.label));
    }
    out.push_str("\n|---|");
    for _ in setups {
        out.push_str("---:|");
    }
    out.push('\n');
    for (key, label, div, dec) in ROWS {
        if key.starts_with('=') {
            out.push_str(&format!("| {label} |"));
            for _ in setups {
                out.push_str(" |");
            }
            out.push('\n');
            continue;
        }
        if setups.iter().all(|s| s.num(key).is_none()) {
            continue;
        }
        out.push_str(&format!("| {label} |"));
        for s in setups {
            let cell = match s.num(key) {
                None if s.vals.contains_key("error") => "not run".to_string(),
                None => "—".to_string(),
                Some(v) => {
                    let r = match (base, NO_RATIO.contains(key) || key.ends_with("_errors")) {
                        (Some(b), false) if b.label != s.label => {
                            b.num(key).map(|bv| ratio(v, bv)).unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    format!("{}{r}", group(v / div, *dec))
                }
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    let mut notes = String::new();
    for s in setups {
        let mut mine = Vec::new();
        for k in &s.order {
            let v = &s.vals[k];
            if k == "error"
                || k.starts_with("error.")
                || k.ends_with("_note")
                || k.ends_with("_first_error")
            {
                mine.push(format!("{k}: {v}"));
            }
        }
        for k in ["down1", "up1", "down4"] {
            if let (Some(b), Some(secs)) =
                (s.num(&format!("{k}_bytes")), s.num(&format!("{k}_secs")))
            {
                if let Some(target) = s.num("bulk_target_bytes") {
                    if b < target * 0.999 {
                        mine.push(format!(
                            "{k}: moved {} MiB of {} MiB in {secs:.1} s (time cap)",
                            group(b / 1048576.0, 0),
                            group(target / 1048576.0, 0)
                        ));
                    }
                }
            }
        }
        if let Some(v) = s.vals.get("description") {
            mine.insert(0, v.clone());
        }
        if !mine.is_empty() {
            notes.push_str(&format!("- **{}**: {}\n", s.label, mine.join("; ")));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nNotes per setup:\n\n");
        out.push_str(&notes);
    }
    out
}
