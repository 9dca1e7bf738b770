//! The headless pair as a Debian package (issue #15): the real `.deb` that `make
//! package-server` builds, installed on this machine with dpkg as an administrator would.
//!
//! Checked: what the package puts where (the binaries, `tertulia-invite`, the unit, the
//! settings as a conffile), the `tertulia` system user, the permissions of the passphrase and
//! of the room's data, a passphrase generated and printed once with the invite codes on the
//! first install and kept (not printed) on upgrade and reinstall, kept settings, and that the
//! installed unit passes `systemd-analyze verify`. Then the server is started exactly as the
//! installed unit says — its `ExecStart=` with `EnvironmentFile=` and the specifiers expanded,
//! as `User=`/`Group=`, with `LoadCredential=`, `WorkingDirectory=`, `UMask=`, no new
//! privileges and no capabilities — and the installed `tertulia-chat` joins it over loopback,
//! once with the passphrase file and once with the invite code `tertulia-invite` prints. Under
//! strace (where installed), every system call and socket family the server used must be one
//! the unit's `SystemCallFilter=` and `RestrictAddressFamilies=` allow, and every file it
//! reached one the unit's file-system hardening leaves it (writes only in its state directory
//! or private /tmp, nothing under /home or /root, only `PrivateDevices=` devices, only its own
//! /proc). Where systemd runs, the service itself is restarted with the new settings and joined
//! too. Last, remove keeps the room and purge deletes all of it; the test purges at the end,
//! also when it fails.
//!
//! It changes the machine (a package, a system user), so it is `#[ignore]`d: `make
//! test-package` runs it with `--ignored` and `TERTULIA_SERVER_DEB`. Without root, dpkg or
//! that variable it is skipped with a message, and fails instead under
//! `TERTULIA_REQUIRE_PACKAGE=1` (as `make test` sets it). It refuses to run where the package,
//! the user or its directories already exist (it would delete them), unless a marker says an
//! interrupted run of its own left them.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use tertulia_core::identity::{Fingerprint, HostKey};
use tertulia_core::invite::Invite;
use tertulia_e2e::{ChatProcess, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};

const PACKAGE: &str = "tertulia-server";
const USER: &str = "tertulia";
const CONF: &str = "/etc/tertulia/server.conf";
const PASSPHRASE: &str = "/etc/tertulia/passphrase";
const STATE: &str = "/var/lib/tertulia";
const UNIT: &str = "/usr/lib/systemd/system/tertulia.service";
const ENABLED: &str = "/etc/systemd/system/multi-user.target.wants/tertulia.service";
const SERVER: &str = "/usr/bin/tertulia-server";
const CHAT: &str = "/usr/bin/tertulia-chat";
const INVITE: &str = "/usr/sbin/tertulia-invite";
/// Present while this test has the package installed: a run that was killed before its
/// clean-up left this behind with the install, which the next run may then purge.
const MARKER: &str = "/var/tmp/tertulia-server-package-test";
/// What the first install prints before the generated passphrase.
const GENERATED: &str = "Room passphrase (generated, kept in /etc/tertulia/passphrase): ";

fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Run it, insist on success, return stdout and stderr together.
fn ok(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    output(program, args).status.success()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Why this machine cannot run the test, if it cannot.
fn problem() -> Option<String> {
    if !is_root() {
        return Some("not root (installing a package needs root)".into());
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return Some("no dpkg (not a Debian system)".into());
    }
    match std::env::var_os("TERTULIA_SERVER_DEB") {
        None => Some("TERTULIA_SERVER_DEB is not set (make test-package sets it)".into()),
        Some(path) if !Path::new(&path).is_file() => Some(format!(
            "TERTULIA_SERVER_DEB={} is not a file (an absolute path; make package-server builds it)",
            Path::new(&path).display()
        )),
        Some(_) => None,
    }
}

/// `make test` sets `TERTULIA_REQUIRE_PACKAGE=1`: there a missing prerequisite is a failure.
fn required() -> bool {
    std::env::var("TERTULIA_REQUIRE_PACKAGE").is_ok_and(|v| v == "1")
}

fn package_present() -> bool {
    let out = output("dpkg-query", &["-W", "-f", "${db:Status-Status}", PACKAGE]);
    let status = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !status.trim().is_empty() && status.trim() != "not-installed"
}

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `getent passwd tertulia`: uid, gid, home, shell.
fn service_user() -> Option<(u32, u32, String, String)> {
    let out = output("getent", &["passwd", USER]);
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let fields: Vec<&str> = line.split(':').collect();
    assert_eq!(fields.len(), 7, "passwd line: {line}");
    Some((
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
        fields[5].to_owned(),
        fields[6].to_owned(),
    ))
}

fn group_exists() -> bool {
    succeeds("getent", &["group", USER])
}

/// Purges the package when dropped (last, also on a panic), and whatever a failed purge left.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if systemd_runs() {
            let _ = output("systemctl", &["stop", "tertulia.service"]);
        }
        // The installed server a killed run left running (the package is this test's).
        while let Some(pid) = server_pid() {
            if !succeeds("kill", &["-KILL", &pid.to_string()]) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = output("dpkg", &["--purge", PACKAGE]);
        if package_present() {
            let _ = output("dpkg", &["--purge", "--force-all", PACKAGE]);
        }
        if service_user().is_some() {
            let _ = output("userdel", &[USER]);
        }
        if group_exists() {
            let _ = output("groupdel", &[USER]);
        }
        // Both were absent before the test (checked): nothing of anyone else's is in them.
        let _ = std::fs::remove_dir_all("/etc/tertulia");
        let _ = std::fs::remove_dir_all(STATE);
        let _ = std::fs::remove_file(MARKER);
    }
}

fn mode_owner(path: &str) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid())
}

/// The invite codes among `text`'s lines.
fn invites(text: &str) -> Vec<Invite> {
    text.lines()
        .filter_map(|l| l.strip_prefix("invite code: "))
        .filter(|code| code.starts_with("tertulia://"))
        .map(|code| code.parse().unwrap_or_else(|e| panic!("{code}: {e:?}")))
        .collect()
}

fn host_identity(text: &str) -> Fingerprint {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("host identity: "))
        .unwrap_or_else(|| panic!("no host identity in:\n{text}"));
    line.trim().parse().expect("a fingerprint")
}

fn passphrase_file() -> String {
    std::fs::read_to_string(PASSPHRASE)
        .expect("passphrase file")
        .trim()
        .to_owned()
}

/// The `[Service]` section of a unit: each key's values in order.
fn service_section(unit: &str) -> HashMap<String, Vec<String>> {
    let mut section = String::new();
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continued lines are not emulated: {line}"
        );
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        keys.entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    keys
}

fn one<'a>(service: &'a HashMap<String, Vec<String>>, key: &str) -> &'a str {
    match service.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}= should be set once in the unit, is {other:?}"),
    }
}

/// An `EnvironmentFile=` as systemd reads one: `KEY=VALUE` lines, comments, quotes stripped.
fn environment_file(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|v| !v.contains(*q) && !v.contains('\\'))
            })
            .unwrap_or(value);
        vars.push((key.trim().to_owned(), unquoted.to_owned()));
    }
    vars
}

/// `ExecStart=` as systemd turns it into argv: specifiers, then words, then `$VAR` (split
/// into words) and `${VAR}` (one word). Anything this does not emulate fails the test, so the
/// emulation keeps up with the unit.
fn exec_argv(exec: &str, specifiers: &[(char, &str)], env: &[(String, String)]) -> Vec<String> {
    assert!(
        !exec.starts_with(['-', '@', '+', '!', ':']),
        "ExecStart prefixes are not emulated: {exec}"
    );
    assert!(
        !exec.contains(['"', '\'', '\\', ';']),
        "quoting in ExecStart is not emulated: {exec}"
    );
    let mut expanded = String::new();
    let mut chars = exec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            expanded.push(c);
            continue;
        }
        let spec = chars.next().expect("a specifier after %");
        match specifiers.iter().find(|(s, _)| *s == spec) {
            Some((_, value)) => expanded.push_str(value),
            None if spec == '%' => expanded.push('%'),
            None => panic!("specifier %{spec} is not emulated"),
        }
    }
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut argv = Vec::new();
    for word in expanded.split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            argv.push(lookup(name));
        } else if let Some(name) = word.strip_prefix('$') {
            argv.extend(lookup(name).split_whitespace().map(str::to_owned));
        } else {
            assert!(!word.contains('$'), "this use of $ is not emulated: {word}");
            argv.push(word.to_owned());
        }
    }
    argv
}

/// Every system call in a `systemd-analyze syscall-filter` group, nested groups included.
fn syscall_group(name: &str, out: &mut BTreeSet<String>) {
    let listing = ok("systemd-analyze", &["syscall-filter", name]);
    for line in listing.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            syscall_group(line, out);
        } else {
            out.insert(line.to_owned());
        }
    }
}

/// What a `SystemCallFilter=` list (allow lists, then `~` deny lists) lets through.
fn allowed_syscalls(filters: &[String]) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for filter in filters {
        let (deny, list) = match filter.strip_prefix('~') {
            Some(list) => (true, list),
            None => (false, filter.as_str()),
        };
        let mut set = BTreeSet::new();
        for item in list.split_whitespace() {
            if item.starts_with('@') {
                syscall_group(item, &mut set);
            } else {
                set.insert(item.to_owned());
            }
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

/// The server's part of an `strace -ff -o PREFIX` trace (one file per process or thread):
/// the lines after it executed `program`, in the process that did, and all of its threads'.
fn server_trace(prefix: &Path, program: &str) -> Vec<String> {
    let exec = format!("execve(\"{program}\"");
    let dir = prefix.parent().expect("trace dir");
    let name = format!("{}.", prefix.file_name().expect("name").to_string_lossy());
    let mut lines = Vec::new();
    let mut execs = 0;
    for entry in std::fs::read_dir(dir).expect("trace dir") {
        let path = entry.expect("entry").path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&name))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("trace file");
        let all: Vec<&str> = text.lines().collect();
        // setpriv and sh run in the process that executes the server; threads start later.
        let start = match all
            .iter()
            .position(|l| l.starts_with(&exec) && l.contains(") = 0"))
        {
            Some(at) => {
                execs += 1;
                at + 1
            }
            None => 0,
        };
        lines.extend(all[start..].iter().map(|l| l.to_string()));
    }
    assert_eq!(execs, 1, "one {exec} in the trace");
    lines
}

/// The name of the system call a trace line records, if it records one.
fn call_name(line: &str) -> Option<&str> {
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    (end > 0 && line[end..].starts_with('(')).then(|| &line[..end])
}

/// The system calls and socket families in the server's trace lines.
fn calls_and_families(lines: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut calls = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in lines {
        let Some(name) = call_name(line) else {
            continue;
        };
        if name == "socket" || name == "socketpair" {
            let family: String = line[name.len() + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            families.insert(family);
        }
        calls.insert(name.to_owned());
    }
    (calls, families)
}

/// A file the server reached by name and the system call succeeded.
struct Access {
    path: String,
    write: bool,
    line: String,
}

/// From `strace -y` lines (file descriptors shown as `N</path>`): every path a successful
/// call named, made absolute (relative to its directory descriptor or `workdir`).
fn file_accesses(lines: &[String], workdir: &str) -> Vec<Access> {
    const WRITES: &[&str] = &[
        "mkdir",
        "mkdirat",
        "unlink",
        "unlinkat",
        "rmdir",
        "rename",
        "renameat",
        "renameat2",
        "link",
        "linkat",
        "truncate",
        "chmod",
        "fchmodat",
        "chown",
        "fchownat",
        "lchown",
        "mknod",
        "mknodat",
        "utimensat",
    ];
    const READS: &[&str] = &[
        "stat",
        "lstat",
        "newfstatat",
        "statx",
        "access",
        "faccessat",
        "faccessat2",
        "readlink",
        "readlinkat",
        "chdir",
        "statfs",
        "execve",
    ];
    let mut accesses = Vec::new();
    for line in lines {
        let Some(name) = call_name(line) else {
            continue;
        };
        let opens = matches!(name, "open" | "openat" | "openat2" | "creat");
        if !opens && !WRITES.contains(&name) && !READS.contains(&name) {
            continue;
        }
        let Some((args, result)) = line.rsplit_once(") = ") else {
            continue;
        };
        if result.starts_with('-') || result.starts_with('?') {
            continue;
        }
        let args = &args[name.len() + 1..];
        let write = WRITES.contains(&name)
            || name == "creat"
            || (opens
                && ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                    .iter()
                    .any(|f| args.contains(f)));
        // Tokens: "strings", N</dir> descriptors and AT_FDCWD, in order.
        let mut dir: Option<String> = None;
        let mut rest = args;
        while let Some(at) = rest.find(['"', '<', 'A']) {
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("AT_FDCWD") {
                dir = Some(workdir.to_owned());
                rest = after;
            } else if let Some(after) = tail.strip_prefix('<') {
                let end = after.find('>').unwrap_or(after.len());
                dir = Some(after[..end].to_owned());
                rest = &after[end.min(after.len())..];
            } else if let Some(after) = tail.strip_prefix('"') {
                let end = after.find('"').unwrap_or(after.len());
                let path = &after[..end];
                let base = dir.take().unwrap_or_else(|| workdir.to_owned());
                let full = if path.starts_with('/') {
                    path.to_owned()
                } else if path.is_empty() {
                    base
                } else {
                    format!("{base}/{path}")
                };
                accesses.push(Access {
                    path: full,
                    write,
                    line: line.clone(),
                });
                rest = &after[(end + 1).min(after.len())..];
                if name.starts_with("open") || name == "creat" {
                    break;
                }
            } else {
                rest = &tail[1..];
            }
        }
    }
    accesses
}

/// Whether `path` is `dir` or inside it.
fn under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

/// The pid of the installed server started with `--data-dir`, if one runs.
fn server_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
                args.first() == Some(&SERVER.as_bytes()) && args.contains(&b"--data-dir".as_slice())
            })
        })
}

/// A `/proc/PID/status` field.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The server started as the unit would start it.
struct UnitServer {
    child: tokio::process::Child,
    pid: u32,
    log: Arc<Mutex<String>>,
    trace: Option<PathBuf>,
    /// Its `WorkingDirectory=` and its credentials directory (`%d`).
    workdir: String,
    credentials: String,
    _scratch: tempfile::TempDir,
}

impl Drop for UnitServer {
    fn drop(&mut self) {
        // Its own pid: under strace, killing the tracer alone would leave it running.
        let _ = output("kill", &["-KILL", &self.pid.to_string()]);
        let _ = self.child.start_kill();
    }
}

impl UnitServer {
    async fn start(service: &HashMap<String, Vec<String>>, strace: bool) -> Self {
        let (uid, gid, home, shell) = service_user().expect("the service user");
        let user = one(service, "User");
        let group = one(service, "Group");
        let env_file = one(service, "EnvironmentFile");
        assert!(!env_file.starts_with('-'), "the settings file is required");
        let env = environment_file(&std::fs::read_to_string(env_file).expect("EnvironmentFile"));

        // LoadCredential=NAME:PATH: a copy readable by the service user alone, in a
        // directory of its own (systemd's is a private ramfs).
        let scratch = tempfile::tempdir().expect("scratch");
        let credentials = scratch.path().join("credentials");
        std::fs::create_dir(&credentials).expect("credentials dir");
        for credential in &service["LoadCredential"] {
            let (name, source) = credential.split_once(':').expect("NAME:PATH");
            let copy = credentials.join(name);
            std::fs::copy(source, &copy).expect("copy the credential");
            std::os::unix::fs::chown(&copy, Some(uid), Some(gid)).expect("chown");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        }
        std::os::unix::fs::chown(&credentials, Some(uid), Some(gid)).expect("chown");
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o500))
            .expect("chmod");
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let credentials = credentials.display().to_string();

        // StateDirectory=NAME: /var/lib/NAME, the service user's.
        let state = format!("/var/lib/{}", one(service, "StateDirectory"));
        let (_, state_uid, _) = mode_owner(&state);
        assert_eq!(state_uid, uid, "{state} belongs to the service user");
        // StateDirectoryMode=: systemd sets it at every start.
        let state_mode = u32::from_str_radix(one(service, "StateDirectoryMode"), 8)
            .expect("an octal StateDirectoryMode");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(state_mode))
            .expect("chmod the state directory");

        let specifiers = [('S', "/var/lib"), ('d', credentials.as_str())];
        let argv = exec_argv(one(service, "ExecStart"), &specifiers, &env);
        assert_eq!(argv[0], SERVER);
        let workdir = exec_argv(one(service, "WorkingDirectory"), &specifiers, &env).join(" ");
        let umask = one(service, "UMask");
        assert_eq!(one(service, "NoNewPrivileges"), "yes");
        assert_eq!(one(service, "CapabilityBoundingSet"), "");

        let trace = scratch.path().join("strace.log");
        let mut command = if strace {
            let mut c = tokio::process::Command::new("strace");
            c.args(["-ff", "-y", "-qq", "-e", "signal=none", "-o"])
                .arg(&trace)
                .arg("--")
                .arg("setpriv");
            c
        } else {
            tokio::process::Command::new("setpriv")
        };
        command
            .arg(format!("--reuid={user}"))
            .arg(format!("--regid={group}"))
            .args([
                "--init-groups",
                "--no-new-privs",
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--",
                "sh",
                "-c",
                "umask \"$0\" && exec \"$@\"",
                umask,
            ])
            .args(&argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("USER", user)
            .env("LOGNAME", user)
            .env("HOME", &home)
            .env("SHELL", &shell)
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env("STATE_DIRECTORY", &state)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start the server as the unit would");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout"))
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().expect("log");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let listening = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(pid) = server_pid() {
                    if log.lock().expect("log").contains("listening on ") {
                        return pid;
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "the server exited ({status}):\n{}",
                        log.lock().expect("log")
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        let pid = listening
            .unwrap_or_else(|_| panic!("the server did not listen:\n{}", log.lock().expect("log")));
        UnitServer {
            child,
            pid,
            log,
            trace: strace.then_some(trace),
            workdir,
            credentials,
            _scratch: scratch,
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// SIGTERM, as `systemctl stop` sends; the exit code.
    async fn stop(&mut self) -> Option<i32> {
        ok("kill", &["-TERM", &self.pid.to_string()]);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the server did not stop")
            .expect("wait");
        status.code()
    }
}

/// Join with the installed client, say something, see it from a second one (by invite code).
async fn chat_through(addr: &str, invite: &Invite) {
    let extra = ["--passphrase-file", PASSPHRASE];
    // The environment's passphrase is wrong: only the file can let ana in.
    let mut ana =
        ChatProcess::start_program(Path::new(CHAT), addr, "ana", "not the passphrase", &extra)
            .await;
    ana.wait_type("connected").await;
    let mut ben =
        ChatProcess::start_program(Path::new(CHAT), &invite.to_string(), "ben", "", &[]).await;
    ben.wait_type("connected").await;
    ana.wait_for("ben's join", |e| e["type"] == "join" && e["nick"] == "ben")
        .await;
    ana.say("hola desde el paquete").await;
    assert_eq!(
        ben.wait_messages_from("ana", 1).await,
        vec!["hola desde el paquete"]
    );
    ana.close_stdin();
    ben.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0));
    assert_eq!(ben.exit_code().await, Some(0));
}

/// A copy of the package with a higher version, for an upgrade.
fn newer_version(deb: &Path, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let deb = deb.display().to_string();
    ok("dpkg-deb", &["-R", &deb, &tree.display().to_string()]);
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("Version");
    let text = text.replace(
        &format!("Version: {version}"),
        &format!("Version: {version}+upgrade1"),
    );
    std::fs::write(&control, text).expect("write control");
    let newer = dir.join("newer.deb");
    ok(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-b",
            &tree.display().to_string(),
            &newer.display().to_string(),
        ],
    );
    newer
}

fn install(deb: &Path) -> String {
    ok("dpkg", &["-i", &deb.display().to_string()])
}

#[tokio::test]
#[ignore = "installs the tertulia-server .deb on this machine as root: make test-package"]
async fn the_server_package_installs_runs_as_its_unit_says_and_purges_clean() {
    if let Some(why) = problem() {
        assert!(!required(), "TERTULIA_REQUIRE_PACKAGE=1 but {why}");
        eprintln!("SKIPPED: the server package test: {why}");
        return;
    }
    let deb = PathBuf::from(std::env::var_os("TERTULIA_SERVER_DEB").expect("checked"));
    if Path::new(MARKER).exists() {
        println!("an earlier run of this test was interrupted: purging what it installed");
        drop(Purge);
    }
    assert!(
        !package_present(),
        "{PACKAGE} is installed on this machine: this test would purge it (and its room)"
    );
    for path in ["/etc/tertulia", STATE] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists: this test would delete it"
        );
    }
    assert!(
        service_user().is_none() && !group_exists(),
        "a user or group `{USER}` exists: this test would delete it"
    );
    std::fs::write(
        MARKER,
        "tests/tests/server_package.rs has tertulia-server installed\n",
    )
    .expect("write the marker");
    let _purge = Purge;

    // What is in it.
    let contents = ok("dpkg-deb", &["-c", &deb.display().to_string()]);
    for path in [SERVER, CHAT, INVITE, UNIT, CONF] {
        assert!(
            contents.contains(&format!(".{path}")),
            "{path} not in the package:\n{contents}"
        );
    }
    assert_eq!(
        ok("dpkg-deb", &["-f", &deb.display().to_string(), "Package"]).trim(),
        PACKAGE
    );
    let conffiles = ok("dpkg-deb", &["-I", &deb.display().to_string(), "conffiles"]);
    assert_eq!(conffiles.trim(), CONF, "the settings are the one conffile");

    // First install: user, directories, a new passphrase printed once with the invite codes.
    let first = install(&deb);
    println!("first install printed:\n{first}");
    let printed: Vec<&str> = first
        .lines()
        .filter_map(|l| l.strip_prefix(GENERATED))
        .collect();
    let passphrase = passphrase_file();
    assert_eq!(printed, vec![passphrase.as_str()], "printed once:\n{first}");
    assert!(
        first.contains("/var/log/apt/term.log"),
        "says where apt keeps a copy of it:\n{first}"
    );
    let groups: Vec<&str> = passphrase.split('-').collect();
    assert!(
        groups.len() == 5 && groups.iter().all(|g| g.len() == 5),
        "a generated passphrase: {passphrase}"
    );
    let (uid, gid, home, shell) = service_user().expect("the tertulia user");
    assert!(uid < 1000 && gid < 1000, "a system user: {uid}:{gid}");
    assert_eq!(home, STATE);
    assert!(
        shell.ends_with("/nologin") || shell.ends_with("/false"),
        "{shell}"
    );
    assert_eq!(mode_owner(PASSPHRASE), (0o600, 0, 0), "root's alone");
    assert_eq!(
        mode_owner(STATE),
        (0o700, uid, gid),
        "the service user's alone"
    );
    let key = format!("{STATE}/host.key");
    assert_eq!(
        mode_owner(&key),
        (0o600, uid, gid),
        "made as the service user"
    );
    let fingerprint = HostKey::load_or_create(Path::new(&key))
        .expect("host key")
        .public()
        .fingerprint();
    assert_eq!(host_identity(&first), fingerprint);
    let first_invites = invites(&first);
    for invite in &first_invites {
        assert_eq!(invite.port, 5555, "the default port");
        assert_eq!(invite.passphrase, passphrase);
        assert_eq!(invite.fingerprint, Some(fingerprint));
    }
    assert!(
        !first_invites.is_empty() || first.contains("invite code: none"),
        "{first}"
    );
    for path in [SERVER, CHAT, INVITE] {
        assert_eq!(mode_owner(path), (0o755, 0, 0), "{path}");
    }
    assert_eq!(mode_owner(CONF), (0o644, 0, 0));
    assert!(
        std::fs::read_to_string(CONF)
            .expect("conf")
            .contains("TERTULIA_ARGS=\"--listen 0.0.0.0:5555\""),
        "a server listens on every address by default"
    );
    assert!(
        Path::new(ENABLED).exists(),
        "enabled: started at boot where systemd runs"
    );
    let verify = ok("systemd-analyze", &["verify", UNIT]);
    assert!(
        !verify.contains("tertulia"),
        "systemd-analyze verify has something to say:\n{verify}"
    );
    let security = ok(
        "systemd-analyze",
        &["security", "--offline=yes", "--threshold=20", UNIT],
    );
    println!("{}", security.lines().last().unwrap_or_default());

    // New settings (loopback, a free port), then an upgrade and a reinstall keep everything.
    let port = tertulia_e2e::free_port().await;
    let settings = format!(
        "# changed by the package test\nTERTULIA_ARGS=\"--listen 127.0.0.1:{port} --retain-days 30\"\n"
    );
    std::fs::write(CONF, &settings).expect("change the settings");
    let key_bytes = std::fs::read(&key).expect("host key");
    let scratch = tempfile::tempdir().expect("scratch");
    let newer = newer_version(&deb, scratch.path());
    for (what, package) in [("upgrade", &newer), ("reinstall", &newer)] {
        let again = install(package);
        assert!(
            !again.contains(&passphrase) && !again.contains("invite code"),
            "{what} printed the passphrase again:\n{again}"
        );
        assert_eq!(passphrase_file(), passphrase, "{what} kept the passphrase");
        assert_eq!(std::fs::read(&key).expect("host key"), key_bytes, "{what}");
        assert_eq!(
            std::fs::read_to_string(CONF).expect("conf"),
            settings,
            "{what}"
        );
        assert_eq!(mode_owner(PASSPHRASE), (0o600, 0, 0), "{what}");
        assert_eq!(service_user().map(|u| u.0), Some(uid), "{what}");
    }

    // The invite codes again, for the new settings.
    let shown = ok(INVITE, &[]);
    assert_eq!(host_identity(&shown), fingerprint);
    let invite = match invites(&shown).as_slice() {
        [invite] => invite.clone(),
        other => panic!("one invite code for 127.0.0.1:{port}: {other:?}\n{shown}"),
    };
    assert_eq!((invite.host.as_str(), invite.port), ("127.0.0.1", port));
    assert_eq!(invite.passphrase, passphrase);
    assert_eq!(invite.fingerprint, Some(fingerprint));
    let addr = format!("127.0.0.1:{port}");

    // Where systemd runs: the service itself.
    if systemd_runs() {
        ok("systemctl", &["daemon-reload"]);
        ok("systemctl", &["restart", "tertulia.service"]);
        // This start's lines only: an earlier run's journal may hold the same words.
        let invocation = ok(
            "systemctl",
            &["show", "-p", "InvocationID", "--value", "tertulia.service"],
        );
        let this_start = format!("_SYSTEMD_INVOCATION_ID={}", invocation.trim());
        let journal = tokio::time::timeout(WAIT, async {
            loop {
                let journal = ok("journalctl", &[&this_start, "-o", "cat", "--no-pager"]);
                if journal.contains(&format!("listening on {addr}")) {
                    return journal;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("the service did not listen (journalctl -u tertulia)");
        assert!(
            !journal.contains(&passphrase),
            "the passphrase is not logged"
        );
        let main_pid = ok(
            "systemctl",
            &["show", "-p", "MainPID", "--value", "tertulia.service"],
        );
        let main_pid: u32 = main_pid.trim().parse().expect("MainPID");
        assert_eq!(
            status_field(main_pid, "Uid"),
            format!("{uid} {uid} {uid} {uid}")
        );
        assert_eq!(status_field(main_pid, "NoNewPrivs"), "1");
        chat_through(&addr, &invite).await;
        ok("systemctl", &["stop", "tertulia.service"]);
    } else {
        println!("systemd does not run here: the server is started as the unit says instead");
    }

    // The server as the installed unit starts it.
    let service = service_section(&std::fs::read_to_string(UNIT).expect("unit"));
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("StateDirectory", "tertulia"),
        ("StateDirectoryMode", "0700"),
    ] {
        assert_eq!(one(&service, key), value, "{key}=");
    }
    assert_eq!(
        service["LoadCredential"],
        vec![format!("passphrase:{PASSPHRASE}")]
    );
    let strace = succeeds("strace", &["-V"]);
    if !strace {
        assert!(
            !required(),
            "TERTULIA_REQUIRE_PACKAGE=1 but strace is missing (make deps-test installs it)"
        );
        println!("SKIPPED: the system call check (no strace)");
    }
    let mut server = UnitServer::start(&service, strace).await;
    assert!(
        server.log().contains(&format!("listening on {addr}")),
        "{}",
        server.log()
    );
    assert!(
        !server.log().contains("open to other users"),
        "no warning the host cannot act on:\n{}",
        server.log()
    );
    let pid = server.pid;
    assert_eq!(status_field(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(status_field(pid, "Gid"), format!("{gid} {gid} {gid} {gid}"));
    assert_eq!(status_field(pid, "Groups"), gid.to_string());
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, caps), "0000000000000000", "{caps}");
    }
    chat_through(&addr, &invite).await;
    assert_eq!(server.stop().await, Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("server stopped"), "{log}");
    assert!(
        !log.contains(&passphrase),
        "the passphrase is not logged:\n{log}"
    );

    // The room is in the state directory, the service user's alone (UMask=0077).
    let mut room_files = 0;
    for entry in std::fs::read_dir(STATE).expect("state dir") {
        let path = entry.expect("entry").path().display().to_string();
        let (mode, owner, _) = mode_owner(&path);
        assert_eq!(owner, uid, "{path}");
        assert_eq!(
            mode & 0o077,
            0,
            "{path} is the service user's alone: {mode:o}"
        );
        room_files += 1;
    }
    assert!(
        Path::new(&format!("{STATE}/room.sqlite3")).exists(),
        "the room is stored in {STATE} ({room_files} entries)"
    );

    // Every system call and socket family is one the unit allows.
    if let Some(trace) = &server.trace {
        let lines = server_trace(trace, SERVER);
        let (calls, families) = calls_and_families(&lines);
        let allowed = allowed_syscalls(&service["SystemCallFilter"]);
        let refused: Vec<&String> = calls.iter().filter(|c| !allowed.contains(*c)).collect();
        assert!(
            refused.is_empty(),
            "system calls outside SystemCallFilter=: {refused:?}"
        );
        let families_allowed: Vec<&str> = one(&service, "RestrictAddressFamilies")
            .split_whitespace()
            .collect();
        let refused: Vec<&String> = families
            .iter()
            .filter(|f| !families_allowed.contains(&f.as_str()))
            .collect();
        assert!(
            refused.is_empty(),
            "socket families outside RestrictAddressFamilies=: {refused:?}"
        );
        println!(
            "{} system calls and families {families:?} used, all allowed by the unit",
            calls.len()
        );

        // The files it used are all the hardened unit lets it have: writes only in its state
        // directory (ProtectSystem=strict; its private /tmp, PrivateTmp=), nothing of the
        // users' (ProtectHome=), only the devices of PrivateDevices=, only its own
        // processes in /proc (ProcSubset=pid).
        let accesses = file_accesses(&lines, &server.workdir);
        let state = format!("/var/lib/{}", one(&service, "StateDirectory"));
        let devices = [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/pts",
            "/dev/ptmx",
            "/dev/shm",
            "/dev/mqueue",
            "/dev/hugepages",
            "/dev/log",
            "/dev/stdin",
            "/dev/stdout",
            "/dev/stderr",
            "/dev/fd",
        ];
        let wrong: Vec<&Access> = accesses
            .iter()
            .filter(|a| {
                let p = a.path.as_str();
                let writable = [state.as_str(), "/tmp", "/var/tmp"]
                    .iter()
                    .any(|d| under(p, d))
                    || devices.iter().any(|d| under(p, d));
                let own_proc = p
                    .strip_prefix("/proc/")
                    .map(|rest| rest.split('/').next().unwrap_or_default())
                    .is_none_or(|first| {
                        first == "self"
                            || first == "thread-self"
                            || first.chars().all(|c| c.is_ascii_digit())
                    });
                (a.write && !writable)
                    || ["/home", "/root", "/run/user"].iter().any(|d| under(p, d))
                    || (under(p, "/dev") && !devices.iter().any(|d| under(p, d)))
                    || !own_proc
                    || (a.write && under(p, &server.credentials))
            })
            .collect();
        let wrong: Vec<String> = wrong
            .iter()
            .map(|a| {
                format!(
                    "{} ({}): {}",
                    a.path,
                    if a.write { "write" } else { "read" },
                    a.line
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "file accesses the unit's hardening would refuse:\n{}",
            wrong.join("\n")
        );
        let writes: BTreeSet<&str> = accesses
            .iter()
            .filter(|a| a.write)
            .map(|a| a.path.as_str())
            .collect();
        assert!(
            writes.iter().any(|p| under(p, &state)),
            "the trace shows the room's writes: {writes:?}"
        );
        println!(
            "{} file accesses, {} writes, all where the unit allows them",
            accesses.len(),
            writes.len()
        );
    }
    drop(server);

    // Remove keeps the room, the passphrase, the settings and the user; purge deletes them.
    ok("dpkg", &["-r", PACKAGE]);
    for path in [SERVER, CHAT, INVITE, UNIT] {
        assert!(!Path::new(path).exists(), "{path} left after remove");
    }
    assert_eq!(passphrase_file(), passphrase);
    assert_eq!(std::fs::read(&key).expect("host key"), key_bytes);
    assert_eq!(std::fs::read_to_string(CONF).expect("conf"), settings);
    assert!(service_user().is_some());
    ok("dpkg", &["--purge", PACKAGE]);
    assert!(!package_present(), "purged");
    for path in [
        "/etc/tertulia",
        STATE,
        ENABLED,
        "/etc/systemd/system/tertulia.service",
    ] {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} left after purge"
        );
    }
    assert!(service_user().is_none(), "the user is gone after purge");
    assert!(!group_exists(), "the group is gone after purge");
}
