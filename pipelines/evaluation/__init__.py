"""Shared evaluation: metrics from streamed predictions, calibration, thresholds, plots and the HTML report."""

# Plots and the report import matplotlib; they are left out here so that importing the metrics
# (every engine does) stays cheap. Import them from pipelines.evaluation.plots / .report.
from pipelines.evaluation.calibration import Calibrator, apply_platt, fit_calibrator, fit_platt
from pipelines.evaluation.metrics import PredictionAccumulator, compute_metrics
from pipelines.evaluation.thresholds import ThresholdChoice, select_threshold

__all__ = [
    "Calibrator",
    "PredictionAccumulator",
    "ThresholdChoice",
    "apply_platt",
    "compute_metrics",
    "fit_calibrator",
    "fit_platt",
    "select_threshold",
]
