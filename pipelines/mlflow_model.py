"""The MLflow pyfunc model of a scaleclf run, logged as code ("models from code"), never pickled.

MLflow executes this file when the model is loaded; its only artifact is the run directory,
which ``pipelines.scoring.load_run`` verifies against its manifest before anything is read, and
predictions go through the same preprocessing, model and postprocessing as ``scaleclf predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model


class ScaleclfModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """Predicts ``proba_<class>`` columns and the ``prediction`` of a scaleclf run directory."""

    def load_context(self, context: Any) -> None:
        """Load and verify the run directory shipped as the ``run`` artifact."""
        from pipelines.scoring import in_process_model, load_run

        self.run = load_run(Path(context.artifacts["run"]))
        self.model = in_process_model(self.run)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Return a DataFrame of class probabilities and the predicted class for each input row."""
        import numpy as np
        import pyarrow as pa

        from pipelines.scoring import predict_table

        table = pa.Table.from_pandas(pd.DataFrame(model_input), preserve_index=False)
        proba = predict_table(self.run, table, self.model)
        classes = list(self.run.ctx.task.classes)
        if len(classes) == 2:
            chosen = (proba[:, 1] >= self.run.post.decision_threshold).astype(int)
        else:
            chosen = proba.argmax(axis=1)
        out = pd.DataFrame({f"proba_{c}": proba[:, j] for j, c in enumerate(classes)})
        out["prediction"] = np.asarray(classes, dtype=object)[chosen]
        return out


set_model(ScaleclfModel())
