#!/usr/bin/env bash
# bench.sh — run Vigil's benchmarks (release build) and print their figures.
#
#   ./scripts/bench.sh            every benchmark
#   ./scripts/bench.sh agent      only the agent's; `operator` for the operator's
#   ./scripts/bench.sh fuzz       the long fuzz run: every fuzz target for FUZZ_SECONDS (300)
#                                 each (scripts/fuzz.sh; not part of `all`)
#
# Benchmarks print figures and assert nothing; speed is never checked by the test suite.
# Figures depend on the machine and on what else runs on it: compare runs on one machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

which="${1:-all}"
# The footprint and delivery benchmarks start the release agent binary and drive it with a Rust
# OTLP client into a local OTLP receiver.
run() {
    local package="$1" bench="$2"
    shift 2
    printf '\n==> %s: %s\n' "$package" "$bench"
    cargo bench -q -p "$package" --bench "$bench" "$@" 2>&1 | grep -v '^\s*$' || return 1
}

# The side-by-side bench's peers. rsyslog comes from Debian; Debian's syslog-ng conflicts with
# rsyslog (both are the system log daemon), so its package is unpacked into .tools/syslog-ng,
# with the libraries it needs installed from Debian. Neither runs as a service.
install_log_peers() {
    local sudo="" tmp
    [ "$(id -u)" = 0 ] || sudo=sudo
    if [ ! -x /usr/sbin/rsyslogd ]; then
        $sudo apt-get install -y -q rsyslog >/dev/null
    fi
    if [ ! -x /usr/sbin/syslog-ng ] && [ ! -x .tools/syslog-ng/usr/sbin/syslog-ng ]; then
        # shellcheck disable=SC2046 # one word per library
        $sudo apt-get install -y -q $(apt-cache depends syslog-ng-core | awk '/Depends: lib/ {print $2}') >/dev/null
        tmp="$(mktemp -d)"
        (cd "$tmp" && apt-get download -q syslog-ng-core >/dev/null 2>&1)
        mkdir -p .tools/syslog-ng
        dpkg-deb -x "$tmp"/syslog-ng-core_*.deb .tools/syslog-ng
        rm -rf "$tmp"
    fi
}

if [ "$which" = all ] || [ "$which" = agent ]; then
    run vigil-agent log_pipeline
    run vigil-agent scrape_parse
    run vigil-agent otlp
    run vigil-agent buffer
    run vigil-agent footprint
    # Peak RSS per OTLP request size and transport, memory given back, steady RSS under load.
    run vigil-agent request_memory
    run vigil-agent delivery
    # The agent against rsyslog and syslog-ng (backlog; live with rename and copy-truncate
    # rotations) and Prometheus (scrape), into one sink counting lost and duplicated lines.
    install_log_peers
    run vigil-agent side_by_side
    # Crash → page through the real agent, Prometheus and Alertmanager (needs the test tools).
    # Dev profile: the latency is scrape, evaluation and routing, not the agent's speed, and
    # the release build of the operator it renders with takes long on small machines.
    run vigil-agent crash_alert_latency --profile dev
    # kill -9 chaos against the real agent while its backend fails and recovers: counts
    # acknowledged, delivered, lost and duplicated (dev build: counts, not speed).
    run vigil-agent chaos --profile dev
    # The buffer on a full 256 KiB tmpfs, alone and under the real agent (503 + Retry-After,
    # healed without a restart, nothing re-sent after kill -9). Mounting needs root, so these
    # tests are ignored in the suite and run here, where a failure to mount fails loudly.
    printf '\n==> vigil-agent: full disk (tmpfs)\n'
    cargo test -q -p vigil-agent --lib full_tmpfs -- --ignored 2>&1 | grep -E 'test result|panicked|cannot mount'
    cargo test -q -p vigil-agent --test e2e full_disk -- --ignored 2>&1 | grep -E 'test result|panicked|cannot mount'
fi
if [ "$which" = all ] || [ "$which" = operator ]; then
    # nab: the online anomaly detector's NAB scores (standard, reward_low_FP_rate,
    # reward_low_FN_rate) over the 58 NAB v1.1 series with one default setting.
    # forecast: Prophet's cross-validation on Peyton Manning, NYC taxi 1 h / 1 d ahead, band
    # coverage per horizon and the refit cost. analytics_engine: refit and job cost.
    for bench in webhook reconcile footprint nab forecast analytics_engine; do
        if grep -q "name = \"$bench\"" operator/Cargo.toml; then
            run vigil-operator "$bench"
        fi
    done
fi
if [ "$which" = fuzz ]; then
    ./scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-300}"
fi
