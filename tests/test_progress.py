"""Progress bars: throttled on a terminal, one final line elsewhere, nothing when quiet; tuning counts trials."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from pipelines.progress import REFRESH_S, Progress
from tests.conftest import base_spec

pytestmark = pytest.mark.local


def _progress(terminal: bool, quiet: bool = False) -> tuple[Progress, io.StringIO]:
    progress = Progress(quiet=quiet)
    out = io.StringIO()
    progress.console = Console(file=out, force_terminal=terminal, color_system=None, width=120, highlight=False)
    return progress, out


def test_off_a_terminal_a_bar_prints_only_its_final_line() -> None:
    progress, out = _progress(terminal=False)
    step = progress.iterations(200, "boosting rounds")
    for n in range(1, 201):
        step(n, valid_logloss=1.0 / n)
    step(201)  # after the end: ignored
    assert out.getvalue().splitlines() == [f"✓ 200/200 boosting rounds · valid_logloss {1 / 200:.4g} (0:00)"]


def test_a_bar_closed_early_reports_how_far_it_got_and_quiet_prints_nothing() -> None:
    progress, out = _progress(terminal=False)
    with progress.iterations(50, "epochs") as step:
        step(7, loss=0.25)
    assert out.getvalue().splitlines() == ["✓ 7/50 epochs · loss 0.25 (0:00)"]
    quiet, silent = _progress(terminal=True, quiet=True)
    with quiet.iterations(10, "epochs") as step:
        for n in range(1, 11):
            step(n)
    assert silent.getvalue() == ""


def test_on_a_terminal_the_bar_redraws_at_most_every_refresh_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.progress as module

    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    progress, out = _progress(terminal=True)
    draws: list[int] = []
    with progress.stage("fit_s", "fitting"):
        step = progress.iterations(10_000, "rounds")
        monkeypatch.setattr(step, "_draw", lambda now: draws.append(step.n))
        for n in range(1, 10_000):
            clock[0] += 0.001  # 1 ms an iteration: 10 s in all
            step(n)
        step(10_000)
    assert len(draws) == pytest.approx(10.0 / REFRESH_S, abs=1)
    assert draws == sorted(draws) and draws[0] >= REFRESH_S / 0.001
    assert "✓ 10000/10000 rounds" in out.getvalue() and "✓ fitting" in out.getvalue()


def test_the_bar_text_shows_count_eta_and_metrics_in_the_stage_line() -> None:
    progress, _ = _progress(terminal=True)
    shown: list[str] = []
    with progress.stage("fit_s", "fitting xgboost"):
        progress._status.update = shown.append  # type: ignore[union-attr]
        step = progress.iterations(4, "rounds")
        step.started -= 10.0  # ten seconds in, halfway: five seconds to go
        step(2, valid_auc=0.8123)
        step._draw(step.started + 10.0)
    assert shown[-1].startswith("fitting xgboost  ")
    assert "2/4 rounds" in shown[-1] and "ETA 0:10" in shown[-1] and "valid_auc 0.8123" in shown[-1]


def test_tuning_counts_its_trials_on_the_progress_line(tmp_path: Path, cli) -> None:
    spec = base_spec("builtin:breast_cancer", label="target")
    spec["output"]["dir"] = str(tmp_path / "runs")
    spec["tuning"] = {"enabled": True, "method": "grid", "space": {"C": [0.01, 1.0, 100.0]}}
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(spec))
    result = cli("train", config)
    assert result.code == 0, result.err
    final = [line for line in result.err.splitlines() if "tuning trials" in line]
    assert len(final) == 1 and final[0].startswith("✓ 3/3 tuning trials · best valid auc 0.9")
