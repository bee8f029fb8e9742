"""Scoring on Apache Spark: the model, the records and the figures of ``topics predict``.

:func:`score_dataframe` scores a DataFrame's text column with ``mapInArrow`` over
:meth:`pipeline.predict.Predictor.predict` (what :func:`~pipeline.predict.predict_batch` runs);
:func:`predict_files` is ``topics predict --engine spark``: it reads files with Spark's own
readers (JSONL lines with the text source, Parquet, anything else with ``binaryFile`` and the
readers of :mod:`pipeline.documents`), scores them and writes Parquet or the very JSONL lines
the local engine writes (:func:`pipeline.batch.document_record`, :class:`pipeline.batch.Renderer`).

The model never travels in a task: the driver checks the version's signed manifest and ships
the version folder as a Spark file (``addFile``); each Python worker loads it once through
:meth:`pipeline.registry.ModelStore.load` (signature, sha256, thresholds) and keeps it. Executors
need the store key in ``$GOV_TOPICS_STORE_KEY`` (``spark.executorEnv.GOV_TOPICS_STORE_KEY``).

pyspark and pyarrow are imported here only, and lazily: without them the package works as
before, and ``--engine spark`` says how to install them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pipeline.batch import (
    BATCH_CHARS,
    BATCH_DOCS,
    Renderer,
    Summary,
    document_record,
    error_record,
    partial_prefix,
    remove_orphaned_partials,
)
from pipeline.documents import (
    CSV_SUFFIXES,
    GZIP_SUFFIXES,
    JSONL_SUFFIXES,
    MAX_DOCUMENT_BYTES,
    SYSTEM_FILES,
    Document,
    DocumentError,
    Item,
    Overlong,
    field_problem,
    is_streamed,
    jsonl_items,
    printable,
    read_stream,
    read_whole,
    too_big,
    unsupported,
)
from pipeline.errors import GovTopicsError, ModelError, UsageError
from pipeline.registry import KEY_ENV, MANIFEST, ModelRef, ModelStore, check_name, parse_ref

INSTALL = "pip install 'gov-topics[spark]'"
JAVA = (
    "install Java 17 or newer (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) "
    "or point JAVA_HOME at one"
)
# Settings of a session this module starts (never of one it is given): small input splits so
# that every core has work to the end, Arrow batches of a local batch's size.
SESSION_CONF = {
    "spark.sql.files.maxPartitionBytes": str(16 << 20),
    "spark.sql.execution.arrow.maxRecordsPerBatch": str(BATCH_DOCS),
    "spark.sql.execution.arrow.maxBytesPerBatch": str(64 << 20),
}
_LOG: dict[str, Path] = {}  # the log file of the JVM this module started, kept when a job fails
_KEYS = ("o_input", "o_file", "o_line")  # input order, kept beside each record to sort on


def check_requirements() -> None:
    """pyspark installed and Java 17+ on this machine, or a :class:`UsageError` saying what to
    install."""
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("pyarrow") is None:
        raise UsageError("the Spark engine needs pyspark and pyarrow, not installed", INSTALL)
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise UsageError("Spark needs Java, and none was found", JAVA)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
        m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{java} does not run ({exc})", JAVA) from None
    major = int(m.group(2) if m and m.group(1) == "1" else m.group(1)) if m else 0
    if major < 17:
        raise UsageError(f"Spark 4 needs Java 17 or newer; {java} is Java {major or '?'}", JAVA)


def session(master: str | None = None, conf: dict[str, str] | None = None) -> Any:
    """A SparkSession for ``topics predict``: the active one when run by ``spark-submit`` (its
    settings win), else a JVM started on ``master`` (default ``local[*]``) with
    :data:`SESSION_CONF` and ``conf``, whose log goes to a file (named when a job fails), not
    to the terminal; a local master's workers run this interpreter."""
    check_requirements()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    if os.environ.get("PYSPARK_GATEWAY_PORT") or SparkContext._active_spark_context:
        return SparkSession.builder.getOrCreate()  # spark-submit, a shell, or already started
    master = master or os.environ.get("MASTER") or "local[*]"
    settings = {**SESSION_CONF, "spark.ui.showConsoleProgress": "false", **(conf or {})}
    if master.startswith("local"):
        settings.setdefault("spark.ui.enabled", "false")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # read when the context starts
    spark_conf = SparkConf().setMaster(master).setAppName("gov-topics")
    for key, value in settings.items():
        spark_conf.set(key, value)
    if SparkContext._gateway is not None:  # a JVM this process started before (and stopped)
        return SparkSession(SparkContext(conf=spark_conf))
    fd, log = tempfile.mkstemp(prefix="gov-topics-spark-", suffix=".log")
    _LOG["path"] = Path(log)
    try:
        with os.fdopen(fd, "wb") as fh:  # the JVM, and the Python workers it starts, write here
            gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": fh, "stderr": fh})
        return SparkSession(SparkContext(conf=spark_conf, gateway=gateway))
    except Exception as exc:
        lines = Path(log).read_text("utf-8", "replace").splitlines() or [str(exc)]
        why = next((ln for ln in lines if ln.startswith("Error")), lines[-1])
        _LOG.pop("path", None)  # kept: the user is pointed to it
        raise GovTopicsError(f"Spark did not start: {why.strip()[:300]}", f"see {log}") from None


def cleanup() -> None:
    """Remove the shipped models' staging folders and the Spark log (unless a failed job named
    it): at exit, or at once by ``topics predict``, which leaves with ``os._exit``."""
    for stage in _SHIPPED.values():
        shutil.rmtree(stage, ignore_errors=True)
    _SHIPPED.clear()
    log = _LOG.pop("path", None)
    if log is not None:
        log.unlink(missing_ok=True)


atexit.register(cleanup)


# -- the model: checked on the driver, shipped as a file, loaded once per Python worker ----------


@dataclass(frozen=True)
class ModelFile:
    """A model version shipped to the executors: the Spark file (a one-version store) that
    holds it, its name, version and themes."""

    files: str
    name: str
    version: int
    themes: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


_SHIPPED: dict[tuple[str, str, str, int], Path] = {}  # (application, store, model) -> staging


@dataclass(frozen=True)
class _Resolved:
    store: ModelStore
    name: str
    version: int
    artefact: Path
    themes: tuple[str, ...]


def resolve_model(model: str | None = None, store: str | Path | None = None) -> _Resolved:
    """``model`` (``NAME[@ALIAS|:VERSION]`` in the store, default its production model, or an
    MLflow URI ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``, whose ``store_version`` tag
    names the store version) with its manifest's signature checked. Nothing is unpickled."""
    st = ModelStore(Path(store) if store else None)
    if model and model.startswith("models:/"):
        from pipeline import tracking

        name, version = tracking.store_version_of(model)
        check_name(name)
    else:
        ref = parse_ref(model)
        name, version = ref.name, st.resolve(ref)
    man = st.manifest(name, version)  # the signature, checked again with the sha256 on executors
    artefact = st.artefact_path(name, version, man)
    themes = man.get("themes") or list(man.get("thresholds") or {})
    if not themes:  # a manifest that does not list them (written by hand, or by a benchmark)
        loaded, _ = st.load(ModelRef(name, str(version)))
        themes = list(loaded.named_steps["clf"].themes)
    return _Resolved(st, name, version, artefact, tuple(str(t) for t in themes))


def ship_model(
    spark: Any, model: str | _Resolved | None = None, store: str | Path | None = None
) -> ModelFile:
    """Ship a model's version folder to the executors as a Spark file (once per application):
    ``model`` as :func:`resolve_model` takes it."""
    r = model if isinstance(model, _Resolved) else resolve_model(model, store)
    st, name, version = r.store, r.name, r.version
    key = (spark.sparkContext.applicationId, str(st.root.resolve()), name, version)
    if key not in _SHIPPED:
        stage = Path(tempfile.mkdtemp(prefix="gov-topics-model-"))
        vdir = stage / name / str(version)
        vdir.mkdir(parents=True)
        for src in (st.version_dir(name, version) / MANIFEST, r.artefact):
            try:
                os.link(src, vdir / src.name)  # no copy of a large artefact when it can be linked
            except OSError:
                shutil.copyfile(src, vdir / src.name)
        spark.sparkContext.addFile(str(stage), recursive=True)
        _SHIPPED[key] = stage
    return ModelFile(_SHIPPED[key].name, name, version, r.themes)


_LOADED: dict[str, Any] = {}  # per Python worker: the predictor of each shipped model


def _predictor(m: ModelFile) -> Any:
    p = _LOADED.get(m.files)
    if p is None:
        from pyspark import SparkFiles

        from pipeline.predict import Predictor

        root = Path(SparkFiles.get(m.files))
        model, _ = ModelStore(root).load(ModelRef(m.name, str(m.version)))  # signature, sha256
        p = Predictor(model, name=m.label)
        if tuple(p.themes) != m.themes:
            raise ModelError(f"{m.label}: the model's themes are not its manifest's")
        _LOADED[m.files] = p
    return p


# -- rows in: one (id, source, text, error, order key) per document -----------------------------


Row = tuple[Any, str | None, str | None, str | None, tuple[int, str, int] | None]


@dataclass(frozen=True)
class _Job:
    model: ModelFile
    kind: str  # "column" (a DataFrame), "lines" (JSONL text), "files" (binaryFile), "parquet"
    schema: Any  # the output's pyarrow schema
    text_col: str = "text"
    id_col: str = "id"
    evidence: bool = False
    paragraphs: bool = False
    top_k: int | None = None
    jsonl: bool = False  # one column, the record's JSONL line (the CLI's --format jsonl)
    inputs: tuple[tuple[str, str, int], ...] = ()  # (qualified path, path as given, argument)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # lines before a split
    counter: Any = None  # an accumulator of the summary's counts


def _walk_key(rel: str) -> str:
    """Sorts files the way :func:`pipeline.documents.iter_documents` walks a folder: a
    folder's files (by name) before its subfolders (by name)."""
    *dirs, name = rel.split("/")
    return "".join(d + "\x01" for d in dirs) + "\x00" + name


def _locate(job: _Job, uri: str) -> tuple[str, int, str]:
    """A file Spark read: its source as the local engine names it, its argument, its order."""
    for prefix, given, index in job.inputs:
        if uri == prefix:
            return printable(given), index, ""
        if uri.startswith(prefix + "/"):
            rel = uri[len(prefix) + 1 :]
            return printable(os.path.join(given, rel)), index, _walk_key(rel)
    return printable(uri), len(job.inputs), uri


def _from_items(items: Iterable[Item], index: int, key: str, first: int = 0) -> Iterator[Row]:
    for n, item in enumerate(items, first):
        text = item.text if isinstance(item, Document) else None
        error = item.error if isinstance(item, DocumentError) else None
        yield item.id, item.source, text, error, (index, key, n)


def _column_rows(job: _Job, batches: Iterator[Any]) -> Iterator[Row]:
    """A DataFrame's rows (``column``: its text and id columns, ids as they are), or a Parquet
    file's (``parquet``: columns ``text``, ``id``, ``file``, ``row``; ids as text, ``FILE:row N``
    when there is none)."""
    text_col, id_col = (job.text_col, job.id_col) if job.kind == "column" else ("text", "id")
    for rb in batches:
        names = rb.schema.names
        texts = rb.column(names.index(text_col)).to_pylist()
        ids = rb.column(names.index(id_col)).to_pylist() if id_col in names else [None] * len(texts)
        if job.kind == "column":
            for doc_id, text in zip(ids, texts, strict=True):
                yield doc_id, None, *_checked(text, job.text_col), None
            continue
        files = rb.column(names.index("file")).to_pylist()
        index = rb.column(names.index("row")).to_pylist()
        located: dict[str, tuple[str, int, str]] = {}  # per file, not per row
        for doc_id, text, uri, row in zip(ids, texts, files, index, strict=True):
            if uri not in located:
                located[uri] = _locate(job, unquote(uri))
            source, arg, key = located[uri]
            where = f"{source}:row {row + 1}"
            doc_id = where if doc_id is None else str(doc_id)
            yield doc_id, where, *_checked(text, job.text_col), (arg, key, row)


def _checked(text: Any, name: str) -> tuple[str | None, str | None]:
    """(text, None) for a text to score, else (None, why not) as the JSONL reader says it."""
    if not isinstance(text, str):
        return None, f"no text in field {name!r}"
    problem = field_problem(text, name)
    return (None, problem) if problem else (text, None)


def _line_rows(job: _Job, batches: Iterator[Any]) -> Iterator[Row]:
    """JSONL lines from Spark's text source, parsed by the local engine's own line reader;
    ``job.offsets`` numbers them as the local engine does (lines before each split)."""
    split: tuple[str, int] | None = None
    lineno = arg = 0
    source = ""
    for rb in batches:
        values, files, starts = (rb.column(i).to_pylist() for i in range(3))
        for line, uri, start in zip(values, files, starts, strict=True):
            if (uri, start) != split:
                split = (uri, start)
                lineno = job.offsets.get(split, 0)
                source, arg, _ = _locate(job, unquote(uri))
            lineno += 1
            numbered: Any = line
            if len(line) > MAX_DOCUMENT_BYTES // 4 and len(line.encode()) > MAX_DOCUMENT_BYTES:
                numbered = Overlong(line.count('"'))
            for item in jsonl_items([(lineno, numbered)], source, job.text_col, job.id_col):
                yield from _from_items([item], arg, "", lineno)


def _file_rows(job: _Job, batches: Iterator[Any]) -> Iterator[Row]:
    """Whole files from Spark's binaryFile source, read as :func:`pipeline.documents.read_path`
    reads them (a file in a folder of a type no reader knows is an error record, as there)."""
    for rb in batches:
        for uri, data in zip(rb.column(0).to_pylist(), rb.column(1).to_pylist(), strict=True):
            source, arg, key = _locate(job, uri)
            name = uri.rsplit("/", 1)[-1]
            problem = unsupported(name) if key else None
            if problem and name.lower() in SYSTEM_FILES:
                continue
            items: Iterable[Item]
            if problem:
                items = [DocumentError(source, source, problem)]
            elif data is None:
                items = [DocumentError(source, source, too_big("file"))]
            else:
                items = _read_data(data, source, name.lower(), job.text_col, job.id_col)
            yield from _from_items(items, arg, key)


def _read_data(
    data: bytes, source: str, name: str, text_field: str, id_field: str
) -> Iterable[Item]:
    """The documents of one file's bytes, with the readers ``read_path`` uses."""
    if not is_streamed(name):
        yield read_whole(data, source, os.path.splitext(name)[1])
        return
    try:
        fh = io.BufferedReader(io.BytesIO(data))
        yield from read_stream(fh, source, name, text_field, id_field)
    except (EOFError, zlib.error, OSError) as exc:  # a truncated or corrupt .gz file
        yield DocumentError(source, source, f"cannot read: {exc}")


_READERS = {
    "column": _column_rows,
    "parquet": _column_rows,
    "lines": _line_rows,
    "files": _file_rows,
}


# -- scoring: the local engine's batches, predictor and records --------------------------------


def _chunks(rows: Iterator[Row]) -> Iterator[list[Row]]:
    """Rows in batches of :data:`pipeline.batch.BATCH_DOCS` or :data:`~pipeline.batch.BATCH_CHARS`."""
    chunk: list[Row] = []
    size = 0
    for row in rows:
        chunk.append(row)
        size += len(row[2] or "")
        if len(chunk) >= BATCH_DOCS or size >= BATCH_CHARS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _predict(predictor: Any, texts: list[str], job: _Job) -> list[dict[str, Any] | str]:
    """Results for texts; if the batch fails, each text alone, a failing one an error string."""
    opts = {"paragraphs": job.paragraphs, "evidence": job.evidence, "top_k": job.top_k}
    try:
        return list(predictor.predict(texts, **opts))
    except Exception as exc:
        if len(texts) > 1:
            return [r for t in texts for r in _predict(predictor, [t], job)]
        return [f"scoring failed ({type(exc).__name__}: {str(exc)[:200]})"]


def _score(job: _Job, batches: Iterator[Any]) -> Iterator[Any]:
    """The function ``mapInArrow`` runs: Arrow batches in, one output row per document out, in
    input order."""
    import json

    import pyarrow as pa

    predictor = _predictor(job.model)
    themes = job.model.themes
    renderer = Renderer("jsonl", themes)
    for chunk in _chunks(_READERS[job.kind](job, batches)):
        ok = [i for i, r in enumerate(chunk) if r[3] is None]
        results: list[dict[str, Any] | str | None] = [None] * len(chunk)
        scored = _predict(predictor, [chunk[i][2] or "" for i in ok], job)
        for i, one in zip(ok, scored, strict=True):
            results[i] = one
        counts: Counter[str] = Counter()
        cols: dict[str, list[Any]] = {name: [] for name in job.schema.names}
        for (doc_id, source, text, problem, key), res in zip(chunk, results, strict=True):
            error = res if isinstance(res, str) else problem
            rec = res if isinstance(res, dict) else None
            if rec is None:
                counts["errors"] += 1
            else:
                counts.update(documents=1, chars=len(text or ""))
                counts.update(f"theme:{t}" for t in rec["themes"])
            if key is not None:
                for name, value in zip(_KEYS, key, strict=True):
                    cols[name].append(value)
            if job.jsonl:
                full = (
                    document_record(doc_id, source or "", rec)
                    if rec is not None
                    else error_record(doc_id, source or "", error or "")
                )
                cols["value"].append(renderer.render(full).rstrip("\n"))
                continue
            cols["id"].append(doc_id)
            if "source" in cols:
                cols["source"].append(source)
            r = rec or {}
            cols["themes"].append(r.get("themes"))
            cols["main_themes"].append(r.get("main_themes"))
            for t in themes:
                cols[t].append(r["scores"][t] if r else None)
            cols["coverage"].append(list(r["coverage"].items()) if r else None)
            for opt in ("evidence", "paragraphs"):
                if opt in cols:
                    value = r.get(opt)
                    cols[opt].append(
                        None if value is None else json.dumps(value, ensure_ascii=False)
                    )
            cols["model"].append(r.get("model"))
            cols["error"].append(error)
        if job.counter is not None:
            job.counter.add(counts)
        yield pa.RecordBatch.from_pydict(cols, schema=job.schema)


def _output_schema(
    themes: Sequence[str],
    id_type: str = "string",
    *,
    evidence: bool = False,
    paragraphs: bool = False,
    files: bool = False,
    jsonl: bool = False,
) -> tuple[str, Any]:
    """The output's Spark schema (DDL) and the same as pyarrow's. ``files``: read by
    :func:`predict_files` (a ``source`` column, and the input order to sort on)."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    keys = ["o_input int", "o_file string", "o_line long"] if files else []
    if jsonl:
        cols = ["value string"]
    else:
        cols = [f"id {id_type}", *(["source string"] if files else [])]
        cols += ["themes array<string>", "main_themes array<string>"]
        cols += [f"`{t}` double" for t in themes]
        cols += ["coverage map<string,double>"]
        cols += [
            f"{opt} string"
            for opt, on in (("evidence", evidence), ("paragraphs", paragraphs))
            if on
        ]
        cols += ["model string", "error string"]
    ddl = ", ".join(cols + keys)
    struct = StructType.fromDDL(ddl)
    assert isinstance(struct, StructType)
    return ddl, to_arrow_schema(struct)


class _Counts:
    """AccumulatorParam of a Counter (documents, errors, characters, per-theme counts)."""

    def zero(self, value: Counter[str]) -> Counter[str]:
        return Counter()

    def addInPlace(self, a: Counter[str], b: Counter[str]) -> Counter[str]:
        a.update(b)
        return a


# -- the public functions ------------------------------------------------------------------------


def score_dataframe(
    df: Any,
    model: str = "gov-topics@production",
    text_col: str = "text",
    id_col: str = "id",
    evidence: bool = False,
    paragraphs: bool = False,
    *,
    top_k: int | None = None,
    store: str | Path | None = None,
) -> Any:
    """Score a DataFrame's documents on Spark; a lazy DataFrame, one row per input row, in input
    order.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Has a string column ``text_col``; ``id_col`` (any type) is passed through when present.
    model : str
        ``NAME[@ALIAS|:VERSION]`` in the model store (``store``, default as ``topics predict``)
        or an MLflow registry URI (``models:/gov-topics@production``).
    evidence, paragraphs : bool
        Add ``evidence`` (JSON: per theme, its terms and sentence) and ``paragraphs`` (JSON).

    Returns
    -------
    pyspark.sql.DataFrame
        ``id``, ``themes`` (array<string>, highest score first), ``main_themes``, one double
        column per theme (its score, 4 decimals), ``coverage`` (map theme → share of the text),
        optionally ``evidence`` and ``paragraphs``, ``model`` (``name:version``) and ``error``:
        null, or why the row was not scored (no text, empty text, a scoring failure); the
        other columns of such a row are null.
    """
    if text_col not in df.columns:
        have = ", ".join(df.columns)
        raise UsageError(f"no column {text_col!r} (columns: {have})", "pass text_col=")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k={top_k}: keep at least one theme", "give top_k 1 or more")
    m = ship_model(df.sparkSession, model, store)
    id_type = df.schema[id_col].dataType.simpleString() if id_col in df.columns else "string"
    ddl, schema = _output_schema(m.themes, id_type, evidence=evidence, paragraphs=paragraphs)
    job = _Job(m, "column", schema, text_col, id_col, evidence, paragraphs, top_k)
    cols = [f"`{c}`" for c in (text_col, id_col) if c in df.columns]
    return df.select(*cols).mapInArrow(functools.partial(_score, job), ddl)


def _inputs(paths: Sequence[str]) -> list[tuple[str, str, str]]:
    """(kind, qualified path, path as given) per argument; a :class:`UsageError` for stdin or
    a local path that does not exist."""
    out = []
    for raw in paths:
        if raw == "-":
            raise UsageError(
                "--engine spark reads files, not standard input", "give files or folders"
            )
        remote = "://" in raw
        if not remote and not os.path.lexists(raw):
            raise UsageError(f"{printable(raw)}: no such file or folder", "check the path")
        lower = raw.lower().rstrip("/")
        parquet = lower.endswith(".parquet") or (
            not remote and Path(raw).is_dir() and any(Path(raw).glob("*.parquet"))
        )
        is_dir = not remote and Path(raw).is_dir()
        if parquet:
            kind = "parquet"
        elif lower.endswith((*JSONL_SUFFIXES, *GZIP_SUFFIXES)) and not is_dir:
            kind = "lines"
        else:
            kind = "files"
        qualified = raw.rstrip("/") if remote else "file:" + os.path.abspath(raw)
        out.append((kind, qualified, raw if remote else str(Path(raw))))
    return out


def predict_files(
    paths: Sequence[str],
    out: str | None,
    *,
    spark: Any = None,
    master: str | None = None,
    model: str | None = None,
    store: str | Path | None = None,
    fmt: str = "parquet",
    text_field: str = "text",
    id_field: str = "id",
    paragraphs: bool = False,
    top_k: int | None = None,
) -> tuple[Summary, str, float]:
    """``topics predict --engine spark``: score files and folders (JSONL, CSV, Parquet, and
    everything the local engine reads) and write ``out``, a folder of Parquet or JSONL part
    files holding the local engine's records in its order (part files by name, rows in each).
    Everything that can be refused (inputs, output, model) is, before Spark starts; a session
    started here (on ``master``, when ``spark`` is not given and none is active) is stopped at
    the end.

    Returns
    -------
    The summary (its ``seconds`` from the first job on), the model's ``name:version``, and the
    seconds Spark took to start (0 for a given session).
    """
    check_requirements()
    if fmt not in ("parquet", "jsonl"):
        raise UsageError(f"--engine spark writes parquet or jsonl, not {fmt}", "give --format")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k {top_k}: keep at least one theme", "give --top-k 1 or more")
    inputs = _inputs(paths)
    target = _check_out(out, [q for _, q, _ in inputs])
    resolved = resolve_model(model, store)
    t0 = time.perf_counter()
    from pyspark import SparkContext

    own = spark is None and SparkContext._active_spark_context is None
    spark = spark or session(master)
    startup = time.perf_counter() - t0 if own else 0.0
    try:
        summary, label = _predict_files(
            spark, inputs, target, resolved, fmt, text_field, id_field, paragraphs, top_k
        )
    except GovTopicsError:
        raise
    except Exception as exc:  # a failed job: a Java or Python trace from the executors
        raise job_error(exc) from None
    finally:
        if own:
            spark.stop()
            cleanup()
    return summary, label, startup


def _predict_files(
    spark: Any,
    inputs: list[tuple[str, str, str]],
    target: str,
    resolved: _Resolved,
    fmt: str,
    text_field: str,
    id_field: str,
    paragraphs: bool,
    top_k: int | None,
) -> tuple[Summary, str]:
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    m = ship_model(spark, resolved)
    counter = spark.sparkContext.accumulator(Counter(), _Counts())
    jsonl = fmt == "jsonl"
    ddl, schema = _output_schema(
        m.themes, evidence=True, paragraphs=paragraphs, files=True, jsonl=jsonl
    )
    common = {
        "inputs": tuple((q, g, i) for i, (_, q, g) in enumerate(inputs)),
        "counter": counter,
        "jsonl": jsonl,
    }

    def job(kind: str, **extra: Any) -> Any:
        return functools.partial(
            _score,
            _Job(m, kind, schema, text_field, id_field, True, paragraphs, top_k, **common, **extra),
        )

    parts = []
    single = len(inputs) == 1
    by_kind = {k: [q for kind, q, _ in inputs if kind == k] for k in ("lines", "files", "parquet")}
    if by_kind["lines"]:
        lines = spark.read.option("lineSep", "\n").text(by_kind["lines"])
        lines = lines.select("value", "_metadata.file_path", "_metadata.file_block_start")
        counts: dict[str, list[tuple[int, int]]] = {}
        for r in lines.groupBy("file_path", "file_block_start").count().collect():
            counts.setdefault(r[0], []).append((r[1], r[2]))
        offsets: dict[tuple[str, int], int] = {}
        for uri, splits in counts.items():
            before = 0
            for start, n in sorted(splits):
                offsets[(uri, start)] = before
                before += n
        single = single and len(counts) <= 1
        parts.append(lines.mapInArrow(job("lines", offsets=offsets), ddl))
    if by_kind["files"]:
        big_ok = F.lit(False)  # streamed formats (documents.is_streamed), any case
        for suffix in (*JSONL_SUFFIXES, *CSV_SUFFIXES, *GZIP_SUFFIXES):
            big_ok = big_ok | F.lower(F.col("path")).endswith(suffix)
        files = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
        files = files.load(by_kind["files"])
        small = files.filter((F.col("length") <= MAX_DOCUMENT_BYTES) | big_ok)
        big = files.filter((F.col("length") > MAX_DOCUMENT_BYTES) & ~big_ok)
        both = small.select("path", "content").unionByName(
            big.select("path", F.lit(None).cast("binary").alias("content"))
        )
        empty = [(p, b"") for p in _empty_files(files.inputFiles())]  # Spark's scan skips them
        if empty:
            both = both.unionByName(spark.createDataFrame(empty, "path string, content binary"))
        single = False
        parts.append(both.mapInArrow(job("files"), ddl))
    if by_kind["parquet"]:
        table = spark.read.parquet(*by_kind["parquet"])
        if text_field not in table.columns:
            have = ", ".join(table.columns) or "none"
            raise UsageError(f"no column {text_field!r} (columns: {have})", "use --text-field")
        cols = [F.col(f"`{text_field}`").alias("text")]
        if id_field in table.columns:
            cols.append(F.col(f"`{id_field}`").cast("string").alias("id"))
        cols += [
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.row_index").alias("row"),
        ]
        single = False
        parts.append(table.select(*cols).mapInArrow(job("parquet"), ddl))
    scored = functools.reduce(lambda a, b: a.unionByName(b), parts)
    if not single:  # partitions are not in input order: sort, scoring once (cached)
        scored = scored.persist()
        result = scored.orderBy(*_KEYS).drop(*_KEYS)
    else:
        result = scored.drop(*_KEYS)
    tmp = _temp_out(target)
    try:
        (result.write.text if jsonl else result.write.parquet)(tmp)
        _replace(tmp, target)
    except BaseException:
        if "://" not in tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if not single:
            scored.unpersist()
    c = counter.value
    summary = Summary(
        documents=c["documents"],
        errors=c["errors"],
        chars=c["chars"],
        themes=Counter({k[6:]: v for k, v in c.items() if k.startswith("theme:")}),
        seconds=time.perf_counter() - t0,
    )
    return summary, m.label


def _empty_files(listed: Sequence[str]) -> list[str]:
    """The local files of a listing that are empty, as binaryFile names them (``file:/...``):
    Spark's scan leaves them out, the local engine reports them."""
    out = []
    for uri in listed:
        if uri.startswith("file:"):
            path = unquote(uri[5:].lstrip("/"))
            with contextlib.suppress(OSError):
                if os.path.getsize("/" + path) == 0:
                    out.append("file:/" + path)
    return out


def _check_out(out: str | None, inputs: Sequence[str]) -> str:
    """The output folder, refused before anything runs when it is missing, a file, a folder
    that is not an earlier output (no ``_SUCCESS``), or inside an input folder."""
    if not out:
        raise UsageError("--engine spark writes a folder of part files", "give -o FOLDER")
    if "://" in out:
        return out
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{printable(out)} is a file", "give -o a folder name (Spark writes one)")
    if path.is_dir() and any(path.iterdir()) and not (path / "_SUCCESS").exists():
        raise UsageError(
            f"{printable(out)} is a folder that is not an earlier output (no _SUCCESS file)",
            "give -o a new folder",
        )
    absolute = "file:" + os.path.abspath(out)
    for q in inputs:
        if absolute == q or absolute.startswith(q + "/"):
            raise UsageError(
                f"{printable(out)} is inside an input: a later run would read it",
                "choose a -o folder outside the inputs",
            )
    return out


def _temp_out(target: str) -> str:
    if "://" in target:
        return target  # written in place (no rename on a remote file system here)
    out = Path(os.path.abspath(target))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_partials(out)  # what a killed run left
    return str(out.parent / f"{partial_prefix(out)}{os.urandom(4).hex()}.partial")


def _replace(tmp: str, target: str) -> None:
    """Put a finished output in place of ``target`` (an earlier output is replaced)."""
    if tmp == target:
        return
    old = None
    if os.path.exists(target):
        old = tmp.removesuffix(".partial") + ".old.partial"  # removed by a later run if killed
        os.rename(target, old)
    os.rename(tmp, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def job_error(exc: BaseException) -> GovTopicsError:
    """A failed Spark job as one line: the project's error raised on an executor (a model
    that does not load: no store key, a tampered artefact), or the job's first error line."""
    text = str(exc)
    found = re.findall(r"pipeline\.errors\.\w+: (.+)", text)
    if found:
        hint = f"executors get the key as spark.executorEnv.{KEY_ENV}"
        key = f"${KEY_ENV}" in found[-1]
        return GovTopicsError(f"on a Spark executor: {found[-1].strip()}", hint if key else "")
    log = _LOG.pop("path", None)  # kept: the user is pointed to it
    where = f"the Spark log {log}" if log else "the Spark log"
    python = re.findall(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception): .+)$", text, re.MULTILINE)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    why = next((ln for ln in python if not ln.startswith(("org.", "java."))), first)
    return GovTopicsError(f"the Spark job failed: {why.strip()[:300]}", f"see {where}")
