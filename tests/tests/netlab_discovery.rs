//! Finding rooms on the LAN (docs/PROTOCOL.md §14), in the network lab (tests/src/netlab.rs):
//! real `tertulia-server --announce` / `tertulia-chat --discover` processes in the namespaces
//! lanA and lanB, checked against independent DNS-SD stacks (python-zeroconf, Avahi) both
//! ways, with hostile announcements, the goodbye on SIGTERM and Ctrl-C, and a member joining
//! the address it discovered. Needs root; without the lab every trial is reported ignored
//! with the reason (`NETLAB_REQUIRED=1`, set by `make test`, makes that a failure).
//!
//! Every trial uses its own room names (with this process's id) and ports: they share one
//! lab, and every browser sees every room on the LAN.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tertulia_e2e::binary;
use tertulia_e2e::netlab::{
    self, avahi_available, in_ns, netlab_py, AvahiDaemon, Failed, NsProcess, Trial, LAB_WAIT,
    LAN_A, LAN_B, NETLAB_PY,
};

type Outcome = Result<(), Failed>;

const PASSPHRASE: &str = "correct horse battery staple";

fn token() -> String {
    format!("t{}", std::process::id())
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

/// A `tertulia-server` in `ns` on `0.0.0.0:PORT` (in memory) with `extra` arguments, once it
/// prints its host identity (and, with `--announce`, once it says it is announced): the
/// process and the fingerprint.
fn start_server(ns: &str, port: u16, extra: &[&str]) -> Result<(NsProcess, String), String> {
    start_server_on(ns, &format!("0.0.0.0:{port}"), extra)
}

/// [`start_server`] listening on `listen`.
fn start_server_on(ns: &str, listen: &str, extra: &[&str]) -> Result<(NsProcess, String), String> {
    let mut command = in_ns(ns, binary("tertulia-server"));
    command
        .args(["--listen", listen, "--in-memory"])
        .args(extra)
        .env("TERTULIA_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "info");
    let mut server = NsProcess::spawn(&format!("tertulia-server in {ns}"), command)?;
    let line = server.wait_line("the host identity", LAB_WAIT, |l| {
        l.starts_with("host identity: ")
    })?;
    let fingerprint = line.trim_start_matches("host identity: ").to_owned();
    if extra.contains(&"--announce") {
        server.wait_line("the announcement", LAB_WAIT, |l| {
            l.starts_with("announced on the LAN as")
        })?;
    }
    Ok((server, fingerprint))
}

/// `tertulia-chat --discover --json` in `ns`, listening until stopped.
fn discover(ns: &str) -> Result<NsProcess, String> {
    let mut command = in_ns(ns, binary("tertulia-chat"));
    command.args(["--discover", "--json", "--discover-secs", "600"]);
    NsProcess::spawn(&format!("tertulia-chat --discover in {ns}"), command)
}

/// python-zeroconf's browser (tests/netlab/netlab.py) in `ns`.
fn zeroconf_browser(ns: &str) -> Result<NsProcess, String> {
    let mut command = netlab_py(ns);
    command.args(["mdns-browse", "--lifetime", "300"]);
    let mut browser = NsProcess::spawn(&format!("python-zeroconf browser in {ns}"), command)?;
    browser.wait_line("the browser to start", LAB_WAIT, |l| {
        json(l)["event"] == "browsing"
    })?;
    Ok(browser)
}

/// The first `room_found` line for `room` (by its name) from a `--discover --json` process.
fn wait_found(discoverer: &mut NsProcess, room: &str) -> Result<Value, String> {
    let line = discoverer.wait_line(&format!("room_found for {room:?}"), LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "room_found" && v["room"] == room
    })?;
    Ok(json(&line))
}

/// A server announced in lanA is found from lanB by Tertulia and by python-zeroconf with
/// exactly the announced records (TXT room, v, fp and nothing else: no passphrase), and
/// both see it go when the server gets SIGTERM (goodbye packets).
fn announced_room_is_found_by_tertulia_and_zeroconf_and_gone_after_sigterm() -> Outcome {
    let room = format!("Sala de Ana {}", token());
    let mut zeroconf = zeroconf_browser("lanB")?;
    let mut discoverer = discover("lanB")?;
    let (mut server, fingerprint) =
        start_server("lanA", 5611, &["--announce", "--room-name", &room])?;

    let found = wait_found(&mut discoverer, &room)?;
    let expect = |what: &str, ok: bool| -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {found}"))
        }
    };
    expect("address", found["address"] == format!("{LAN_A}:5611"))?;
    expect(
        "addresses",
        found["addresses"] == serde_json::json!([LAN_A]),
    )?;
    expect("port", found["port"] == 5611)?;
    expect(
        "a host name of the room's own",
        found["host"]
            .as_str()
            .is_some_and(|h| h.ends_with("-5611.local")),
    )?;
    expect("fingerprint", found["fingerprint"] == fingerprint.as_str())?;
    expect(
        "version",
        found["version"] == tertulia_core::hello::PROTOCOL_VERSION,
    )?;
    let instance = found["instance"].as_str().unwrap_or_default().to_owned();
    expect(
        "instance",
        instance == format!("{room}._tertulia._tcp.local."),
    )?;

    let added = zeroconf.wait_line("zeroconf to resolve the room", LAB_WAIT, |l| {
        let v = json(l);
        v["event"] == "added" && v["txt"]["room"] == room.as_str()
    })?;
    let added = json(&added);
    let keys: BTreeSet<&str> = added["txt"]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if keys != BTreeSet::from(["fp", "room", "v"]) {
        return Err(format!("TXT keys should be exactly fp, room, v: {added}").into());
    }
    let version = tertulia_core::hello::PROTOCOL_VERSION.to_string();
    if added["txt"]["fp"] != fingerprint.as_str()
        || added["txt"]["v"] != version.as_str()
        || added["port"] != 5611
        || added["addresses"] != serde_json::json!([LAN_A])
    {
        return Err(format!("zeroconf resolved other records: {added}").into());
    }
    if added.to_string().contains(PASSPHRASE) {
        return Err(format!("the passphrase was announced: {added}").into());
    }

    let status = server.terminate()?;
    if !status.success() {
        return Err(format!("server exit {status}\n{}", server.transcript()).into());
    }
    if !server
        .seen
        .iter()
        .any(|l| l == "no longer announced on the LAN")
    {
        return Err(format!("no withdrawal on SIGTERM\n{}", server.transcript()).into());
    }
    discoverer.wait_line("room_lost after SIGTERM", LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "room_lost" && v["instance"] == instance.as_str()
    })?;
    zeroconf.wait_line("zeroconf to see the room removed", LAB_WAIT, |l| {
        let v = json(l);
        v["event"] == "removed" && v["name"] == instance.as_str()
    })?;
    Ok(())
}

/// Avahi (a private avahi-daemon in lanB) resolves the room Tertulia announces in lanA.
fn avahi_resolves_the_announced_room() -> Outcome {
    let room = format!("Avahi-{}", token());
    let avahi = AvahiDaemon::start("lanB")?;
    let (mut server, _) = start_server("lanA", 5612, &["--announce", "--room-name", &room])?;
    // -r resolve, -p parsable, -t terminate after the cache is dumped; repeated until it
    // lists the room (a browse started just before the announcement can miss it).
    let deadline = std::time::Instant::now() + LAB_WAIT;
    loop {
        let mut browse = avahi.command("lanB", "timeout");
        browse.args(["20", "avahi-browse", "-rpt", "_tertulia._tcp"]);
        let mut browse = NsProcess::spawn("avahi-browse in lanB", browse)?;
        browse.wait_exit(LAB_WAIT)?;
        let hit = browse
            .seen
            .iter()
            .find(|l| l.starts_with("=;") && l.contains(&room) && l.contains(";IPv4;"))
            .cloned();
        if let Some(line) = hit {
            // =;IFACE;IPv4;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;TXT
            let fields: Vec<&str> = line.splitn(10, ';').collect();
            let txt = fields.get(9).copied().unwrap_or_default();
            if fields.get(7) != Some(&LAN_A)
                || fields.get(8) != Some(&"5612")
                || !txt.contains(&format!("\"room={room}\""))
                || !txt.contains("\"v=2\"")
                || !txt.contains("\"fp=")
            {
                return Err(format!("avahi resolved other records: {line}").into());
            }
            break;
        }
        if std::time::Instant::now() > deadline {
            let last = browse.transcript();
            return Err(format!("avahi-browse never resolved {room:?}\n{last}").into());
        }
    }
    server.terminate()?;
    drop(avahi);
    Ok(())
}

/// Tertulia lists a room that python-zeroconf publishes in lanA (an independent publisher),
/// and drops it when the publisher withdraws it.
fn tertulia_finds_a_room_published_by_zeroconf() -> Outcome {
    let room = format!("Sala de Bea {}", token());
    let fp = "6521-fc47-c9b6-6c07-b6a2-96fc";
    let mut discoverer = discover("lanB")?;
    let mut publisher = netlab_py("lanA");
    publisher.args([
        "mdns-publish",
        "--name",
        &room,
        "--host",
        "lanA",
        "--address",
        LAN_A,
        "--port",
        "5613",
        "--txt",
        &format!("room={room}"),
        "--txt",
        "v=2",
        "--txt",
        // Any accepted spelling; Tertulia lists it canonical.
        "fp=6521FC47C9B66C07B6A296FC",
        "--lifetime",
        "300",
    ]);
    let mut publisher = NsProcess::spawn("python-zeroconf publisher in lanA", publisher)?;
    let found = wait_found(&mut discoverer, &room)?;
    if found["address"] != format!("{LAN_A}:5613")
        || found["fingerprint"] != fp
        || found["version"] != 2
        || found["host"] != "lanA.local"
    {
        return Err(format!("listed as {found}").into());
    }
    publisher.terminate()?;
    discoverer.wait_line("room_lost after the publisher's goodbye", LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "room_lost" && v["instance"] == format!("{room}._tertulia._tcp.local.")
    })?;
    Ok(())
}

/// Hostile announcements (terminal escapes, bidi overrides, NUL, oversized records, missing
/// or invalid keys) from a python publisher: the valid ones are listed with their text
/// cleaned and bounded, the others are ignored, and neither the JSON nor the terminal
/// output carries a control or bidi character.
fn hostile_announcements_are_shown_inertly_or_ignored() -> Outcome {
    let tok = token();
    let mut zeroconf = zeroconf_browser("lanB")?;
    let mut discoverer = discover("lanB")?;
    let mut terminal = in_ns("lanB", binary("tertulia-chat"));
    terminal.args(["--discover", "--discover-secs", "600", "--lang", "en"]);
    let mut terminal = NsProcess::spawn("tertulia-chat --discover (text) in lanB", terminal)?;
    let mut publisher = in_ns("lanA", netlab::python());
    publisher
        .arg(NETLAB_PY.replace("netlab.py", "hostile_mdns.py"))
        .args(["--token", &tok, "--host", "lanA", "--address", LAN_A])
        .args(["--port", "5614", "--lifetime", "300"]);
    let mut publisher = NsProcess::spawn("hostile publisher in lanA", publisher)?;
    publisher.wait_line("all registered", LAB_WAIT, |l| {
        json(l)["event"] == "all-registered"
    })?;

    // The independent browser sees every one of them on the wire, valid or not.
    for name in ["ctl", "huge", "noroom", "nov", "v999", "empty"] {
        let full = format!("{name}-{tok}._tertulia._tcp.local.");
        zeroconf.wait_line(&format!("zeroconf to see {full}"), LAB_WAIT, |l| {
            let v = json(l);
            (v["event"] == "added" || v["event"] == "added-unresolved") && v["name"] == full
        })?;
    }
    let ctl = discoverer.wait_line("the ctl- room", LAB_WAIT, |l| {
        json(l)["instance"] == format!("ctl-{tok}._tertulia._tcp.local.")
    })?;
    let ctl = json(&ctl);
    if ctl["room"] != "[2JSala evil x" || ctl["fingerprint"] != "" {
        return Err(format!("control characters not cleaned: {ctl}").into());
    }
    let huge = discoverer.wait_line("the huge- room", LAB_WAIT, |l| {
        json(l)["instance"] == format!("huge-{tok}._tertulia._tcp.local.")
    })?;
    let huge = json(&huge);
    if huge["room"] != "A".repeat(63) || huge["fingerprint"] != "6521-fc47-c9b6-6c07-b6a2-96fc" {
        return Err(format!("huge record not bounded: {huge}").into());
    }
    let noroom = discoverer.wait_line("the noroom- room", LAB_WAIT, |l| {
        json(l)["instance"] == format!("noroom-{tok}._tertulia._tcp.local.")
    })?;
    if json(&noroom)["room"] != format!("noroom-{tok}") {
        return Err(format!("a room without a name shows its instance: {noroom}").into());
    }
    terminal.wait_line("the ctl- room on the terminal", LAB_WAIT, |l| {
        l.contains("[2JSala evil x")
    })?;
    terminal.wait_line("the huge- room on the terminal", LAB_WAIT, |l| {
        l.contains(&"A".repeat(63))
    })?;

    // By now zeroconf resolved the invalid ones: Tertulia must not have listed them.
    for seen in discoverer.seen.iter().chain(terminal.seen.iter()) {
        for bad in [
            format!("nov-{tok}"),
            format!("v999-{tok}"),
            format!("empty-{tok}"),
        ] {
            if seen.contains(&bad) {
                return Err(format!("listed a record without a valid version: {seen}").into());
            }
        }
        if seen.chars().any(|c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}')
        }) {
            return Err(format!("a control or bidi character reached the output: {seen:?}").into());
        }
    }
    // The browser survived all of it and still sees withdrawals.
    publisher.terminate()?;
    discoverer.wait_line("the hostile rooms withdrawn", LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "room_lost" && v["instance"] == format!("huge-{tok}._tertulia._tcp.local.")
    })?;
    if discoverer.exited().is_some() || terminal.exited().is_some() {
        return Err("a discoverer died".into());
    }
    Ok(())
}

/// A member in lanB discovers the room, joins the address (and host identity) it found and
/// chats with a member in lanA; the host stopped with Ctrl-C (SIGINT) withdraws the room.
fn a_member_joins_the_discovered_room_and_chats() -> Outcome {
    let room = format!("Tertulia {}", token());
    let mut zeroconf = zeroconf_browser("lanB")?;
    let (mut server, _) = start_server("lanA", 5615, &["--announce", "--room-name", &room])?;
    let mut discoverer = discover("lanB")?;
    let found = wait_found(&mut discoverer, &room)?;
    let address = found["address"].as_str().unwrap_or_default().to_owned();
    let fingerprint = found["fingerprint"].as_str().unwrap_or_default().to_owned();
    // The invite code form makes the client insist on the announced identity.
    let passphrase_encoded = PASSPHRASE.replace(' ', "%20");
    let invite = format!("tertulia://{address}/{fingerprint}#{passphrase_encoded}");
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let member = |ns: &str, target: &str, nick: &str| -> Result<NsProcess, String> {
        let dir = scratch.path().join(nick);
        std::fs::create_dir_all(dir.join("downloads")).map_err(|e| e.to_string())?;
        let mut command = in_ns(ns, binary("tertulia-chat"));
        command
            .args([target, "--nick", nick, "--json"])
            .arg("--known-hosts")
            .arg(dir.join("known_hosts"))
            .arg("--download-dir")
            .arg(dir.join("downloads"))
            .env("TERTULIA_PASSPHRASE", PASSPHRASE)
            .env("XDG_DATA_HOME", &dir);
        NsProcess::spawn_with_stdin(&format!("{nick} in {ns}"), command)
    };
    let mut ana = member("lanA", &format!("{LAN_A}:5615"), "ana")?;
    let mut bea = member("lanB", &invite, "bea")?;
    for m in [&mut ana, &mut bea] {
        m.wait_line("connected", LAB_WAIT, |l| json(l)["type"] == "connected")?;
    }
    bea.write_line("hola desde lanB")?;
    ana.wait_line("bea's message", LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "message" && v["from"] == "bea" && v["text"] == "hola desde lanB"
    })?;
    ana.write_line("hola, bea")?;
    bea.wait_line("ana's reply", LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "message" && v["from"] == "ana" && v["text"] == "hola, bea"
    })?;
    for m in [&mut ana, &mut bea] {
        m.close_stdin();
        m.wait_exit(LAB_WAIT)?;
    }
    // Ctrl-C is SIGINT.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &server.pid().to_string()])
        .status();
    let status = server.wait_exit(LAB_WAIT)?;
    if !status.success() {
        return Err(format!("server exit {status}\n{}", server.transcript()).into());
    }
    let instance = format!("{room}._tertulia._tcp.local.");
    discoverer.wait_line("room_lost after Ctrl-C", LAB_WAIT, |l| {
        let v = json(l);
        v["type"] == "room_lost" && v["instance"] == instance.as_str()
    })?;
    // python-zeroconf drops a room only on its goodbye (or after 75 minutes).
    zeroconf.wait_line("zeroconf to see the room removed", LAB_WAIT, |l| {
        let v = json(l);
        v["event"] == "removed" && v["name"] == instance.as_str()
    })?;
    Ok(())
}

/// Two rooms on one host: each has a host name of its own, so stopping one (its goodbye
/// withdraws its address records) does not make browsers drop the other.
fn two_rooms_on_one_host_stop_independently() -> Outcome {
    let tok = token();
    let mut discoverer = discover("lanB")?;
    let (first_name, second_name) = (format!("First {tok}"), format!("Second {tok}"));
    let (mut first, _) = start_server("lanA", 5619, &["--announce", "--room-name", &first_name])?;
    let (mut second, _) = start_server("lanA", 5620, &["--announce", "--room-name", &second_name])?;
    let a = wait_found(&mut discoverer, &first_name)?;
    let b = wait_found(&mut discoverer, &second_name)?;
    if a["host"] == b["host"] {
        return Err(format!("both rooms share the host name {}", a["host"]).into());
    }
    first.terminate()?;
    let lost = |name: &str| {
        let instance = format!("{name}._tertulia._tcp.local.");
        move |l: &str| {
            let v = json(l);
            v["type"] == "room_lost" && v["instance"] == instance.as_str()
        }
    };
    discoverer.wait_line("the first room lost", LAB_WAIT, lost(&first_name))?;
    let second_lost = lost(&second_name);
    if let Some(line) = discoverer.seen.iter().find(|l| second_lost(l)) {
        return Err(format!("the second room went with the first: {line}").into());
    }
    second.terminate()?;
    discoverer.wait_line("the second room lost", LAB_WAIT, lost(&second_name))?;
    Ok(())
}

/// A room listening on one LAN address is announced with that address (and only on its
/// interface); one listening on loopback is not announced at all, and still starts.
fn a_room_is_announced_where_it_listens() -> Outcome {
    let tok = token();
    let mut discoverer = discover("lanB")?;
    let room = format!("Specific {tok}");
    let (_specific, _) = start_server_on(
        "lanA",
        &format!("{LAN_A}:5621"),
        &["--announce", "--room-name", &room],
    )?;
    let found = wait_found(&mut discoverer, &room)?;
    if found["addresses"] != serde_json::json!([LAN_A]) || found["port"] != 5621 {
        return Err(format!("announced as {found}").into());
    }
    let mut local = in_ns("lanA", binary("tertulia-server"));
    local
        .args(["--listen", "127.0.0.1:5622", "--in-memory", "--announce"])
        .args(["--room-name", &format!("Loopback {tok}")])
        .env("TERTULIA_PASSPHRASE", PASSPHRASE);
    let mut local = NsProcess::spawn("tertulia-server on loopback", local)?;
    local.wait_line("the loopback room to start", LAB_WAIT, |l| {
        l.starts_with("host identity: ")
    })?;
    let deadline = std::time::Instant::now() + LAB_WAIT;
    while !local.stderr().contains("listens only on 127.0.0.1") {
        if std::time::Instant::now() > deadline || local.exited().is_some() {
            return Err(format!("no loopback warning\n{}", local.transcript()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !mdns_sockets_of(local.pid())?.is_empty() {
        return Err("the loopback room opened mDNS sockets".into());
    }
    local.terminate()?;
    Ok(())
}

/// The inodes of the UDP sockets bound to port 5353 (mDNS) that process `pid` holds.
fn mdns_sockets_of(pid: u32) -> Result<Vec<String>, String> {
    let mut bound = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .map_err(|e| format!("/proc/{pid}/net/{table}: {e}"))?;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[1].ends_with(":14E9") {
                bound.push(cols[9].to_owned());
            }
        }
    }
    let mut held = Vec::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| e.to_string())?;
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                if bound.iter().any(|b| b == inode) {
                    held.push(inode.to_owned());
                }
            }
        }
    }
    Ok(held)
}

/// A server without --announce opens no mDNS socket and is never listed, while one with it,
/// started after it on the same host, is.
fn a_server_announces_only_when_asked() -> Outcome {
    let tok = token();
    let mut discoverer = discover("lanB")?;
    let (quiet, _) = start_server("lanA", 5616, &[])?;
    let marker = format!("Marker {tok}");
    let (loud, _) = start_server("lanA", 5617, &["--announce", "--room-name", &marker])?;
    wait_found(&mut discoverer, &marker)?;
    let quiet_sockets = mdns_sockets_of(quiet.pid())?;
    let loud_sockets = mdns_sockets_of(loud.pid())?;
    if !quiet_sockets.is_empty() {
        return Err(
            format!("a server without --announce holds mDNS sockets {quiet_sockets:?}").into(),
        );
    }
    if loud_sockets.is_empty() {
        return Err("the announcing server holds no mDNS socket: the check sees nothing".into());
    }
    if let Some(line) = discoverer.seen.iter().find(|l| json(l)["port"] == 5616) {
        return Err(format!("the quiet server was listed: {line}").into());
    }
    Ok(())
}

/// With no interface but loopback (a fresh network namespace), `--discover` says so and
/// exits 1 instead of waiting forever, and `--announce` warns while the room still starts.
fn without_a_network_discover_fails_clearly_and_hosting_goes_on() -> Outcome {
    let mut discover = std::process::Command::new("unshare");
    discover.arg("--net").arg(binary("tertulia-chat")).args([
        "--discover",
        "--discover-secs",
        "0",
        "--lang",
        "en",
    ]);
    let mut discover = NsProcess::spawn("tertulia-chat --discover without a network", discover)?;
    let status = discover.wait_exit(LAB_WAIT)?;
    let stderr = discover.stderr();
    if status.code() != Some(1) || !stderr.contains("no network interface other than loopback") {
        return Err(format!("exit {status}\n{}", discover.transcript()).into());
    }
    let mut es = std::process::Command::new("unshare");
    es.arg("--net")
        .arg(binary("tertulia-chat"))
        .args(["--discover", "--lang", "es"]);
    let mut es = NsProcess::spawn("tertulia-chat --discover --lang es", es)?;
    es.wait_exit(LAB_WAIT)?;
    if !es.stderr().contains("bucle local") {
        return Err(format!("not in Spanish\n{}", es.transcript()).into());
    }

    let mut server = std::process::Command::new("unshare");
    server
        .arg("--net")
        .arg(binary("tertulia-server"))
        .args(["--listen", "0.0.0.0:5618", "--in-memory", "--announce"])
        .env("TERTULIA_PASSPHRASE", PASSPHRASE);
    let mut server = NsProcess::spawn("tertulia-server --announce without a network", server)?;
    server.wait_line("the room to start anyway", LAB_WAIT, |l| {
        l.starts_with("host identity: ")
    })?;
    let deadline = std::time::Instant::now() + LAB_WAIT;
    while !server
        .stderr()
        .contains("warning: the room is not announced on the LAN")
    {
        if std::time::Instant::now() > deadline || server.exited().is_some() {
            return Err(format!("no warning\n{}", server.transcript()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = server.terminate()?;
    if !status.success() {
        return Err(format!("exit {status}\n{}", server.transcript()).into());
    }
    Ok(())
}

/// Resident memory of process `pid`, in bytes (VmRSS).
fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// tests/netlab/mdns_flood.py MODE in lanB, sending from lanB's address.
fn flood(mode: &str, args: &[&str]) -> Result<NsProcess, String> {
    let mut command = in_ns("lanB", netlab::python());
    command
        .arg(NETLAB_PY.replace("netlab.py", "mdns_flood.py"))
        .args([mode, "--address", LAN_B, "--token", &token()])
        .args(args);
    NsProcess::spawn(&format!("mdns_flood.py {mode} in lanB"), command)
}

/// How much a flood may add to a process's resident memory: the bounded mDNS cache (4096
/// records, a few hundred bytes each here), its bounded timer heap and allocator slack.
const FLOOD_RSS_BOUND: u64 = 64 << 20;

/// Records a flood sends: 300 000 unique TXT records with TTL 4 000 000 s took an announcing
/// server from 14 MB to about 280 MB before mdns-sd's cache was bounded (vendor/mdns-sd).
const FLOOD_RECORDS: &str = "300000";

/// One machine in lanB announces 120 fake rooms (TTL 4 000 000 s, all resolving to one
/// address) before a real room starts in lanA, then floods 300 000 records nobody asked for:
/// the browser in lanB lists at most 4 of the fakes and the real room, which stays listed;
/// neither the announcing server nor the browser grows by more than [`FLOOD_RSS_BOUND`].
fn a_record_flood_neither_grows_memory_nor_hides_a_real_room() -> Outcome {
    let room = format!("Real room {}", token());
    // mdns_flood.py names them fake-N-TOKEN.
    let suffix = format!("-{}", token());
    let fake_found = |l: &str| -> Option<String> {
        let v = json(l);
        let name = v["room"].as_str()?;
        (v["type"] == "room_found" && name.starts_with("fake-") && name.ends_with(&suffix))
            .then(|| name.to_owned())
    };
    let is_fake_found = |l: &str| fake_found(l).is_some();
    let mut discoverer = discover("lanB")?;
    let mut fakes = flood("rooms", &["--count", "120", "--lifetime", "300"])?;
    fakes.wait_line("the fake rooms sent", LAB_WAIT, |l| {
        json(l)["event"] == "sent"
    })?;
    discoverer.wait_line("a fake room listed", LAB_WAIT, is_fake_found)?;
    let (mut server, _) = start_server("lanA", 5621, &["--announce", "--room-name", &room])?;
    wait_found(&mut discoverer, &room)?;
    // Let the fake rooms be re-sent a few times (every 2 s) and everything settle.
    discoverer.drain_for(Duration::from_secs(6));
    let idle_server = rss_bytes(server.pid())?;
    let idle_browser = rss_bytes(discoverer.pid())?;

    let mut records = flood("records", &["--count", FLOOD_RECORDS, "--lifetime", "300"])?;
    let sent = records.wait_line("the record flood sent", Duration::from_secs(330), |l| {
        json(l)["event"] == "sent"
    })?;
    if json(&sent)["records"] != FLOOD_RECORDS.parse::<u64>().unwrap_or_default() {
        return Err(format!("the flood was cut short: {sent}").into());
    }
    // Give both daemons time to read what is queued for them.
    discoverer.drain_for(Duration::from_secs(5));
    let flooded_server = rss_bytes(server.pid())?;
    let flooded_browser = rss_bytes(discoverer.pid())?;
    eprintln!(
        "RSS: server {} -> {} KiB, browser {} -> {} KiB",
        idle_server >> 10,
        flooded_server >> 10,
        idle_browser >> 10,
        flooded_browser >> 10
    );
    if flooded_server > idle_server + FLOOD_RSS_BOUND {
        return Err(format!(
            "the announcing server grew from {idle_server} to {flooded_server} bytes"
        )
        .into());
    }
    if flooded_browser > idle_browser + FLOOD_RSS_BOUND {
        return Err(
            format!("the browser grew from {idle_browser} to {flooded_browser} bytes").into(),
        );
    }

    let fakes_listed = discoverer
        .seen
        .iter()
        .filter_map(|l| fake_found(l))
        .collect::<BTreeSet<_>>()
        .len();
    if fakes_listed == 0 || fakes_listed > tertulia_core::discovery::txt::MAX_ROOMS_PER_SOURCE {
        return Err(format!(
            "{fakes_listed} fake rooms from one address listed\n{}",
            discoverer.transcript()
        )
        .into());
    }
    let instance = format!("{room}._tertulia._tcp.local.");
    let lost = |l: &str| {
        let v = json(l);
        v["type"] == "room_lost" && v["instance"] == instance.as_str()
    };
    if discoverer.seen.iter().any(|l| lost(l)) {
        return Err(format!("the real room was dropped\n{}", discoverer.transcript()).into());
    }
    // Still announced and still answering: withdrawing it is seen.
    server.terminate()?;
    discoverer.wait_line("room_lost after SIGTERM", LAB_WAIT, lost)?;
    fakes.terminate()?;
    Ok(())
}

fn main() {
    let mut trials = vec![
        Trial::test(
            "announced_room_is_found_by_tertulia_and_zeroconf_and_gone_after_sigterm",
            announced_room_is_found_by_tertulia_and_zeroconf_and_gone_after_sigterm,
        ),
        Trial::test(
            "tertulia_finds_a_room_published_by_zeroconf",
            tertulia_finds_a_room_published_by_zeroconf,
        ),
        Trial::test(
            "hostile_announcements_are_shown_inertly_or_ignored",
            hostile_announcements_are_shown_inertly_or_ignored,
        ),
        Trial::test(
            "a_member_joins_the_discovered_room_and_chats",
            a_member_joins_the_discovered_room_and_chats,
        ),
        Trial::test(
            "two_rooms_on_one_host_stop_independently",
            two_rooms_on_one_host_stop_independently,
        ),
        Trial::test(
            "a_room_is_announced_where_it_listens",
            a_room_is_announced_where_it_listens,
        ),
        Trial::test(
            "a_server_announces_only_when_asked",
            a_server_announces_only_when_asked,
        ),
        Trial::test(
            "a_record_flood_neither_grows_memory_nor_hides_a_real_room",
            a_record_flood_neither_grows_memory_nor_hides_a_real_room,
        ),
        Trial::test(
            "without_a_network_discover_fails_clearly_and_hosting_goes_on",
            without_a_network_discover_fails_clearly_and_hosting_goes_on,
        ),
    ];
    let avahi = Trial::test(
        "avahi_resolves_the_announced_room",
        avahi_resolves_the_announced_room,
    );
    trials.push(if avahi_available() {
        avahi
    } else if netlab::lab_required() {
        Trial::test("avahi_resolves_the_announced_room", || {
            Err("NETLAB_REQUIRED is set but avahi-daemon, avahi-utils or dbus-daemon is not installed (make deps-test)".into())
        })
    } else {
        eprintln!("avahi_resolves_the_announced_room ignored: avahi-daemon, avahi-utils or dbus-daemon not installed (make deps-test)");
        avahi.with_ignored_flag(true)
    });
    netlab::run_trials(trials);
}
