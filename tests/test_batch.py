"""The batch prediction CLI: formats, encodings, error paths, atomic output, order, exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.batch import RecordWriter, run_batch
from pipeline.cli import main
from pipeline.documents import Document, iter_documents, read_html

pytestmark = pytest.mark.slow

SAFETY = "全面开展安全生产大检查,深入排查整治重大事故隐患,严防各类事故发生。"
RURAL = "加快建设高标准农田,稳定粮食播种面积,发展特色种植养殖,促进农民持续增收,推进乡村振兴。"


def _predict(trained: Path, *args: str) -> int:
    return main(["predict", *args, "--models", str(trained / "models"), "--model", "gov-topics:1"])


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "utf-16"])
def test_text_files_in_each_encoding(trained: Path, tmp_path: Path, encoding: str) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(SAFETY.encode(encoding))
    out = tmp_path / "out.jsonl"
    assert _predict(trained, str(src), "-o", str(out)) == 0
    assert _records(out)[0]["themes"][0] == "safety"


def test_csv_with_quoted_multiline_fields_reports_rows(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["doc_id", "body"])
        w.writerow(["s", SAFETY.replace(",", ",\n", 1)])
        w.writerow(["e", ""])
        w.writerow(["r", RURAL])
    out = tmp_path / "out.jsonl"
    code = _predict(
        trained, str(src), "-o", str(out), "--text-field", "body", "--id-field", "doc_id"
    )
    recs = _records(out)
    assert code == 1  # the empty row
    assert [r["id"] for r in recs] == ["s", "e", "r"]
    assert recs[0]["source"] == f"{src}:row 1" and recs[0]["themes"][0] == "safety"
    assert "empty 'body' field" in recs[1]["error"]
    assert "rural" in recs[2]["themes"]


def test_csv_without_the_text_column_is_one_error_record(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id,content\n1,x\n", "utf-8")
    out = tmp_path / "out.jsonl"
    assert _predict(trained, str(src), "-o", str(out)) == 1
    assert "no column 'text' (columns: id, content)" in _records(out)[0]["error"]


def test_docx_paragraphs_and_broken_docx(trained: Path, tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph(SAFETY)
    d.save(str(tmp_path / "a.docx"))
    (tmp_path / "b.docx").write_bytes(b"not a zip")
    out = tmp_path / "out.jsonl"
    assert _predict(trained, str(tmp_path), "-o", str(out)) == 1
    recs = _records(out)
    assert recs[0]["themes"][0] == "safety"
    assert "not a readable .docx file" in recs[1]["error"]


def test_html_main_text_leaves_out_menus_and_footers() -> None:
    page = (
        "<html><head><meta charset='utf-8'></head><body><nav><a href='/'>首页</a>"
        "<a href='/n'>新闻中心</a><a href='/g'>政务公开</a></nav><article><h1>县里开展防汛演练</h1>"
        f"<p>{SAFETY}</p><p>演练模拟强降雨引发山洪,转移群众200余人,排查隐患点15处,检验了应急处置能力。</p>"
        "</article><footer>版权所有 某县人民政府 ICP备案号 联系我们</footer></body></html>"
    )
    doc = read_html(page.encode("utf-8"), "p.html")
    assert isinstance(doc, Document)
    assert "排查整治重大事故隐患" in doc.text
    assert "版权所有" not in doc.text and "新闻中心" not in doc.text


def test_csv_output_has_one_score_column_per_theme(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    out = tmp_path / "out.csv"
    assert _predict(trained, str(src), "-o", str(out), "--format", "csv") == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows[0]["themes"].split(";")[0] == "safety"
    assert float(rows[0]["score_safety"]) > 0.5
    assert {f"score_{t}" for t in ("safety", "rural", "culture")} <= set(rows[0])


def test_folder_with_symlink_loop_is_reported_not_fatal(trained: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "a.txt").write_text(SAFETY, "utf-8")
    os.symlink(docs, docs / "sub" / "loop")
    out = tmp_path / "out.jsonl"
    assert _predict(trained, str(docs), "-o", str(out)) == 1
    recs = _records(out)
    assert recs[0]["themes"][0] == "safety"
    assert any("symlink loop" in r.get("error", "") for r in recs)


def test_jobs_2_gives_the_same_records_in_input_order(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "many.jsonl"
    texts = [SAFETY, RURAL] * 150
    src.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        ),
        "utf-8",
    )
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}.jsonl"
        assert _predict(trained, str(src), "-o", str(out), "--jobs", jobs) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert [r["id"] for r in _records(tmp_path / "out2.jsonl")] == [f"d{i}" for i in range(300)]


def test_interrupted_run_leaves_no_partial_file(trained: Path, tmp_path: Path) -> None:
    from pipeline.predict import Predictor
    from pipeline.registry import ModelRef, ModelStore

    model, _ = ModelStore(trained / "models").load(ModelRef("gov-topics", "1"))
    out = tmp_path / "out.jsonl"
    out.write_text("previous complete output\n", "utf-8")

    def items():
        for i in range(200):
            if i == 150:
                raise KeyboardInterrupt
            yield Document(f"d{i}", "x", SAFETY)

    writer = RecordWriter(str(out), "jsonl", ["safety"])
    with pytest.raises(KeyboardInterrupt):
        try:
            run_batch(items(), Predictor(model), writer)
        except BaseException:
            writer.abort()
            raise
    assert out.read_text("utf-8") == "previous complete output\n"
    assert list(tmp_path.iterdir()) == [out]


def test_stdin_jsonl_and_no_mlflow_import(trained: Path) -> None:
    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['predict', '-', '--models', {str(trained / 'models')!r}]); "
        "print('MLFLOW' if any(m.split('.')[0] == 'mlflow' for m in sys.modules) else 'CLEAN', "
        "file=sys.stderr); sys.exit(rc)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps({"id": "x", "text": SAFETY}, ensure_ascii=False) + "\n",
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["themes"][0] == "safety"
    assert "CLEAN" in res.stderr


def test_iter_documents_keeps_input_order_across_paths(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("乙", "utf-8")
    (tmp_path / "a.txt").write_text("甲", "utf-8")
    got = [d.text for d in iter_documents([str(tmp_path / "b.txt"), str(tmp_path / "a.txt")])]
    assert got == ["乙", "甲"]


def test_jsonl_streams_with_a_bad_line_reported_by_number(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "mixed.jsonl"
    good = json.dumps({"id": "s", "text": SAFETY}, ensure_ascii=False).encode("utf-8")
    gbk = json.dumps({"id": "r", "text": RURAL}, ensure_ascii=False).encode("gb18030")
    src.write_bytes(good + b"\n" + b'{"id": "x", "text": "\xff\xfe\xff"}\n' + gbk + b"\n")
    out = tmp_path / "out.jsonl"
    assert _predict(trained, str(src), "-o", str(out)) == 1  # one line failed, the rest went on
    recs = _records(out)
    assert [r["id"] for r in recs] == ["s", f"{src}:2", "r"]
    assert recs[0]["themes"][0] == "safety"
    assert "cannot decode as UTF-8 or GB18030" in recs[1]["error"]
    assert recs[1]["source"] == f"{src}:2"
    assert "rural" in recs[2]["themes"]  # a GB18030 line in a UTF-8 file


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_jsonl_with_a_bom_or_in_utf16(tmp_path: Path, encoding: str) -> None:
    src = tmp_path / "a.jsonl"
    lines = [
        json.dumps({"id": str(i), "text": t}, ensure_ascii=False) for i, t in enumerate("甲乙")
    ]
    src.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    got = list(iter_documents([str(src)]))
    assert [(d.id, d.text, d.source) for d in got] == [
        ("0", "甲", f"{src}:1"),
        ("1", "乙", f"{src}:2"),
    ]


def test_jsonl_is_read_lazily_not_whole() -> None:
    """Reading the first document must not read the whole stream: a stream that fails past its
    first 256 KB still yields the documents before that."""
    import io

    from pipeline.documents import read_jsonl

    line = (json.dumps({"id": "d", "text": SAFETY}, ensure_ascii=False) + "\n").encode("utf-8")

    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            if self.served > 256 * 1024:
                raise AssertionError("read past the first 256 KB")
            chunk = line * (len(b) // len(line))
            b[: len(chunk)] = chunk
            self.served += len(chunk)
            return len(chunk)

    docs = read_jsonl(io.BufferedReader(Endless()), "s", "text", "id")
    first = [next(docs) for _ in range(100)]
    assert all(isinstance(d, Document) and d.text == SAFETY for d in first)


def test_stdin_jsonl_after_blank_lines_and_stdin_text() -> None:
    import io

    from pipeline.documents import read_stdin

    data = b"\n  \n" + json.dumps({"id": "a", "text": SAFETY}, ensure_ascii=False).encode() + b"\n"
    got = list(read_stdin(io.BufferedReader(io.BytesIO(data)), "text", "id"))  # type: ignore[arg-type]
    assert [(d.id, d.source) for d in got] == [("a", "<stdin>:3")]
    got = list(read_stdin(io.BufferedReader(io.BytesIO(SAFETY.encode("gb18030"))), "text", "id"))  # type: ignore[arg-type]
    assert isinstance(got[0], Document) and got[0].text == SAFETY


def test_batches_close_on_documents_or_characters() -> None:
    from pipeline.batch import _batches

    docs = [Document(str(i), "s", "字" * 100) for i in range(10)]
    assert [len(b) for b in _batches(docs, docs=4, chars=10_000)] == [4, 4, 2]
    assert [len(b) for b in _batches(docs, docs=100, chars=250)] == [3, 3, 3, 1]


def test_progress_bar_on_a_terminal_and_quiet_otherwise(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "many.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate([SAFETY, RURAL] * 60)
        ),
        "utf-8",
    )
    cmd = [sys.executable, "-m", "pipeline.cli", "predict", str(src), "-o", str(tmp_path / "o")]
    cmd += ["--models", str(trained / "models")]
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()  # stderr is a terminal, 24 x 100 like a real one
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stderr=slave, timeout=300)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert res.returncode == 0
    assert "120/120" in shown and "doc/s" in shown  # count, total and rate
    assert shown.index("loading model gov-topics:1 ...") < shown.index("doc/s")  # the wait, said
    assert "predict: 120 documents" in shown
    quiet = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert quiet.returncode == 0
    assert "doc/s" not in quiet.stderr and "\r" not in quiet.stderr
    assert quiet.stderr.startswith("predict: 120 documents")


def test_the_bar_starts_once_the_model_is_loaded_and_ready(
    trained: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the bar used to sit at 0 % for seconds: the model loading, then its tokenizer being built
    # by the first batch, all counted in the bar's rate
    import tqdm

    from pipeline.predict import Predictor

    events: list[str] = []
    warm = Predictor.warm
    monkeypatch.setattr(Predictor, "warm", lambda self: events.append("warm") or warm(self))

    class Bar(tqdm.tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            events.append("bar")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    assert _predict(trained, str(src), "-o", str(tmp_path / "o.jsonl")) == 0
    assert events == ["warm", "bar"]  # ready before the bar starts
    assert capsys.readouterr().err.startswith("topics predict: loading model gov-topics:1 ...\n")


def test_predict_uses_the_production_model_by_default(trained: Path, tmp_path: Path) -> None:
    import shutil

    from pipeline.registry import ModelStore

    store_dir = tmp_path / "models"
    shutil.copytree(trained / "models", store_dir)
    store = ModelStore(store_dir)
    assert store.aliases("gov-topics") == {"production": 1}  # `register --promote` made it so
    v2 = store.add_version("gov-topics", trained / "build" / "small" / "model.joblib", {})
    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    args = [str(src), "--models", str(store_dir), "-o", str(tmp_path / "o.jsonl")]
    assert main(["predict", *args, "--model", "gov-topics@latest"]) == 0
    assert _records(tmp_path / "o.jsonl")[0]["model"] == f"gov-topics:{v2}"
    assert main(["predict", *args]) == 0
    assert _records(tmp_path / "o.jsonl")[0]["model"] == "gov-topics:1"  # production wins


def test_one_document_summary_reads_right_and_version_is_printed(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    assert main(["predict", str(src), "--models", str(trained / "models")]) == 0
    err = capsys.readouterr().err
    assert (
        "predict: 1 document (" in err and "0 docs/s" not in err
    )  # was "1 documents ... 0 docs/s"
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and "gov-topics" in capsys.readouterr().out


def test_the_model_store_is_found_from_a_subfolder(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the store used to be ./models of whatever folder the command ran in
    monkeypatch.delenv("GOV_TOPICS_MODELS", raising=False)
    monkeypatch.chdir(trained / "seeds" / "raw")
    src = next(Path(".").glob("000_*.txt"))
    assert main(["predict", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "gov-topics:1"
