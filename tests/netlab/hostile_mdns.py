#!/usr/bin/python3
"""A hostile DNS-SD publisher for the netlab tests (tests/tests/netlab_discovery.rs): run in a
lab namespace, it announces `_tertulia._tcp` instances whose TXT records are what an attacker
on the LAN could send - terminal escapes, bidi overrides, NUL bytes, records near the size
limits, missing or invalid keys - written as raw TXT bytes (python-zeroconf passes them on
as they are). One JSON line per registered instance; on SIGTERM/SIGINT (or after --lifetime)
every instance is withdrawn with goodbye packets.

Needs Debian's python3 with python3-zeroconf. Talks only to the lab's namespaces.
"""
import argparse
import json
import signal
import threading

from zeroconf import IPVersion, ServiceInfo, Zeroconf

TYPE = "_tertulia._tcp.local."
FP = "6521-fc47-c9b6-6c07-b6a2-96fc"


def txt(*entries):
    """Raw TXT rdata: each entry (bytes) prefixed by its length (at most 255)."""
    out = b""
    for e in entries:
        assert len(e) <= 255, len(e)
        out += bytes([len(e)]) + e
    return out


def instances(token):
    """name -> raw TXT. The names say what the test expects of each."""
    evil = "\x1b[2J\x07Sala\u202e evil\u202c\u200b\x00 \u2066x".encode()
    return {
        # listed, with the control and bidi characters left out, no fingerprint
        "ctl-%s" % token: txt(b"room=" + evil, b"v=2", b"fp=" + b"\x1b]0;pwned\x07"),
        # listed, name cut to 63 bytes; the other huge entries ignored
        "huge-%s" % token: txt(b"room=" + b"A" * 250, b"v=2", b"fp=" + FP.encode(),
                                b"x=" + b"B" * 253, b"y=" + b"C" * 253, b"z=" + b"D" * 253),
        # listed under its instance name (no room key)
        "noroom-%s" % token: txt(b"v=2"),
        # not a Tertulia room: no version
        "nov-%s" % token: txt(b"room=no version " + token.encode(), b"fp=" + FP.encode()),
        # not a Tertulia room: a version that is not 1-255
        "v999-%s" % token: txt(b"room=bad version " + token.encode(), b"v=999"),
        # not a Tertulia room: an empty TXT record
        "empty-%s" % token: b"\x00",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--token", required=True)
    p.add_argument("--host", required=True, help="host label, e.g. lanA")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lifetime", type=float, default=120)
    a = p.parse_args()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    infos = []
    for name, raw in instances(a.token).items():
        info = ServiceInfo(TYPE, "%s.%s" % (name, TYPE), port=a.port, properties=raw,
                           server="%s.local." % a.host, parsed_addresses=[a.address])
        zc.register_service(info)
        infos.append(info)
        print(json.dumps({"event": "registered", "name": info.name}), flush=True)
    print(json.dumps({"event": "all-registered", "count": len(infos)}), flush=True)
    stop.wait(a.lifetime)
    for info in infos:
        zc.unregister_service(info)
    zc.close()
    print(json.dumps({"event": "unregistered"}), flush=True)


if __name__ == "__main__":
    main()
