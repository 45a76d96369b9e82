//! Memory and CPU time of the proxy processes, from `/proc/PID/status` and `/proc/PID/stat`.

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            let rest = rest.strip_prefix(':')?;
            return rest.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// Open file descriptors of a process (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when that fails).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU ticks of all threads of the process.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let after = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' : state(3) ppid(4) ... utime is field 14, stime 15 => indexes 11, 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds used so far by all the processes together.
pub fn cpu_secs(pids: &[u32], tck: f64) -> f64 {
    pids.iter().filter_map(|p| cpu_ticks(*p)).sum::<u64>() as f64 / tck
}

/// Samples the RSS of each process every 10 ms on a thread, keeping the maximum.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Vec<u64>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start(pids: &[u32]) -> Self {
        let pids = pids.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(vec![0u64; pids.len()]));
        let (s, p) = (stop.clone(), peaks.clone());
        let handle = thread::spawn(move || loop {
            let done = s.load(Ordering::Relaxed);
            {
                let mut peaks = p.lock().unwrap();
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(r) = rss_kib(*pid) {
                        peaks[i] = peaks[i].max(r);
                    }
                }
            }
            if done {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        });
        PeakSampler {
            stop,
            peaks,
            handle: Some(handle),
        }
    }

    /// Stops sampling (after one last sample) and returns the peaks in KiB, in `pids` order.
    pub fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let v = self.peaks.lock().unwrap().clone();
        v
    }
}
