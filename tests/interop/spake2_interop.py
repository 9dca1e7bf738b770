"""SPAKE2 interoperability check: warner's python-spake2 (PyPI `spake2`), an independent
implementation, computes the other side of Tertulia's SPAKE2 (Ed25519 group, asymmetric,
identities "tertulia client" / "tertulia server", password = the 32-byte room secret w).

Run by core/tests/spake2_interop.rs:
  vectors FILE      recompute spake2_a, spake2_b, spake2_key of core/testdata/vectors.json
                    (the Rust side's 64 entropy bytes are a little-endian number; this
                    library reads its entropy big-endian, so it is given them reversed)
  as-server W A     print B and K for the client message A
  as-client W       print A, read B on stdin, print K
"""
import json
import sys

from spake2 import SPAKE2_A, SPAKE2_B

ID_A = b"tertulia client"
ID_B = b"tertulia server"


def fixed(entropy: bytes):
    reversed_entropy = entropy[::-1]

    def entropy_f(n: int) -> bytes:
        assert n == 64, n
        return reversed_entropy

    return entropy_f


def main() -> int:
    mode = sys.argv[1]
    if mode == "vectors":
        with open(sys.argv[2], encoding="utf-8") as f:
            v = json.load(f)
        w = bytes.fromhex(v["w"])
        a = SPAKE2_A(w, idA=ID_A, idB=ID_B,
                     entropy_f=fixed(bytes.fromhex(v["client_spake2_entropy"])))
        b = SPAKE2_B(w, idA=ID_A, idB=ID_B,
                     entropy_f=fixed(bytes.fromhex(v["server_spake2_entropy"])))
        msg_a, msg_b = a.start(), b.start()
        key_a, key_b = a.finish(msg_b), b.finish(msg_a)
        checks = {
            "spake2_a": msg_a.hex() == v["spake2_a"],
            "spake2_b": msg_b.hex() == v["spake2_b"],
            "spake2_key (client)": key_a.hex() == v["spake2_key"],
            "spake2_key (server)": key_b.hex() == v["spake2_key"],
        }
        for name, ok in checks.items():
            print(f"{name}: {'ok' if ok else 'MISMATCH'}")
        return 0 if all(checks.values()) else 1
    if mode == "as-server":
        w, msg_a = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
        b = SPAKE2_B(w, idA=ID_A, idB=ID_B)
        msg_b = b.start()
        print(msg_b.hex())
        print(b.finish(msg_a).hex())
        return 0
    if mode == "as-client":
        w = bytes.fromhex(sys.argv[2])
        a = SPAKE2_A(w, idA=ID_A, idB=ID_B)
        print(a.start().hex(), flush=True)
        msg_b = bytes.fromhex(sys.stdin.readline().strip())
        print(a.finish(msg_b).hex())
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
