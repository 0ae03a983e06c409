//! CPU time and memory of the server a bench loads (and of the bench itself), read from /proc,
//! when the server runs on this machine.
//!
//! Throughput alone hides what a request costs: on a shared machine the server may be slow
//! because the load generator takes the CPU. CPU time per request does not depend on that,
//! and is what sizing a pod needs. The server is the `--server-pid` given, or else the
//! process that owns the listening socket on the target's port: its inode in
//! /proc/net/tcp{,6}, then the process whose /proc/PID/fd links to it. Anything /proc does not
//! show (another user's process, another network namespace, not Linux) makes it "unknown",
//! never an error: the bench's own numbers stand without it.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// utime + stime of a process, in clock ticks, from the text of /proc/PID/stat.
///
/// The command name (field 2) is in parentheses and may itself hold spaces and parentheses,
/// so the fields are counted from the last ')'.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime = fields.nth(11)?.parse::<u64>().ok()?;
    let stime = fields.next()?.parse::<u64>().ok()?;
    Some(utime + stime)
}

/// A `VmRSS:`-style line of /proc/PID/status, in KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

/// The inodes of the sockets listening on `port` in a /proc/net/tcp or tcp6 table, at an
/// address that `target` reaches: the same address, the unspecified one, or any loopback
/// address when the target is a name (localhost).
pub fn listening_inodes(table: &str, port: u16, target: Option<IpAddr>) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            if *state != LISTEN {
                return None;
            }
            let (ip, p) = local.split_once(':')?;
            if u16::from_str_radix(p, 16).ok()? != port {
                return None;
            }
            let ip = parse_hex_ip(ip)?;
            let reached = ip.is_unspecified()
                || match target {
                    Some(t) => t == ip || ipv4_mapped(ip) == Some(t),
                    None => ip.is_loopback(),
                };
            reached.then(|| inode.parse().ok()).flatten()
        })
        .collect()
}

fn ipv4_mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// An address as /proc/net prints it: 32-bit words in hex, each in the host's byte order.
fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// The process listening on `port` at an address `target` reaches, if /proc shows exactly one.
pub fn find_listener(port: u16, target: Option<IpAddr>) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port, target));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    // A process that forks holds every descriptor in the child until the child's exec closes
    // them: seen in that moment, the listener has two owners. Such a window passes in
    // microseconds, so /proc is scanned again a few times before two owners are believed.
    for _ in 0..5 {
        match owners_of(&wanted)?.as_slice() {
            [one] => return Some(*one),
            [] => return None,
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    // Two processes on the port (SO_REUSEPORT, a socket inherited by a child): whose CPU
    // would be a guess, so none.
    None
}

/// The processes holding one of these sockets (`socket:[inode]`) open.
fn owners_of(wanted: &[String]) -> Option<Vec<u32>> {
    let mut owners = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Another user's process: not readable, and not ours to measure.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| wanted.iter().any(|w| Path::new(w) == l.as_path()))
        });
        if owns {
            owners.push(pid);
        }
    }
    Some(owners)
}

/// The port and, if it is an address rather than a name, the host of a target like
/// `http://127.0.0.1:50051`.
pub fn target_port(addr: &str) -> Option<(u16, Option<IpAddr>)> {
    let uri: http::Uri = addr.parse().ok()?;
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    let host = uri.host()?.trim_matches(['[', ']']);
    Some((port, host.parse().ok()))
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
struct Reading {
    ticks: u64,
    at: Instant,
}

fn read(pid: Option<u32>) -> Option<Reading> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let ticks = cpu_ticks(&std::fs::read_to_string(path).ok()?)?;
    Some(Reading {
        ticks,
        at: Instant::now(),
    })
}

/// What a process spent over a measured phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// None: the bench itself.
    pub pid: Option<u32>,
    pub cpu: Duration,
    pub wall: Duration,
    /// Resident memory at the end of the phase and the process's peak, in KiB.
    pub rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

impl Usage {
    /// CPU cores busy on average over the phase.
    pub fn cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// CPU microseconds per unit of work (request, event).
    pub fn us_per(&self, units: u64) -> Option<f64> {
        (units > 0).then(|| self.cpu.as_secs_f64() * 1e6 / units as f64)
    }

    /// One line for the text report, e.g. "server CPU (pid 7): 41.0 µs per request, 0.83 cores;
    /// RSS 38 MiB, peak 41 MiB".
    pub fn text(&self, who: &str, units: u64, unit: &str) -> String {
        let pid = self.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        let per = self
            .us_per(units)
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
        let mib = |k: Option<u64>| k.map_or_else(|| "?".to_owned(), |k| (k / 1024).to_string());
        format!(
            "{who} CPU{pid}: {per} µs per {unit}, {:.2} cores; RSS {} MiB, peak {} MiB\n",
            self.cores(),
            mib(self.rss_kib),
            mib(self.peak_rss_kib),
        )
    }

    pub fn json(&self, units: u64) -> serde_json::Value {
        serde_json::json!({
            "pid": self.pid,
            "cpu_s": self.cpu.as_secs_f64(),
            "cpu_us_per_unit": self.us_per(units),
            "cores": self.cores(),
            "rss_mib": self.rss_kib.map(|k| k as f64 / 1024.0),
            "peak_rss_mib": self.peak_rss_kib.map(|k| k as f64 / 1024.0),
        })
    }
}

/// Watches one process over a measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pid: Option<u32>,
    start: Reading,
}

impl Watch {
    /// Starts watching `pid` (None: this process); None when /proc cannot be read for it.
    pub fn start(pid: Option<u32>) -> Option<Self> {
        Some(Self {
            pid,
            start: read(pid)?,
        })
    }

    /// What the process spent since [`Watch::start`]; None if it can no longer be read
    /// (e.g. it exited, and the pid may even be someone else's now).
    pub fn stop(self) -> Option<Usage> {
        let end = read(self.pid)?;
        let status = match self.pid {
            Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/status")),
            None => std::fs::read_to_string("/proc/self/status"),
        }
        .unwrap_or_default();
        let ticks = end.ticks.checked_sub(self.start.ticks)?;
        Some(Usage {
            pid: self.pid,
            cpu: Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64),
            wall: end.at - self.start.at,
            rss_kib: status_kib(&status, "VmRSS:"),
            peak_rss_kib: status_kib(&status, "VmHWM:"),
        })
    }
}

/// The server's pid: the one given, else the listener on the target's port when the target is
/// on this machine (`local`), else None.
pub fn server_pid(given: Option<u32>, addr: &str, local: bool) -> Option<u32> {
    if given.is_some() {
        return given;
    }
    if !local {
        return None;
    }
    let (port, host) = target_port(addr)?;
    find_listener(port, host)
}

/// The CPU lines of a text report.
pub fn text(server: Option<Usage>, client: Option<Usage>, units: u64, unit: &str) -> String {
    let mut out = match server {
        Some(u) => u.text("server", units, unit),
        None => "server CPU: unknown (no readable process listens on the target's port; \
                 --server-pid names one)\n"
            .to_owned(),
    };
    if let Some(u) = client {
        out.push_str(&u.text("client", units, unit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_counted_from_after_the_command_name() {
        // A command name with spaces and a parenthesis, as a process may choose.
        let stat = "4242 (tac ful) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 100 1000000 500 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("4242 (short) S 1"), None);
        assert_eq!(cpu_ticks("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks(&own).is_some(), "{own}");
    }

    #[test]
    fn this_process_is_watched_and_its_cpu_counted() {
        let watch = Watch::start(None).unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let usage = watch.stop().unwrap();
        assert!(usage.cpu > Duration::ZERO && usage.cores() <= 2.0 * 64.0);
        assert!(usage.rss_kib.unwrap() > 0);
        assert!(usage.peak_rss_kib >= usage.rss_kib);
        assert!(usage.us_per(10).unwrap() > 0.0 && usage.us_per(0).is_none());
        let text = usage.text("client", 10, "request");
        assert!(
            text.starts_with("client CPU: ") && text.contains("per request"),
            "{text}"
        );
        assert!(Watch::start(Some(u32::MAX)).is_none(), "no such process");
    }

    #[test]
    fn listening_sockets_are_found_by_port_and_address() {
        // 127.0.0.1:50051 and 0.0.0.0:9464 listening, one connection to 50051 established.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0
   1: 00000000:24F8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0
   2: 0100007F:C383 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 20 4 30 10 -1
";
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(listening_inodes(tcp, 50051, Some(lo)), [111]);
        assert_eq!(listening_inodes(tcp, 50051, None), [111]);
        assert_eq!(listening_inodes(tcp, 9464, Some(lo)), [222], "0.0.0.0");
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(listening_inodes(tcp, 50051, Some(other)).is_empty());
        assert!(listening_inodes(tcp, 1, Some(lo)).is_empty());
        // [::1]:50051 listening.
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:C383 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1 0 100 0 0 10 0
";
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(listening_inodes(tcp6, 50051, Some(v6)), [444]);
        assert_eq!(listening_inodes(tcp6, 50051, None), [444]);
    }

    #[test]
    fn the_listener_of_a_port_is_this_process_when_it_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let addr = format!("http://127.0.0.1:{port}");
        assert_eq!(
            target_port(&addr),
            Some((port, Some("127.0.0.1".parse().unwrap())))
        );
        assert_eq!(server_pid(None, &addr, true), Some(std::process::id()));
        assert_eq!(
            server_pid(None, &addr, false),
            None,
            "remote: not looked for"
        );
        assert_eq!(server_pid(Some(7), &addr, false), Some(7), "given");
        drop(listener);
        assert_eq!(find_listener(port, None), None);
        assert_eq!(target_port("http://localhost:50051"), Some((50051, None)));
        assert_eq!(
            target_port("https://[::1]"),
            Some((443, Some("::1".parse().unwrap())))
        );
    }
}
