"""Row keys and the deterministic train/valid/test split every engine computes identically.

A row's key is a 64-bit hash of its values (or of ``data.key`` when set); its split is a
function of that key and the seed only. Nothing depends on file order, partitioning or the
engine, so local, Spark, Dask, Ray and federated runs see the same test rows. Identical rows
share a key and therefore a split, which keeps duplicates from leaking between train and test.
Every class is split by the same thresholds, so class proportions match in expectation in
each split (the split is stratified up to sampling noise, about sqrt(n) rows per class).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import DataError

KEY_COLUMN = "__row_key"
SPLIT_COLUMN = "__split"
TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "valid", "test")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x5BD1E9955BD1E995)
_NAN = np.uint64(0x7FF8000000000000)


def mix64(x: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finaliser of a uint64 array (a bijective, well-mixing hash)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _hash_strings(values: Sequence[str | bytes]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        data = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        out[i] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return out


def column_codes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return one uint64 per value: numbers by their float64 bits, strings by a stable hash.

    Integers, booleans and floats are all widened to float64 first, so engines that infer
    ``int32``, ``int64`` or ``double`` for the same CSV column still agree.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    ):
        values = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        values = np.where(values == 0.0, 0.0, values)  # -0.0 and 0.0 are one value
        codes = values.view(np.uint64).copy()
        codes[np.isnan(values)] = _NAN
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        encoded = pc.dictionary_encode(column)
        dictionary = encoded.dictionary.to_pylist()
        table = _hash_strings(dictionary) if dictionary else np.empty(0, dtype=np.uint64)
        idx = np.asarray(encoded.indices.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        codes = table[idx] if len(table) else np.zeros(len(column), dtype=np.uint64)
    else:
        strings = pc.cast(column, pa.string())
        return column_codes(strings)
    codes[~valid] = _NULL
    return codes


def row_keys(table: pa.Table | pa.RecordBatch, columns: Sequence[str]) -> np.ndarray:
    """Return the uint64 row key of every row, hashing ``columns`` in sorted-name order."""
    keys = np.full(table.num_rows, _GOLDEN ^ np.uint64(len(columns)), dtype=np.uint64)
    for name in sorted(columns):
        with np.errstate(over="ignore"):
            keys = mix64(keys ^ column_codes(table.column(name)) + _GOLDEN)
    return keys


def split_uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """Return a number in [0, 1) per key, uniform over keys, that depends on the seed."""
    salt = mix64(np.array([seed], dtype=np.uint64) + _GOLDEN)[0]
    bits = mix64(keys ^ salt) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / (1 << 53))


def assign_split(keys: np.ndarray, seed: int, valid: float, test: float) -> np.ndarray:
    """Return TRAIN/VALID/TEST (int8) per key; ``test == 0`` sends rows to train/valid only."""
    u = split_uniform(keys, seed)
    out = np.full(len(keys), TRAIN, dtype=np.int8)
    out[u < test + valid] = VALID
    out[u < test] = TEST
    return out


def attach_key_and_split(
    batch: pa.Table | pa.RecordBatch,
    *,
    key_columns: Sequence[str],
    seed: int,
    valid: float,
    test: float,
    fixed_split: int | None = None,
) -> pa.Table | pa.RecordBatch:
    """Return ``batch`` with ``__row_key`` (uint64) and ``__split`` (int8) columns appended.

    ``fixed_split`` puts every row in one split (a fixed ``data.test_source`` is all TEST).
    """
    missing = [c for c in key_columns if c not in batch.schema.names]
    if missing:
        raise DataError(f"column {missing[0]!r} is missing from a batch of the data")
    keys = row_keys(batch, key_columns)
    if fixed_split is not None:
        split = np.full(len(keys), fixed_split, dtype=np.int8)
    else:
        split = assign_split(keys, seed, valid, test)
    out = batch.append_column(KEY_COLUMN, pa.array(keys, type=pa.uint64()))
    return out.append_column(SPLIT_COLUMN, pa.array(split, type=pa.int8()))
