"""Resolve a data source (path, glob, URI, builtin:, synthetic:) to files every engine can read."""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pipelines.errors import ConfigError, DataError, first_line

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".txt")


@dataclass(frozen=True)
class Source:
    """Files of one data source: absolute paths or URIs, their format and filesystem."""

    text: str  # what the user wrote
    paths: tuple[str, ...]
    format: str  # "parquet" or "csv"
    filesystem: Any = field(default=None, compare=False)  # pyarrow FileSystem; None = local
    field: str = "data.source"  # the spec key (or option) that named it, for error messages

    @property
    def is_local(self) -> bool:
        """Return True when every path is on the local filesystem."""
        return self.filesystem is None

    def uris(self) -> list[str]:
        """Return the paths as URIs (``file://`` for local files) for engines that read them."""
        if self.is_local:
            return [Path(p).as_uri() for p in self.paths]
        return list(self.paths)


def cache_root() -> Path:
    """Return the directory where generated and builtin datasets are materialised."""
    return Path(os.environ.get("SCALECLF_CACHE", Path.home() / ".cache" / "scaleclf"))


def resolve_source(
    text: str,
    *,
    field_name: str = "data.source",
    rows: int | None = None,
    generator_seed: int = 0,
    fmt: str = "auto",
) -> Source:
    """Return the Source for ``text``; synthetic and builtin sets are written to Parquet first."""
    if text.startswith("synthetic:"):
        from pipelines.data import synthetic

        name = text.split(":", 1)[1]
        if rows is None:
            raise ConfigError(f"config error: data.rows: required for the synthetic source {text}")
        synthetic.get_task(name)
        directory = synthetic.materialize(name, rows, seed=generator_seed, cache_dir=cache_root() / "synthetic")
        return _local_source(text, str(directory), "parquet", field_name)
    if text.startswith("builtin:"):
        return _local_source(text, str(_materialize_builtin(text.split(":", 1)[1])), "parquet", field_name)
    if "://" in text and not text.startswith("file://"):
        return _remote_source(text, fmt, field_name)
    return _local_source(text, text.removeprefix("file://"), fmt, field_name)


def _materialize_builtin(name: str) -> Path:
    import pyarrow.parquet as pq

    from pipelines.data.builtin import load_builtin

    table = load_builtin(name)
    target = cache_root() / "builtin" / f"{name}.parquet"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    return target


def _detect_format(paths: list[str], fmt: str, field_name: str, text: str) -> str:
    if fmt != "auto":
        return fmt
    kinds = set()
    for p in paths:
        low = p.lower()
        if low.endswith(PARQUET_SUFFIXES):
            kinds.add("parquet")
        elif low.endswith(CSV_SUFFIXES):
            kinds.add("csv")
        else:
            kinds.add("unknown")
    if kinds == {"parquet"} or kinds == {"csv"}:
        return kinds.pop()
    if kinds == {"unknown"} and paths:
        # No suffix: Parquet files start with the magic bytes PAR1.
        return "parquet" if _looks_like_parquet(paths[0]) else "csv"
    raise ConfigError(
        f"config error: {field_name}: cannot tell the format of {text} (mixed or unknown suffixes);"
        " set data.format to parquet or csv"
    )


def _looks_like_parquet(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _list_local(text: str, path: str, field_name: str) -> list[str]:
    if any(ch in path for ch in "*?["):
        found = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise DataError(f"{field_name}: {text} matches no files")
        return [os.path.abspath(p) for p in found]
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{field_name}: {text} does not exist")
    if p.is_file():
        return [str(p.resolve())]
    found = sorted(
        str(f.resolve())
        for f in p.rglob("*")
        if f.is_file() and not f.name.startswith((".", "_")) and "/." not in str(f.relative_to(p))
    )
    if not found:
        raise DataError(f"{field_name}: directory {text} holds no data files")
    return found


def _local_source(text: str, path: str, fmt: str, field_name: str) -> Source:
    paths = _list_local(text, path, field_name)
    for p in paths:
        if os.path.getsize(p) == 0:
            raise DataError(f"{field_name}: file {p} is empty")
    fmt = _detect_format(paths, fmt, field_name, text)
    return Source(text=text, paths=tuple(paths), format=fmt, field=field_name)


def _remote_source(text: str, fmt: str, field_name: str) -> Source:
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        fs, root = _fsspec_filesystem(text, exc, field_name)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{field_name}: {text} does not exist")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
            paths = sorted(
                i.path for i in infos if i.type == pafs.FileType.File and not Path(i.path).name.startswith((".", "_"))
            )
        else:
            paths = [root]
    except OSError as exc:
        raise DataError(f"{field_name}: cannot list {text}: {str(exc).splitlines()[0]}") from exc
    if not paths:
        raise DataError(f"{field_name}: {text} holds no data files")
    fmt = _detect_format(paths, fmt if fmt != "auto" else "auto", field_name, text)
    scheme = text.split("://", 1)[0]
    return Source(text=text, paths=tuple(f"{scheme}://{p}" for p in paths), format=fmt, filesystem=fs, field=field_name)


def _fsspec_filesystem(text: str, cause: Exception, field_name: str) -> tuple[Any, str]:
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, root = fsspec.core.url_to_fs(text)
    except (ImportError, ValueError, OSError) as exc:
        raise DataError(f"{field_name}: no filesystem can open {text}: {exc}") from cause
    return PyFileSystem(FSSpecHandler(fs)), root


def csv_format(schema: pa.Schema | None = None) -> pads.CsvFileFormat:
    """Return how CSV files are parsed: empty unquoted fields are missing values, for strings too (as
    Spark and pandas read them); with ``schema``, its columns are parsed as its types."""
    convert = pacsv.ConvertOptions(
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        column_types={f.name: f.type for f in schema} if schema is not None else None,
    )
    return pads.CsvFileFormat(convert_options=convert)


def _local_paths(source: Source) -> list[str]:
    return [p.split("://", 1)[1] if not source.is_local else p for p in source.paths]


def open_dataset(source: Source, field_name: str = "data.source") -> pads.Dataset:
    """Return a pyarrow Dataset over the source's files, with a one-line error if unreadable."""
    try:
        fmt: pads.FileFormat = csv_format() if source.format == "csv" else pads.ParquetFileFormat()
        return pads.dataset(_local_paths(source), format=fmt, filesystem=source.filesystem)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataError(f"{field_name}: cannot read {source.text} as {source.format}: {first_line(exc)}") from exc


def file_schemas(source: Source, field_name: str = "data.source") -> list[tuple[str, pa.Schema]]:
    """Return every file's own schema (Parquet: its footer; CSV: the types of its first block)."""
    import pyarrow.parquet as pq

    out = []
    for path, local in zip(source.paths, _local_paths(source), strict=True):
        try:
            if source.format == "parquet":
                schema = pq.read_schema(local, filesystem=source.filesystem)
            else:
                schema = pads.dataset([local], format=csv_format(), filesystem=source.filesystem).schema
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise DataError(f"{field_name}: cannot read {path} as {source.format}: {first_line(exc)}") from None
        out.append((path, schema.remove_metadata()))
    return out


def read_schema(source: Source, field_name: str = "data.source") -> pa.Schema:
    """Return the union of the schemas of the source's files (types promoted where files differ)."""
    schemas = [schema for _, schema in file_schemas(source, field_name)]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            f"{field_name}: the files of {source.text} disagree on a column's type: {first_line(exc)}"
        ) from None


def read_table(source: Source, columns: list[str] | None = None, field_name: str = "data.source") -> pa.Table:
    """Return the whole source as one Arrow table (small data and tests only; engines use the reader)."""
    dataset = open_dataset(source, field_name)
    try:
        table = dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataError(f"{field_name}: cannot read {source.text} as {source.format}: {first_line(exc)}") from exc
    if table.num_rows == 0:
        raise DataError(f"{field_name}: {source.text} has no rows")
    return table
