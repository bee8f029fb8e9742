"""Batch prediction over many documents: streaming, in input order, on one or more processes.

Documents are read lazily, grouped into batches, scored by :class:`pipeline.predict.Predictor`
(in worker processes that each load the model once when ``jobs > 1``) and written as they
complete, in input order, so memory stays flat however large the input. Output files are written
to a temporary file and renamed at the end: an interrupted run never leaves a truncated file that
looks complete.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pipeline.documents import Document, Item

BATCH = 64


class RecordWriter:
    """Writes prediction records as JSONL or CSV to a file (atomically) or to stdout."""

    def __init__(self, out: str | None, fmt: str, themes: Sequence[str]) -> None:
        self.fmt = fmt
        self.themes = list(themes)
        self.out = Path(out) if out else None
        self._tmp: str | None = None
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.out.name}.", suffix=".partial", dir=self.out.parent
            )
            self.fh: TextIO = os.fdopen(fd, "w", encoding="utf-8", newline="")
        else:
            self.fh = sys.stdout
        self._csv: Any = None
        if fmt == "csv":
            self._csv = csv.writer(self.fh)
            self._csv.writerow(
                [
                    "id",
                    "source",
                    "themes",
                    *[f"score_{t}" for t in self.themes],
                    "evidence",
                    "model",
                    "error",
                ]
            )

    def write(self, rec: dict[str, Any]) -> None:
        if self._csv is None:
            self.fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            return
        scores = rec.get("scores", {})
        self._csv.writerow(
            [
                rec.get("id", ""),
                rec.get("source", ""),
                ";".join(rec.get("themes", [])),
                *[scores.get(t, "") for t in self.themes],
                json.dumps(rec["evidence"], ensure_ascii=False) if rec.get("evidence") else "",
                rec.get("model", ""),
                rec.get("error", ""),
            ]
        )

    def commit(self) -> None:
        """Finish: flush, and rename the temporary file into place."""
        self.fh.flush()
        if self.out is not None and self._tmp is not None:
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self._tmp, self.out)
            self._tmp = None

    def abort(self) -> None:
        """Leave no partial output behind (the previous file, if any, is untouched)."""
        if self._tmp is not None:
            self.fh.close()
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None


@dataclass
class Summary:
    documents: int = 0
    errors: int = 0
    chars: int = 0
    themes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


# -- workers -----------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}  # one predictor per worker process, set by the initializer


def _init_worker(model_path: str, fmt: str, name: str) -> None:
    from pipeline.predict import Predictor
    from pipeline.registry import _load_artefact

    _WORKER["p"] = Predictor(_load_artefact(Path(model_path), fmt), name=name)


def _predict_in_worker(texts: list[str], paragraphs: bool) -> list[dict[str, Any]]:
    return list(_WORKER["p"].predict(texts, paragraphs=paragraphs))


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_batch(
    items: Iterable[Item],
    predictor: Any,
    writer: RecordWriter,
    *,
    jobs: int = 1,
    paragraphs: bool = False,
    model_file: tuple[str, str] | None = None,
    progress: Any = None,
    on_error: Any = None,
) -> Summary:
    """Score every document and write one record each, in input order.

    ``model_file`` (path, format) lets worker processes load the model themselves when
    ``jobs > 1``; ``progress`` is a tqdm-like object or None; ``on_error`` is called with each
    :class:`DocumentError` as it is written.
    """
    summary = Summary()
    t0 = time.perf_counter()

    def emit(batch: list[Item], results: list[dict[str, Any]]) -> None:
        it = iter(results)
        for item in batch:
            if isinstance(item, Document):
                rec = {"id": item.id, "source": item.source, **next(it)}
                summary.documents += 1
                summary.chars += len(item.text)
                summary.themes.update(rec["themes"])
            else:
                rec = {"id": item.id, "source": item.source, "error": item.error}
                summary.errors += 1
                if on_error is not None:
                    on_error(item)
            writer.write(rec)
            if progress is not None:
                progress.update(1)

    def texts(batch: list[Item]) -> list[str]:
        return [d.text for d in batch if isinstance(d, Document)]

    if jobs <= 1 or model_file is None:
        for batch in _batches(items, BATCH):
            t = texts(batch)
            emit(batch, predictor.predict(t, paragraphs=paragraphs) if t else [])
    else:
        from pipeline.segment import pool_context

        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=pool_context(),
            initializer=_init_worker,
            initargs=(*model_file, predictor.name),
        ) as pool:
            pending: deque[tuple[list[Item], Future[list[dict[str, Any]]]]] = deque()
            for batch in _batches(items, BATCH):
                pending.append((batch, pool.submit(_predict_in_worker, texts(batch), paragraphs)))
                while len(pending) > 2 * jobs:  # bounded: memory stays flat
                    b, f = pending.popleft()
                    emit(b, f.result())
            while pending:
                b, f = pending.popleft()
                emit(b, f.result())
    summary.seconds = time.perf_counter() - t0
    return summary
