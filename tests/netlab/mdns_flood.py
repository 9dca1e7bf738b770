#!/usr/bin/python3
"""An mDNS flooder for the netlab tests (tests/tests/netlab_discovery.rs): run in a lab
namespace, it sends raw multicast DNS responses nobody asked for, as any machine on the LAN
could, bounded in packets and time.

  records  COUNT unique-name TXT records (PER to a packet, TTL 4 000 000 s, no PTR answer, so
           mdns-sd takes them as "for us"): before its cache was bounded, this grew every
           browsing or announcing process without limit.
  rooms    COUNT fake `_tertulia._tcp` rooms (PTR, SRV, TXT, A, TTL 4 000 000 s), all
           resolving to --address, re-sent every 2 s for --lifetime seconds, then withdrawn
           (TTL 0).

One JSON line when done: {"event": "sent", "records": N, "packets": P}. Plain sockets, no
zeroconf. Talks only to the lab's namespaces.
"""
import argparse
import json
import signal
import socket
import struct
import time

GROUP = ("224.0.0.251", 5353)
HUGE_TTL = 4_000_000


def name(*labels):
    return b"".join(bytes([len(l)]) + l for l in labels) + b"\0"


def record(owner, rtype, ttl, rdata, flush=False):
    cls = 0x8001 if flush else 0x0001
    return owner + struct.pack("!HHIH", rtype, cls, ttl, len(rdata)) + rdata


def response(records):
    return struct.pack("!HHHHHH", 0, 0x8400, 0, len(records), 0, 0) + b"".join(records)


def sock(address):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    return s


def flood_records(s, a):
    sent = packets = 0
    deadline = time.monotonic() + a.lifetime
    txt = bytes([200]) + b"z" * 200
    while sent < a.count and time.monotonic() < deadline:
        recs = []
        for _ in range(min(a.per, a.count - sent)):
            owner = name(b"junk%08d-%s" % (sent, a.token.encode()) + b"y" * 30,
                         b"_other", b"_tcp", b"local")
            recs.append(record(owner, 16, HUGE_TTL, txt))
            sent += 1
        s.sendto(response(recs), GROUP)
        packets += 1
        time.sleep(a.pause)
    return sent, packets


def room_records(a, i, ttl):
    service = (b"_tertulia", b"_tcp", b"local")
    inst = b"fake-%d-%s" % (i, a.token.encode())
    instance = name(inst, *service)
    host = name(b"fake-%d-%s" % (i, a.token.encode()), b"local")
    txt = b"".join(bytes([len(e)]) + e for e in (b"room=" + inst, b"v=2"))
    return [
        record(name(*service), 12, ttl, instance),
        record(instance, 33, ttl, struct.pack("!HHH", 0, 0, a.port) + host, flush=True),
        record(instance, 16, ttl, txt, flush=True),
        record(host, 1, ttl, socket.inet_aton(a.address), flush=True),
    ]


def announce_rooms(s, a, ttl):
    sent = packets = 0
    for start in range(0, a.count, 8):
        recs = []
        for i in range(start, min(start + 8, a.count)):
            recs += room_records(a, i, ttl)
            sent += 1
        s.sendto(response(recs), GROUP)
        packets += 1
        time.sleep(0.01)
    return sent, packets


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["records", "rooms"])
    p.add_argument("--address", required=True, help="this namespace's address (sent from; rooms resolve to it)")
    p.add_argument("--token", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--per", type=int, default=30, help="records: records per packet")
    p.add_argument("--pause", type=float, default=0.002, help="records: seconds between packets")
    p.add_argument("--port", type=int, default=5699, help="rooms: the port announced")
    p.add_argument("--lifetime", type=float, default=120, help="seconds at most")
    a = p.parse_args()
    s = sock(a.address)
    if a.mode == "records":
        sent, packets = flood_records(s, a)
        print(json.dumps({"event": "sent", "records": sent, "packets": packets}), flush=True)
        return
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    deadline = time.monotonic() + a.lifetime
    total = 0
    while not stop and time.monotonic() < deadline:
        sent, packets = announce_rooms(s, a, HUGE_TTL)
        total += packets
        if total == packets:
            print(json.dumps({"event": "sent", "records": sent * 4, "packets": packets}), flush=True)
        for _ in range(20):
            if stop or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    announce_rooms(s, a, 0)


if __name__ == "__main__":
    main()
