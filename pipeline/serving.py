"""The MLflow pyfunc wrapper: what ``mlflow models serve -m models:/gov-topics@production`` runs.

Imported only by :mod:`pipeline.tracking` (it needs mlflow); ``topics predict`` never loads it.
Input: a DataFrame with a ``text`` column (an optional ``id`` column is passed through) or a list
of texts. Output: one row per text with ``themes`` (ids above their thresholds, highest first) and
one score column per theme.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class ThemeScorer(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """Wraps the store's scikit-learn pipeline and :class:`pipeline.predict.Predictor`."""

    def load_context(self, context: Any) -> None:
        import joblib

        from pipeline.predict import Predictor

        self.predictor = Predictor(joblib.load(context.artifacts["model"]))

    # no type hints here: MLflow would turn them into a (too narrow) input schema
    def predict(self, context, model_input, params=None):
        import pandas as pd

        if hasattr(model_input, "columns"):
            if "text" not in model_input.columns:
                raise ValueError("input needs a 'text' column")
            texts = [str(t) for t in model_input["text"]]
            ids = list(model_input["id"]) if "id" in model_input.columns else None
        else:
            texts = [str(t) for t in model_input]
            ids = None
        records = self.predictor.predict(texts, evidence=False)
        rows = []
        for i, rec in enumerate(records):
            row: dict[str, Any] = {"id": ids[i]} if ids is not None else {}
            row["themes"] = rec["themes"]
            row.update(rec["scores"])
            rows.append(row)
        return pd.DataFrame(rows)
