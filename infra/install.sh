#!/usr/bin/env bash
# Install scaleclf into a virtual environment from requirements.lock (pip constraints).
# The one install procedure: `make install` / `make install-core` and infra/docker/Dockerfile
# both run it, so CI exercises the image's install steps without a container engine.
#
#   infra/install.sh VENV core           # local engine, CLI, report
#   infra/install.sh VENV all            # + Spark, Dask, Ray, Flower, MLflow and the dev tools
#   infra/install.sh VENV EXTRAS --no-editable   # an image: a regular (non-editable) install
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:?usage: install.sh VENV core|all|EXTRA[,EXTRA...] [--no-editable]}"
what="${2:?usage: install.sh VENV core|all|EXTRA[,EXTRA...] [--no-editable]}"
mode="${3:-}"
PYTHON="${PYTHON:-python3}"
test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$repo/requirements.lock")
"${pip[@]}" --upgrade pip setuptools wheel
case "$what" in
  core) target="$repo" ;;
  all) target="$repo[dev]" ;;
  *) target="$repo[$what]" ;;
esac
if [[ "$mode" == --no-editable ]]; then
  "${pip[@]}" "$target"
else
  "${pip[@]}" -e "$target"
fi
