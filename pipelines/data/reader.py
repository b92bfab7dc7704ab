"""The one row reader every engine uses: source pieces read with pyarrow, checked, keyed and split.

A source is cut into units (a Parquet row group, a CSV file, or a slice of one); every engine
reads its rows through ``read_units``, on whichever process holds the work (the driver for the
local engine, Spark executors in ``mapInArrow``, Dask workers, Ray tasks). Each unit is checked
against the plan's schema the same way everywhere: a column missing from a file, a value that
does not parse as its column's type, or a malformed CSV row is one ``DataError`` naming the file
and column, whatever the engine. So the same input is accepted or refused alike on every engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.sources import Source, csv_format
from pipelines.data.split import SPLIT_COLUMN
from pipelines.errors import DataError, first_line

if TYPE_CHECKING:
    from pipelines.data.schema import DataPlan


@dataclass(frozen=True)
class Unit:
    """One piece of a source an engine reads: a file, some row groups, or a slice of them."""

    path: str
    row_groups: tuple[int, ...] | None  # None = the whole file (CSV)
    part: int = 0
    parts: int = 1
    rows: int = 0  # rows in the piece (0 when unknown: CSV)


def _local_path(source: Source, path: str) -> str:
    return path if source.is_local else path.split("://", 1)[1]


def source_units(source: Source) -> list[Unit]:
    """Return the pieces of ``source`` in file order: one per Parquet row group, one per CSV file."""
    import pyarrow.parquet as pq

    units: list[Unit] = []
    for path in source.paths:
        if source.format == "parquet":
            try:
                meta = pq.ParquetFile(_local_path(source, path), filesystem=source.filesystem).metadata
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"{source.field}: cannot read {path} as parquet: {first_line(exc)}") from None
            units += [Unit(path, (g,), rows=meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        else:
            units.append(Unit(path, None))
    return units


def sliced_units(units: list[Unit], pieces: int) -> list[Unit]:
    """Return ``units`` with each cut into slices until there are at least ``pieces`` (same rows, same order)."""
    if len(units) >= pieces or not units:
        return units
    parts = -(-pieces // len(units))
    return [Unit(u.path, u.row_groups, p, parts, u.rows // parts) for u in units for p in range(parts)]


def balanced_units(units: list[Unit], workers: int) -> list[list[Unit]]:
    """Return, per worker, the pieces it reads: balanced by row count, each worker's in file order."""
    units = sliced_units(units, workers)
    order = {u: i for i, u in enumerate(units)}
    shares: list[list[Unit]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for unit in sorted(units, key=lambda u: -u.rows):
        i = loads.index(min(loads))
        shares[i].append(unit)
        loads[i] += unit.rows or 1
    return [sorted(share, key=order.__getitem__) for share in shares]


def contiguous_units(units: list[Unit], parts: int) -> list[list[Unit]]:
    """Return ``units`` cut into at most ``parts`` runs of consecutive pieces with similar row counts."""
    total = sum(u.rows or 1 for u in units) or 1
    runs: list[list[Unit]] = [[] for _ in range(max(1, min(parts, len(units))))]
    seen = 0
    for unit in units:
        runs[min(len(runs) - 1, seen * len(runs) // total)].append(unit)
        seen += unit.rows or 1
    return [run for run in runs if run]


def read_unit(plan: DataPlan, unit: Unit, source: Source) -> pa.Table:
    """Return one piece's rows as the plan's columns with the plan's types, or a DataError naming the file."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    schema = plan.read_schema
    try:
        if unit.row_groups is None:
            fmt = csv_format(schema)
            dataset = pads.dataset([_local_path(source, unit.path)], format=fmt, filesystem=source.filesystem)
            table = _with_missing(dataset.schema.names, schema, plan, unit, source, dataset.to_table)
        else:
            parquet = pq.ParquetFile(_local_path(source, unit.path), filesystem=source.filesystem)
            groups = list(unit.row_groups)
            table = _with_missing(
                parquet.schema_arrow.names,
                schema,
                plan,
                unit,
                source,
                lambda columns: parquet.read_row_groups(groups, columns=columns),
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataError(f"{source.field}: cannot read {unit.path} as {source.format}: {first_line(exc)}") from None
    if unit.parts > 1:
        step = -(-table.num_rows // unit.parts)
        table = table.slice(unit.part * step, step)
    return conform(table, schema, unit.path, source.field)


def _with_missing(
    present: list[str], schema: pa.Schema, plan: DataPlan, unit: Unit, source: Source, read: Callable[..., pa.Table]
) -> pa.Table:
    """Return ``read(columns=...)`` for the columns the file has, plus all-null columns for the ones it lacks.

    A lacking column is refused unless ``data.allow_missing_columns`` says it is missing data.
    """
    missing = [c for c in schema.names if c not in present]
    if missing and not plan.allow_missing_columns:
        raise DataError(
            f"{source.field}: column {missing[0]!r} is missing from {unit.path}"
            " (set data.allow_missing_columns: true to read it as missing values)"
        )
    table = read(columns=[c for c in schema.names if c in present])
    for name in missing:
        table = table.append_column(schema.field(name), pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names)


def conform(table: pa.Table, schema: pa.Schema, where: str, field: str) -> pa.Table:
    """Return ``table`` cast to ``schema`` column by column; a column that does not cast is a DataError."""
    if table.schema.equals(schema):
        return table
    columns = []
    for target in schema:
        column = table.column(target.name)
        if not column.type.equals(target.type):
            try:
                column = column.cast(target.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(
                    f"{field}: column {target.name!r} in {where} has type {column.type}, not {target.type}"
                    f" like the rest of the source: {first_line(exc)}"
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def iter_units(
    plan: DataPlan,
    units: list[Unit],
    source: Source | None = None,
    *,
    is_test_source: bool = False,
    split: int | None = None,
    stream_csv: bool = False,
) -> Iterator[pa.Table]:
    """Yield the rows of each of ``units`` in turn, keyed and split (one unit in memory at a time).

    ``split`` keeps one split's rows (None keeps every row); a unit with none of them yields an
    empty table. ``stream_csv`` reads a whole CSV file block by block (``csv_blocks``) instead
    of as one table.
    """
    source = source or plan.source
    for unit in units:
        pieces = csv_blocks(plan, unit, source) if unit.row_groups is None and unit.parts == 1 and stream_csv else None
        for piece in pieces or [read_unit(plan, unit, source)]:
            table = plan.attach(piece, is_test_source=is_test_source)
            if split is not None:
                table = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(split, pa.int8())))
            yield table


def csv_blocks(plan: DataPlan, unit: Unit, source: Source) -> Iterator[pa.Table]:
    """Yield a whole CSV file's rows block by block (pyarrow's CSV blocks), checked as ``read_unit`` checks them."""
    import pyarrow.dataset as pads

    schema = plan.read_schema
    try:
        dataset = pads.dataset(
            [_local_path(source, unit.path)], format=csv_format(schema), filesystem=source.filesystem
        )
        present = dataset.schema.names
        _with_missing(present, schema, plan, unit, source, lambda columns: schema.empty_table().select(columns))
        for batch in dataset.to_batches(columns=[c for c in schema.names if c in present]):
            block = pa.Table.from_batches([batch])
            table = _with_missing(present, schema, plan, unit, source, lambda columns, b=block: b.select(columns))
            yield conform(table, schema, unit.path, source.field)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataError(f"{source.field}: cannot read {unit.path} as {source.format}: {first_line(exc)}") from None


def read_units(
    plan: DataPlan,
    units: list[Unit],
    source: Source | None = None,
    *,
    is_test_source: bool = False,
    split: int | None = None,
) -> pa.Table:
    """Return the rows of ``units`` (of ``source``, default the plan's) with row key and split attached.

    ``split`` keeps one split's rows (None keeps every row).
    """
    source = source or plan.source
    tables = list(iter_units(plan, units, source, is_test_source=is_test_source, split=split))
    if not tables:
        return plan.attach(plan.read_schema.empty_table(), is_test_source=is_test_source)
    return pa.concat_tables(tables)
