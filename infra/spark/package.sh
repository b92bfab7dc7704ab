#!/usr/bin/env bash
# Package scaleclf for a Spark cluster into dist/spark/:
#   scaleclf.zip   our code (pipelines, jobs) for spark-submit --py-files
#   env.tar.gz     a relocatable copy of .venv (pyarrow, xgboost, numpy, scikit-learn) for
#                  --archives env.tar.gz#env with spark.pyspark.python=./env/bin/python,
#                  built with venv-pack when it is installed (pip install venv-pack).
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
        for path in sorted(Path(pkg).rglob("*.py")):
            zf.write(path)
PY
)
echo "wrote $out/scaleclf.zip (--py-files)" >&2
if "$PYTHON" -c "import venv_pack" 2>/dev/null; then
  "$PYTHON" -m venv_pack -p "$repo/.venv" -o "$out/env.tar.gz" --force
  echo "wrote $out/env.tar.gz (--archives env.tar.gz#env)" >&2
else
  echo "note: venv-pack is not installed, so no env.tar.gz was built; executors use the same" \
       "Python as the driver (fine on one machine). For a remote cluster: pip install venv-pack and rerun." >&2
fi
