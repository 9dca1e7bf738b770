//! The network lab for tests that need more than loopback: a home LAN with two hosts, a router
//! running the real `miniupnpd`, and a WAN host, each in its own network namespace (see
//! `tests/netlab/netlab.sh`; addresses below). The test binary stays in the host namespace and
//! spawns the real binaries inside the namespaces with [`in_ns`] / [`NsProcess`].
//!
//! Test files using it have `harness = false` and end in [`run_trials`]: when the lab cannot run
//! here (not root, no `ip netns`, packages missing) every trial is reported *ignored* with the
//! reason printed, never passed; with `NETLAB_REQUIRED=1` (set by `make test`) that is a failure
//! instead. The lab is brought up once per test binary and taken down by the last test binary
//! that used it, and only if a test binary brought it up (a lab someone started by hand stays).
//!
//! Everything the lab does stays inside its four namespaces: nothing a test starts through
//! this module advertises or maps anything on the machine's real interfaces.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use libtest_mimic::{Failed, Trial};

/// The lab script (a copy of the verified recipe, so tests do not depend on anything outside
/// the repository).
pub const NETLAB_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/netlab/netlab.sh");
/// Its Python helpers: mDNS publish/browse (python3-zeroconf), TCP probes, PCP, STUN.
pub const NETLAB_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/netlab/netlab.py");

/// The LAN host "A" (`lanA`, interface `eth0`).
pub const LAN_A: &str = "10.77.0.2";
/// The LAN host "B" (`lanB`, interface `eth0`).
pub const LAN_B: &str = "10.77.0.3";
/// The router's LAN address (`router`, bridge `br-lan`): the LAN hosts' default gateway.
pub const ROUTER_LAN: &str = "10.77.0.1";
/// The router's WAN address (`router`, `wan0`): the "public" address, a documentation range.
pub const ROUTER_WAN: &str = "203.0.113.1";
/// The host on the "internet" side (`wan`).
pub const WAN: &str = "203.0.113.2";

/// The longest a single expectation in a lab test waits (the machine is shared and slow).
pub const LAB_WAIT: Duration = Duration::from_secs(60);

/// Kept from each child's stderr, so a chatty process cannot grow a test's memory unbounded.
const MAX_STDERR_BYTES: usize = 1 << 20;

/// The lab's state directory (as netlab.sh uses it).
fn run_dir() -> PathBuf {
    std::env::var_os("NETLAB_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/netlab"))
}

/// The Python with `zeroconf` importable (Debian's, with python3-zeroconf).
pub fn python() -> String {
    std::env::var("NETLAB_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    succeeds(Command::new("sh").args(["-c", "command -v \"$1\"", "sh", program]))
}

/// Why the lab cannot run here, or `None` when it can (it may still be down: [`run_trials`]
/// brings it up).
pub fn lab_problem() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok();
    let root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root (network namespaces need root)".into());
    }
    if !succeeds(Command::new("ip").args(["netns", "list"])) {
        return Some("`ip netns` does not work here (iproute2 missing or no netns support)".into());
    }
    let missing: Vec<&str> = ["nft", "miniupnpd"]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing {} (make deps-test installs the lab's packages)",
            missing.join(", ")
        ));
    }
    if !succeeds(Command::new(python()).args(["-c", "import zeroconf"])) {
        return Some(format!(
            "{} cannot import zeroconf (apt-get install python3-zeroconf, or set NETLAB_PYTHON)",
            python()
        ));
    }
    None
}

/// Whether `avahi-daemon`, `avahi-browse` and `dbus-daemon` are installed (for the interop
/// checks against Avahi; [`AvahiDaemon`]).
pub fn avahi_available() -> bool {
    ["avahi-daemon", "avahi-browse", "dbus-daemon"]
        .into_iter()
        .all(on_path)
}

/// Whether the lab is up (`netlab.sh status` exits 0).
pub fn lab_is_up() -> bool {
    succeeds(Command::new("bash").args([NETLAB_SH, "status"]))
}

/// Lock files that let several test binaries (and several checkouts) share the one lab: each
/// holds `users` shared while it runs; `admin` serialises bringing the lab up and taking it
/// down; `ours` marks a lab that a test binary brought up (only such a lab is taken down).
const LOCK_USERS: &str = "/run/tertulia-netlab.users";
const LOCK_ADMIN: &str = "/run/tertulia-netlab.admin";
const MARK_OURS: &str = "/run/tertulia-netlab.ours";

fn lock_file(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// This test binary's use of the lab: the lab is up while it lives; dropping it takes the lab
/// down if no other test binary is using it and a test binary brought it up.
pub struct LabSession {
    users: File,
}

impl LabSession {
    /// Bring the lab up (idempotent) and register as one of its users.
    pub fn start() -> Result<Self, String> {
        let admin = lock_file(LOCK_ADMIN).map_err(|e| format!("{LOCK_ADMIN}: {e}"))?;
        admin
            .lock()
            .map_err(|e| format!("lock {LOCK_ADMIN}: {e}"))?;
        let users = lock_file(LOCK_USERS).map_err(|e| format!("{LOCK_USERS}: {e}"))?;
        users
            .lock_shared()
            .map_err(|e| format!("lock {LOCK_USERS}: {e}"))?;
        if !lab_is_up() {
            let out = Command::new("bash")
                .args([NETLAB_SH, "up"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("run netlab.sh up: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`bash {NETLAB_SH} up` failed ({}): {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            eprint!("{}", String::from_utf8_lossy(&out.stdout));
            File::create(MARK_OURS).map_err(|e| format!("{MARK_OURS}: {e}"))?;
        }
        drop(admin);
        Ok(Self { users })
    }
}

impl Drop for LabSession {
    fn drop(&mut self) {
        let Ok(admin) = lock_file(LOCK_ADMIN) else {
            return;
        };
        if admin.lock().is_err() {
            return;
        }
        let _ = self.users.unlock();
        // Another test binary still using the lab holds `users` shared: leave it up.
        if self.users.try_lock().is_ok() && Path::new(MARK_OURS).exists() {
            let out = Command::new("bash")
                .args([NETLAB_SH, "down"])
                .stdin(Stdio::null())
                .output();
            if let Ok(out) = out {
                eprint!("{}", String::from_utf8_lossy(&out.stdout));
            }
            let _ = std::fs::remove_file(MARK_OURS);
        }
    }
}

/// Whether the environment asks for the lab tests to run (`NETLAB_REQUIRED=1`).
pub fn lab_required() -> bool {
    std::env::var("NETLAB_REQUIRED").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The `main` of a lab test file: run `trials` with the lab up, or report them ignored with
/// the reason (a failure when `NETLAB_REQUIRED=1`). Takes the lab down afterwards when this
/// binary was its last user.
pub fn run_trials(trials: Vec<Trial>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let mut problem = lab_problem();
    let mut session = None;
    if problem.is_none() && !args.list {
        match LabSession::start() {
            Ok(s) => session = Some(s),
            Err(e) => problem = Some(e),
        }
    }
    if let Some(p) = &problem {
        if lab_required() {
            eprintln!("netlab tests FAILED: NETLAB_REQUIRED is set but {p}");
            std::process::exit(101);
        }
        if !args.list {
            eprintln!("netlab tests SKIPPED (reported as ignored): {p}");
        }
    }
    let trials = trials
        .into_iter()
        .map(|t| {
            if problem.is_some() {
                t.with_ignored_flag(true)
            } else {
                t
            }
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(session);
    conclusion.exit()
}

/// `ip netns exec NS PROGRAM`: PROGRAM runs in namespace `ns` (one of `lanA lanB router wan`);
/// the child's PID is PROGRAM's own (`ip` execs it).
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// `netlab.py SUBCOMMAND ...` in namespace `ns` (mDNS publish/browse, probes).
pub fn netlab_py(ns: &str) -> Command {
    let mut command = in_ns(ns, python());
    command.arg(NETLAB_PY);
    command
}

/// Send SIGTERM to `pid` (a graceful stop: mDNS goodbye packets, mapping removal).
pub fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait for `child` to exit, up to `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// A process in a lab namespace whose stdout is read line by line and whose stderr is kept.
/// Dropping it stops it with SIGTERM (SIGKILL only if it does not exit in time), so a failing
/// test leaves nothing running.
pub struct NsProcess {
    /// What the test calls it, for messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line read so far, in order.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl NsProcess {
    /// Spawn `command` (made with [`in_ns`]) with stdout and stderr captured, stdin empty.
    pub fn spawn(name: &str, command: Command) -> Result<Self, String> {
        Self::spawn_with(name, command, false)
    }

    /// [`spawn`](Self::spawn) with stdin a pipe the test writes with [`write_line`](Self::write_line).
    pub fn spawn_with_stdin(name: &str, command: Command) -> Result<Self, String> {
        Self::spawn_with(name, command, true)
    }

    fn spawn_with(name: &str, mut command: Command, stdin: bool) -> Result<Self, String> {
        let mut child = command
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().ok_or("no stderr")?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = sink.lock() {
                    if log.len() < MAX_STDERR_BYTES {
                        log.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Write one line to the process's stdin (spawned with [`spawn_with_stdin`](Self::spawn_with_stdin)).
    pub fn write_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or("stdin is not a pipe (or closed)")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("write to {}: {e}", self.name))
    }

    /// Close stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// What the process wrote on stderr so far (up to 1 MiB).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A description of everything seen, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "{} stdout:\n{}\n{} stderr:\n{}",
            self.name,
            self.seen.join("\n"),
            self.name,
            self.stderr()
        )
    }

    /// The first stdout line (already seen or new) for which `pred` holds, waiting up to
    /// `limit`; an error with the transcript if the output ends or time runs out first.
    pub fn wait_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "timed out waiting for {what}\n{}",
                        self.transcript()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Give stderr a moment to be read to its end.
                    let _ = wait_timeout(&mut self.child, Duration::from_secs(2));
                    return Err(format!(
                        "output ended while waiting for {what}\n{}",
                        self.transcript()
                    ));
                }
            }
        }
    }

    /// Collect stdout lines for `period` without expecting anything.
    pub fn drain_for(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return,
            }
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait up to `limit` for the process to exit by itself, then collect the rest of its
    /// stdout.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let status = wait_timeout(&mut self.child, limit)
            .ok_or_else(|| format!("did not exit in time\n{}", self.transcript()))?;
        self.drain_for(Duration::from_millis(500));
        Ok(status)
    }

    /// SIGTERM, then wait for the exit (up to [`LAB_WAIT`]); an error if it had to be killed.
    pub fn terminate(&mut self) -> Result<ExitStatus, String> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        sigterm(self.pid());
        match wait_timeout(&mut self.child, LAB_WAIT) {
            Some(status) => {
                self.drain_for(Duration::from_millis(300));
                Ok(status)
            }
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(format!(
                    "did not stop within {LAB_WAIT:?} of SIGTERM (killed)\n{}",
                    self.transcript()
                ))
            }
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            sigterm(self.pid());
            if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A private avahi-daemon in namespace `ns` (own D-Bus, own `/run/avahi-daemon` in the mount
/// namespace `ip netns exec` makes), for `avahi-browse` / `avahi-publish` interop checks. Only
/// one per namespace at a time, and not while the lab selftest's own avahi check runs.
pub struct AvahiDaemon {
    dir: PathBuf,
    bus: NsProcess,
    daemon: NsProcess,
}

impl AvahiDaemon {
    pub fn start(ns: &str) -> Result<Self, String> {
        let dir = run_dir().join(format!("avahi-{ns}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("bus.sock");
        let dbus_conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
            socket.display()
        );
        let avahi_conf = format!(
            "[server]\nhost-name={ns}\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\n\
             ratelimit-interval-usec=1000000\nratelimit-burst=1000\n[wide-area]\n\
             enable-wide-area=no\n[publish]\npublish-hinfo=no\npublish-workstation=no\n"
        );
        std::fs::write(dir.join("dbus.conf"), dbus_conf).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("avahi-daemon.conf"), avahi_conf).map_err(|e| e.to_string())?;
        // avahi-daemon's pid file lives in /run/avahi-daemon (fixed at build time); a tmpfs
        // there inside `ip netns exec`'s own mount namespace keeps daemons apart.
        if !Path::new("/run/avahi-daemon").exists() {
            std::fs::create_dir_all("/run/avahi-daemon").map_err(|e| e.to_string())?;
        }
        let mut bus = in_ns(ns, "dbus-daemon");
        bus.arg(format!("--config-file={}", dir.join("dbus.conf").display()))
            .args(["--nofork", "--nopidfile", "--print-address"]);
        let mut bus = NsProcess::spawn(&format!("dbus-daemon in {ns}"), bus)?;
        bus.wait_line("the bus address", LAB_WAIT, |l| l.starts_with("unix:"))?;
        let mut daemon = in_ns(ns, "sh");
        daemon
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", socket.display()),
            )
            .args([
                "-c",
                "mount -t tmpfs tmpfs /run/avahi-daemon && exec avahi-daemon --no-drop-root \
                 --no-chroot --no-rlimits -f \"$1\" 2>&1",
                "sh",
            ])
            .arg(dir.join("avahi-daemon.conf"));
        let mut daemon = NsProcess::spawn(&format!("avahi-daemon in {ns}"), daemon)?;
        daemon.wait_line("avahi start-up", LAB_WAIT, |l| {
            l.contains("Server startup complete")
        })?;
        Ok(Self { dir, bus, daemon })
    }

    /// A command (e.g. `avahi-browse`) run in `ns` against this daemon.
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut command = in_ns(ns, program);
        command.env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", self.dir.join("bus.sock").display()),
        );
        command
    }
}

impl Drop for AvahiDaemon {
    fn drop(&mut self) {
        let _ = self.daemon.terminate();
        let _ = self.bus.terminate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
