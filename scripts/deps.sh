#!/usr/bin/env bash
# Installs what the tests and benchmarks need beyond Go, Java 17 and Maven:
# redis-cli and redis-benchmark (real clients the end-to-end tests drive),
# redis-server (the reference the benchmarks compare against), openssl (the
# readiness probe of a TLS Cassandra node), and the redis-py client; it checks
# for cargo (the redis-rs client check). Jedis comes from Maven Central and
# redis-rs from crates.io when their tests first run. Idempotent; needs root
# (or sudo) for apt-get.
set -euo pipefail

need_apt=()
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl) # cassandra.sh's TLS probe
if ((${#need_apt[@]})); then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
	# The package starts a system redis-server on 6379; the project starts
	# its own, on ports of its choosing.
	$sudo service redis-server stop >/dev/null 2>&1 || true
fi

if ! python3 -c 'import redis' 2>/dev/null; then
	python3 -m pip install -q --disable-pip-version-check 'redis>=5,<7'
fi

for tool in go java mvn redis-cli redis-benchmark redis-server openssl; do
	command -v "$tool" >/dev/null || { echo "deps: $tool is missing" >&2; exit 1; }
done
# Rust's cargo builds the redis-rs client check (tests/clients/rust); rustup
# puts it in ~/.cargo/bin, which a non-login shell may not have on PATH.
command -v cargo >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ] ||
	{ echo "deps: cargo is missing (install Rust with rustup)" >&2; exit 1; }
echo "deps: ok ($(go version | cut -d' ' -f3), java $(java -version 2>&1 | head -1 | cut -d'"' -f2), $(redis-cli --version))"
