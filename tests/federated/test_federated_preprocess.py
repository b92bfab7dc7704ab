"""federated.preprocess: given: the user's statistics and classes are used as given, bad files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.federated.test_federated_simulation import write_spec

FAST = {"federated.execution": "batched", "federated.rounds": 2, "data.rows": 4000}


def run(tmp_path: Path, cli, name: str, **changes: object) -> Path:
    """Return the run directory of a small batched run of the shrunk logreg spec."""
    (tmp_path / name).mkdir()
    spec = write_spec(tmp_path / name, **{**FAST, **changes})
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    return Path(result.last_line)


def given_file(run_dir: Path, path: Path, change=None) -> dict:
    """Write a run's model/preprocess.json plus its classes (manifest) to ``path``; return the content."""
    content = json.loads((run_dir / "model" / "preprocess.json").read_text())
    task = json.loads((run_dir / "model" / "manifest.json").read_text())["task"]
    content |= {"classes": task["classes"], "class_counts": task["class_counts"]}
    if change:
        change(content)
    path.write_text(json.dumps(content))
    return content


def test_given_statistics_are_used_exactly_and_a_merged_runs_file_gives_its_model(tmp_path: Path, cli) -> None:
    merged = run(tmp_path, cli, "merged")
    same = given_file(merged, tmp_path / "same.json")
    given = run(
        tmp_path,
        cli,
        "given",
        **{"federated.preprocess": "given", "federated.preprocess_from": str(tmp_path / "same.json")},
    )

    def shift(content: dict) -> None:
        for f in content["numeric"]:
            f["mean"], f["scale"] = f["mean"] + 0.25, f["scale"] * 2.0

    shifted = given_file(merged, tmp_path / "shifted.json", shift)
    other = run(
        tmp_path,
        cli,
        "shifted",
        **{"federated.preprocess": "given", "federated.preprocess_from": str(tmp_path / "shifted.json")},
    )

    for run_dir, content in ((given, same), (other, shifted)):
        written = json.loads((run_dir / "model" / "preprocess.json").read_text())
        assert written == {k: content[k] for k in ("numeric", "categorical", "dropped")}
        task = json.loads((run_dir / "model" / "manifest.json").read_text())["task"]
        assert task["classes"] == content["classes"] and task["class_counts"] == content["class_counts"]
        assert json.loads((run_dir / "metrics.json").read_text())["federated"]["preprocess"] == "given"
    assert json.loads((merged / "metrics.json").read_text())["federated"]["preprocess"] == "merged"

    m, g, s = (json.loads((r / "metrics.json").read_text())["test"] for r in (merged, given, other))
    for key in ("auc", "accuracy", "log_loss"):
        assert g[key] == pytest.approx(m[key], abs=1e-9), key
    p_merged, p_given = (pq.read_table(r / "predictions.parquet").column("proba_1").to_numpy() for r in (merged, given))
    np.testing.assert_allclose(p_given, p_merged, atol=1e-9)
    # Other statistics give another model that still learns (the shift is a fixed affine change of x).
    assert s["auc"] > 0.6 and s["log_loss"] != pytest.approx(m["log_loss"], abs=1e-6)


def test_given_categories_and_classes_in_any_order_with_positive_label(tmp_path: Path, cli) -> None:
    churn = {"data.source": "synthetic:churn", "data.label": "churned", "data.positive_label": "yes"}
    merged = run(tmp_path, cli, "merged", **churn)

    def reverse_classes(content: dict) -> None:
        content["classes"], content["class_counts"] = content["classes"][::-1], content["class_counts"][::-1]

    content = given_file(merged, tmp_path / "given.json", reverse_classes)
    assert content["categorical"] and content["classes"][0] == "yes"
    given = run(
        tmp_path,
        cli,
        "given",
        **churn,
        **{"federated.preprocess": "given", "federated.preprocess_from": str(tmp_path / "given.json")},
    )
    manifests = [json.loads((r / "model" / "manifest.json").read_text())["task"] for r in (merged, given)]
    assert manifests[0] == manifests[1] and manifests[1]["classes"][-1] == "yes"
    assert (given / "model" / "preprocess.json").read_text() == (merged / "model" / "preprocess.json").read_text()
    m, g = (json.loads((r / "metrics.json").read_text())["test"] for r in (merged, given))
    assert g["auc"] == pytest.approx(m["auc"], abs=1e-9) and g["log_loss"] == pytest.approx(m["log_loss"], abs=1e-9)


HIGGS = [
    *(f"lepton_{k}" for k in ("pt", "eta", "phi")),
    "missing_energy_magnitude",
    "missing_energy_phi",
    *(f"jet{j}_{k}" for j in range(1, 5) for k in ("pt", "eta", "phi", "btag")),
    *("m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb"),
]
GOOD = {
    "numeric": [{"name": name, "mean": 0.0, "scale": 1.0} for name in HIGGS],
    "categorical": [],
    "classes": [0, 1],
}


def _without(field: str, col: str) -> dict:
    return {**GOOD, field: [f for f in GOOD[field] if f["name"] != col]}


def _numeric_with(**change: object) -> dict:
    return {**GOOD, "numeric": [{**GOOD["numeric"][0], **change}, *GOOD["numeric"][1:]]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{not json", "not valid JSON (line 1"),
        (_without("numeric", "jet1_pt"), "feature column 'jet1_pt' of the data is missing"),
        (_numeric_with(mean="0.5"), "numeric[0].mean ('lepton_pt') must be a finite number, not '0.5'"),
        (_numeric_with(scale=0), "numeric[0].scale ('lepton_pt') must be a finite number above 0"),
        ({**GOOD, "classes": "01"}, "'classes' must be a list of two or more label values"),
        ({**GOOD, "categorical": [{"name": "c", "categories": [1], "other": False}]}, "categorical[0].categories"),
        ({**GOOD, "dropped": ["nope"]}, "column 'nope' is not a feature column of the data"),
        ({**GOOD, "classes": [0, 2]}, "data.label: value '1' in the train split is not one of the classes of"),
        ({**GOOD, "pickle": "x"}, "unknown field 'pickle'"),
    ],
    ids=[
        "missing",
        "not-json",
        "missing-column",
        "mean-type",
        "scale",
        "classes",
        "categories",
        "extra",
        "label",
        "field",
    ],
)
def test_bad_given_files_fail_with_one_line_naming_it_and_write_nothing(
    tmp_path: Path, cli, content: object, message: str
) -> None:
    path = tmp_path / "given.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    spec = write_spec(tmp_path, **{**FAST, "federated.preprocess": "given", "federated.preprocess_from": str(path)})
    result = cli("federate", spec, "--quiet")
    assert result.code == (3 if "data.label" in message else 2), result.err
    line = result.err.strip()
    assert len(line.splitlines()) == 1 and message in line, line
    assert line.startswith("error: ") and (str(path) in line or "data.label" in line)
    if "data.label" not in message:
        assert line.startswith("error: config error: federated.preprocess_from: ")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_given_needs_its_file_and_merged_refuses_one(tmp_path: Path, cli) -> None:
    for changes, message in (
        ({"federated.preprocess": "given"}, "preprocess_from: required with preprocess: given"),
        ({"federated.preprocess_from": "x.json"}, "preprocess_from: only with preprocess: given"),
    ):
        result = cli("federate", write_spec(tmp_path, **{**FAST, **changes}), "--quiet")
        assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_privacy_json_says_which_preprocessing_the_model_used() -> None:
    from types import SimpleNamespace

    from federated.outputs import privacy_record
    from federated.privacy import plan_privacy
    from pipelines.spec import FederatedSpec

    for preprocess, extra in (("merged", {}), ("given", {"preprocess_from": "p.json"})):
        fed = FederatedSpec(
            preprocess=preprocess,
            rounds=2,
            privacy={"dp": "central", "noise_multiplier": 1.0},
            **extra,
        )
        job = SimpleNamespace(privacy=plan_privacy(fed, [100] * 10), fed=fed)
        rounds = [{"round": 0, "failed": False}, {"round": 1, "failed": False, "train_replies": 10}]
        assert privacy_record(job, rounds)["preprocess"] == preprocess
