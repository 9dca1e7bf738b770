# Tertulia — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
LISTEN ?= 0.0.0.0:5555
SERVER ?= 127.0.0.1:5555
NICK ?= $(USER)

.PHONY: run app host chat test deps build release lint clean help

help:
	@echo "make run    build and start the desktop app (headless server when there is no display)"
	@echo "make host   host a room headless with tertulia-server; LISTEN=ADDR:PORT to choose the address"
	@echo "make chat   join a room from the terminal: make chat SERVER=HOST:PORT NICK=name"
	@echo "make test   install what is missing, build, lint and run every test"

deps:
	@scripts/install-deps.sh

release: deps
	$(CARGO) build --release --bins

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

test: build lint
	$(CARGO) test --workspace

clean:
	$(CARGO) clean
