#!/usr/bin/env bash
# Write the scaleclf local-simulation federation into Flower's config ($FLWR_HOME/config.toml,
# default ~/.flwr/config.toml), keeping any other connection already there.
#   infra/flower/write-federation.sh            # then: infra/flower/superlink.sh start; flwr run . local-simulation
# Port: SCALECLF_FLWR_PORT (default 29291), the SuperLink API that `flwr run` talks to (infra/flower/superlink.sh).
set -euo pipefail
home="${FLWR_HOME:-$HOME/.flwr}"
port="${SCALECLF_FLWR_PORT:-29291}"
mkdir -p "$home"
config="$home/config.toml"
python_bin="$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/python"
[ -x "$python_bin" ] || python_bin=python3
"$python_bin" - "$config" "$port" <<'PY'
import sys
from pathlib import Path

import tomli
import tomli_w

path, port = Path(sys.argv[1]), sys.argv[2]
data = tomli.loads(path.read_text()) if path.exists() else {}
link = data.setdefault("superlink", {})
link.setdefault("default", "local-simulation")
link["local-simulation"] = {"address": f"127.0.0.1:{port}", "insecure": True}
path.write_text(tomli_w.dumps(data))
print(path)
PY
