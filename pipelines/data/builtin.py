"""Small classification datasets bundled inside scikit-learn, loaded as Arrow tables.

These ship with the installed package, so ``builtin:NAME`` never touches the network. The
scikit-learn sets that are fetched on first use are refused with a message saying so, because
scaleclf downloads nothing at run time.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines.errors import ConfigError

LABEL = "target"

# scikit-learn's fetch_* sets: they need a download, which scaleclf does not do at run time.
DOWNLOADABLE = (
    "covtype",
    "kddcup99",
    "20newsgroups",
    "20newsgroups_vectorized",
    "california_housing",
    "olivetti_faces",
    "lfw_people",
    "lfw_pairs",
    "rcv1",
    "species_distributions",
)


@dataclass(frozen=True)
class BuiltinDataset:
    """One bundled dataset: its scikit-learn loader and the shape it is known to have."""

    name: str
    description: str
    loader: str  # function name in sklearn.datasets; imported on use so startup stays fast
    rows: int
    n_features: int
    n_classes: int


BUILTIN: dict[str, BuiltinDataset] = {
    d.name: d
    for d in [
        BuiltinDataset("breast_cancer", "Wisconsin diagnostic breast cancer, binary", "load_breast_cancer", 569, 30, 2),
        BuiltinDataset("digits", "8x8 images of handwritten digits, 10 classes", "load_digits", 1797, 64, 10),
        BuiltinDataset("wine", "chemical analysis of three wine cultivars", "load_wine", 178, 13, 3),
        BuiltinDataset("iris", "Fisher's iris flowers, 3 classes", "load_iris", 150, 4, 3),
    ]
}


def sanitize_column(name: str) -> str:
    """Return ``name`` lowercased with every run of non-alphanumerics turned into one "_"."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def get_builtin(name: str) -> BuiltinDataset:
    """Return the bundled dataset ``name`` or raise a ConfigError saying what is available."""
    if name in BUILTIN:
        return BUILTIN[name]
    available = ", ".join(BUILTIN)
    if name in DOWNLOADABLE:
        raise ConfigError(
            f"data.source: builtin:{name} is a scikit-learn dataset that needs a download, which scaleclf"
            f" does not do at run time; fetch it yourself and point data.source at a Parquet/CSV file"
            f" (bundled: {available})"
        )
    raise ConfigError(f"data.source: builtin:{name} is unknown; bundled datasets are {available}")


def load_builtin(name: str) -> pa.Table:
    """Return the bundled dataset ``name`` as feature columns (sanitised names) plus int64 ``target``."""
    dataset = get_builtin(name)
    loader = getattr(importlib.import_module("sklearn.datasets"), dataset.loader)
    bunch = loader()
    names = [sanitize_column(str(c)) for c in bunch.feature_names]
    if len(set(names)) != len(names) or LABEL in names:
        # Never expected from scikit-learn's own names; a silent rename would hide a column.
        raise ConfigError(f"data.source: builtin:{name} has feature names that collide once sanitised")
    data = np.asarray(bunch.data, dtype=np.float64)
    columns = {col: data[:, j] for j, col in enumerate(names)}
    columns[LABEL] = np.asarray(bunch.target, dtype=np.int64)
    return pa.table(columns)
