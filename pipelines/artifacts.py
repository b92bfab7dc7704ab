"""Run directories written atomically, and model directories with a checksummed manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pipelines import __version__
from pipelines.errors import ArtifactError, ConfigError

MANIFEST = "manifest.json"
MANIFEST_PATH = f"model/{MANIFEST}"  # the run's manifest, relative to the run directory
SIGNING_KEY_ENV = "SCALECLF_SIGNING_KEY"
SIGNING_KEY_FILE_ENV = "SCALECLF_SIGNING_KEY_FILE"
SIGNATURE_ALGORITHM = "hmac-sha256"
_unsigned_said = False  # the "no signing key" line is printed once per process


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

    The final name is reserved first, atomically (an empty directory made with ``mkdir``), so a
    name already taken is refused before any work and two runs never race for one name. On
    success the run is sealed (:func:`seal_run`: the manifest lists and signs every file) and
    renamed onto the reservation. On any exception, KeyboardInterrupt and SystemExit included,
    the temporary directory and the reservation are removed (and the parent too if this run
    created it), so a failed or interrupted run leaves nothing behind.
    """

    def __init__(self, parent: Path, name: str, *, generated: bool = False) -> None:
        self.parent = parent
        self.final = parent / name
        self.tmp = parent / f".{name}.tmp-{os.getpid()}"
        self._made_parent = False
        self._reserved = False
        self._generated = generated  # a name scaleclf chose: another process taking it means "-2", not an error

    def __enter__(self) -> Path:
        if not self._generated and (self.final.exists() or self.final.is_symlink()):
            raise ConfigError(f"config error: output.run_name: {self.final} already exists")
        if not self.parent.exists():
            self.parent.mkdir(parents=True)
            self._made_parent = True
        base, n = self.final.name, 1
        while True:
            try:
                self.final.mkdir()
                break
            except FileExistsError:
                if not self._generated:
                    raise ConfigError(f"config error: output.run_name: {self.final} already exists") from None
                n += 1
                self.final = self.parent / f"{base}-{n}"
                self.tmp = self.parent / f".{base}-{n}.tmp-{os.getpid()}"
        self._reserved = True
        try:
            self.tmp.mkdir()
        except BaseException:
            self._clean()
            raise
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            try:
                seal_run(self.tmp)
                os.replace(self.tmp, self.final)
                return
            except BaseException:
                self._clean()
                raise
        self._clean()

    def _clean(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self._reserved:
            with contextlib.suppress(OSError):
                self.final.rmdir()
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
    """Write ``manifest.json`` with ``info`` and library versions; :func:`seal_run` adds the files and signature."""
    manifest = {**info, "versions": library_versions(), "files": {}, "signature": None}
    path = model_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def signing_key() -> bytes | None:
    """Return the key run directories are signed and verified with (``$SCALECLF_SIGNING_KEY[_FILE]``), or None."""
    value = os.environ.get(SIGNING_KEY_ENV)
    if value:
        return value.encode()
    named = os.environ.get(SIGNING_KEY_FILE_ENV)
    if not named:
        return None
    try:
        key = Path(named).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{SIGNING_KEY_FILE_ENV}: cannot read {named}: {exc.strerror or exc}") from None
    if not key:
        raise ConfigError(f"{SIGNING_KEY_FILE_ENV}: {named} is empty")
    return key


def _signature(manifest: dict[str, Any], key: bytes) -> str:
    """Return the HMAC-SHA256 of the manifest's canonical JSON, its ``signature`` field left out."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _run_files(run_dir: Path) -> Iterator[tuple[str, Path]]:
    """Yield (path relative to ``run_dir``, path) of every entry that is not a directory, manifest left out."""
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if rel == MANIFEST_PATH or (path.is_dir() and not path.is_symlink()):
            continue
        yield rel, path


def seal_run(run_dir: Path) -> Path:
    """Record the sha256 of every file of the finished run in ``model/manifest.json`` and sign it.

    Called last, when nothing else will be written in the run directory (logs included). The
    signature is an HMAC-SHA256 with :func:`signing_key`; without a key the manifest is unsigned
    and a reader can check only that nothing changed since someone last recomputed the checksums.
    """
    path = run_dir / MANIFEST_PATH
    path.parent.mkdir(exist_ok=True)
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest["files"] = {rel: sha256_file(p) for rel, p in _run_files(run_dir)}
    key = signing_key()
    manifest["signature"] = (
        None if key is None else {"algorithm": SIGNATURE_ALGORITHM, "hmac": _signature(manifest, key)}
    )
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def _say_unsigned_once() -> None:
    global _unsigned_said
    if not _unsigned_said:
        _unsigned_said = True
        sys.stderr.write(
            f"warning: no signing key ({SIGNING_KEY_ENV} or {SIGNING_KEY_FILE_ENV}): run directories are checked"
            " against their checksums only, not authenticated\n"
        )


def verify_run(run_dir: Path, format_version: int | None = None) -> dict[str, Any]:
    """Return a run directory's manifest after checking it covers every file, unchanged, and its signature.

    Raises an ArtifactError (exit 5) naming the first file that is unlisted, missing, changed or
    not a plain file, or the manifest when its signature is absent or wrong. Nothing of the run is
    read before this returns. Without a signing key it says so once and checks checksums only.
    """
    path = run_dir / MANIFEST_PATH
    if not path.is_file() or path.is_symlink():
        raise ArtifactError(f"{run_dir} is not a scaleclf run directory (no {MANIFEST_PATH})")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise ValueError("files is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path} is not a valid manifest: {exc}") from None
    if format_version is not None and manifest.get("format_version") != format_version:
        raise ArtifactError(
            f"{run_dir / 'model'} was written in model format {manifest.get('format_version')!r}; this scaleclf reads"
            f" format {format_version}: train the run again"
        )
    key = signing_key()
    signed = manifest.get("signature")
    if key is None:
        _say_unsigned_once()
    elif not isinstance(signed, dict) or signed.get("algorithm") != SIGNATURE_ALGORITHM:
        raise ArtifactError(f"{path} is not signed, and {SIGNING_KEY_ENV} is set: scaleclf does not load it")
    elif not hmac.compare_digest(str(signed.get("hmac")), _signature(manifest, key)):
        raise ArtifactError(f"{path}: the signature does not match (edited, or signed with another key)")
    present = dict(_run_files(run_dir))
    for rel, target in present.items():
        if target.is_symlink() or not target.is_file():
            raise ArtifactError(f"{target} is not a plain file; a run directory holds only plain files")
        if rel not in files:
            raise ArtifactError(f"{target} is not listed in the run's manifest; scaleclf does not load it")
    for rel, expected in files.items():
        target = run_dir / rel
        if rel not in present:
            raise ArtifactError(f"{target} is listed in the run's manifest but missing")
        if sha256_file(target) != expected:
            raise ArtifactError(f"{target} does not match its sha256 in the run's manifest (changed)")
    return dict(manifest)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (NaN is not allowed: metrics use None instead)."""
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
    return path
