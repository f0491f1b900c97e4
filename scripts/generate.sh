#!/usr/bin/env bash
# Regenerates every committed, generated artefact: the CRD YAML in crds/ and its copy in the
# Helm chart. Tests fail with a pointer to this script when the committed copies drift.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo run -q -p vigil-operator -- crd > crds/vigil-crds.yaml
cp crds/vigil-crds.yaml charts/vigil/crds/vigil-crds.yaml
echo "regenerated crds/vigil-crds.yaml and charts/vigil/crds/vigil-crds.yaml"
