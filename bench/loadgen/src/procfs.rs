//! Server-side resource readings from /proc: resident memory and CPU seconds of the
//! server process (all its threads), and the load generator's own CPU time, so each run
//! can say whether the server or the load side was the bottleneck.

use std::time::Duration;

/// The sum of `reading` over `pids` (a cluster's nodes); `None` without pids or when
/// one of them cannot be read.
pub fn sum<T: std::iter::Sum<T>>(pids: &[u32], reading: impl Fn(u32) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| reading(pid)).sum()
}

/// `VmRSS` of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime of `pid` (every thread), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields we want follow its `)`.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) and stime (15) are 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

/// CPU seconds the whole machine spent busy (every core, every process), from
/// /proc/stat: with the server's and the generator's own time taken out, what is left is
/// other work (someone's compiler) that makes a run's figures unreliable.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some(busy as f64 / ticks)
}

/// This process's user + system CPU time.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_secs(pid).unwrap() >= 0.0);
        assert!(rss_bytes(u32::MAX).is_none());
        assert!(machine_busy_secs().unwrap() > 0.0);
    }

    #[test]
    fn sums_over_every_node_or_says_nothing() {
        let pid = std::process::id();
        let one = rss_bytes(pid).unwrap();
        assert!(sum(&[pid, pid], rss_bytes).unwrap() >= 2 * one);
        assert_eq!(sum(&[], rss_bytes), None);
        assert_eq!(sum(&[pid, u32::MAX], rss_bytes), None);
    }
}
