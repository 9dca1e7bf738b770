//! `tertulia-chat` takes an invite code for its server (`docs/PROTOCOL.md`, "Invite codes"),
//! and speaks the system's language (or `--lang`'s) in interactive mode: the real binaries.

use std::process::Stdio;

use serde_json::Value;
use tertulia_core::invite::Invite;
use tertulia_e2e::{ChatProcess, ServerProcess, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Everything a passphrase can hold that a raw `tertulia://HOST:PORT#…` code used to break.
const PASS: &str = "50% off #1 ñ ❤️";

/// `tertulia-chat` with `args`, no passphrase in the environment unless `env` puts one there,
/// and only the locale variables `env` sets; its private data directory comes with it.
fn chat_command(args: &[&str], env: &[(&str, &str)]) -> (Command, tempfile::TempDir) {
    let (mut command, data_home) = tertulia_e2e::chat_command();
    command
        .args(args)
        .env_remove("TERTULIA_PASSPHRASE")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("LANG")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    (command, data_home)
}

/// A running `tertulia-chat` whose stdout lines arrive on a channel.
struct Chat {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    _data_home: tempfile::TempDir,
}

impl Chat {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let (mut command, data_home) = chat_command(args, env);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tertulia-chat");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            _data_home: data_home,
        }
    }

    /// The first line (seen before or arriving within [`WAIT`]) matching `pred`.
    async fn line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(found) = self.seen.iter().find(|l| pred(l)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                _ => panic!("never printed {what}; printed: {:#?}", self.seen),
            }
        }
    }

    /// The first JSON event of `type` kind matching `pred`.
    async fn event(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self
            .line(kind, |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"] == kind && pred(&v))
            })
            .await;
        serde_json::from_str(&line).expect("JSON line")
    }

    async fn say(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write to chat stdin");
        stdin.flush().await.expect("flush chat stdin");
    }
}

/// A chat that is expected to refuse to start: its exit code and stderr.
async fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (mut command, _data_home) = chat_command(args, env);
    let output = tokio::time::timeout(
        WAIT,
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("tertulia-chat did not exit")
    .expect("run tertulia-chat");
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_invite_code_joins_a_room_whose_passphrase_has_every_awkward_character() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let invite = Invite::new("127.0.0.1", server.addr.port(), PASS).to_string();
    assert!(
        invite.ends_with("#50%25%20off%20%231%20%C3%B1%20%E2%9D%A4%EF%B8%8F"),
        "{invite}"
    );
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    // The code's passphrase wins over a (wrong) one in the environment.
    let mut x = Chat::start(
        &[&invite, "--nick", "x", "--json"],
        &[("TERTULIA_PASSPHRASE", "not the passphrase")],
    );
    x.event("connected", |e| e["nick"] == "x").await;
    x.say("hola ❤️").await;
    assert_eq!(ana.wait_messages_from("x", 1).await, ["hola ❤️"]);
    ana.say("hi x").await;
    x.event("message", |e| e["from"] == "ana" && e["text"] == "hi x")
        .await;
}

#[tokio::test]
async fn a_damaged_invite_code_is_a_clear_error_in_the_user_s_language() {
    // '%' not followed by two hex digits: the raw passphrase older apps wrote.
    let damaged = "tertulia://127.0.0.1:5555#50% off #1";
    let (code, stderr) = refused(&[damaged, "--nick", "x", "--json"], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("error: the invite code is damaged")
            && stderr.contains("not correctly percent-encoded"),
        "{stderr}"
    );
    let (code, stderr) = refused(&[damaged, "--nick", "x"], &[("LANG", "es_ES.UTF-8")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("error: el código de invitación está dañado"),
        "{stderr}"
    );
    let (code, stderr) = refused(&["tertulia://127.0.0.1:0#p", "--nick", "x"], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("port"), "{stderr}");
}

#[tokio::test]
async fn an_invite_code_and_a_passphrase_file_are_refused_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pass");
    std::fs::write(&file, "other").expect("write passphrase file");
    let file = file.to_string_lossy().into_owned();
    let (code, stderr) = refused(
        &[
            "tertulia://127.0.0.1:5555#p",
            "--nick",
            "x",
            "--passphrase-file",
            &file,
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("leave out --passphrase-file"), "{stderr}");
}

/// `[HH:MM] ` at the start of a notice, 24-hour.
fn has_24_hour_time(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("*** [") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() > 6
        && b[2] == b':'
        && b[5] == b']'
        && rest[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && rest[3..5].parse::<u8>().is_ok_and(|m| m < 60)
}

#[tokio::test]
async fn interactive_mode_speaks_the_system_language_unless_lang_says_otherwise() {
    let pass = "correct horse battery staple";
    let server = ServerProcess::start("127.0.0.1:0", pass, &[]).await;
    let addr = server.addr.to_string();
    let spanish = [("LANG", "es_ES.UTF-8"), ("TERTULIA_PASSPHRASE", pass)];
    let mut ana = Chat::start(&[&addr, "--nick", "ana"], &spanish);
    ana.line("the Spanish intro", |l| {
        l.starts_with("*** escribe un mensaje")
    })
    .await;
    ana.line("the Spanish welcome", |l| {
        l == "*** estás en la sala como ana"
    })
    .await;
    // LC_MESSAGES comes before LANG.
    let mut ben = Chat::start(
        &[&addr, "--nick", "ben"],
        &[
            ("LANG", "en_US.UTF-8"),
            ("LC_MESSAGES", "es_MX.UTF-8"),
            ("TERTULIA_PASSPHRASE", pass),
        ],
    );
    ben.line("the Spanish welcome", |l| {
        l == "*** estás en la sala como ben"
    })
    .await;
    let joined = ana
        .line("the Spanish join notice", |l| {
            l.ends_with("] ben se ha unido")
        })
        .await;
    assert!(has_24_hour_time(&joined), "{joined}");
    // --lang overrides the system's language.
    let mut carol = Chat::start(&[&addr, "--nick", "carol", "--lang", "en"], &spanish);
    carol
        .line("the English intro", |l| l.starts_with("*** type a message"))
        .await;
    carol
        .line("the English welcome", |l| {
            l == "*** you are in the room as carol"
        })
        .await;
    ana.line("the Spanish join notice", |l| {
        l.ends_with("] carol se ha unido")
    })
    .await;
    carol.say("/who").await;
    carol
        .line("the English online list", |l| {
            l.starts_with("*** online (3): ")
        })
        .await;
    ana.say("/who").await;
    ana.line("the Spanish online list", |l| {
        l.starts_with("*** en línea (3): ")
    })
    .await;
    // Messages stay as typed, in either language.
    carol.say("hello ñ").await;
    ana.line("carol's message", |l| l.ends_with("] carol: hello ñ"))
        .await;
    carol.say("/quit").await;
    let left = ana
        .line("the Spanish leave notice", |l| {
            l.ends_with("] carol se ha ido")
        })
        .await;
    assert!(has_24_hour_time(&left), "{left}");
}

/// `tertulia-server --print-invite` (what the server package shows at install and with
/// `tertulia-invite`) prints, without serving, the invite code of the server that later runs
/// with the same settings: same identity (created by the first of them), same passphrase, the
/// `--listen` address. A member joins with it; a generated passphrase has the app's shape.
#[tokio::test]
async fn print_invite_names_the_server_that_runs_later() {
    let generated = std::process::Command::new(tertulia_e2e::binary("tertulia-server"))
        .arg("--print-passphrase")
        .output()
        .expect("run tertulia-server");
    assert!(generated.status.success());
    let generated = String::from_utf8(generated.stdout).expect("UTF-8");
    let groups: Vec<&str> = generated.trim_end_matches('\n').split('-').collect();
    assert!(
        groups.len() == 5 && groups.iter().all(|g| g.len() == 5),
        "{generated:?}"
    );

    let dir = tertulia_e2e::DataDir::new("print-invite");
    let port = tertulia_e2e::free_port().await;
    let listen = format!("127.0.0.1:{port}");
    let printed = std::process::Command::new(tertulia_e2e::binary("tertulia-server"))
        .args([
            "--print-invite",
            "--listen",
            &listen,
            "--data-dir",
            dir.path(),
        ])
        .env("TERTULIA_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .output()
        .expect("run tertulia-server");
    assert!(printed.status.success(), "{printed:?}");
    let printed = String::from_utf8(printed.stdout).expect("UTF-8");
    let codes: Vec<Invite> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("invite code: "))
        .map(|c| c.parse().expect("an invite code"))
        .collect();
    let [invite] = codes.as_slice() else {
        panic!("one invite code for {listen}:\n{printed}");
    };
    assert_eq!((invite.host.as_str(), invite.port), ("127.0.0.1", port));
    assert_eq!(invite.passphrase, PASS);
    assert!(
        printed.contains(&format!(
            "host identity: {}",
            invite.fingerprint.expect("a fingerprint")
        )),
        "{printed}"
    );

    // The code's fingerprint must be the server's: the client refuses any other identity.
    let server = ServerProcess::start(&listen, PASS, &["--data-dir", dir.path()]).await;
    let mut ana = ChatProcess::start_target(&invite.to_string(), "ana", "", &[]).await;
    ana.wait_type("connected").await;
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0));
    let _ = server.terminate().await;
}
