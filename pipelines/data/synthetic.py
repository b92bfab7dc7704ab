"""Deterministic synthetic classification tasks, generated block by block in bounded memory.

Every task is cut into fixed blocks of ``BLOCK_ROWS`` rows; block ``i`` is drawn from
``np.random.default_rng([seed, i, task_id])`` alone. Row ``r`` of a dataset is therefore the same
whatever the total row count, the chunking or the output format: ``rows=N1`` is a prefix of
``rows=N2``, and any writer needs memory for one block only.

Tasks (label column ``label``, int64 0..k-1, unless stated):

- ``higgs``: binary, 28 float32 columns named as in the UCI HIGGS set: ``lepton_pt``,
  ``lepton_eta``, ``lepton_phi``, ``missing_energy_magnitude``, ``missing_energy_phi``,
  ``jet{1..4}_{pt,eta,phi,btag}`` (low level), then the invariant masses ``m_jj``, ``m_jjj``,
  ``m_lv``, ``m_jlv``, ``m_bb``, ``m_wbb``, ``m_wwbb`` reconstructed from them. Signal sits in
  mass windows, so linear models stay near AUC 0.70 while boosted trees reach about 0.85.
- ``imbalanced``: binary, ~2 % positives; ``x0..x19`` (8 informative, 6 noisy mixtures, 6 noise).
- ``multiclass``: 5 classes drawn from nonlinear class scores; ``x0..x19`` as above.
- ``moons``, ``circles``: binary, the 2-D shape in ``x0, x1`` plus noise columns ``x2, x3``.
- ``churn``: customer table with nulls in numeric and string columns, rare categories, a
  boolean, and the string label ``churned`` ("yes"/"no", ~23 % "yes").

Shifted copies, to show drift: ``NAME?shift=S&prior=P`` (in ``synthetic:`` sources, ``scaleclf data
generate`` and ``--data``). ``shift=S`` is a covariate shift: each generated row is kept with
probability ``sigmoid(S * z)``, where ``z`` is the sum of the block-standardised values of the
task's ``shift_columns``; ``P(label | features)`` is unchanged and ``shift=1`` moves each of those
columns by about half a standard deviation. ``prior=P`` is a label (prior) shift: rows of the
task's last class (``1``, or ``yes`` for churn) are thinned or the others are, so that the last
class makes up a share ``P`` of the rows; ``P(features | label)`` is unchanged. Both draw from their
own random stream, so a shifted dataset is the unshifted one minus the rejected rows, and without
a shift the data are byte for byte what they were before the option existed.
"""

from __future__ import annotations

import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.errors import ConfigError

BLOCK_ROWS = 65_536
BLOCKS_PER_PART = 8
# Part of the cache key: bump it whenever a generator changes so that stale caches are not reused.
GENERATOR_VERSION = 1

Columns = dict[str, np.ndarray | pa.Array]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _bernoulli(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return (rng.random(logit.shape[0]) < _sigmoid(logit)).astype(np.int64)


# --- higgs -------------------------------------------------------------------------------------


def _mass(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Return the invariant mass of massless objects given as (rows, objects) arrays."""
    e = (pt * np.cosh(eta)).sum(axis=1)
    px = (pt * np.cos(phi)).sum(axis=1)
    py = (pt * np.sin(phi)).sum(axis=1)
    pz = (pt * np.sinh(eta)).sum(axis=1)
    return np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))


def _higgs(rng: np.random.Generator, n: int) -> Columns:
    # Kinematics in the units of the UCI set (pT ~ 1). The neutrino is the missing energy at eta 0.
    lep = np.stack([rng.gamma(3.0, 0.33, n), np.clip(rng.normal(0, 1.0, n), -2.5, 2.5), rng.uniform(-np.pi, np.pi, n)])
    met = np.stack([rng.gamma(2.0, 0.5, n), np.zeros(n), rng.uniform(-np.pi, np.pi, n)])
    jet_pt = -np.sort(-rng.gamma(2.5, 0.4, (n, 4)), axis=1)  # jets are listed leading first
    jet_eta = np.clip(rng.normal(0, 1.1, (n, 4)), -2.5, 2.5)
    jet_phi = rng.uniform(-np.pi, np.pi, (n, 4))
    jet_btag = rng.choice([0.0, 1.0, 2.0], size=(n, 4), p=[0.55, 0.2, 0.25])
    # The two most b-like jets form the Higgs candidate, the other two the hadronic W.
    order = np.argsort(-(jet_btag + 0.01 * jet_pt), axis=1, kind="stable")
    jets = [np.take_along_axis(a, order, axis=1) for a in (jet_pt, jet_eta, jet_phi)]

    def m(*objects: tuple[np.ndarray, ...]) -> np.ndarray:
        return _mass(*(np.stack(parts, axis=1) for parts in zip(*objects, strict=True)))

    b1, b2, w1, w2 = ((jets[0][:, k], jets[1][:, k], jets[2][:, k]) for k in range(4))
    lv = (tuple(lep), tuple(met))
    high = {
        "m_jj": m(w1, w2),
        "m_jjj": m(w1, w2, b1),
        "m_lv": m(*lv),
        "m_jlv": m(*lv, b2),
        "m_bb": m(b1, b2),
        "m_wbb": m(*lv, b1, b2),
        "m_wwbb": m(*lv, w1, w2, b1, b2),
    }
    # Signal: resonances in m_bb, m_wwbb and a W-like m_jj, b-tags, a hard central lepton.
    n_btag = (jet_btag > 0).sum(axis=1)
    logit = (
        -3.15
        + 3.3 * np.exp(-0.5 * ((high["m_bb"] - 1.6) / 0.3) ** 2)
        + 2.3 * np.exp(-0.5 * ((np.log(high["m_wwbb"]) - np.log(7.0)) / 0.2) ** 2)
        + 1.6 * np.exp(-0.5 * ((high["m_jj"] - 1.2) / 0.3) ** 2)
        + 0.7 * n_btag
        + 1.2 * np.tanh(lep[0] - 1.0)
        - 0.35 * np.abs(lep[1]) * np.abs(jets[1][:, 0])
    )
    low = {"lepton_pt": lep[0], "lepton_eta": lep[1], "lepton_phi": lep[2]}
    low |= {"missing_energy_magnitude": met[0], "missing_energy_phi": met[2]}
    for j in range(4):
        low |= {
            f"jet{j + 1}_{v}": a[:, j]
            for v, a in zip(("pt", "eta", "phi", "btag"), (jet_pt, jet_eta, jet_phi, jet_btag), strict=True)
        }
    out: Columns = {name: values.astype(np.float32) for name, values in (low | high).items()}
    out["label"] = _bernoulli(rng, logit)
    return out


# --- imbalanced, multiclass, moons, circles ----------------------------------------------------


def _with_redundant(rng: np.random.Generator, informative: np.ndarray, n_redundant: int, n_noise: int) -> np.ndarray:
    """Return informative columns, noisy linear mixtures of them, then pure noise columns."""
    n, k = informative.shape
    mixing = rng.normal(0, 1 / np.sqrt(k), (k, n_redundant))
    redundant = informative @ mixing + rng.normal(0, 0.5, (n, n_redundant))
    return np.hstack([informative, redundant, rng.normal(0, 1, (n, n_noise))])


def _features(x: np.ndarray) -> dict[str, np.ndarray]:
    return {f"x{j}": x[:, j] for j in range(x.shape[1])}


def _imbalanced(rng: np.random.Generator, n: int) -> Columns:
    z = rng.normal(0, 1, (n, 8))
    z[:, 6] = rng.lognormal(0, 0.75, n)  # a skewed, positive column, as amounts are
    logit = (
        -7.2
        + 1.1 * z[:, 0]
        - 0.8 * z[:, 1]
        + 1.3 * z[:, 2] * z[:, 3]
        + 2.0 * (z[:, 4] > 1.0)
        + 1.2 * np.sin(2.0 * z[:, 5])
        + 0.8 * np.log(z[:, 6])
        + 0.9 * np.abs(z[:, 7])
    )
    out: Columns = _features(_with_redundant(rng, z, 6, 6))
    out["label"] = _bernoulli(rng, logit)
    return out


def _multiclass(rng: np.random.Generator, n: int) -> Columns:
    z = rng.normal(0, 1, (n, 8))
    # One score per class, each mixing a linear direction with a different nonlinearity.
    scores = np.stack(
        [
            1.5 * z[:, 0] + 1.2 * z[:, 1] * z[:, 2],
            -1.5 * z[:, 0] + 1.5 * np.abs(z[:, 3]) - 1.0,
            1.2 * (z[:, 4] ** 2 - 1.0) + 1.5 * np.sin(2.0 * z[:, 5]),
            1.5 * z[:, 1] - 1.2 * z[:, 6] * z[:, 7],
            1.2 * z[:, 2] + 1.5 * np.cos(2.0 * z[:, 3]) - 0.4 * z[:, 4],
        ],
        axis=1,
    )
    label = np.argmax(2.0 * scores + rng.gumbel(0, 1, scores.shape), axis=1)  # softmax sampling
    out: Columns = _features(_with_redundant(rng, z, 6, 6))
    out["label"] = label.astype(np.int64)
    return out


def _flip(rng: np.random.Generator, label: np.ndarray, rate: float) -> np.ndarray:
    return np.where(rng.random(label.shape[0]) < rate, 1 - label, label).astype(np.int64)


def _moons(rng: np.random.Generator, n: int) -> Columns:
    label = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    x0 = np.where(label == 0, np.cos(t), 1.0 - np.cos(t)) + rng.normal(0, 0.15, n)
    x1 = np.where(label == 0, np.sin(t), 0.75 - np.sin(t)) + rng.normal(0, 0.15, n)
    out: Columns = {"x0": x0, "x1": x1, "x2": rng.normal(0, 1, n), "x3": rng.normal(0, 1, n)}
    out["label"] = _flip(rng, label, 0.03)
    return out


def _circles(rng: np.random.Generator, n: int) -> Columns:
    label = rng.integers(0, 2, n)
    t = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(label == 1, 0.5, 1.0)
    x0 = radius * np.cos(t) + rng.normal(0, 0.1, n)
    x1 = radius * np.sin(t) + rng.normal(0, 0.1, n)
    out: Columns = {"x0": x0, "x1": x1, "x2": rng.normal(0, 1, n), "x3": rng.normal(0, 1, n)}
    out["label"] = _flip(rng, label, 0.05)
    return out


# --- churn -------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, n: int, levels: dict[str, float]) -> np.ndarray:
    return rng.choice(np.array(list(levels)), size=n, p=np.array(list(levels.values())))


def _with_nulls(rng: np.random.Generator, values: np.ndarray, null_rate: float) -> pa.Array:
    return pa.array(values, mask=rng.random(values.shape[0]) < null_rate)


def _churn(rng: np.random.Generator, n: int) -> Columns:
    # Rare levels (legacy, crypto, islands) test unseen-category handling after a split.
    plan = _pick(rng, n, {"basic": 0.35, "standard": 0.34, "premium": 0.2, "family": 0.1, "legacy": 0.01})
    contract = _pick(rng, n, {"month_to_month": 0.5, "one_year": 0.25, "two_year": 0.25})
    payment = _pick(rng, n, {"card": 0.4, "bank_transfer": 0.3, "paypal": 0.22, "check": 0.06, "crypto": 0.02})
    region = _pick(rng, n, {"north": 0.3, "south": 0.28, "east": 0.22, "west": 0.195, "islands": 0.005})
    tenure = np.minimum(rng.geometric(1 / 24, n), 72).astype(np.int64)
    base_fee = np.select([plan == "basic", plan == "premium", plan == "family"], [25.0, 95.0, 110.0], 60.0)
    monthly = np.round(base_fee + rng.normal(0, 12, n).clip(-20, 40), 2)
    total = np.round(tenure * monthly * rng.uniform(0.9, 1.05, n), 2)
    support_calls = rng.poisson(1.2, n).astype(np.int64)
    usage = np.round(rng.lognormal(2.5, 0.8, n), 1)
    age = rng.integers(18, 90, n).astype(np.int64)
    paperless = rng.random(n) < 0.6
    # Short month-to-month customers with service trouble leave; long contracts keep them.
    logit = (
        -1.45
        + 1.3 * (contract == "month_to_month")
        - 0.9 * (contract == "two_year")
        - 0.04 * tenure
        + 1.0 * ((contract == "month_to_month") & (tenure < 6))
        + 0.45 * support_calls
        + 0.015 * (monthly - 60.0)
        + 0.7 * (payment == "check")
        + 0.3 * paperless
        + 1.0 * (plan == "legacy")
        - 0.25 * np.log1p(usage)
        + 0.4 * (age < 25)
    )
    churned = np.where(rng.random(n) < _sigmoid(logit), "yes", "no")
    return {
        "tenure_months": _with_nulls(rng, tenure, 0.05),
        "monthly_charges": _with_nulls(rng, monthly, 0.07),
        "total_charges": _with_nulls(rng, total, 0.08),
        "support_calls": _with_nulls(rng, support_calls, 0.06),
        "data_usage_gb": _with_nulls(rng, usage, 0.09),
        "age": _with_nulls(rng, age, 0.05),
        "plan": _with_nulls(rng, plan, 0.02),
        "region": _with_nulls(rng, region, 0.01),
        "payment_method": _with_nulls(rng, payment, 0.04),
        "contract": pa.array(contract),
        "paperless_billing": pa.array(paperless),
        "churned": pa.array(churned),
    }


# --- the task table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticTask:
    """A named generator of one classification task, drawn in fixed blocks of rows."""

    name: str
    description: str
    n_features: int
    generate: Callable[[np.random.Generator, int], Columns] = field(repr=False, compare=False)
    label: str = "label"
    classes: tuple[int | str, ...] = (0, 1)
    shift_columns: tuple[str, ...] = ("x0", "x1", "x2")  # what ``shift=S`` tilts

    @property
    def task(self) -> str:
        """Return "binary" or "multiclass"."""
        return "binary" if len(self.classes) == 2 else "multiclass"

    @property
    def task_id(self) -> int:
        """Return the stable integer that separates this task's random streams from the others'."""
        return zlib.crc32(self.name.encode())

    def block(self, index: int, seed: int) -> pa.Table:
        """Return block ``index`` (``BLOCK_ROWS`` rows, features then label) for ``seed``."""
        _check_seed(seed)
        if index < 0:
            raise ConfigError(f"block index: must be >= 0, got {index}")
        return pa.table(self.generate(np.random.default_rng([seed, index, self.task_id]), BLOCK_ROWS))


GENERATORS: dict[str, SyntheticTask] = {
    t.name: t
    for t in [
        SyntheticTask(
            "higgs",
            "HIGGS-like: 21 kinematic + 7 invariant-mass features, ~53% signal",
            28,
            _higgs,
            shift_columns=("lepton_pt", "missing_energy_magnitude", "m_bb"),
        ),
        SyntheticTask("imbalanced", "~2% positives, 20 features with interactions and thresholds", 20, _imbalanced),
        SyntheticTask(
            "multiclass",
            "5 classes, 20 features, nonlinear boundaries, label noise",
            20,
            _multiclass,
            classes=(0, 1, 2, 3, 4),
        ),
        SyntheticTask(
            "moons",
            "interleaved half-moons (x0, x1) + 2 noise columns, 3% flipped labels",
            4,
            _moons,
            shift_columns=("x0",),
        ),
        SyntheticTask(
            "circles",
            "concentric circles (x0, x1) + 2 noise columns, 5% flipped labels",
            4,
            _circles,
            shift_columns=("x0",),
        ),
        SyntheticTask(
            "churn",
            "customer churn: numerics with nulls, string categoricals, a boolean; churned yes/no",
            11,
            _churn,
            label="churned",
            classes=("no", "yes"),
            shift_columns=("monthly_charges", "tenure_months"),
        ),
    ]
}


@dataclass(frozen=True)
class Shift:
    """A documented distribution shift of a synthetic task (see the module docstring)."""

    covariate: float = 0.0
    prior: float | None = None

    @property
    def active(self) -> bool:
        """Return True when the shift changes the data."""
        return self.covariate != 0.0 or self.prior is not None

    def cache_suffix(self) -> str:
        """Return what the shift adds to a cache directory name ("" without a shift)."""
        out = f"-shift{self.covariate:g}" if self.covariate else ""
        return out + (f"-prior{self.prior:g}" if self.prior is not None else "")


def parse_name(text: str) -> tuple[SyntheticTask, Shift]:
    """Return the task and the shift of ``NAME`` or ``NAME?shift=S&prior=P``."""
    name, _, query = text.partition("?")
    try:
        task = GENERATORS[name]
    except KeyError:
        raise ConfigError(f"synthetic task {name!r} is unknown; choose one of {', '.join(GENERATORS)}") from None
    values: dict[str, float] = {}
    for item in filter(None, query.split("&")):
        key, sep, raw = item.partition("=")
        if key not in ("shift", "prior") or not sep:
            raise ConfigError(f"synthetic:{text}: unknown option {item!r} (allowed: shift=S, prior=P)")
        try:
            values[key] = float(raw)
        except ValueError:
            raise ConfigError(f"synthetic:{text}: {key} must be a number, got {raw!r}") from None
    prior = values.get("prior")
    if prior is not None and not 0.0 < prior < 1.0:
        raise ConfigError(f"synthetic:{text}: prior must be between 0 and 1 (exclusive), got {prior:g}")
    return task, Shift(values.get("shift", 0.0), prior)


def get_task(name: str) -> SyntheticTask:
    """Return the synthetic task called ``name`` (a ``?shift=...`` suffix allowed) or raise a ConfigError."""
    return parse_name(name)[0]


def _check_rows(rows: int) -> None:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise ConfigError(f"rows: must be an integer >= 1, got {rows!r}")


def _check_seed(seed: int) -> None:
    # SeedSequence rejects negative entries; say so in the user's words.
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")


# --- streaming and writing ---------------------------------------------------------------------


def _blocks(task: SyntheticTask, rows: int, seed: int) -> Iterator[pa.Table]:
    """Yield the blocks of a ``rows``-row dataset, the final one trimmed."""
    n_blocks = -(-rows // BLOCK_ROWS)
    for index in range(n_blocks):
        table = task.block(index, seed)
        remaining = rows - index * BLOCK_ROWS
        yield table if remaining >= BLOCK_ROWS else table.slice(0, remaining)


def _kept_rows(task: SyntheticTask, shift: Shift, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
    """Return the mask of the block's rows a shift keeps (selection leaves P(y|x) or P(x|y) alone)."""
    keep = np.ones(table.num_rows, dtype=bool)
    if shift.covariate:
        z = np.zeros(table.num_rows)
        for col in task.shift_columns:
            values = np.asarray(table.column(col).to_numpy(zero_copy_only=False), dtype=np.float64)
            ok = np.isfinite(values)
            mean, sd = values[ok].mean(), values[ok].std() or 1.0
            z += np.where(ok, (values - mean) / sd, 0.0)
        keep &= rng.random(table.num_rows) < _sigmoid(shift.covariate * z)
    if shift.prior is not None:
        last = np.asarray(table.column(task.label).to_numpy(zero_copy_only=False)) == task.classes[-1]
        share = last[keep].mean()
        if 0.0 < share < 1.0:
            target = shift.prior
            if target > share:  # thin the other classes
                accept = np.where(last, 1.0, share * (1 - target) / (target * (1 - share)))
            else:  # thin the last class
                accept = np.where(last, target * (1 - share) / (share * (1 - target)), 1.0)
            keep &= rng.random(table.num_rows) < accept
    return keep


def _shifted_blocks(task: SyntheticTask, shift: Shift, rows: int, seed: int) -> Iterator[pa.Table]:
    """Yield ``BLOCK_ROWS``-row tables of the shifted task until ``rows`` rows (the last one trimmed)."""

    def kept() -> Iterator[pa.Table]:
        left, index = rows, 0
        while left > 0:
            table = task.block(index, seed)
            rng = np.random.default_rng([seed, index, task.task_id, 1])  # its own stream: the data stay as drawn
            table = table.filter(pa.array(_kept_rows(task, shift, table, rng)))
            yield table.slice(0, left)
            left -= min(left, table.num_rows)
            index += 1

    return _rechunk(kept(), BLOCK_ROWS)


def _stream(name: str, rows: int, seed: int) -> Iterator[pa.Table]:
    task, shift = parse_name(name)
    return _shifted_blocks(task, shift, rows, seed) if shift.active else _blocks(task, rows, seed)


def iter_rows(name: str, rows: int, seed: int = 0, chunk_rows: int = BLOCK_ROWS) -> Iterator[pa.Table]:
    """Return an iterator of consecutive tables of ``chunk_rows`` rows (the last one shorter).

    Memory is bounded by one block plus one chunk whatever ``rows`` is.
    """
    _check_rows(rows)
    _check_seed(seed)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows: must be an integer >= 1, got {chunk_rows!r}")
    return _rechunk(_stream(name, rows, seed), int(chunk_rows))


def _rechunk(blocks: Iterator[pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    pending_rows = 0
    for block in blocks:
        offset = 0
        while offset < block.num_rows:
            take = min(chunk_rows - pending_rows, block.num_rows - offset)
            pending.append(block.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == chunk_rows:
                yield pa.concat_tables(pending)
                pending, pending_rows = [], 0
    if pending:
        yield pa.concat_tables(pending)


def _write_parquet(blocks: Iterator[pa.Table], path: Path) -> None:
    writer: pq.ParquetWriter | None = None
    try:
        for block in blocks:
            if writer is None:
                writer = pq.ParquetWriter(path, block.schema)
            writer.write_table(block, row_group_size=BLOCK_ROWS)
    finally:
        if writer is not None:
            writer.close()


def _write_csv(blocks: Iterator[pa.Table], path: Path) -> None:
    writer: pacsv.CSVWriter | None = None
    try:
        for block in blocks:
            if writer is None:
                writer = pacsv.CSVWriter(path, block.schema)
            writer.write_table(block)
    finally:
        if writer is not None:
            writer.close()


def _write_parts(blocks: Iterator[pa.Table], directory: Path) -> list[Path]:
    """Write part-00000.parquet, ... (up to ``BLOCKS_PER_PART`` blocks each) into ``directory``."""
    parts: list[Path] = []
    pending: list[pa.Table] = []
    for block in blocks:
        pending.append(block)
        if len(pending) == BLOCKS_PER_PART:
            parts.append(directory / f"part-{len(parts):05d}.parquet")
            _write_parquet(iter(pending), parts[-1])
            pending = []
    if pending:
        parts.append(directory / f"part-{len(parts):05d}.parquet")
        _write_parquet(iter(pending), parts[-1])
    return parts


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _is_parts_dir(path: Path) -> bool:
    """Return True when ``path`` holds only part-NNNNN.parquet files, as written by write_dataset."""
    return all(p.is_file() and p.name.startswith("part-") and p.suffix == ".parquet" for p in path.iterdir())


def write_dataset(name: str, rows: int, out: Path, seed: int = 0) -> list[Path]:
    """Return the files written: ``rows`` rows of task ``name`` as one .parquet, one .csv or a directory of parts.

    Output goes to a hidden temporary sibling first and is renamed into place when complete, so an
    error or Ctrl-C leaves nothing half-written. An existing file is replaced; an existing
    directory only when it holds nothing but Parquet parts from an earlier run.
    """
    get_task(name)
    _check_rows(rows)
    _check_seed(seed)
    out = Path(out)
    kind = {".parquet": "parquet", ".csv": "csv"}.get(out.suffix.lower(), "dir")
    if out.is_dir() and (kind != "dir" or not _is_parts_dir(out)):
        raise ConfigError(f"out: {out} is an existing directory that write_dataset did not create; choose another path")
    if kind == "dir" and out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} is an existing file; give a directory, a .parquet or a .csv path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        if kind == "parquet":
            _write_parquet(_stream(name, rows, seed), tmp)
        elif kind == "csv":
            _write_csv(_stream(name, rows, seed), tmp)
        else:
            tmp.mkdir()
            names = [p.name for p in _write_parts(_stream(name, rows, seed), tmp)]
            if out.exists():
                # A directory cannot be replaced in one step: move the old one aside first.
                old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
                os.replace(out, old)
                os.replace(tmp, out)
                _remove(old)
            else:
                os.replace(tmp, out)
            return [out / n for n in names]
        os.replace(tmp, out)
        return [out]
    except BaseException:
        _remove(tmp)
        raise


def default_cache_dir() -> Path:
    """Return where materialised synthetic datasets live: $SCALECLF_CACHE/synthetic or ~/.cache/scaleclf/synthetic."""
    root = os.environ.get("SCALECLF_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "scaleclf") / "synthetic"


def materialize(name: str, rows: int, seed: int = 0, cache_dir: Path | None = None) -> Path:
    """Return a cached directory of Parquet parts holding ``rows`` rows of task ``name``.

    The directory is generated once per (name, shift, rows, seed, generator version) into a
    temporary directory and renamed into place; when another process finished first, its copy is used.
    """
    task, shift = parse_name(name)
    _check_rows(rows)
    _check_seed(seed)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / f"{task.name}{shift.cache_suffix()}-rows{rows}-seed{seed}-v{GENERATOR_VERSION}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _write_parts(_stream(name, rows, seed), tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # Renaming onto a non-empty directory fails: a concurrent writer won; same bytes.
            if not final.is_dir():
                raise
    finally:
        _remove(tmp)
    return final
