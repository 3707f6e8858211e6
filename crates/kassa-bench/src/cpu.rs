//! Process CPU time from `/proc/<pid>/stat`, for the CPU cost per sale or payment the benches
//! report: steadier than a rate on a shared machine, since time spent waiting for a core does not
//! count.

/// A process's CPU time so far (user + system, every thread), microseconds; `None` when it cannot
/// be read (not Linux, the process is gone). `None` for `pid` reads the calling process.
pub fn process_cpu_us(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    ticks_to_us(stat_cpu_ticks(&stat)?, clock_ticks_per_s())
}

/// utime + stime of one `/proc/<pid>/stat` line, in clock ticks.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the fields after its last
    // closing parenthesis start with field 3, so utime (14) and stime (15) are the 12th and 13th.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

fn ticks_to_us(ticks: u64, ticks_per_s: u64) -> Option<u64> {
    if ticks_per_s == 0 {
        return None;
    }
    u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(ticks_per_s)).ok()
}

/// The kernel's unit of process CPU time (`sysconf(_SC_CLK_TCK)`, USER_HZ), from the auxiliary
/// vector the kernel hands every process.
#[cfg(unix)]
fn clock_ticks_per_s() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(not(unix))]
fn clock_ticks_per_s() -> u64 {
    100
}

/// A process's resident memory (`VmRSS`), KiB; `None` when it cannot be read.
pub fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_rss_kib(&status)
}

fn status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU microseconds per unit of work (a sale, a payment) from two [`process_cpu_us`] readings;
/// `None` when a reading is missing, the clock went backwards or no work was done.
pub fn cpu_us_per(before: Option<u64>, after: Option<u64>, work: u64) -> Option<f64> {
    let micros = after?.checked_sub(before?)?;
    (work > 0).then(|| micros as f64 / work as f64)
}

/// `rate / limit`, when the limit is a positive, finite rate.
pub fn ratio(rate: f64, limit: f64) -> Option<f64> {
    (limit.is_finite() && limit > 0.0 && rate.is_finite()).then(|| rate / limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_vmrss_line() {
        assert_eq!(status_rss_kib("Name:\tkassa\nVmPeak:\t 9 kB\nVmRSS:\t  161024 kB\n"), Some(161_024));
        assert_eq!(status_rss_kib("Name:\tkassa\n"), None);
        assert_eq!(status_rss_kib("VmRSS:\tmany kB\n"), None);
    }

    #[test]
    fn utime_and_stime_are_read_after_the_last_parenthesis() {
        // A real line of `kassa up`, with a command name holding a space and a parenthesis.
        let stat = "4242 (kassa (x) up) S 1 4242 4242 0 -1 4194560 5062 0 0 0 1234 567 0 0 20 0 5 0 \
                    7303 1015808000 9071 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(stat_cpu_ticks("4242 (kassa) S 1 2 3"), None, "too few fields");
        assert_eq!(stat_cpu_ticks("no parenthesis at all"), None);
        assert_eq!(stat_cpu_ticks("1 (k) S 1 1 1 0 -1 0 0 0 0 0 x 5 0"), None, "utime is not a number");
    }

    #[test]
    fn ticks_become_microseconds_at_the_kernels_rate() {
        assert_eq!(ticks_to_us(1801, 100), Some(18_010_000));
        assert_eq!(ticks_to_us(3, 1000), Some(3_000));
        assert_eq!(ticks_to_us(3, 0), None);
        assert!(clock_ticks_per_s() > 0);
    }

    #[test]
    fn cpu_per_sale_and_the_ratio_to_a_limit() {
        assert_eq!(cpu_us_per(Some(1_000_000), Some(3_500_000), 10_000), Some(250.0));
        assert_eq!(cpu_us_per(Some(100), Some(350), 0), None, "no sale");
        assert_eq!(cpu_us_per(None, Some(350), 10), None);
        assert_eq!(cpu_us_per(Some(400), Some(350), 10), None, "the clock went backwards");
        assert_eq!(ratio(7_054.0, 28_216.0), Some(0.25));
        assert_eq!(ratio(7_054.0, 0.0), None);
        assert_eq!(ratio(7_054.0, f64::INFINITY), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn this_process_uses_cpu() {
        let before = process_cpu_us(None).unwrap();
        let mut spin: u64 = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = process_cpu_us(None).unwrap();
        assert!(after >= before, "{before} then {after}");
        assert_eq!(process_cpu_us(Some(u32::MAX)), None);
    }
}
