#!/usr/bin/env bash
# test.sh — the project's one test command (README, CI's .ci/run).
#
# 1. installs the real test tools (promtool, amtool, helm, kubectl) if missing,
# 2. puts .tools/bin and ~/.cargo/bin on PATH,
# 3. with CI=true, checks formatting and clippy (warnings are errors) first (fail fast),
# 4. runs the whole workspace's tests with the committed Cargo.lock.
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
echo "==> cargo test --workspace --locked --lib --bins --tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' "$log"
