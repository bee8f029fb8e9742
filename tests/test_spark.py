"""The Spark engine (pipeline/spark.py) on a real local Spark session: the same records as
``topics predict``, byte for byte, on the seed documents and a few thousand generated ones with
bad rows among them; ``score_dataframe`` and MLflow's ``spark_udf`` on the registered model give
the same themes and scores. One session for the module (Java from the system; skipped without
it, never without pyspark, which the dev extra installs)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_in
from tests.test_architecture import MODULES, imports_of


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return java if java and Path(java).exists() else None


needs_java = pytest.mark.skipif(
    _java() is None,
    reason="no Java: Spark needs Java 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)",
)

N_DOCS = 2000
# pyspark 4.3 warns about pandas 3 whenever a UDF is made; mapInArrow does not use pandas
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    if _java() is None:
        pytest.skip("no Java: Spark needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    from pipeline.spark import session

    s = session(
        "local[2]",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            # a short-lived JVM: no optimising compiler, one GC thread, Spark's own jars
            # not verified again
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
            "-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote",
            "spark.sql.files.maxPartitionBytes": str(256 << 10),  # several splits per file
        },
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def corpus(trained: Path) -> Path:
    """``gen.jsonl`` in the trained project: N_DOCS documents of 1-6 shuffled seed-document
    lines (fixed seed), with bad rows: a blank line, broken JSON, empty and null text, a text
    that is not a string, a record without an id."""
    lines = [
        ln.strip()
        for p in sorted((trained / "seeds" / "raw").glob("*.txt"))
        for ln in p.read_text("utf-8").splitlines()
        if len(ln.strip()) > 10
    ]
    rng = random.Random(14)
    bad = {
        7: "\n",
        11: "{not json\n",
        13: json.dumps({"id": "empty", "text": "  "}) + "\n",
        17: json.dumps({"id": "null", "text": None}) + "\n",
        19: json.dumps({"id": "number", "text": 5}) + "\n",
        23: json.dumps({"text": "全面开展安全生产隐患排查整治。"}, ensure_ascii=False) + "\n",
    }
    out = trained / "gen.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for i in range(N_DOCS):
            text = "\n".join(rng.sample(lines, rng.randint(1, 6)))
            fh.write(
                bad.get(i) or json.dumps({"id": f"g{i}", "text": text}, ensure_ascii=False) + "\n"
            )
    return out


def _parts(folder: Path) -> str:
    return "".join(p.read_text("utf-8") for p in sorted(folder.glob("part-*")))


INPUTS = ("seeds/raw", "gen.jsonl")


@pytest.fixture(scope="module")
def local_run(trained: Path, corpus: Path) -> subprocess.Popen[bytes]:
    """``topics predict`` (the local engine) on the seed documents and the corpus, started in
    a process of its own, so that it runs while Spark starts."""
    topics = Path(sys.executable).parent / "topics"
    return subprocess.Popen(
        [str(topics), "predict", *INPUTS, "-o", "local.jsonl"], cwd=trained, stderr=subprocess.PIPE
    )


@pytest.fixture(scope="module")
def local(local_run: subprocess.Popen[bytes], spark, trained: Path) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The local engine's records, by id (its output is ``local.jsonl``). Spark's Python
    workers start and load the model meanwhile (the first job pays for that)."""
    from pipeline.spark import score_dataframe

    few = spark.createDataFrame([(str(i), "安全生产") for i in range(4)], "id string, text string")
    score_dataframe(few, store=trained / "models").collect()
    _, err = local_run.communicate()
    assert local_run.returncode == 1, err  # bad rows: exit 1
    records = map(json.loads, (trained / "local.jsonl").read_text("utf-8").splitlines())
    return {r["id"]: r for r in records}


def _same_figures(row: dict, rec: dict) -> None:
    """A flat Spark row (one double column per theme) against a local record."""
    assert row["themes"] == rec["themes"] and row["main_themes"] == rec["main_themes"]
    assert {t: row[t] for t in rec["scores"]} == rec["scores"]
    assert dict(row["coverage"]) == rec["coverage"] and row["error"] is None


@needs_java
def test_cli_spark_writes_the_local_records_byte_for_byte(
    trained: Path, local: dict[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", *INPUTS, "--engine", "spark", "--format", "jsonl", "-o", "out"]
    assert run_in(trained, *argv) == 1  # some documents failed, as with the local engine
    err = capsys.readouterr().err
    assert "errors: 4" in err and "on Spark" in err, err
    text = (trained / "local.jsonl").read_text("utf-8")
    assert _parts(trained / "out") == text  # the same records, in the same order, byte for byte
    assert (trained / "out" / "_SUCCESS").exists()
    assert len(local) == 5 + N_DOCS - 1  # the seed documents; every line but the blank one
    errors = {r["source"]: r["error"] for r in local.values() if "error" in r}
    assert errors == {
        "gen.jsonl:12": "invalid JSON (Expecting property name enclosed in double quotes)",
        "gen.jsonl:14": "empty 'text' field",
        "gen.jsonl:18": "no text in field 'text'",
        "gen.jsonl:20": "no text in field 'text'",
    }
    assert "gen.jsonl:24" in local  # no id: its place, as locally

    # Parquet, the default, over that earlier output (replaced; a folder that is not an earlier
    # output is refused): the same figures, one double column per theme
    import pyarrow.parquet as pq

    assert run_in(trained, "predict", "seeds/raw", "--engine", "spark", "-o", "seeds") == 2
    assert "not an earlier output" in capsys.readouterr().err
    assert run_in(trained, "predict", "seeds/raw", "--engine", "spark", "-o", "out") == 0
    rows = pq.read_table(trained / "out").to_pylist()
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # the folder's order
    for row in rows:
        rec = local[row["id"]]
        _same_figures(row, rec)
        assert json.loads(row["evidence"]) == rec["evidence"] and row["source"] == rec["source"]


def _sample(corpus: Path, n: int) -> list[tuple[int, str, str]]:
    """(line index, local id, text) of the first ``n`` good documents of the corpus."""
    out = []
    for i, line in enumerate(corpus.read_text("utf-8").splitlines()):
        doc = json.loads(line) if line.startswith('{"id": "g') else None
        if doc is not None:
            out.append((i, doc["id"], doc["text"]))
        if len(out) == n:
            break
    return out


@needs_java
def test_score_dataframe_keeps_order_ids_and_flags_bad_rows(
    trained: Path, corpus: Path, spark, local: dict[str, dict]
) -> None:  # type: ignore[no-untyped-def]
    from pipeline.spark import score_dataframe

    sample = _sample(corpus, 300)
    rows = [(i, text) for i, _, text in sample] + [(9001, None), (9002, "  ")]
    df = spark.createDataFrame(rows[::-1], "n long, body string")
    out = score_dataframe(
        df, text_col="body", id_col="n", evidence=True, store=trained / "models"
    ).collect()
    assert [r["id"] for r in out] == [n for n, _ in rows[::-1]]  # order and ids (long) kept
    by_id = {r["id"]: r.asDict() for r in out}
    for i, local_id, _ in sample:
        _same_figures(by_id[i], local[local_id])
        assert json.loads(by_id[i]["evidence"]) == local[local_id]["evidence"]
        assert by_id[i]["model"] == "gov-topics:1"
    assert by_id[9001]["error"] == "no text in field 'body'" and by_id[9001]["themes"] is None
    assert by_id[9002]["error"] == "empty 'body' field"

    # the registered model by its MLflow URI: the store version its registry entry names
    few = spark.createDataFrame(
        [(local_id, t) for _, local_id, t in sample[:20]], "id string, text string"
    )
    via_mlflow = score_dataframe(
        few, model="models:/gov-topics@production", store=trained / "models"
    )
    for r in via_mlflow.collect():
        _same_figures(r.asDict(), local[r["id"]])


@needs_java
def test_mlflow_spark_udf_on_the_registered_model(
    corpus: Path, spark, local: dict[str, dict]
) -> None:  # type: ignore[no-untyped-def]
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    sample = _sample(corpus, 40)
    df = spark.createDataFrame(
        [(local_id, t) for _, local_id, t in sample], "id string, text string"
    ).coalesce(1)  # one Python worker imports MLflow, not two
    # the result type is the logged signature's: id, themes, one double per theme, evidence;
    # the plain call (as in the README), and with evidence asked for
    uri = "models:/gov-topics@production"
    plain = mlflow.pyfunc.spark_udf(spark, uri, env_manager="local")
    udf = mlflow.pyfunc.spark_udf(spark, uri, env_manager="local", params={"evidence": True})
    cols = F.struct("text", "id")
    out = df.select(udf(cols).alias("p"), plain(cols).alias("q")).collect()
    assert [r["p"]["id"] for r in out] == [local_id for _, local_id, _ in sample]
    for row in out:
        r, q = row["p"], row["q"]
        rec = local[r["id"]]
        assert r["themes"] == q["themes"] == rec["themes"]
        assert {t: r[t] for t in rec["scores"]} == {t: q[t] for t in rec["scores"]} == rec["scores"]
        assert json.loads(r["evidence"]) == rec["evidence"] and q["evidence"] is None


def test_without_pyspark_or_java_the_command_says_what_to_install(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a)
    )
    assert run_in(trained, "predict", "seeds/raw", "--engine", "spark", "-o", "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'gov-topics[spark]'" in err, err
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setenv("JAVA_HOME", str(trained / "no-java"))
    assert run_in(trained, "predict", "seeds/raw", "--engine", "spark", "-o", "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install openjdk-17-jre-headless" in err, err


def test_a_row_that_fails_gets_an_error_and_the_batch_goes_on() -> None:
    from pipeline.spark import _Job, _predict

    class Flaky:
        def predict(self, texts, **opts):  # type: ignore[no-untyped-def]
            if "boom" in texts:
                raise ValueError("cannot score this")
            return [{"themes": [t]} for t in texts]

    job = _Job(model=None, kind="column", schema=None)  # type: ignore[arg-type]
    got = _predict(Flaky(), ["a", "boom", "c"], job)
    assert got == [
        {"themes": ["a"]},
        "scoring failed (ValueError: cannot score this)",
        {"themes": ["c"]},
    ]


def test_pyspark_is_imported_by_the_spark_module_only() -> None:
    # ARCHITECTURE.md: pyspark and the Spark engine stay out of the scoring core and the rest;
    # the engine reaches no training, stage or CLI code (MLflow only through tracking, lazily,
    # for a models:/ URI)
    imports = {m: imports_of(m) for m in MODULES}
    deps = {m: imports[m] & set(MODULES) for m in MODULES}

    def reach(start: str, skip: frozenset[str] = frozenset()) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for d in deps[todo.pop()] - seen - skip:
                seen.add(d)
                todo.append(d)
        return seen

    for module in MODULES:
        assert ("pyspark" in {m.split(".")[0] for m in imports[module]}) == (module == "spark")
        assert module == "cli" or "spark" not in reach(module), module
    never = {"cli", "stages", "ingest", "labels", "train", "evaluate", "report", "workspace"}
    used = reach("spark", skip=frozenset({"tracking"}))
    assert not used & (never | {"serving", "promote"}), used
    assert "mlflow" not in {m.split(".")[0] for m in imports["spark"]}
