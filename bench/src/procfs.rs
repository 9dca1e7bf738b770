//! CPU time and memory of a process from /proc (Linux).

/// Clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU seconds of `pid` ("self" for this process).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size in bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size ("high-water mark") in bytes.
pub fn peak_rss_bytes(pid: &str) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}
