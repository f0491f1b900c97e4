#!/usr/bin/env bash
# test.sh — the project's one test command (README, CI's .ci/run).
#
# 1. installs the real test tools (promtool, amtool, helm, kubectl) if missing,
# 2. puts .tools/bin and ~/.cargo/bin on PATH,
# 3. with CI=true, checks formatting and clippy (warnings are errors) first (fail fast),
# 4. runs the whole workspace's tests with the committed Cargo.lock, every test binary even when
#    one fails (among them tests/images.rs, which builds the container images and runs their
#    entry points),
# 5. runs every fuzz target for a short bounded time (scripts/fuzz.sh --smoke: one build of the
#    fuzz workspace, 15 s a target; a crash or failed property fails the command),
# and ends with one summary line; exits non-zero when any test or fuzz target failed.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

./scripts/install-test-tools.sh

export PATH="$REPO_ROOT/.tools/bin:$HOME/.cargo/bin:$PATH"

if [ "${CI:-}" = "true" ]; then
    echo "==> cargo fmt --all -- --check"
    cargo fmt --all -- --check
    echo "==> cargo clippy --workspace --all-targets --locked -- -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

# Libraries, binaries and test targets; benchmarks are compiled by clippy above and run only by
# ./scripts/bench.sh (they measure, in release mode, and assert nothing).
echo "==> cargo test --workspace --locked --no-fail-fast --lib --bins --tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# pipefail (set above) gives the pipeline cargo's status, not tee's; `|| status=$?` keeps
# `set -e` from exiting before the summary.
status=0
# The full-disk tests put the agent's buffer on a real 256 KiB tmpfs, which needs the right to
# mount (root). They run whenever this machine grants it; otherwise the line below says so and
# how to run them.
test_args=()
probe="$(mktemp -d)"
if mount -t tmpfs -o size=64k tmpfs "$probe" 2>/dev/null; then
    umount "$probe"
    test_args=(-- --include-ignored)
else
    echo "note: the tmpfs full-disk tests are not run (mounting needs root):" \
        "sudo cargo test -p vigil-agent -- --ignored full_" >&2
fi
rmdir "$probe"
cargo test --workspace --locked --no-fail-fast --lib --bins --tests "${test_args[@]}" 2>&1 | tee "$log" || status=$?
fuzz_status=0
echo "==> scripts/fuzz.sh --smoke"
./scripts/fuzz.sh --smoke || fuzz_status=$?
if [ "$fuzz_status" -ne 0 ]; then
    echo "fuzz smoke run failed (exit $fuzz_status): see the failing targets above" >&2
    [ "$status" -ne 0 ] || status=$fuzz_status
fi
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' "$log"
if [ "$status" -ne 0 ]; then
    echo "tests failed (exit $status): see the failures above" >&2
fi
exit "$status"
