//! Shared by the IPC tests: the app on Tauri's mock runtime and `invoke` as the window calls
//! it ([`mock_app`], [`invoke`]); for the saved-rooms and identity tests, the app with its
//! saved rooms and pinned host identities in temporary files, invoking commands as the window does, waiting for the events it
//! would get, a real room to join, and a real Secret Service (gnome-keyring on a private
//! D-Bus session bus).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::webview::InvokeRequest;
use tauri::{App, Listener, Manager, WebviewWindow, WebviewWindowBuilder};
use tertulia_app_lib::rooms::{SavedRooms, ROOMS_FILE, SAVED_ROOMS_EVENT};
use tertulia_app_lib::session::{AppState, KNOWN_HOSTS_FILE};
use tertulia_app_lib::CHAT_EVENT;
use tertulia_core::server::{Server, ServerConfig};

pub const WAIT: Duration = Duration::from_secs(20);

/// One test at a time in this test binary, all under one throw-away `XDG_DATA_HOME` (the
/// app's data directory: hosting uses one `host.key` and room there), set before any app
/// exists so every `app_data_dir()` is under it.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    static ONE: Mutex<()> = Mutex::new(());
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::env::set_var("XDG_DATA_HOME", dir.path());
        dir
    });
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The app, its main window, and the events it sent the window.
pub struct TestApp {
    pub app: App<MockRuntime>,
    pub window: WebviewWindow<MockRuntime>,
    pub chat: mpsc::Receiver<Value>,
    pub saved: mpsc::Receiver<Value>,
    pub dir: tempfile::TempDir,
}

/// The app with its state, plugins and commands (`configure`), and its main window.
///
/// Rooms are neither announced nor looked for (`TERTULIA_DISCOVERY=off`): these tests run
/// in the machine's own network, where nothing may be advertised. The discovery tests set
/// it themselves, inside the lab's network namespaces (tests/discovery_lab.rs).
pub fn mock_app() -> (App<MockRuntime>, WebviewWindow<MockRuntime>) {
    if std::env::var_os(tertulia_app_lib::discovery::DISCOVERY_ENV).is_none() {
        std::env::set_var(tertulia_app_lib::discovery::DISCOVERY_ENV, "off");
    }
    let app = tertulia_app_lib::configure(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("the app builds on the mock runtime");
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("the main window");
    (app, window)
}

/// Invoke `cmd` with `args` as the UI's `invoke(cmd, args)` does: the value it resolves to,
/// or the one it rejects with.
pub fn invoke(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: tauri::test::INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<Value>().expect("a JSON result"))
}

impl TestApp {
    pub fn new() -> Self {
        let (app, window) = mock_app();
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(app
            .state::<SavedRooms>()
            .use_file(dir.path().join(ROOMS_FILE)));
        assert!(app
            .state::<AppState>()
            .use_known_hosts(dir.path().join(KNOWN_HOSTS_FILE)));
        let (chat_tx, chat) = mpsc::channel();
        app.listen(CHAT_EVENT, move |e| {
            let _ = chat_tx.send(serde_json::from_str(e.payload()).expect("JSON event"));
        });
        let (saved_tx, saved) = mpsc::channel();
        app.listen(SAVED_ROOMS_EVENT, move |e| {
            let _ = saved_tx.send(serde_json::from_str(e.payload()).expect("JSON event"));
        });
        Self {
            app,
            window,
            chat,
            saved,
            dir,
        }
    }

    pub fn rooms_file(&self) -> std::path::PathBuf {
        self.dir.path().join(ROOMS_FILE)
    }

    /// `invoke(cmd, args)` as the window calls it: what it resolves or rejects with.
    pub fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        invoke(&self.window, cmd, args)
    }

    /// The next chat event matching `pred` (others are skipped).
    pub fn chat_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(&self.chat, what, pred)
    }

    /// The next saved-rooms update.
    pub fn saved_update(&self, what: &str) -> Value {
        wait_for(&self.saved, what, |_| true)
    }

    /// No saved-rooms update for `for_` (nothing was saved).
    pub fn no_saved_update(&self, for_: Duration) {
        if let Ok(update) = self.saved.recv_timeout(for_) {
            panic!("unexpected saved-rooms update: {update}");
        }
    }
}

fn wait_for(rx: &mpsc::Receiver<Value>, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) if pred(&event) => return event,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

pub fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == kind
}

/// A real room on 127.0.0.1 (in memory) with `passphrase`; returns its port.
pub fn room(passphrase: &str) -> u16 {
    let passphrase = passphrase.to_owned();
    let server = tauri::async_runtime::block_on(async move {
        Server::bind("127.0.0.1:0", &passphrase, ServerConfig::default()).await
    })
    .expect("a room on 127.0.0.1");
    let port = server.local_addr().expect("its address").port();
    tauri::async_runtime::spawn(server.run(std::future::pending()));
    port
}

/// Say why a test did not run, where `cargo test` shows it (the harness captures only the
/// print macros of passing tests, not writes to the stderr handle).
pub fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// gnome-keyring's Secret Service, unlocked, on a private session bus of its own, with its
/// keyrings in a temporary home. Both processes end when this is dropped.
pub struct PrivateKeyring {
    pub address: String,
    bus: Child,
    daemon: Child,
    _home: tempfile::TempDir,
}

impl Drop for PrivateKeyring {
    fn drop(&mut self) {
        for child in [&mut self.daemon, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl PrivateKeyring {
    /// Start it, or say why not: `Err` is the reason to skip. Set
    /// `TERTULIA_REQUIRE_KEYRING=1` to make that a failure instead.
    pub fn start() -> Result<Self, String> {
        let result = Self::try_start();
        if let Err(why) = &result {
            if std::env::var_os("TERTULIA_REQUIRE_KEYRING").is_some_and(|v| v == "1") {
                panic!("TERTULIA_REQUIRE_KEYRING=1 but no Secret Service: {why}");
            }
        }
        result
    }

    fn try_start() -> Result<Self, String> {
        for program in ["dbus-daemon", "gnome-keyring-daemon"] {
            if !have(program) {
                return Err(format!(
                    "{program} is not installed (Debian: dbus-daemon, gnome-keyring; `make deps-test`)"
                ));
            }
        }
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let mut line = String::new();
        let stdout = bus.stdout.take().ok_or("dbus-daemon: no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let address = line.trim().to_owned();
        if address.is_empty() {
            let _ = bus.kill();
            let _ = bus.wait();
            return Err("dbus-daemon printed no address".into());
        }
        let dir = |name: &str| {
            let p = home.path().join(name);
            let _ = std::fs::create_dir_all(&p);
            p
        };
        let runtime = dir("run");
        set_private(&runtime);
        let mut daemon = match Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", dir("data"))
            .env("XDG_CONFIG_HOME", dir("config"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(daemon) => daemon,
            Err(e) => {
                let _ = bus.kill();
                let _ = bus.wait();
                return Err(format!("gnome-keyring-daemon: {e}"));
            }
        };
        if let Some(mut stdin) = daemon.stdin.take() {
            // The login keyring's password: creates it unlocked, no prompt.
            let _ = stdin.write_all(b"tertulia-test-keyring");
        }
        let keyring = PrivateKeyring {
            address,
            bus,
            daemon,
            _home: home,
        };
        keyring.wait_ready()?;
        Ok(keyring)
    }

    /// Until the Secret Service answers on the bus.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let owned = Command::new("dbus-send")
                .args([
                    &format!("--bus={}", self.address),
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output();
            match owned {
                Ok(out) if String::from_utf8_lossy(&out.stdout).contains("boolean true") => {
                    return Ok(())
                }
                Ok(_) => {}
                Err(e) => return Err(format!("dbus-send (Debian: dbus-bin): {e}")),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("gnome-keyring-daemon did not take org.freedesktop.secrets within 10 s".into())
    }

    /// The passphrase stored for `room`, as another program sees it (`secret-tool`, from
    /// libsecret-tools, else the keyring crate).
    pub fn lookup(&self, room: &str) -> Option<String> {
        let service = tertulia_app_lib::rooms::KEYRING_SERVICE;
        if let Ok(out) = Command::new("secret-tool")
            .args(["lookup", "service", service, "username", room])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
        {
            return out
                .status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let (service, room) = (service.to_owned(), room.to_owned());
        tauri::async_runtime::block_on(tauri::async_runtime::spawn_blocking(move || {
            keyring::Entry::new(&service, &room)
                .and_then(|e| e.get_password())
                .ok()
        }))
        .expect("keyring lookup")
    }
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// No file under `dir` contains `secret`.
pub fn assert_not_in_files(dir: &Path, secret: &str) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "the passphrase is in {}",
                    path.display()
                );
            }
        }
    }
}
