#!/usr/bin/env bash
# build-images.sh — build the operator and agent images without a container engine.
#
# 1. compiles static binaries of vigil-operator and vigil-agent (glibc with crt-static; TLS is
#    rustls, so no OpenSSL) for this machine's architecture,
# 2. writes one OCI image layout per image (scripts/write-oci-layout.py, Python 3 stdlib):
#      <out>/vigil-operator/   oci-layout, index.json, blobs/sha256/…
#      <out>/vigil-agent/
#    one layer each: the binary at /usr/local/bin/<name> (the entrypoint), and for the agent the
#    CA bundle its TLS sinks trust by default; user 65532:65532; no shell; tagged with the
#    chart's appVersion, the tag the chart pulls by default.
#
# The Containerfile builds the same images with an engine. Push (README, "Images"):
#   skopeo copy oci:target/images/vigil-agent docker://ghcr.io/vigil-dev/vigil-agent:0.1.0
#
# Usage: scripts/build-images.sh [--profile PROFILE] [--out DIR]
#   --profile  Cargo profile of the binaries: release (default; the shipped binaries, fat LTO,
#              slow on 2 cores) or dev (what the test command uses to prove the images run)
#   --out      directory of the layouts (default: <cargo target dir>/images)
# Environment:
#   SOURCE_DATE_EPOCH  the images' timestamps (default: the HEAD commit's time), so the same
#                      commit and binaries give the same digests
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
# Byte order for globs, so the CA bundle is the same on every machine.
export LC_ALL=C

die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

profile=release
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
        --out) out="${2:?--out needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

command -v python3 >/dev/null || die "python3 not found (Debian: apt-get install python3)"

# The agent's CA bundle: Mozilla's roots as Debian's ca-certificates package ships them, not
# this machine's /etc/ssl/certs bundle, which also holds any CA added locally (a corporate or
# sandbox proxy's) that must not reach the image.
mozilla_roots=(/usr/share/ca-certificates/mozilla/*.crt)
[ -f "${mozilla_roots[0]}" ] ||
    die "no /usr/share/ca-certificates/mozilla/*.crt (Debian: apt-get install ca-certificates)"
ca_bundle=$(mktemp)
trap 'rm -f "$ca_bundle"' EXIT
cat "${mozilla_roots[@]}" >"$ca_bundle"

# The image tag is the chart's appVersion; the binaries print the crates' version. They must
# agree, or `helm install` would pull an image whose binary reports another release.
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/vigil/Chart.yaml)
workspace_field() { sed -n "/^\[workspace.package\]/,/^\[/s/^$1 *= *\"\(.*\)\"/\1/p" Cargo.toml; }
crate_version=$(workspace_field version)
license=$(workspace_field license)
source_url=$(workspace_field repository)
[ -n "$version" ] || die "no appVersion in charts/vigil/Chart.yaml"
[ "$version" = "$crate_version" ] ||
    die "charts/vigil/Chart.yaml appVersion $version differs from the crates' version $crate_version"

host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
    x86_64-unknown-linux-gnu) arch=amd64 ;;
    aarch64-unknown-linux-gnu) arch=arm64 ;;
    *) die "unsupported build machine $host: x86_64 or aarch64 Linux with glibc expected" ;;
esac

# --target keeps these static artefacts in target/<host>/ apart from the ordinary builds, and
# RUSTFLAGS then applies to them only, not to build scripts and proc macros (which are shared
# with the ordinary builds). strip=debuginfo keeps symbol names for backtraces.
log "cargo build --profile $profile --target $host (static)"
start=$SECONDS
binaries=$(
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C strip=debuginfo" \
        cargo build --locked --profile "$profile" --target "$host" \
        -p vigil-operator --bin vigil-operator -p vigil-agent --bin vigil-agent \
        --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        print(message["executable"])'
)
log "compiled in $((SECONDS - start))s"

operator_binary=$(printf '%s\n' "$binaries" | grep '/vigil-operator$') || die "no operator built"
agent_binary=$(printf '%s\n' "$binaries" | grep '/vigil-agent$') || die "no agent built"

out="${out:-$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/images}"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"

# write_image NAME BINARY DESCRIPTION [write-oci-layout.py arguments…]
write_image() {
    local name="$1" binary="$2" description="$3"
    shift 3
    python3 scripts/write-oci-layout.py \
        --out "$out/$name" --tag "$version" --arch "$arch" --epoch "$epoch" \
        --entrypoint "$binary:/usr/local/bin/$name" \
        --user 65532:65532 \
        --env PATH=/usr/local/bin \
        --label "org.opencontainers.image.title=$name" \
        --label "org.opencontainers.image.description=$description" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.revision=$revision" \
        --label "org.opencontainers.image.source=$source_url" \
        --label "org.opencontainers.image.licenses=$license" \
        "$@"
}

log "writing OCI image layouts under $out"
# The operator talks TLS only to the API server, with the service account's CA; no bundle.
write_image vigil-operator "$operator_binary" "Vigil's Kubernetes operator"
# The agent's OTLP, Loki and remote-write sinks trust these roots when no caFile is set.
write_image vigil-agent "$agent_binary" "Vigil's per-pod sidecar agent" \
    --file "$ca_bundle:/etc/ssl/certs/ca-certificates.crt" \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
