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
from collections.abc import Sequence
from typing import Any

import mlflow.pyfunc
import pandas as pd

EXAMPLE_TEXT = "全面开展安全生产隐患排查整治，压实企业主体责任。"

# The model file MLflow logs and runs to build the model ("models from code"), instead of a
# CloudPickle of a ThemeScorer: it imports the package logged beside it (code_paths).
MODEL_CODE = """\
from mlflow.models import set_model

from pipeline.serving import ThemeScorer

set_model(ThemeScorer())
"""


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
    return pd.DataFrame({"text": [EXAMPLE_TEXT], "id": ["example-1"]})


def _bad_request(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


_SEND = (
    'send {"dataframe_split": {"columns": ["id", "text"], "data": [["a", "..."]]}} or '
    '{"inputs": {"text": ["..."]}}'
)


def _spread(values: Any) -> list[Any]:
    """The cells of a column, a list-valued cell spread into its items: MLflow turns
    ``{"inputs": {"text": [a, b]}}`` into one row whose ``text`` cell is the list ``[a, b]``."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, list | tuple) or (getattr(v, "ndim", 0) == 1 and hasattr(v, "tolist")):
            out.extend(v.tolist() if hasattr(v, "tolist") else v)
        else:
            out.append(v)
    return out


def texts_and_ids(model_input: Any) -> tuple[list[str], list[Any] | None]:
    """The texts (and ids) of a request, in any of the accepted forms, one per document."""
    if hasattr(model_input, "columns"):
        if "text" not in model_input.columns:
            raise _bad_request(f"the input has no 'text' column; {_SEND}")
        texts = [str(t) for t in _spread(model_input["text"])]
        ids = _spread(model_input["id"]) if "id" in model_input.columns else None
    elif isinstance(model_input, dict):
        if "text" not in model_input:
            raise _bad_request(f"the input has no 'text' field; {_SEND}")
        texts = [str(t) for t in _spread([model_input["text"]])]
        ids = _spread([model_input["id"]]) if model_input.get("id") is not None else None
    elif isinstance(model_input, str):
        return [model_input], None
    else:
        return [str(t) for t in model_input], None
    if ids is not None and len(ids) != len(texts):
        raise _bad_request(f"{len(texts)} texts but {len(ids)} ids: give one id per text or none")
    return texts, ids


class ThemeScorer(mlflow.pyfunc.PythonModel):
    """Wraps the store's scikit-learn pipeline and :class:`pipeline.predict.Predictor`."""

    def load_context(self, context: Any) -> None:
        import joblib

        from pipeline.predict import Predictor

        self.predictor = Predictor(joblib.load(context.artifacts["model"]))

    # pd.DataFrame: a type hint MLflow neither infers a schema from nor validates with (the
    # signature is given explicitly; a list[...] hint would replace it with a too narrow one);
    # without any hint MLflow warns on every import. Through MLflow the input is a DataFrame
    # (the signature's columns); called directly, texts_and_ids also takes lists and dicts.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        texts, ids = texts_and_ids(model_input)
        evidence = bool((params or {}).get("evidence", False))
        records = self.predictor.predict(texts, evidence=evidence)
        rows = []
        for i, rec in enumerate(records):
            # every column of the signature, always (None when not asked for): a caller that
            # takes its result type from the signature (mlflow's spark_udf) needs them all
            row: dict[str, Any] = {"id": ids[i] if ids is not None else None}
            row["themes"] = rec["themes"]
            row.update(rec["scores"])
            row["evidence"] = (
                json.dumps(rec.get("evidence", {}), ensure_ascii=False) if evidence else None
            )
            rows.append(row)
        return pd.DataFrame(rows)
