//! Starting and stopping the servers under test, each pinned to CPU 0 with `taskset`, on
//! 127.0.0.1 with persistence off.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::Target;

pub const PASSPHRASE: &str = "tertulia bench passphrase";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start {what}: {error} (is it installed? `make bench` installs it)")]
    Spawn { what: String, error: std::io::Error },
    #[error("{0} did not start listening within 20 s")]
    NotListening(String),
    #[error("cannot write the ngIRCd configuration: {0}")]
    Config(std::io::Error),
}

pub struct RunningServer {
    child: Child,
    pub port: u16,
    /// The server's scratch directory (ngIRCd's configuration), removed after the server.
    _dir: Option<TempDir>,
}

impl RunningServer {
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(15555)
}

/// `tertulia-server` next to this binary (same cargo profile).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

pub fn start(target: Target, cpu: Option<usize>) -> Result<RunningServer, ServerError> {
    let port = free_port();
    let mut dir = None;
    let (program, args): (PathBuf, Vec<String>) = match target {
        Target::Tertulia => (
            sibling("tertulia-server"),
            strings(&[
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--in-memory",
                "--flood-rate",
                "0",
                "--max-connections",
                "100000",
                "--max-connections-per-ip",
                "100000",
                "--backlog",
                "0",
                "--send-queue-kib",
                "65536",
            ]),
        ),
        Target::Redis => (
            PathBuf::from("redis-server"),
            strings(&[
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--maxclients",
                "100000",
                "--loglevel",
                "warning",
            ]),
        ),
        Target::Nats => (
            PathBuf::from("nats-server"),
            strings(&["-a", "127.0.0.1", "-p", &port.to_string()]),
        ),
        Target::Irc => {
            // Mode 0755 as a plain mkdir gives (tempfile's default is 0700): ngIRCd switches to
            // ServerUID after it starts.
            let scratch = tempfile::Builder::new()
                .prefix(&format!("tertulia-bench-irc-{port}-"))
                .permissions(std::fs::Permissions::from_mode(0o755))
                .tempdir()
                .map_err(ServerError::Config)?;
            let conf = scratch.path().join("ngircd.conf");
            std::fs::write(&conf, ngircd_conf(port)).map_err(ServerError::Config)?;
            let program = ["/usr/sbin/ngircd", "ngircd"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("ngircd"));
            dir = Some(scratch);
            (
                program,
                strings(&["--nodaemon", "--config", &conf.display().to_string()]),
            )
        }
    };
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&program);
            c
        }
        None => Command::new(&program),
    };
    command
        .args(&args)
        .env("TERTULIA_PASSPHRASE", PASSPHRASE)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("BENCH_SERVER_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let child = command.spawn().map_err(|error| ServerError::Spawn {
        what: program.display().to_string(),
        error,
    })?;
    let server = RunningServer {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(ServerError::NotListening(format!("{target:?}")));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(server)
}

fn ngircd_conf(port: u16) -> String {
    format!(
        "[Global]
    Name = bench.tertulia.invalid
    Info = Tertulia benchmark anchor
    Listen = 127.0.0.1
    Ports = {port}
    MotdPhrase = bench
    PidFile = /dev/null
    ServerUID = 65534
    ServerGID = 65534
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxNickLength = 16
    MaxPenaltyTime = 0
    PingTimeout = 600
    PongTimeout = 600
[Options]
    DNS = no
    Ident = no
    PAM = no
    SyslogFacility = local7
"
    )
}
