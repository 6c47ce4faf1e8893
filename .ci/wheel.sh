#!/usr/bin/env bash
# The package as users install it: build the wheel, install it into a clean virtual environment
# outside the repository, and run `udn-rollout render` and `udn-rollout demo` from an empty directory
# (templates, manifests and the demo must come from the wheel, not from the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
uv build --wheel --out-dir "$work/dist" >/dev/null
wheel="$(ls "$work"/dist/*.whl)"
# List once into a file: `zipfile -l | grep -q` fails under pipefail when grep stops reading early.
python3 -m zipfile -l "$wheel" >"$work/listing"
for needed in manifests/virtualmachine.yaml.j2 manifests/canary-vm.yaml.j2 reports/templates/connectivity.html.j2; do
  grep -q " *$needed" "$work/listing" || { echo "wheel lacks $needed" >&2; exit 1; }
done
uv venv --quiet --python 3.11 "$work/venv"
VIRTUAL_ENV="$work/venv" uv pip install --quiet "$wheel"
cp specs/seed-l2.yaml "$work/spec.yaml"
mkdir "$work/run"
cd "$work/run"
"$work/venv/bin/udn-rollout" --version
"$work/venv/bin/udn-rollout" render -f "$work/spec.yaml" -o "$work/out" >/dev/null
test -s "$work/out/20-cudn.yaml"
"$work/venv/bin/udn-rollout" demo --nodes 3 --vms-per-namespace 2 --reports-dir "$work/reports" | tail -n 12
ls "$work"/reports/*/summary.md >/dev/null
echo "wheel: render and demo ran from the installed package"
