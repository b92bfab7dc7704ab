#!/usr/bin/env bash
# Package scaleclf for a Spark cluster into dist/spark/:
#   scaleclf.zip   our code (pipelines, jobs) for spark-submit --py-files
#   env.tar.gz     a relocatable copy of .venv (pyarrow, xgboost, numpy, scikit-learn) for
#                  --archives env.tar.gz#env with spark.pyspark.python=./env/bin/python,
#                  built with venv-pack from a fresh venv of the core install (~2 min).
# SCALECLF_SHIP=1 infra/spark/submit.sh ... ships both (env.tar.gz when it was built).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
out="$repo/dist/spark"
mkdir -p "$out"
rm -f "$out/scaleclf.zip"
(cd "$repo" && "$PYTHON" - "$out/scaleclf.zip" <<'PY'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as zf:
    for pkg in ("pipelines", "jobs"):
        # Code and package data (the report's templates): a driver or executor that imports
        # scaleclf from this zip alone must find both.
        for path in sorted(Path(pkg).rglob("*")):
            if path.suffix in (".py", ".j2", ".css", ".json"):
                zf.write(path)
PY
)
echo "wrote $out/scaleclf.zip (--py-files)" >&2
# The executor environment: a fresh venv holding scaleclf's core install (numpy, pyarrow,
# scikit-learn, xgboost and our code, non-editable: venv-pack refuses editable installs) from
# the same pins as .venv, packed relocatably. It omits pyspark (the cluster brings its own),
# Ray, Dask and Flower. venv-pack keeps the interpreter as a link: executors need Python 3.11
# at the same path as this machine's (or pass --python-prefix to venv-pack yourself).
if [[ "${SCALECLF_SKIP_ENV:-0}" == 1 ]]; then
  echo "SCALECLF_SKIP_ENV=1: no env.tar.gz built" >&2
  exit 0
fi
if ! "$PYTHON" -c "import venv_pack" 2>/dev/null; then
  echo "error: venv-pack is missing from .venv; run make install (it is pinned in the spark extra)" >&2
  exit 1
fi
build="$out/executor-venv"
rm -rf "$build" "$out/env.tar.gz"
base_python="$("$PYTHON" -c 'import sys; print(sys._base_executable)')"
"$base_python" -m venv "$build"
"$build/bin/python" -m pip install -q --disable-pip-version-check -c "$repo/requirements.lock" "$repo"
"$PYTHON" -m venv_pack -p "$build" -o "$out/env.tar.gz" --force -q
rm -rf "$build"
echo "wrote $out/env.tar.gz (--archives env.tar.gz#env, spark.pyspark.python=./env/bin/python)" >&2
