#!/usr/bin/env bash
# fuzz.sh — build and run Vigil's fuzz targets (fuzz/, cargo-fuzz layout, its own workspace).
#
#   scripts/fuzz.sh --smoke               every target for SMOKE_RUNS (30000) inputs from a fixed
#                                         seed and a fresh corpus of the committed seeds and
#                                         fixtures: the test command's bounded run (scripts/test.sh
#                                         calls it), the same on every machine
#   scripts/fuzz.sh [--seconds N] [T...]  the long run: each target T (default: all) for N
#                                         seconds (default 300)
#   scripts/fuzz.sh --list                the targets
#
# Runs on the stable toolchain: without a sanitizer (`-s none`) cargo-fuzz needs no unstable
# flag; debug assertions and overflow checks are on (`-a`). All targets come from one build of
# the fuzz workspace (same flags for build and run, so `run` does not rebuild).
#
# Each target starts from fuzz/corpus/<target> (not committed), seeded from the committed seeds
# in fuzz/seeds/<target>/ and the repository's fixtures (agent/tests/fixtures/, examples/,
# operator/src/webhook/fixtures/); what a run finds new is kept there for the next run. A crash,
# a failed property, a timeout (10 s for one input) or running out of memory (2 GiB) fails the
# target: its input is saved under fuzz/artifacts/<target>/ and the script exits non-zero after
# running the other targets. Reproduce one with
#   cargo fuzz run -s none -a --codegen-units 16 <target> fuzz/artifacts/<target>/<file>
# (from the repository root, with .tools/bin on PATH).
#
# Seeds of the targets whose inputs are not plain files (protobuf requests, buffer layouts,
# reviews) are written by the unit tests of `vigil_agent::fuzzing` and `vigil_operator::fuzzing`:
#   VIGIL_FUZZ_SEEDS=$PWD/fuzz/seeds cargo test -p vigil-agent -p vigil-operator --lib fuzzing::
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/.tools/bin:$HOME/.cargo/bin:$PATH"

SMOKE_RUNS="${SMOKE_RUNS:-30000}"
seconds=300
smoke=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --seconds) seconds="$2"; shift ;;
        --list) sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^vigil-fuzz$'; exit 0 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("$0" --list)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    ./scripts/install-test-tools.sh
fi

# One build flag set for build and run.
FLAGS=(-s none -a --codegen-units 16)

echo "==> cargo fuzz build ${FLAGS[*]}"
cargo fuzz build "${FLAGS[@]}"

# The smoke run starts from the seeds alone (a corpus grown by earlier runs would make it differ
# from machine to machine); the long run keeps growing fuzz/corpus.
corpus_root="$REPO_ROOT/fuzz/corpus"
if [ "$smoke" -eq 1 ]; then
    corpus_root="$(mktemp -d)"
    trap 'rm -rf "$corpus_root"' EXIT
fi

# Seeds: committed ones, then fixture files (a selector byte first where the target reads one).
seed_files() { # target dir glob [selector]
    local target="$1" dir="$2" glob="$3" selector="${4-}" file out
    out="$corpus_root/$target"
    for file in $(find "$dir" -type f -name "$glob" | sort); do
        local name
        name="fixture-$(printf '%s' "$file" | tr '/' '_')${selector:+-$selector}"
        if [ -n "$selector" ]; then
            { printf "\\x$selector"; cat "$file"; } >"$out/$name"
        else
            cp "$file" "$out/$name"
        fi
    done
}
for target in "${targets[@]}"; do
    mkdir -p "$corpus_root/$target" "fuzz/artifacts/$target"
    if [ -d "fuzz/seeds/$target" ]; then
        cp -n fuzz/seeds/"$target"/* "$corpus_root/$target/" 2>/dev/null || true
    fi
    case "$target" in
        scrape) seed_files scrape agent/tests/fixtures/node_exporter 'e2e-output*.txt' ;;
        join_and_analyse)
            seed_files join_and_analyse agent/tests/fixtures/stacktraces '*.txt' 00
            seed_files join_and_analyse agent/tests/fixtures/stacktraces '*.txt' 80 ;;
        redact) seed_files redact agent/tests/fixtures/stacktraces '*.txt' ;;
        manifests) seed_files manifests examples '*.yaml' ;;
        mutate_pods)
            seed_files mutate_pods operator/src/webhook/fixtures '*.json' 00
            seed_files mutate_pods operator/src/webhook/fixtures '*.json' 01 ;;
    esac
done

if [ "$smoke" -eq 1 ]; then
    budget=(-seed=1 -runs="$SMOKE_RUNS")
    what="$SMOKE_RUNS inputs from seed 1"
else
    budget=(-max_total_time="$seconds")
    what="${seconds}s"
fi
failed=()
passed=0
for target in "${targets[@]}"; do
    log="fuzz/artifacts/$target/last-run.log"
    echo "==> fuzz $target for $what"
    if cargo fuzz run "${FLAGS[@]}" "$target" "$corpus_root/$target" -- \
        "${budget[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        passed=$((passed + 1))
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr '\n' ' '
        echo
    else
        failed+=("$target")
        echo "fuzz target $target FAILED; the end of its log ($log):" >&2
        tail -n 40 "$log" | cut -c1-400 >&2
    fi
done

echo "fuzz: ${passed} targets passed, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
[ ${#failed[@]} -eq 0 ]
