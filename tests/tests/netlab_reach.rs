//! Friends outside the LAN: `tertulia-server --internet` asks the lab's real router
//! (miniupnpd 2.3 with nftables, tests/netlab/) for a port mapping over UPnP-IGD, PCP or
//! NAT-PMP, renews it while it runs and deletes it on SIGTERM. Checked from outside: the
//! router's own list of mappings (`upnpc -l`) and a member in the `wan` namespace joining
//! through the router's external address 203.0.113.1, which is only possible while the
//! mapping exists (the router drops every other connection from the WAN). A router that
//! does not answer gives the advice, and the room still serves the LAN.
//!
//! Needs root; without the lab every trial is reported ignored with the reason
//! (`NETLAB_REQUIRED=1` makes that a failure). Each trial uses its own ports.

use std::io::Write;

use tertulia_e2e::binary;
use tertulia_e2e::netlab::{
    self, in_ns, netlab_py, Failed, NsProcess, Trial, LAB_WAIT, LAN_A, LAN_B, ROUTER_LAN,
    ROUTER_WAN,
};

/// The router's UPnP description (skips upnpc's 2 s discovery on every call).
fn upnp_root() -> String {
    format!("http://{ROUTER_LAN}:5000/rootDesc.xml")
}

/// A `tertulia-server --internet` in `ns` on `port`, with a generated passphrase (so it prints
/// the invite codes) and `extra` arguments.
fn host(ns: &str, port: u16, extra: &[&str]) -> Result<NsProcess, String> {
    host_storing(ns, port, None, extra)
}

/// [`host`], keeping the room in a data directory (`None`: in memory, with a generated
/// passphrase) with the passphrase in a file: `(data_dir, passphrase_file)`.
fn host_storing(
    ns: &str,
    port: u16,
    stored: Option<(&std::path::Path, &std::path::Path)>,
    extra: &[&str],
) -> Result<NsProcess, String> {
    let mut command = in_ns(ns, binary("tertulia-server"));
    match stored {
        Some((dir, passphrase)) => command
            .arg("--data-dir")
            .arg(dir)
            .arg("--passphrase-file")
            .arg(passphrase),
        None => command.args(["--in-memory", "--generate-passphrase"]),
    };
    command
        .arg("--internet")
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .args(extra);
    let mut server = NsProcess::spawn(&format!("tertulia-server in {ns}"), command)?;
    server.wait_line("listening", LAB_WAIT, |l| l.starts_with("listening on"))?;
    Ok(server)
}

/// The code after `prefix` in the server's output.
fn code_after(server: &mut NsProcess, prefix: &str) -> Result<String, String> {
    let line = server.wait_line(prefix, LAB_WAIT, |l| l.starts_with(prefix))?;
    Ok(line[prefix.len()..].trim().to_owned())
}

/// A `tertulia-chat --json` member in `ns`, joining with `invite`, with its own data directory.
fn member(ns: &str, invite: &str, nick: &str) -> Result<(NsProcess, tempfile::TempDir), String> {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut command = in_ns(ns, binary("tertulia-chat"));
    command.env("XDG_DATA_HOME", home.path()).args([
        invite,
        "--nick",
        nick,
        "--json",
        "--give-up-after",
        "3",
    ]);
    let process = NsProcess::spawn_with_stdin(&format!("{nick} in {ns}"), command)?;
    Ok((process, home))
}

fn json_type(line: &str, kind: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["type"] == kind)
}

/// The router's UPnP mappings as `upnpc -l` lists them from `ns`.
fn upnp_list(ns: &str) -> Result<String, String> {
    let out = in_ns(ns, "upnpc")
        .args(["-i", "-u", &upnp_root(), "-l"])
        .output()
        .map_err(|e| format!("upnpc: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a TCP client in the `wan` namespace gets at the router's external address: the
/// first bytes the server sends (a Tertulia room opens with its Hello, "TRTL"), or the error.
fn probe_from_wan(port: u16) -> Result<serde_json::Value, String> {
    let out = netlab_py("wan")
        .args([
            "probe-tcp",
            "--host",
            ROUTER_WAN,
            "--port",
            &port.to_string(),
        ])
        .output()
        .map_err(|e| format!("probe-tcp: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("probe-tcp printed {text:?}: {e}"))
}

fn room_answers_from_wan(port: u16) -> Result<bool, String> {
    let probe = probe_from_wan(port)?;
    Ok(probe["event"] == "received" && probe["data"].as_str().is_some_and(|d| d.contains("TRTL")))
}

/// SIGTERM: the server says it removed the mapping and exits 0; the WAN side is refused.
fn stop_and_check_removed(server: &mut NsProcess, port: u16) -> Result<(), Failed> {
    let status = server.terminate()?;
    if !status.success() {
        return Err(format!("exit {status}\n{}", server.transcript()).into());
    }
    if !server
        .seen
        .iter()
        .any(|l| l == "internet: port mapping removed")
    {
        return Err(format!("no removal reported\n{}", server.transcript()).into());
    }
    let probe = probe_from_wan(port)?;
    if probe["event"] != "failed" {
        return Err(format!("the WAN still reaches port {port} after SIGTERM: {probe}").into());
    }
    Ok(())
}

/// UPnP: the mapping is on the router, a member on the WAN joins through 203.0.113.1 with the
/// internet invite code and chats with one on the LAN; the self-check is honest about a router
/// that does not loop connections back; SIGTERM deletes the mapping.
fn upnp_mapping_lets_a_wan_member_join_and_goes_on_sigterm() -> Result<(), Failed> {
    let port = 5711;
    let mut server = host("lanA", port, &["--internet-via", "upnp"])?;
    let lan_invite = code_after(&mut server, "invite code:")?;
    let reachable = server.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable") || l.starts_with("internet: not reachable")
    })?;
    let expected = format!(
        "internet: reachable from the internet at {ROUTER_WAN}:{port} (UPnP, lease 3600 s)"
    );
    if reachable != expected {
        return Err(format!("{reachable:?} is not {expected:?}\n{}", server.transcript()).into());
    }
    let listed = upnp_list("lanA")?;
    if !listed.contains(&format!("TCP  {port}->{LAN_A}:{port}  'Tertulia'")) {
        return Err(format!("the router does not list the mapping:\n{listed}").into());
    }
    let wan_invite = code_after(&mut server, "invite code (internet):")?;
    if !wan_invite.starts_with(&format!("tertulia://{ROUTER_WAN}:{port}/")) {
        return Err(format!("internet invite {wan_invite}").into());
    }
    // miniupnpd's DNAT matches packets arriving on its WAN interface only: from the LAN the
    // external address is the router itself, so the check cannot confirm, and says so.
    let check = server.wait_line("self-check", LAB_WAIT, |l| {
        l.starts_with("internet: self-check")
    })?;
    if !check.contains("could not confirm") {
        return Err(format!("self-check without hairpin NAT: {check}").into());
    }

    let (mut ana, _ana_home) = member("lanA", &lan_invite, "Ana")?;
    ana.wait_line("Ana connected", LAB_WAIT, |l| json_type(l, "connected"))?;
    let (mut wan, _wan_home) = member("wan", &wan_invite, "Remota")?;
    wan.wait_line("Remota connected", LAB_WAIT, |l| json_type(l, "connected"))?;
    wan.write_line("hola desde fuera")?;
    ana.wait_line("the WAN member's message", LAB_WAIT, |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["type"] == "message" && v["text"] == "hola desde fuera")
    })?;
    wan.wait_line("the ack", LAB_WAIT, |l| json_type(l, "acked"))?;
    wan.close_stdin();
    let _ = wan.terminate();
    let _ = ana.terminate();

    stop_and_check_removed(&mut server, port)?;
    let listed = upnp_list("lanA")?;
    if listed.contains(&format!("{port}->")) {
        return Err(format!("still listed after SIGTERM:\n{listed}").into());
    }
    Ok(())
}

/// PCP (RFC 6887) against the same router: mapped, reachable from the WAN, deleted on SIGTERM
/// (PCP deletes only with the mapping's nonce, so this checks the nonce is kept).
fn pcp_mapping_is_reachable_and_deleted() -> Result<(), Failed> {
    mapped_by("pcp", "PCP", 5712)
}

/// NAT-PMP (RFC 6886), asked directly.
fn nat_pmp_mapping_is_reachable_and_deleted() -> Result<(), Failed> {
    mapped_by("nat-pmp", "NAT-PMP", 5713)
}

fn mapped_by(via: &str, method: &str, port: u16) -> Result<(), Failed> {
    if room_answers_from_wan(port)? {
        return Err(format!("port {port} already reachable before the server starts").into());
    }
    let mut server = host("lanA", port, &["--internet-via", via])?;
    let reachable = server.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable") || l.starts_with("internet: not reachable")
    })?;
    let expected = format!(
        "internet: reachable from the internet at {ROUTER_WAN}:{port} ({method}, lease 3600 s)"
    );
    if reachable != expected {
        return Err(format!("{reachable:?} is not {expected:?}\n{}", server.transcript()).into());
    }
    if !room_answers_from_wan(port)? {
        return Err(format!("the WAN does not reach the room at {ROUTER_WAN}:{port}").into());
    }
    stop_and_check_removed(&mut server, port)
}

/// A 4 s lease is renewed every 2 s: after three renewals (well past the first lease's end,
/// when miniupnpd deletes an expired mapping within a second) the room is still reachable.
fn a_short_lease_is_renewed_while_hosting() -> Result<(), Failed> {
    renewed_by("upnp", 5714)
}

/// The same over PCP, whose renewals must carry the mapping's nonce (else NOT_AUTHORIZED).
fn a_short_pcp_lease_is_renewed_with_its_nonce() -> Result<(), Failed> {
    renewed_by("pcp", 5717)
}

fn renewed_by(via: &str, port: u16) -> Result<(), Failed> {
    let mut server = host(
        "lanA",
        port,
        &["--internet-via", via, "--internet-lease-secs", "4"],
    )?;
    server.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable")
    })?;
    // Every line is seen once by the predicate (those already read, then new ones).
    let renewals = std::cell::Cell::new(0);
    server.wait_line("three renewals", LAB_WAIT, |l| {
        if l == format!("internet: lease renewed at {ROUTER_WAN}:{port} (lease 4 s)") {
            renewals.set(renewals.get() + 1);
        }
        renewals.get() >= 3
    })?;
    if !room_answers_from_wan(port)? {
        return Err(format!(
            "not reachable after three renewals of a 4 s lease\n{}",
            server.transcript()
        )
        .into());
    }
    stop_and_check_removed(&mut server, port)
}

/// Drops UPnP (SSDP, its HTTP port) and NAT-PMP/PCP from lanB at the router, and removes the
/// rule when dropped: a router whose port mapping is off, for lanB only (lanA's trials go on).
struct DeafRouterForLanB;

const DEAF_TABLE: &str = "tertulia_reach_deaf";

impl DeafRouterForLanB {
    fn install() -> Result<Self, String> {
        let rules = format!(
            "table inet {DEAF_TABLE} {{\n chain input {{\n  type filter hook input priority -10; policy accept;\n  ip saddr {LAN_B} udp dport {{ 1900, 5351 }} drop\n  ip saddr {LAN_B} tcp dport 5000 drop\n }}\n}}\n"
        );
        let mut nft = in_ns("router", "nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        nft.stdin
            .take()
            .ok_or("nft stdin")?
            .write_all(rules.as_bytes())
            .map_err(|e| e.to_string())?;
        let status = nft.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("nft -f failed: {status}"));
        }
        Ok(Self)
    }
}

impl Drop for DeafRouterForLanB {
    fn drop(&mut self) {
        let _ = in_ns("router", "nft")
            .args(["delete", "table", "inet", DEAF_TABLE])
            .status();
    }
}

/// A router that answers neither UPnP nor PCP/NAT-PMP: the server says so and what to do by
/// hand (forward the port to its LAN address), and a member on the LAN still joins and chats.
fn a_router_that_does_not_answer_gives_the_advice_and_the_lan_still_works() -> Result<(), Failed> {
    let port = 5715;
    let _one = lan_ssdp();
    let _deaf = DeafRouterForLanB::install()?;
    let mut server = host("lanB", port, &[])?;
    let invite = code_after(&mut server, "invite code:")?;
    let line = server.wait_line("the outcome", LAB_WAIT, |l| {
        l.starts_with("internet: reachable") || l.starts_with("internet: not reachable")
    })?;
    let expected = format!(
        "internet: not reachable from the internet: your router did not answer UPnP, PCP or NAT-PMP; \
         forward TCP port {port} to {LAN_B} by hand in your router's settings, or use a VPN such as Tailscale"
    );
    if line != expected {
        return Err(format!("{line:?} is not {expected:?}\n{}", server.transcript()).into());
    }
    server.wait_line("LAN hosting goes on", LAB_WAIT, |l| {
        l == "internet: the room still serves your local network"
    })?;
    let (mut ana, _home) = member("lanA", &invite, "Ana")?;
    ana.wait_line("Ana connected", LAB_WAIT, |l| json_type(l, "connected"))?;
    ana.write_line("sin router")?;
    ana.wait_line("the ack", LAB_WAIT, |l| json_type(l, "acked"))?;
    ana.close_stdin();
    let _ = ana.terminate();
    let status = server.terminate()?;
    if !status.success() {
        return Err(format!("exit {status}\n{}", server.transcript()).into());
    }
    Ok(())
}

/// `--internet` on a loopback listener is a contradiction (exit 2), not a silent no-op.
fn internet_on_loopback_is_refused() -> Result<(), Failed> {
    let out = in_ns("lanA", binary("tertulia-server"))
        .args(["--in-memory", "--generate-passphrase", "--internet"])
        .args(["--listen", "127.0.0.1:5716"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2)
        || !stderr.contains("--internet needs a listener others can reach")
    {
        return Err(format!("{:?}: {stderr}", out.status.code()).into());
    }
    Ok(())
}

/// The app's `internet-status` path (src-tauri/tests/internet_lab.rs), run inside lanA: its
/// test binary, the newest build of it next to this one (`cargo test --workspace` builds it;
/// alone: `cargo test -p tertulia-app --test internet_lab --no-run`).
fn app_lab_binary() -> Option<std::path::PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    std::fs::read_dir(&deps)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("internet_lab-") && !name.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

fn the_app_maps_the_port_and_deletes_it_on_stop() -> Result<(), Failed> {
    let binary = app_lab_binary().ok_or("the app's internet_lab test binary is not built")?;
    let mut command = in_ns("lanA", &binary);
    command
        .args([
            "--ignored",
            "--exact",
            "hosting_with_internet_in_the_lab",
            "--nocapture",
        ])
        .env("NETLAB_PY", netlab::NETLAB_PY)
        .env("NETLAB_PYTHON", netlab::python());
    let mut run = NsProcess::spawn("the app's internet_lab test in lanA", command)?;
    let status = run.wait_exit(LAB_WAIT * 2)?;
    let passed = run.seen.iter().any(|l| l.contains("1 passed"));
    if !status.success() || !passed {
        return Err(format!(
            "{status}
{}",
            run.transcript()
        )
        .into());
    }
    Ok(())
}

/// A host killed with SIGKILL cannot delete its mapping; it recorded it in its data
/// directory, and the next start from there (on another port) deletes it first: the router
/// lists the new port and not the old one, and SIGTERM then deletes the new one and the
/// record.
fn a_mapping_left_by_a_killed_host_is_deleted_at_the_next_start() -> Result<(), Failed> {
    let (old, new) = (5719, 5720);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secrets = tempfile::tempdir().map_err(|e| e.to_string())?;
    let passphrase = secrets.path().join("passphrase");
    std::fs::write(&passphrase, "quince-membrillos-en-otono\n").map_err(|e| e.to_string())?;
    let stored = Some((dir.path(), passphrase.as_path()));
    let record = dir.path().join("portmap.json");
    let mut first = host_storing("lanA", old, stored, &["--internet-via", "upnp"])?;
    first.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable")
    })?;
    if !upnp_list("lanA")?.contains(&format!("TCP  {old}->{LAN_A}:{old}")) {
        return Err("the first mapping is not listed".into());
    }
    if !record.exists() {
        return Err(format!("no record of the mapping in {}", dir.path().display()).into());
    }
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.pid().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !killed.success() {
        return Err("kill -KILL failed".into());
    }
    first.wait_exit(LAB_WAIT)?;
    if !upnp_list("lanA")?.contains(&format!("TCP  {old}->{LAN_A}:{old}")) {
        return Err("the mapping went with SIGKILL: nothing left to clean up".into());
    }
    let mut second = host_storing("lanA", new, stored, &["--internet-via", "upnp"])?;
    second.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable")
    })?;
    let listed = upnp_list("lanA")?;
    if listed.contains(&format!("{old}->"))
        || !listed.contains(&format!("TCP  {new}->{LAN_A}:{new}"))
    {
        return Err(format!(
            "after the restart the router lists:\n{listed}\n{}",
            second.transcript()
        )
        .into());
    }
    stop_and_check_removed(&mut second, new)?;
    let listed = upnp_list("lanA")?;
    if listed.contains(&format!("{new}->")) {
        return Err(format!("still listed after SIGTERM:\n{listed}").into());
    }
    if record.exists() {
        return Err("the record outlived the mapping".into());
    }
    Ok(())
}

/// A mapping `upnpc` in lanA adds for another program of lanA's (miniupnpd's secure mode lets
/// a LAN host map only to itself), deleted when dropped, whatever the trial's outcome.
struct OtherMapping {
    external: u16,
}

impl OtherMapping {
    const DESCRIPTION: &'static str = "other";
    const INTERNAL_PORT: u16 = 9999;

    fn add(external: u16) -> Result<Self, String> {
        let guard = Self { external };
        let out = in_ns("lanA", "upnpc")
            .args([
                "-i",
                "-u",
                &upnp_root(),
                "-e",
                Self::DESCRIPTION,
                "-a",
                LAN_A,
            ])
            .arg(Self::INTERNAL_PORT.to_string())
            .arg(external.to_string())
            .arg("TCP")
            .output()
            .map_err(|e| format!("upnpc -a: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "upnpc -a failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        Ok(guard)
    }

    fn listing(&self) -> String {
        format!(
            "TCP  {}->{LAN_A}:{}  '{}'",
            self.external,
            Self::INTERNAL_PORT,
            Self::DESCRIPTION
        )
    }
}

impl Drop for OtherMapping {
    fn drop(&mut self) {
        let _ = upnp_delete("lanA", self.external);
    }
}

/// `upnpc -d PORT TCP` from `ns`.
fn upnp_delete(ns: &str, external: u16) -> Result<(), String> {
    let status = in_ns(ns, "upnpc")
        .args(["-i", "-u", &upnp_root(), "-d"])
        .arg(external.to_string())
        .arg("TCP")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("upnpc -d: {e}"))?;
    if !status.success() {
        return Err(format!("upnpc -d {external} failed: {status}"));
    }
    Ok(())
}

/// A host killed with SIGKILL recorded its mapping; someone deletes it and another program of
/// the same computer maps that external port since: the next start from that data directory
/// asks the router what holds the port, leaves the other's mapping alone and says so.
fn another_mapping_on_the_recorded_port_is_left_alone_at_the_next_start() -> Result<(), Failed> {
    let (old, new) = (5721, 5722);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secrets = tempfile::tempdir().map_err(|e| e.to_string())?;
    let passphrase = secrets.path().join("passphrase");
    std::fs::write(&passphrase, "quince-membrillos-en-otono\n").map_err(|e| e.to_string())?;
    let stored = Some((dir.path(), passphrase.as_path()));
    let mut first = host_storing("lanA", old, stored, &["--internet-via", "upnp"])?;
    first.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable")
    })?;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.pid().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !killed.success() {
        return Err("kill -KILL failed".into());
    }
    first.wait_exit(LAB_WAIT)?;
    if !dir.path().join("portmap.json").exists() {
        return Err("no record of the mapping left by the killed host".into());
    }
    upnp_delete("lanA", old)?;
    let other = OtherMapping::add(old)?;
    if !upnp_list("lanA")?.contains(&other.listing()) {
        return Err("the other mapping is not listed".into());
    }
    let mut second = host_storing("lanA", new, stored, &["--internet-via", "upnp"])?;
    second.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable")
    })?;
    let listed = upnp_list("lanA")?;
    if !listed.contains(&other.listing()) {
        return Err(format!(
            "the other mapping was deleted; the router lists:\n{listed}\n{}",
            second.transcript()
        )
        .into());
    }
    if !second.stderr().contains("that mapping was left alone") {
        return Err(format!(
            "the host did not say it left it alone\n{}",
            second.transcript()
        )
        .into());
    }
    stop_and_check_removed(&mut second, new)?;
    if !upnp_list("lanA")?.contains(&other.listing()) {
        return Err("the other mapping went with the host's SIGTERM".into());
    }
    Ok(())
}

/// Trials that put a fake router on the LAN, and the one whose host in lanB must hear no
/// UPnP at all, run one at a time (a fake answers every M-SEARCH it hears, its own
/// namespace's too).
static LAN_SSDP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lan_ssdp() -> std::sync::MutexGuard<'static, ()> {
    LAN_SSDP.lock().unwrap_or_else(|e| e.into_inner())
}

/// The external address a fake router on the LAN claims (TEST-NET-2, never the lab's).
const FAKE_EXTERNAL: &str = "198.51.100.66";

/// A device in `ns` that answers SSDP at once and claims to be the router (netlab.py
/// fake-igd), until dropped.
fn fake_igd(ns: &str, bind: &str) -> Result<NsProcess, String> {
    let mut command = netlab_py(ns);
    command.args([
        "fake-igd",
        "--bind",
        bind,
        "--external-ip",
        FAKE_EXTERNAL,
        "--lifetime",
        "120",
    ]);
    let mut fake = NsProcess::spawn(&format!("fake IGD in {ns}"), command)?;
    fake.wait_line("fake IGD listening", LAB_WAIT, |l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["event"] == "listening")
    })?;
    Ok(fake)
}

/// A device in lanB answers SSDP before the router does and claims the router's role with
/// another external address: the host in lanA asks its default gateway, maps on the real
/// miniupnpd (listed by `upnpc -l`), reports 203.0.113.1, never the fake's address, and a
/// member on the WAN joins through it.
fn a_lan_device_answering_ssdp_first_is_not_taken_for_the_router() -> Result<(), Failed> {
    let _one = lan_ssdp();
    let port = 5718;
    let mut fake = fake_igd("lanB", LAN_B)?;
    let mut server = host("lanA", port, &["--internet-via", "upnp"])?;
    let reachable = server.wait_line("reachable", LAB_WAIT, |l| {
        l.starts_with("internet: reachable") || l.starts_with("internet: not reachable")
    })?;
    let expected = format!(
        "internet: reachable from the internet at {ROUTER_WAN}:{port} (UPnP, lease 3600 s)"
    );
    if reachable != expected {
        return Err(format!(
            "{reachable:?} is not {expected:?}\n{}\n{}",
            server.transcript(),
            fake.transcript()
        )
        .into());
    }
    let listed = upnp_list("lanA")?;
    if !listed.contains(&format!("TCP  {port}->{LAN_A}:{port}  'Tertulia'")) {
        return Err(format!("the router does not list the mapping:\n{listed}").into());
    }
    let wan_invite = code_after(&mut server, "invite code (internet):")?;
    if !wan_invite.starts_with(&format!("tertulia://{ROUTER_WAN}:{port}/")) {
        return Err(format!("internet invite {wan_invite}").into());
    }
    let (mut wan, _wan_home) = member("wan", &wan_invite, "Remota")?;
    wan.wait_line("Remota connected", LAB_WAIT, |l| json_type(l, "connected"))?;
    wan.close_stdin();
    let _ = wan.terminate();
    stop_and_check_removed(&mut server, port)?;
    let _ = fake.terminate();
    if let Some(l) = server.seen.iter().find(|l| l.contains(FAKE_EXTERNAL)) {
        return Err(format!("the fake's address was shown: {l}").into());
    }
    if let Some(l) = fake
        .seen
        .iter()
        .find(|l| l.contains("AddPortMapping") || l.contains("GetExternalIPAddress"))
    {
        return Err(format!("the host asked the fake router: {l}").into());
    }
    Ok(())
}

fn main() {
    let app_trial = Trial::test(
        "the_app_maps_the_port_and_deletes_it_on_stop",
        the_app_maps_the_port_and_deletes_it_on_stop,
    );
    // Not built (this file run on its own): ignored with the reason, unless the lab is required.
    let app_trial = if app_lab_binary().is_none() && !netlab::lab_required() {
        eprintln!("the_app_maps_the_port_and_deletes_it_on_stop IGNORED: build the app's test first (cargo test -p tertulia-app --test internet_lab --no-run)");
        app_trial.with_ignored_flag(true)
    } else {
        app_trial
    };
    netlab::run_trials(vec![
        app_trial,
        Trial::test(
            "upnp_mapping_lets_a_wan_member_join_and_goes_on_sigterm",
            upnp_mapping_lets_a_wan_member_join_and_goes_on_sigterm,
        ),
        Trial::test(
            "pcp_mapping_is_reachable_and_deleted",
            pcp_mapping_is_reachable_and_deleted,
        ),
        Trial::test(
            "nat_pmp_mapping_is_reachable_and_deleted",
            nat_pmp_mapping_is_reachable_and_deleted,
        ),
        Trial::test(
            "a_short_lease_is_renewed_while_hosting",
            a_short_lease_is_renewed_while_hosting,
        ),
        Trial::test(
            "a_short_pcp_lease_is_renewed_with_its_nonce",
            a_short_pcp_lease_is_renewed_with_its_nonce,
        ),
        Trial::test(
            "a_router_that_does_not_answer_gives_the_advice_and_the_lan_still_works",
            a_router_that_does_not_answer_gives_the_advice_and_the_lan_still_works,
        ),
        Trial::test(
            "a_lan_device_answering_ssdp_first_is_not_taken_for_the_router",
            a_lan_device_answering_ssdp_first_is_not_taken_for_the_router,
        ),
        Trial::test(
            "a_mapping_left_by_a_killed_host_is_deleted_at_the_next_start",
            a_mapping_left_by_a_killed_host_is_deleted_at_the_next_start,
        ),
        Trial::test(
            "another_mapping_on_the_recorded_port_is_left_alone_at_the_next_start",
            another_mapping_on_the_recorded_port_is_left_alone_at_the_next_start,
        ),
        Trial::test(
            "internet_on_loopback_is_refused",
            internet_on_loopback_is_refused,
        ),
    ]);
}
