"""report.html is one self-contained, escaped page with the headline numbers and the five plots."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import DataError
from pipelines.evaluation.metrics import compute_metrics
from pipelines.evaluation.plots import PLOT_NAMES, write_plots
from pipelines.evaluation.report import ReportSection, write_report

EVIL = "<script>alert('x')</script>"


def predictions(k: int, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and informative probabilities whose rows sum to 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    proba = 0.6 * rng.dirichlet(np.ones(k), n) + 0.4 * np.eye(k)[y]
    return y, proba


def run_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Return a metrics.json-shaped dict as pipelines.run builds it."""
    test = compute_metrics(y, proba, threshold=0.42)
    return {
        "engine": "local",
        "model": "logistic_regression",
        "task": "binary" if len(classes) == 2 else "multiclass",
        "classes": classes,
        "dataset": "synthetic:higgs",
        "rows": {"train": 1000, "valid": 200, "test": len(y), "total": 1200 + len(y)},
        "class_counts": {"train": {c: 100 + i for i, c in enumerate(classes)}, "test": {c: 30 for c in classes}},
        "dropped_columns": ["id_col", EVIL],
        "test": test,
        "valid": {**test, "auc": None},
        "threshold": {"strategy": "max_f1", "threshold": 0.42, "criterion": "f1", "value": 0.81},
        "timing": {"load_s": 0.5, "fit_s": 1.25, "predict_s": 0.1, "total_s": 2.0},
        "created": "2026-01-02T03:04:05+00:00",
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_self_contained(page: str) -> None:
    assert page.count("data:image/png;base64,") == 5
    for target in re.findall(r"(?:src|href)\s*=\s*['\"]([^'\"]*)", page):
        assert target.startswith("data:image/png;base64,")
    # Base64 has no ':', so any URL scheme or protocol-relative link would show outside the images.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|ftp:|//", text, re.IGNORECASE)
    assert "http" not in text.lower()
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page


@pytest.mark.parametrize("classes", [["no", EVIL], ["a", "b$c", EVIL, "d"]])
def test_report_is_self_contained_and_escaped(tmp_path: Path, classes: list[str]) -> None:
    y, proba = predictions(len(classes))
    metrics = run_metrics(y, proba, classes)
    metrics["model"] = f"model{EVIL}"
    section = ReportSection(f"Tuning {EVIL}", "<table><tr><td>trial 1</td></tr></table>")
    path = write_report(
        tmp_path,
        metrics=metrics,
        spec_yaml=f"name: {EVIL}\nseed: 7\n",
        y=y,
        proba=proba,
        classes=classes,
        sections=[section],
    )
    assert path == tmp_path / "report.html" and path.is_file()
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert EVIL not in page
    assert "&lt;script&gt;" in page
    for key in ("auc", "pr_auc", "accuracy", "f1", "log_loss", "ece"):
        assert f"{metrics['test'][key]:.4f}" in page
    assert "synthetic:higgs" in page and "2026-01-02T03:04:05+00:00" in page
    assert "<td>trial 1</td>" in page and "Tuning &lt;script&gt;" in page
    assert "fit_s" in page and "1.250" in page
    assert "name: &lt;script&gt;" in page
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f"{n}.png" for n in PLOT_NAMES)


def test_report_tolerates_missing_keys_and_none(tmp_path: Path) -> None:
    y, proba = predictions(2)
    metrics = {"test": {"auc": None, "accuracy": 0.5}, "valid": None, "rows": None}
    page = write_report(tmp_path, metrics=metrics, spec_yaml="", y=y, proba=proba, classes=["0", "1"]).read_text()
    assert_self_contained(page)
    assert page.count("—") >= 5


def test_single_class_split_still_plots(tmp_path: Path) -> None:
    y = np.zeros(20, dtype=int)
    p1 = np.linspace(0, 1, 20)
    proba = np.column_stack([1 - p1, p1])
    page = write_report(
        tmp_path,
        metrics=run_metrics(y, proba, ["neg", "pos"]),
        spec_yaml="x: 1",
        y=y,
        proba=proba,
        classes=["neg", "pos"],
    ).read_text()
    assert_self_contained(page)


@pytest.mark.parametrize("k", [2, 3, 12])
def test_write_plots_gives_five_pngs_at_100_dpi(tmp_path: Path, k: int) -> None:
    y, proba = predictions(k, n=400, seed=k)
    paths = write_plots(tmp_path / "plots", y, proba, [f"class {j}" for j in range(k)], threshold=0.3)
    assert list(paths) == list(PLOT_NAMES)
    for path in paths.values():
        width, height = png_size(path)
        assert 300 <= width <= 1800 and 300 <= height <= 1500


def test_write_plots_rejects_wrong_class_names(tmp_path: Path) -> None:
    y, proba = predictions(3)
    with pytest.raises(DataError, match="class names"):
        write_plots(tmp_path, y, proba, ["a", "b"], threshold=0.5)
