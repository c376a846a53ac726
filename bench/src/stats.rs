/// p-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// CPU time a process has used, from `/proc/<pid>/stat` (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_seconds_of(&stat, clock_ticks())
}

/// Wait until the server at `pid` is quiet (under a tenth of a core over 100 ms), for at
/// most `limit`: what joining many clients set off (each join tells every member) must not
/// be counted in the run that follows. Without a pid, wait a moment.
pub async fn settle(pid: Option<u32>, limit: std::time::Duration) {
    let Some(pid) = pid else {
        return tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let Some(before) = cpu_seconds(pid) else { return };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let Some(after) = cpu_seconds(pid) else { return };
        if after - before < 0.01 {
            return;
        }
    }
}

/// `utime` + `stime` of a `/proc/<pid>/stat` line (fields 14 and 15, counted after the
/// command name, which may hold spaces and parentheses).
fn cpu_seconds_of(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPU the server and this load generator use over a run: read at the start, then
/// [`CpuWatch::report`] at the end gives each one's cores busy (CPU seconds per wall second)
/// and the server's CPU per delivery, so a reader sees who was saturated. A server on an
/// external store (Redis) has that store's process watched too.
pub struct CpuWatch {
    server: Option<(u32, f64)>,
    store: Option<(u32, f64)>,
    generator: Option<f64>,
    started: std::time::Instant,
}

impl CpuWatch {
    pub fn start(server_pid: Option<u32>, store_pid: Option<u32>) -> CpuWatch {
        let watch = |pid: Option<u32>| pid.and_then(|pid| Some((pid, cpu_seconds(pid)?)));
        CpuWatch {
            server: watch(server_pid),
            store: watch(store_pid),
            generator: cpu_seconds(std::process::id()),
            started: std::time::Instant::now(),
        }
    }

    pub fn report(&self, deliveries: u64) -> serde_json::Value {
        let wall = self.started.elapsed().as_secs_f64();
        let used = |before: Option<f64>, pid: u32| Some(cpu_seconds(pid)? - before?);
        let server = self.server.and_then(|(pid, before)| used(Some(before), pid));
        let store = self.store.and_then(|(pid, before)| used(Some(before), pid));
        let generator = used(self.generator, std::process::id());
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        let per_delivery = |s: Option<f64>| s.filter(|_| deliveries > 0).map(|s| round(s * 1e6 / deliveries as f64, 3));
        let mut report = serde_json::json!({
            "server_cores": server.map(|s| round(s / wall, 2)),
            "generator_cores": generator.map(|g| round(g / wall, 2)),
            "server_us_per_delivery": per_delivery(server),
        });
        if self.store.is_some() {
            report["store_cores"] = store.map(|s| round(s / wall, 2)).into();
            report["store_us_per_delivery"] = per_delivery(store).into();
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), 51);
        assert_eq!(percentile(&mut v, 99.0), 99);
        assert_eq!(percentile(&mut v, 100.0), 100);
        assert_eq!(percentile(&mut [], 50.0), 0);
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "42 (tokio (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_seconds_of(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds_of("garbage", 100.0), None);
        assert!(cpu_seconds(std::process::id()).is_some(), "this process's own");
    }
}
