//! SPAKE2 against an independent implementation: warner's python-spake2 (PyPI `spake2`,
//! which the Rust crate is written to interoperate with) computes the other side through
//! `tests/interop/spake2_interop.py`: the stored vectors, then fresh runs in both directions.
//! Without python-spake2 the test is skipped with a message, and fails under
//! `TERTULIA_REQUIRE_INTEROP=1` (as `make test` sets it).

use std::io::Write;
use std::process::{Command, Stdio};

use tertulia_core::handshake::{SPAKE2_ID_CLIENT, SPAKE2_ID_SERVER};

type S = spake2::Spake2<spake2::Ed25519Group>;

fn script() -> String {
    format!(
        "{}/../tests/interop/spake2_interop.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn python_has_spake2() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import spake2"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let required = std::env::var("TERTULIA_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "python-spake2 is missing (pip install spake2==0.9) and TERTULIA_REQUIRE_INTEROP=1"
        );
        eprintln!("SKIPPED: python3 with the spake2 package not found (pip install spake2==0.9)");
    }
    found
}

fn ids() -> (spake2::Identity, spake2::Identity) {
    (
        spake2::Identity::new(SPAKE2_ID_CLIENT),
        spake2::Identity::new(SPAKE2_ID_SERVER),
    )
}

fn lines(out: &[u8]) -> Vec<Vec<u8>> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| hex::decode(l.trim()).expect("hex line"))
        .collect()
}

#[test]
fn python_spake2_reproduces_the_stored_vectors() {
    if !python_has_spake2() {
        return;
    }
    let vectors = format!("{}/testdata/vectors.json", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([&script(), "vectors", &vectors])
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches(": ok").count(), 4, "{text}");
}

#[test]
fn rust_client_with_python_server_and_python_client_with_rust_server() {
    if !python_has_spake2() {
        return;
    }
    let (ida, idb) = ids();
    for round in 0..3u8 {
        let w = [round.wrapping_mul(37).wrapping_add(1); 32];
        let pw = spake2::Password::new(w);
        // Rust is the client (A), Python the server (B).
        let (a_state, a) = S::start_a(&pw, &ida, &idb);
        let out = Command::new("python3")
            .args([&script(), "as-server", &hex::encode(w), &hex::encode(&a)])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = lines(&out.stdout);
        let (b, python_key) = (&got[0], &got[1]);
        assert_eq!(b[0], b'B');
        let rust_key = a_state.finish(b).expect("finish with python's B");
        assert_eq!(&rust_key, python_key, "round {round}: client in Rust");
        // A different password on the two sides gives different keys.
        let (a_state, a) = S::start_a(&spake2::Password::new([0xEE; 32]), &ida, &idb);
        let out = Command::new("python3")
            .args([&script(), "as-server", &hex::encode(w), &hex::encode(&a)])
            .output()
            .expect("run python");
        let got = lines(&out.stdout);
        assert_ne!(a_state.finish(&got[0]).expect("finish"), got[1]);

        // Python is the client (A), Rust the server (B).
        let mut child = Command::new("python3")
            .args([&script(), "as-client", &hex::encode(w)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("A");
        let a = hex::decode(line.trim()).expect("hex A");
        assert_eq!(a[0], b'A');
        let (b_state, b) = S::start_b(&pw, &ida, &idb);
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{}", hex::encode(&b)).expect("send B");
        drop(stdin);
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("K");
        assert!(child.wait().expect("python exits").success());
        let rust_key = b_state.finish(&a).expect("finish with python's A");
        assert_eq!(
            hex::encode(rust_key),
            line.trim(),
            "round {round}: server in Rust"
        );
    }
}
