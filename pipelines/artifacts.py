"""Run directories written atomically, and model directories with a checksummed manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from pipelines import __version__
from pipelines.errors import ArtifactError, ConfigError

MANIFEST = "manifest.json"


def run_name(parent: Path, job: str, model: str, engine: str) -> str:
    """Return a run directory name not yet used in ``parent``: job-model-engine-YYYYmmdd-HHMMSS[-n]."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', job)}-{model}-{engine}-{stamp}"
    name, n = base, 1
    while (parent / name).exists() or any(parent.glob(f".{name}.tmp-*")):
        n += 1
        name = f"{base}-{n}"
    return name


class RunDirectory:
    """A run directory built in a hidden temporary sibling and renamed into place when complete.

    On any exception the temporary directory is removed (and the parent too if this run
    created it), so a failed run leaves nothing behind.
    """

    def __init__(self, parent: Path, name: str) -> None:
        self.parent = parent
        self.final = parent / name
        self.tmp = parent / f".{name}.tmp-{os.getpid()}"
        self._made_parent = False

    def __enter__(self) -> Path:
        if self.final.exists():
            raise ConfigError(f"config error: output.run_name: {self.final} already exists")
        if not self.parent.exists():
            self.parent.mkdir(parents=True)
            self._made_parent = True
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            os.replace(self.tmp, self.final)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self._made_parent:
            with contextlib.suppress(OSError):  # not empty: another run wrote there meanwhile
                self.parent.rmdir()


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Return versions of Python and the libraries a model file depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "scaleclf": __version__}
    for pkg in ("numpy", "pyarrow", "scikit-learn", "xgboost", "skops", "pyspark", "dask", "ray", "flwr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def write_manifest(model_dir: Path, info: dict[str, Any]) -> Path:
    """Write ``manifest.json`` with ``info``, library versions and the sha256 of every file."""
    files = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(model_dir).as_posix()] = sha256_file(path)
    manifest = {**info, "versions": library_versions(), "files": files}
    path = model_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_verified_manifest(model_dir: Path) -> dict[str, Any]:
    """Return the manifest after checking every listed file's sha256; raise ArtifactError if not."""
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{model_dir} is not a scaleclf model directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a valid manifest: {exc}") from exc
    for rel, expected in files.items():
        target = model_dir / rel
        if not target.is_file():
            raise ArtifactError(f"model file {target} listed in the manifest is missing")
        if sha256_file(target) != expected:
            raise ArtifactError(f"model file {target} does not match its sha256 in the manifest")
    return dict(manifest)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (NaN is not allowed: metrics use None instead)."""
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
    return path
