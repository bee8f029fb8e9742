"""Batch prediction over many documents: streaming, in input order, on one or more processes.

Documents are read lazily, grouped into batches, scored by :class:`pipeline.predict.Predictor`
(in worker processes that each load the model once when ``jobs > 1``) and written as they
complete, in input order, so memory stays flat however large the input. Output files are written
to a temporary file and renamed at the end: an interrupted run (Ctrl-C, SIGTERM, a full disk)
never leaves a truncated file that looks complete, nor its temporary file. An output that would
overwrite an input, or cannot be written, is refused before anything is scored
(:func:`check_output`).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pipeline.documents import Document, Item, printable
from pipeline.errors import GovTopicsError, Terminated, UsageError
from pipeline.fsutil import file_mode, pid_alive

log = logging.getLogger(__name__)

BATCH_DOCS = 512  # a batch closes at this many documents ...
BATCH_CHARS = 1_000_000  # ... or characters: big enough to amortise per-call overhead, small
# enough that the few batches in flight keep memory flat


@dataclass(frozen=True)
class Renderer:
    """Turns a prediction record into one line of JSONL or one CSV row (one score column per
    theme; ``themes`` and ``main_themes`` ";"-joined). Worker processes render their own records,
    so the main process only writes."""

    fmt: str
    themes: tuple[str, ...]
    fields: tuple[str, ...] = ()  # a plain table of these fields instead of prediction columns

    def header(self) -> str:
        if self.fmt != "csv":
            return ""
        if self.fields:
            return self._row(list(self.fields))
        cols = ["id", "source", "themes", "main_themes", *[f"score_{t}" for t in self.themes]]
        return self._row([*cols, "evidence", "model", "error"])

    def render(self, rec: dict[str, Any]) -> str:
        if self.fmt != "csv":
            return json.dumps(rec, ensure_ascii=False) + "\n"
        if self.fields:
            return self._row([_cell(rec.get(f)) for f in self.fields])
        scores = rec.get("scores", {})
        return self._row(
            [
                rec.get("id", ""),
                rec.get("source", ""),
                ";".join(rec.get("themes", [])),
                ";".join(rec.get("main_themes", [])),
                *[scores.get(t, "") for t in self.themes],
                json.dumps(rec["evidence"], ensure_ascii=False) if rec.get("evidence") else "",
                rec.get("model", ""),
                rec.get("error", ""),
            ]
        )

    @staticmethod
    def _row(values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(values)
        return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def check_output(out: str | None, inputs: Sequence[str]) -> None:
    """Refuse an output file before anything is scored (or a model loaded): one that is an input
    (it would be overwritten), a folder, or a place that cannot be written. (An output inside an
    input folder is not refused: :func:`pipeline.documents.iter_documents` skips it.)

    Raises
    ------
    UsageError
        Naming the output and what to do.
    """
    if not out:  # standard output
        return
    path = Path(out)
    shown = printable(out)
    if path.is_dir():
        raise UsageError(f"{shown} is a folder", "give -o a file name")
    exists = path.exists()
    for raw in inputs:
        if raw == "-":
            continue
        src = Path(raw)
        if exists and src.exists() and os.path.samefile(path, src):
            raise UsageError(
                f"{shown} is also an input: writing it would overwrite the input",
                "choose another -o file",
            )
    if exists and not path.is_file():  # a device or a FIFO (/dev/null): written in place
        if not os.access(path, os.W_OK):
            raise UsageError(f"{shown}: cannot write here (permission denied)", "choose another -o")
        return
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=partial_prefix(path), suffix=".partial", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = (
            f"{printable(str(parent))} is not a folder"
            if isinstance(exc, (FileExistsError, NotADirectoryError))
            else exc.strerror or str(exc)
        )
        raise UsageError(
            f"{shown}: cannot write here ({why})", "choose a -o path in a folder you can write to"
        ) from None


def partial_prefix(out: Path) -> str:
    """The name this run's temporary output starts with: ``.NAME.<pid>.`` (then random,
    ``.partial``)."""
    return f".{out.name}.{os.getpid()}."


def remove_orphaned_partials(out: Path) -> list[Path]:
    """Remove the temporary outputs for ``out`` that a killed run left (SIGKILL, a power cut:
    nothing could clean up): those whose process is gone. A running process's is kept."""
    removed = []
    start = len(f".{out.name}.")
    for name in glob.glob(f".{glob.escape(out.name)}.*.partial", root_dir=out.parent):
        pid = name[start:].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            path = out.parent / name
            if path.is_dir():  # a Spark engine's output folder
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning(
            "removed %d partial output(s) of %s left by a run that was killed",
            len(removed),
            printable(str(out)),
        )
    return removed


class RecordWriter:
    """Writes records as JSONL or CSV to a file (atomically) or to stdout.

    A file is written to a temporary ``.NAME.<pid>.*.partial`` next to it (what a killed run
    leaves of it is removed by the next run to the same file), renamed into place by
    :meth:`commit` with the mode a new file gets (0644 under the usual umask) or the mode of the
    file it replaces, and removed by :meth:`abort`. A device or FIFO (``/dev/null``) is written in
    place, never replaced. A write that fails (a full disk) raises a
    :class:`~pipeline.errors.GovTopicsError`, one line, not an ``OSError`` traceback.
    """

    def __init__(
        self, out: str | None, fmt: str, themes: Sequence[str], fields: Sequence[str] = ()
    ) -> None:
        self.renderer = Renderer(fmt, tuple(themes), tuple(fields))
        self.out = Path(out) if out else None
        self._shown = printable(out) if out else "standard output"
        self._tmp: str | None = None
        self.fh: TextIO = sys.stdout
        try:
            if self.out is not None and self.out.exists() and not self.out.is_file():
                self.fh = open(self.out, "w", encoding="utf-8", newline="")  # noqa: SIM115
            elif self.out is not None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                remove_orphaned_partials(self.out)
                fd, self._tmp = tempfile.mkstemp(
                    prefix=partial_prefix(self.out), suffix=".partial", dir=self.out.parent
                )
                self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
            self.fh.write(self.renderer.header())
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                raise self._error(exc) from None
            raise

    def _error(self, exc: OSError) -> GovTopicsError:
        return GovTopicsError(
            f"{self._shown}: cannot write: {exc.strerror or exc}",
            "free some disk space or choose another -o; no partial output is left"
            if self._tmp is not None
            else "free some disk space or choose another output",
        )

    def write(self, rec: dict[str, Any]) -> None:
        self.write_rendered(self.renderer.render(rec))

    def write_rendered(self, line: str) -> None:
        try:
            self.fh.write(line)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._error(exc) from None

    def commit(self) -> None:
        """Finish: flush, and rename the temporary file into place."""
        try:
            self.fh.flush()
            if self.out is not None and self._tmp is not None:
                os.fsync(self.fh.fileno())
                self.fh.close()
                os.chmod(self._tmp, file_mode(self.out))
                os.replace(self._tmp, self.out)
                self._tmp = None
            elif self.fh is not sys.stdout:
                self.fh.close()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._error(exc) from None

    def abort(self) -> None:
        """Leave no partial output behind (the previous file, if any, is untouched)."""
        if self.fh is not sys.stdout:
            with contextlib.suppress(OSError):  # closing flushes, which fails on a full disk
                self.fh.close()
        if self._tmp is not None:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within this block SIGTERM raises :class:`Terminated` (in the main thread; elsewhere signals
    cannot be handled and nothing changes), so that ``finally`` and ``except`` blocks clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@dataclass
class Summary:
    documents: int = 0
    errors: int = 0
    chars: int = 0
    themes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


# -- workers -----------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}  # one predictor per worker process, set by the initializer


def _init_worker(store_root: str, name: str, version: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, if forked
    if "p" in _WORKER:  # forked from the parent, which already holds the loaded model
        return
    from pipeline.predict import Predictor
    from pipeline.registry import ModelRef, ModelStore

    model, _ = ModelStore(Path(store_root)).load(ModelRef(name, str(version)))  # verified
    _WORKER["p"] = Predictor(model, name=f"{name}:{version}")


Scored = tuple[list[str], str]  # a document's themes and its rendered record


def document_record(doc_id: str, source: str, result: dict[str, Any]) -> dict[str, Any]:
    """A scored document's output record: ``id``, ``source``, then its result from
    :meth:`pipeline.predict.Predictor.predict`. The one place records are made, for ``topics
    predict`` and for the Spark engine (:mod:`pipeline.spark`), so that both write the same."""
    return {"id": doc_id, "source": source, **result}


def error_record(doc_id: str, source: str, error: str) -> dict[str, Any]:
    """The output record of a document that could not be read or scored."""
    return {"id": doc_id, "source": source, "error": error}


def _score(
    predictor: Any,
    renderer: Renderer,
    docs: list[tuple[str, str, str]],
    paragraphs: bool,
    top_k: int | None = None,
) -> list[Scored]:
    """Predict (id, source, text) documents and render their records, in order."""
    if not docs:
        return []
    results = predictor.predict([t for _, _, t in docs], paragraphs=paragraphs, top_k=top_k)
    out = []
    for (doc_id, source, _), res in zip(docs, results, strict=True):
        out.append((res["themes"], renderer.render(document_record(doc_id, source, res))))
    return out


def _score_in_worker(
    renderer: Renderer,
    docs: list[tuple[str, str, str]],
    paragraphs: bool,
    top_k: int | None = None,
) -> list[Scored]:
    return _score(_WORKER["p"], renderer, docs, paragraphs, top_k)


def _batches(
    items: Iterable[Item], docs: int = BATCH_DOCS, chars: int = BATCH_CHARS
) -> Iterator[list[Item]]:
    batch: list[Item] = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item.text) if isinstance(item, Document) else 0
        if len(batch) >= docs or size >= chars:
            yield batch
            batch = []
            size = 0
    if batch:
        yield batch


def run_batch(
    items: Iterable[Item],
    predictor: Any,
    writer: RecordWriter,
    *,
    jobs: int = 1,
    paragraphs: bool = False,
    top_k: int | None = None,
    model_ref: tuple[str, str, int] | None = None,
    progress: Any = None,
    on_error: Any = None,
) -> Summary:
    """Score every document and write one record each, in input order.

    ``model_ref`` (store folder, name, version) lets worker processes load the model from the
    store themselves (sha256 verified) when ``jobs > 1`` and they cannot be forked; ``progress`` is a tqdm-like object or None; ``on_error`` is called with each
    :class:`DocumentError` as it is written. ``top_k`` keeps each record's best ``top_k`` themes
    and main themes.
    """
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k {top_k}: keep at least one theme", "give --top-k 1 or more")
    summary = Summary()
    t0 = time.perf_counter()
    renderer = writer.renderer

    def emit(batch: list[Item], results: list[Scored]) -> None:
        it = iter(results)
        for item in batch:
            if isinstance(item, Document):
                themes, line = next(it)
                summary.documents += 1
                summary.chars += len(item.text)
                summary.themes.update(themes)
                writer.write_rendered(line)
            else:
                summary.errors += 1
                if on_error is not None:
                    on_error(item)
                writer.write(error_record(item.id, item.source, item.error))
            if progress is not None:
                progress.update(1)

    def docs(batch: list[Item]) -> list[tuple[str, str, str]]:
        return [(d.id, d.source, d.text) for d in batch if isinstance(d, Document)]

    if jobs <= 1 or model_ref is None:
        for batch in _batches(items):
            emit(batch, _score(predictor, renderer, docs(batch), paragraphs, top_k))
    else:
        import gc

        from pipeline.segment import pool_context

        ctx = pool_context()
        if ctx.get_start_method() == "fork":
            # Workers inherit the loaded model instead of loading their own copy, and share its
            # memory pages with this process; freezing the collector keeps it from touching
            # (and so copying) those pages.
            predictor.warm()
            _WORKER["p"] = predictor
            gc.freeze()
        try:
            with ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=model_ref,
            ) as pool:
                pending: deque[tuple[list[Item], Future[list[Scored]]]] = deque()
                try:
                    for batch in _batches(items):
                        fut = pool.submit(
                            _score_in_worker, renderer, docs(batch), paragraphs, top_k
                        )
                        pending.append((batch, fut))
                        while len(pending) > 2 * jobs:  # bounded: memory stays flat
                            b, f = pending.popleft()
                            emit(b, f.result())
                    while pending:
                        b, f = pending.popleft()
                        emit(b, f.result())
                except BaseException:  # stopping: do not score what is still queued
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        finally:
            _WORKER.pop("p", None)
            gc.unfreeze()
    summary.seconds = time.perf_counter() - t0
    return summary
