"""The MLflow pyfunc wrapper: what ``mlflow models serve -m models:/gov-topics@production`` runs.

Imported only by :mod:`pipeline.tracking` (it needs mlflow); ``topics predict`` never loads it.
Input: a DataFrame with a ``text`` column (an optional ``id`` column is passed through), the
same as ``{"inputs": {"text": [...], "id": [...]}}``, or a list of texts. Output: one row per text
with ``themes`` (ids above their thresholds, highest first), one score column per theme, and,
with the parameter ``evidence: true``, ``evidence`` (JSON: per theme, its terms and sentence).
A request without texts is refused with a message that says what to send (HTTP 400).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import mlflow.pyfunc

EXAMPLE_TEXT = "全面开展安全生产隐患排查整治，压实企业主体责任。"


def signature(themes: Sequence[str]) -> Any:
    """The model's signature: ``text`` (and an optional ``id``) in; ``themes`` and one score per
    theme out; ``evidence`` as a parameter."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "id", required=False)]),
        outputs=Schema(
            [
                ColSpec("string", "id", required=False),
                ColSpec(Array(DataType.string), "themes"),
                *(ColSpec("double", t) for t in themes),
                ColSpec("string", "evidence", required=False),
            ]
        ),
        params=ParamSchema([ParamSpec("evidence", "boolean", False)]),
    )


def input_example() -> Any:
    import pandas as pd

    return pd.DataFrame({"text": [EXAMPLE_TEXT], "id": ["example-1"]})


def _bad_request(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


_SEND = (
    'send {"dataframe_split": {"columns": ["id", "text"], "data": [["a", "..."]]}} or '
    '{"inputs": {"text": ["..."]}}'
)


def texts_and_ids(model_input: Any) -> tuple[list[str], list[Any] | None]:
    """The texts (and ids) of a request, in any of the accepted forms."""
    if hasattr(model_input, "columns"):
        if "text" not in model_input.columns:
            raise _bad_request(f"the input has no 'text' column; {_SEND}")
        ids = list(model_input["id"]) if "id" in model_input.columns else None
        return [str(t) for t in model_input["text"]], ids
    if isinstance(model_input, dict):
        if "text" not in model_input:
            raise _bad_request(f"the input has no 'text' field; {_SEND}")
        text = model_input["text"]
        texts = [text] if isinstance(text, str) else [str(t) for t in text]
        ids = model_input.get("id")
        return texts, ([ids] if isinstance(ids, str) else list(ids)) if ids is not None else None
    if isinstance(model_input, str):
        return [model_input], None
    return [str(t) for t in model_input], None


with warnings.catch_warnings():
    # MLflow asks for type hints on predict to infer a schema; the schema is given explicitly
    warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)

    class ThemeScorer(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
        """Wraps the store's scikit-learn pipeline and :class:`pipeline.predict.Predictor`."""

        def load_context(self, context: Any) -> None:
            import joblib

            from pipeline.predict import Predictor

            self.predictor = Predictor(joblib.load(context.artifacts["model"]))

        # no type hints here: MLflow would turn them into a (too narrow) input schema
        def predict(self, context, model_input, params=None):
            import pandas as pd

            texts, ids = texts_and_ids(model_input)
            evidence = bool((params or {}).get("evidence", False))
            records = self.predictor.predict(texts, evidence=evidence)
            rows = []
            for i, rec in enumerate(records):
                row: dict[str, Any] = {"id": ids[i]} if ids is not None else {}
                row["themes"] = rec["themes"]
                row.update(rec["scores"])
                if evidence:
                    row["evidence"] = json.dumps(rec.get("evidence", {}), ensure_ascii=False)
                rows.append(row)
            return pd.DataFrame(rows)
