# Tertulia — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
LISTEN ?= 0.0.0.0:5555
SERVER ?= 127.0.0.1:5555
NICK ?= $(USER)

TAURI_DRIVER_VERSION := 2.1.0
CARGO_FUZZ_VERSION := 0.13.2
CARGO_DEB_VERSION := 3.8.0
FUZZ_TARGETS := frame_decoder handshake message_decoder
# Seconds per fuzz target: a short run in `make test`, a longer one in `make fuzz`.
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SECONDS ?= 600
# cargo-fuzz needs nightly-only rustc flags (sanitizers); RUSTC_BOOTSTRAP lets the stable
# toolchain accept them for this build only.
FUZZ := cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz

.PHONY: bench bench-quick deps-bench run host chat test test-rust test-faults test-ui test-desktop test-package fuzz fuzz-smoke deps deps-test deps-fuzz deps-package deps-netlab package package-server build release lint clean help

help:
	@echo "make run    build and start the desktop app (headless server when there is no display)"
	@echo "make host   host a room headless with tertulia-server; LISTEN=ADDR:PORT to choose the address"
	@echo "make chat   join a room from the terminal: make chat SERVER=HOST:PORT NICK=name"
	@echo "make test   install what is missing, build, lint and run every test (Rust, fault suite, UI, desktop e2e under Xvfb, fuzz smoke)"
	@echo "make fuzz   fuzz each target for FUZZ_SECONDS (default 600)"
	@echo "make package  build the installable .debs: the app (target/release/bundle/deb/) and the server (target/debian/)"
	@echo "make package-server  only the server package: tertulia-server + tertulia-chat as a systemd service (target/debian/)"
	@echo "make bench  fan-out benchmark against Redis, NATS and ngIRCd (20–25 min); make bench-quick: about 2 minutes"

deps:
	@scripts/install-deps.sh

# Test-only tools: Xvfb and WebKitWebDriver for the desktop test, Chromium for the UI tests,
# the Unicode emoji test file (unicode-data), a real Secret Service for the saved-rooms tests
# (gnome-keyring on a private bus; secret-tool from libsecret-tools reads it back), the npm
# packages (playwright-core, Tauri CLI), tauri-driver and cargo-fuzz; the network lab.
deps-test: deps deps-fuzz deps-netlab
	@scripts/install-deps.sh xvfb xauth webkit2gtk-driver chromium dbus-daemon dbus-bin x11-utils xdotool unicode-data gnome-keyring libsecret-tools
	@scripts/install-deps.sh python3 python3-pip pip:spake2==0.9
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || scripts/install-deps.sh nodejs npm
	@[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
	@command -v tauri-driver >/dev/null 2>&1 || $(CARGO) install tauri-driver --locked --version $(TAURI_DRIVER_VERSION)

# The network lab of the LAN-discovery and port-mapping tests (tests/netlab/, run as root in
# network namespaces): a router with miniupnpd (UPnP-IGD, NAT-PMP, PCP) and nftables,
# python3-zeroconf and Avahi as independent mDNS stacks, the UPnP/NAT-PMP clients and tcpdump.
# miniupnpd is kept from starting on the real network (debconf), and an avahi-daemon that this
# install brings is stopped and disabled on the host: only the lab's own instances run.
NETLAB_PACKAGES := iproute2 nftables miniupnpd miniupnpd-nftables miniupnpc natpmpc python3 \
	python3-zeroconf tcpdump avahi-daemon avahi-utils dbus
AS_ROOT := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
deps-netlab: deps
	@if ! dpkg-query -W -f='$${Status}' miniupnpd 2>/dev/null | grep -q "install ok installed"; then \
	  echo "miniupnpd miniupnpd/start_daemon boolean false" | $(AS_ROOT) debconf-set-selections; fi
	@had_avahi=no; dpkg-query -W -f='$${Status}' avahi-daemon 2>/dev/null | grep -q "install ok installed" && had_avahi=yes; \
	scripts/install-deps.sh $(NETLAB_PACKAGES) || exit 1; \
	if [ $$had_avahi = no ]; then \
	  echo "==> avahi-daemon: stopped and disabled on the host (the tests run their own in the lab)"; \
	  $(AS_ROOT) systemctl disable avahi-daemon.service avahi-daemon.socket >/dev/null 2>&1 || true; \
	  $(AS_ROOT) systemctl stop avahi-daemon.socket avahi-daemon.service >/dev/null 2>&1 || true; \
	  $(AS_ROOT) update-rc.d avahi-daemon disable >/dev/null 2>&1 || true; \
	  $(AS_ROOT) avahi-daemon --kill >/dev/null 2>&1 || true; \
	fi

# What make run/host/chat start: the app and the headless pair (not the benchmark).
release: deps
	$(CARGO) build --release -p tertulia-app -p tertulia-cli --bins

run: release
	@if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then \
	  echo "==> starting the Tertulia desktop app"; \
	  target/release/tertulia-app; \
	else \
	  echo "==> no display found (DISPLAY/WAYLAND_DISPLAY unset): hosting a room headless instead"; \
	  $(MAKE) --no-print-directory host; \
	fi

host: release
	@echo "==> hosting a Tertulia room on $(LISTEN) (Ctrl-C stops it)"
	@echo "    others join with: target/release/tertulia-chat HOST:PORT --nick NAME  (or: make chat SERVER=HOST:PORT NICK=NAME)"
	target/release/tertulia-server --listen $(LISTEN)

chat: release
	target/release/tertulia-chat $(SERVER) --nick "$(NICK)"

build: deps
	$(CARGO) build --workspace --bins --tests

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps-test build lint test-rust test-package test-faults test-ui test-desktop fuzz-smoke

# make test installs gnome-keyring, python-spake2 and the network lab: the saved-rooms keyring
# tests, the SPAKE2 interop test and the netlab tests (root, network namespaces) must run, not skip.
test-rust:
	TERTULIA_REQUIRE_KEYRING=1 TERTULIA_REQUIRE_INTEROP=1 NETLAB_REQUIRED=1 $(CARGO) test --workspace -- --skip fault_injection_suite

# The fault-injection suite on its own (about 2.5 minutes), printing its summary table.
test-faults:
	$(CARGO) test -p tertulia-e2e --test fault_suite -- --nocapture

test-ui:
	node --test ui/tests/

# The real app under Xvfb (tests/desktop/run.mjs), then in the network lab's namespaces rooms on
# this network (discovery.mjs) and "Reachable from the internet" via its router (internet.mjs).
test-desktop:
	TERTULIA_REQUIRE_KEYRING=1 NETLAB_REQUIRED=1 node tests/desktop/run.mjs

# cargo-fuzz at the pinned version, for fuzz-smoke and fuzz (and make test).
deps-fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)

# Replay the saved crash inputs, then fuzz each target briefly (fails on any crash).
fuzz-smoke: deps-fuzz
	$(FUZZ) build -O
	@for t in $(FUZZ_TARGETS); do \
	  echo "==> fuzzing $$t for $(FUZZ_SMOKE_SECONDS) s"; \
	  ( $(FUZZ) run -O $$t regressions/$$t -- -runs=0 2>/dev/null ) || exit 1; \
	  ( set -o pipefail; $(FUZZ) run -O $$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) 2>&1 \
	    | grep -E "^(Done|==[0-9]+==ERROR|SUMMARY|thread .* panicked)" ) || exit 1; \
	done

# A longer fuzz run: FUZZ_SECONDS per target (default 600). Crashes land in fuzz/artifacts/;
# copy them to fuzz/regressions/<target>/ once fixed.
fuzz: deps-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "==> fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ) run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# The benchmark's anchors (Debian packages) and a font for the chart. The distribution starts
# redis-server and ngircd as services on install; they are stopped so they do not compete for
# the CPU (the benchmark starts its own instances on free ports).
deps-bench: deps
	@scripts/install-deps.sh redis-server nats-server ngircd fonts-dejavu-core util-linux
	@for s in redis-server ngircd nats-server; do systemctl stop $$s >/dev/null 2>&1 || service $$s stop >/dev/null 2>&1 || true; done

# Load generator on CPU 1, servers on CPU 0 (with fewer than two CPUs, unpinned).
BENCH_PIN := $(shell [ "$$(nproc 2>/dev/null || echo 1)" -ge 2 ] && echo "taskset -c 1")

bench: deps-bench
	$(CARGO) build --release -p tertulia-cli -p tertulia-bench
	$(BENCH_PIN) target/release/tertulia-bench matrix --preset full --out bench/results
	$(BENCH_PIN) target/release/tertulia-bench handshakes --secs 5 | tee bench/results/handshakes.json
	$(BENCH_PIN) target/release/tertulia-bench files --mib 100 --receivers 10 | tee bench/results/files.json

bench-quick: deps-bench
	$(CARGO) build --release -p tertulia-cli -p tertulia-bench
	$(BENCH_PIN) target/release/tertulia-bench matrix --preset quick --out bench/results/quick
	$(BENCH_PIN) target/release/tertulia-bench handshakes --secs 2 | tee bench/results/quick/handshakes.json
	$(BENCH_PIN) target/release/tertulia-bench files --mib 20 --receivers 10 | tee bench/results/quick/files.json

# cargo-deb at the pinned version, and what the server package's test uses: systemd-analyze
# (the systemd package; no running systemd needed), strace (the system-call check), adduser.
deps-package: deps
	@scripts/install-deps.sh systemd strace adduser
	@command -v cargo-deb >/dev/null 2>&1 && cargo-deb --version | grep -qx "cargo-deb $(CARGO_DEB_VERSION)" \
	  || $(CARGO) install cargo-deb --locked --version $(CARGO_DEB_VERSION)

# The headless pair as a Debian package with its systemd unit (cli/Cargo.toml
# [package.metadata.deb], packaging/deb/), from the release binaries.
package-server: deps-package
	$(CARGO) build --release -p tertulia-cli --bins
	@rm -f target/debian/tertulia-server_*.deb
	$(CARGO) deb -p tertulia-cli --no-build --output target/debian/
	@ls -1 target/debian/tertulia-server_*.deb

# Installs that package on this machine (root), runs the server as its unit says and purges
# it again: tests/tests/server_package.rs.
test-package: package-server
	TERTULIA_REQUIRE_PACKAGE=1 TERTULIA_SERVER_DEB="$$(realpath target/debian/tertulia-server_*.deb)" \
	  $(CARGO) test -p tertulia-e2e --test server_package -- --ignored --nocapture

package: deps package-server
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || scripts/install-deps.sh nodejs npm
	@[ -d node_modules/@tauri-apps/cli ] || npm ci --no-audit --no-fund
	npx tauri build --bundles deb
	@ls -1 target/release/bundle/deb/*.deb

clean:
	$(CARGO) clean
