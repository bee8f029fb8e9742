"""Hostile inputs and outputs for `topics predict` (issue #13): one bad document never stops or
corrupts a batch, and the output is never lost, overwritten or left half written.

Every fixture is built here, in a temporary folder. The model is a small one fitted in seconds
on part of the written corpus (not the session-wide `trained` project).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.documents import Document, DocumentError, iter_documents, read_path
from pipeline.paragraphs import split_paragraphs
from pipeline.textio import decode_bytes

from .conftest import ROOT, SEEDS, fit_small_model, raw_text

SAFETY = "全面开展安全生产大检查,深入排查整治重大事故隐患,严防各类事故发生。"
RURAL = "加快建设高标准农田,稳定粮食播种面积,发展特色种植养殖,促进农民持续增收,推进乡村振兴。"
TRADITIONAL = "安全生產檢查工作會議在區政府召開，要求各單位落實責任。"
TRADITIONAL_2 = "各區縣應當加強安全監督管理，防範重大事故發生。"
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # the cap: pipeline.documents.MAX_DOCUMENT_BYTES


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding gov-topics:1, a small model fitted on 150 written paragraphs."""
    import joblib

    from pipeline.labels import load_written
    from pipeline.registry import ModelStore

    model = fit_small_model(load_written(SEEDS / "extra")[::10][:150])
    root = tmp_path_factory.mktemp("models")
    joblib.dump(model, root / "model.joblib")
    ModelStore(root / "models").add_version("gov-topics", root / "model.joblib", {}, model=model)
    return root / "models"


def _predict(models: Path, *args: str) -> int:
    return main(["predict", *args, "--models", str(models), "--model", "gov-topics:1"])


def _records(path: Path) -> list[dict]:
    # not splitlines(): a JSON string may hold U+2028 or U+0085 unescaped
    return [json.loads(x) for x in path.read_text("utf-8").split("\n") if x]


def _jsonl(*objs: object) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode("utf-8") + b"\n" for o in objs)


def _subprocess_code(models: Path, *args: str) -> str:
    argv = ["predict", *args, "--models", str(models), "--model", "gov-topics:1"]
    return f"import sys\nfrom pipeline.cli import main\nsys.exit(main({argv!r}))\n"


# -- one document stops or corrupts a batch --------------------------------------------------


def test_jsonl_lone_surrogate_and_deep_nesting_are_error_records(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "a.jsonl"
    src.write_bytes(
        _jsonl({"id": "first", "text": SAFETY})
        + b'{"id": "s", "text": "\\ud800 '
        + SAFETY.encode()
        + b'"}\n'
        + b"[" * 100_000
        + b"\n"
        + b'{"id": "n", "text": "x", "deep": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}\n"
        + b'{"id": "i", "text": "x", "n": '
        + b"1" * 5000
        + b"}\n"
        + _jsonl({"id": "last", "text": RURAL})
    )
    out = tmp_path / "out.jsonl"
    assert _predict(models, str(src), "-o", str(out)) == 1
    recs = _records(out)
    assert [r["id"] for r in recs] == ["first", *[f"{src}:{n}" for n in (2, 3, 4, 5)], "last"]
    assert "surrogate" in recs[1]["error"]
    assert "nested too deeply" in recs[2]["error"] and "nested too deeply" in recs[3]["error"]
    assert "invalid JSON" in recs[4]["error"]
    assert all(r["source"] == f"{src}:{n}" for r, n in zip(recs[1:5], (2, 3, 4, 5), strict=True))
    assert recs[0]["themes"] and recs[-1]["themes"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_is_scored_with_an_escaped_source(
    models: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    name = os.path.join(os.fsencode(docs), b"\xff\xfe.txt")
    with open(name, "wb") as fh:
        fh.write(SAFETY.encode("utf-8"))
    out = tmp_path / "out.jsonl"
    assert _predict(models, str(docs), "-o", str(out)) == 0
    (rec,) = _records(out)
    assert rec["source"] == rec["id"] == f"{docs}/\\xff\\xfe.txt"
    assert rec["themes"][0] == "safety"


def test_special_files_are_skipped_and_documents_capped(tmp_path: Path) -> None:
    """A FIFO named .txt in a folder must not hang the run, a link to /dev/zero must not grow
    without bound: each is one error record, and the rest of the folder is read."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(SAFETY, "utf-8")
    os.mkfifo(docs / "b_fifo.txt")
    os.symlink("/dev/zero", docs / "c_zero.txt")
    (docs / "d.txt").write_text(RURAL, "utf-8")
    zero = tmp_path / "zero.txt"
    os.symlink("/dev/zero", zero)
    code = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from pipeline.documents import iter_documents\n"
        "for d in iter_documents(sys.argv[1:]):\n"
        "    print(json.dumps([type(d).__name__, d.source, getattr(d, 'error', '')]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(docs), str(zero)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    got = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(kind, Path(src).name) for kind, src, _ in got] == [
        ("Document", "a.txt"),
        ("DocumentError", "b_fifo.txt"),
        ("DocumentError", "c_zero.txt"),
        ("Document", "d.txt"),
        ("DocumentError", "zero.txt"),
    ]
    assert "not a regular file" in got[1][2] and "not a regular file" in got[2][2]
    assert "20 MB" in got[4][2]


def test_a_document_over_the_size_cap_is_one_error(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(SAFETY.encode("utf-8") * (MAX_DOCUMENT_BYTES // len(SAFETY.encode()) + 1))
    (tmp_path / "small.txt").write_text(SAFETY, "utf-8")
    got = list(iter_documents([str(tmp_path)]))
    assert isinstance(got[0], DocumentError) and got[0].source == str(big)
    assert "20 MB" in got[0].error and "split" in got[0].error
    assert isinstance(got[1], Document)
    from pipeline import documents

    assert documents.MAX_DOCUMENT_BYTES == MAX_DOCUMENT_BYTES


def test_csv_long_fields_and_a_bad_row_each_get_their_own_error(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "text"])
    w.writerow(["r1", SAFETY])
    w.writerow(["r2", SAFETY * 3000])  # ~200 KB: over csv's default 128 KiB field limit
    for i in range(3, 40):  # past the first 64 KiB
        w.writerow([f"r{i}", RURAL * 20])
    data = buf.getvalue().encode("utf-8")
    assert len(data) > 1 << 17
    data += b'r40,"\xff\xfe\xff' + SAFETY.encode() + b'"\r\n'  # neither UTF-8 nor GB18030/Big5
    data += b"r41," + b"x" * (MAX_DOCUMENT_BYTES + 10) + b"\r\n"  # over the document cap
    data += b'r42,"' + SAFETY.encode() + b'\r\nsecond line"\r\n'
    src.write_bytes(data)
    got = list(iter_documents([str(src)]))
    assert [d.source for d in got] == [f"{src}:row {i}" for i in range(1, 43)]
    kinds = [type(d).__name__ for d in got]
    assert kinds == ["Document"] * 39 + ["DocumentError", "DocumentError", "Document"]
    assert len(got[1].text) == len(SAFETY) * 3000
    assert "cannot decode" in got[39].error
    assert "20 MB" in got[40].error
    assert got[41].text == SAFETY + "\r\nsecond line"


def test_docx_zip_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph(SAFETY)
    base = io.BytesIO()
    d.save(base)
    bomb = tmp_path / "bomb.docx"
    with (
        zipfile.ZipFile(base) as src,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst,
    ):
        for info in src.infolist():
            if info.filename != "word/document.xml":
                dst.writestr(info, src.read(info))
                continue
            xml = src.read(info).decode("utf-8")
            head, tail = xml.split(SAFETY)
            with dst.open("word/document.xml", "w", force_zip64=True) as fh:
                fh.write(head.encode())
                chunk = b" " * (1 << 20)
                for _ in range(300):  # 300 MB of spaces in one text run
                    fh.write(chunk)
                fh.write(tail.encode())
    assert bomb.stat().st_size < 2 * MAX_DOCUMENT_BYTES
    t0 = time.perf_counter()
    (item,) = read_path(bomb)
    assert time.perf_counter() - t0 < 2.0
    assert isinstance(item, DocumentError)
    assert "MB" in item.error and "zip bomb" in item.error


def test_big5_text_is_decoded_not_scored_as_mojibake(tmp_path: Path) -> None:
    text = "\n".join([TRADITIONAL, TRADITIONAL_2] * 3)
    (tmp_path / "big5.txt").write_bytes(text.encode("big5"))
    (item,) = read_path(tmp_path / "big5.txt")
    assert isinstance(item, Document) and item.text == text
    # a Big5 line in a UTF-8 JSONL file, and a Big5 CSV file
    (tmp_path / "a.jsonl").write_bytes(
        _jsonl({"id": "u", "text": SAFETY})
        + json.dumps({"id": "b", "text": TRADITIONAL}, ensure_ascii=False).encode("big5")
        + b"\n"
    )
    assert [d.text for d in read_path(tmp_path / "a.jsonl")] == [SAFETY, TRADITIONAL]
    (tmp_path / "b.csv").write_bytes(
        f"id,text\n1,{TRADITIONAL}\n2,{TRADITIONAL_2}\n".encode("big5")
    )
    assert [d.text for d in read_path(tmp_path / "b.csv")] == [TRADITIONAL, TRADITIONAL_2]


def test_text_in_no_chinese_encoding_is_an_error_not_mojibake(tmp_path: Path) -> None:
    (tmp_path / "sjis.txt").write_bytes(
        "日本語のテキストです。これは試験です。".encode("shift_jis")
    )
    (tmp_path / "latin1.txt").write_bytes(
        "Le café est très bon, déjà vu à la façon".encode("latin-1")
    )
    for item in iter_documents([str(tmp_path)]):
        assert isinstance(item, DocumentError), item
        assert "convert the file to UTF-8" in item.error


def test_gbk_and_gb18030_text_still_decode() -> None:
    for text in (SAFETY, "甲", raw_text("001")):
        for enc in ("gbk", "gb18030"):
            assert decode_bytes(text.encode(enc)) == text


def test_empty_and_nul_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a_empty.txt").write_bytes(b"")
    (tmp_path / "b_blank.md").write_bytes(b" \r\n\n\t\n")
    (tmp_path / "c_nul.txt").write_bytes(b"\x00" * 4096)
    (tmp_path / "d_ok.txt").write_text(SAFETY, "utf-8")
    (tmp_path / "e.jsonl").write_bytes(_jsonl({"id": "e", "text": "  "}, {"id": "z", "text": "\0"}))
    got = list(iter_documents([str(tmp_path)]))
    assert [type(d).__name__ for d in got] == ["DocumentError"] * 3 + ["Document"] + [
        "DocumentError"
    ] * 2
    assert "empty document" in got[0].error and "empty document" in got[1].error
    assert "binary/NUL content" in got[2].error
    assert "empty 'text' field" in got[4].error and "NUL" in got[5].error


# -- paragraphs -------------------------------------------------------------------------------


def test_the_publisher_credit_rule_drops_credit_lines_only() -> None:
    body = "据区城市管理委员会发布(第395期)简报,全区开展安全生产大检查,深入排查整治重大事故隐患。"
    credit = "通州区城市管理委员会发布(第395期)(冯维静)(沙澎泽)"
    paras = split_paragraphs(f"{SAFETY}\n{body}\n{credit}")
    assert paras == [SAFETY, body]


def test_a_long_document_on_one_line_is_scored_by_paragraph() -> None:
    for prefix in ("001", "003"):
        text = raw_text(prefix)
        one_line = text.replace("\n", "")
        paras = split_paragraphs(one_line)
        assert len(paras) >= len(one_line) // 1000, prefix
        assert max(len(p) for p in paras) <= 1000
    # no sentence end at all (numbered, so that no two pieces are the same)
    no_ends = ",".join(
        f"第{i}项全区开展安全生产大检查,深入排查整治重大事故隐患" for i in range(5000)
    )
    paras = split_paragraphs(no_ends)
    assert len(paras) >= len(no_ends) // 1000 and max(len(p) for p in paras) <= 1000


# -- output -----------------------------------------------------------------------------------


@pytest.fixture
def no_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring fails the test: what must be refused is refused before any document is scored."""
    import pipeline.batch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("scoring started")

    monkeypatch.setattr(pipeline.batch, "run_batch", refuse)


def test_output_that_is_an_input_is_refused_before_scoring(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_scoring: None,
) -> None:
    src = tmp_path / "a.jsonl"
    src.write_bytes(_jsonl({"id": "a", "text": SAFETY}))
    before = src.read_bytes()
    assert _predict(models, str(src), "-o", str(src)) == 2
    os.symlink(src, tmp_path / "link.jsonl")  # the same file by another name
    assert _predict(models, str(src), "-o", str(tmp_path / "link.jsonl")) == 2
    assert src.read_bytes() == before
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("is also an input" in e for e in err)


def test_output_inside_an_input_folder_is_not_read_as_an_input(
    models: Path, tmp_path: Path
) -> None:
    (tmp_path / "a.jsonl").write_bytes(_jsonl({"id": "a", "text": SAFETY}))
    out = tmp_path / "out.jsonl"
    for _ in range(2):  # the second run finds the first run's output in the folder
        assert _predict(models, str(tmp_path), "-o", str(out)) == 0
        assert [r["id"] for r in _records(out)] == ["a"]


def test_output_folder_or_unwritable_place_fails_before_scoring(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_scoring: None,
) -> None:
    src = tmp_path / "in" / "a.txt"
    src.parent.mkdir()
    src.write_text(SAFETY, "utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x", "utf-8")
    for out in (tmp_path / "folder", tmp_path / "file" / "out.jsonl"):
        assert _predict(models, str(src), "-o", str(out)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "is a folder" in err[0] and "cannot write" in err[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "in"]


def test_a_write_error_is_one_line_and_leaves_nothing(models: Path, tmp_path: Path) -> None:
    """A file-size limit makes the output's writes fail (EFBIG) as a full disk would."""
    src = tmp_path / "a.jsonl"
    src.write_bytes(_jsonl(*({"id": f"d{i}", "text": SAFETY} for i in range(400))))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
    ) + _subprocess_code(models, str(src), "-o", str(out_dir / "out.jsonl"))
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "cannot write" in res.stderr
    assert list(out_dir.iterdir()) == []


def _predict_mid_write(models: Path, out: Path) -> subprocess.Popen:
    """``topics predict - -o OUT`` in a subprocess, returned once its partial output exists:
    stdin stays open, so the run waits for more documents."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _subprocess_code(models, "-", "-o", str(out))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    proc.stdin.write(_jsonl(*({"id": f"d{i}", "text": SAFETY} for i in range(3))))
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.*.partial")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_sigterm_removes_the_partial_output(models: Path, tmp_path: Path) -> None:
    proc = _predict_mid_write(models, tmp_path / "out.jsonl")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert b"Traceback" not in err and b"terminated" in err
    assert list(tmp_path.iterdir()) == []


def test_the_next_run_removes_what_a_killed_run_left(models: Path, tmp_path: Path) -> None:
    """SIGKILL cannot be cleaned up after: its partial output stays, named with its pid, until
    the next run to the same file removes it; a live process's partial output is kept."""
    out = tmp_path / "out.jsonl"
    proc = _predict_mid_write(models, out)
    proc.kill()
    proc.communicate(timeout=60)
    [left] = tmp_path.glob(".out.jsonl.*.partial")
    assert left.name.startswith(f".out.jsonl.{proc.pid}.")
    live = tmp_path / f".out.jsonl.{os.getpid()}.another-run.partial"  # this process: alive
    live.write_text("", "utf-8")
    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    assert _predict(models, str(src), "-o", str(out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.txt", "out.jsonl", live.name])


def test_output_gets_the_usual_file_mode(models: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    out = tmp_path / "out.jsonl"
    assert _predict(models, str(src), "-o", str(out)) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_output_to_a_fifo_is_written_in_place(models: Path, tmp_path: Path) -> None:
    """A special file (a FIFO here, /dev/null or /dev/stdout elsewhere) is written to, never
    replaced by a renamed temporary file."""
    import threading

    src = tmp_path / "a.txt"
    src.write_text(SAFETY, "utf-8")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert _predict(models, str(src), "-o", str(fifo)) == 0
    reader.join(10)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(got[0])["themes"][0] == "safety"


# -- fuzz -------------------------------------------------------------------------------------


def _random_text(rng: random.Random, n: int, surrogates: bool = False) -> str:
    pools = [
        SAFETY + RURAL + TRADITIONAL,
        "abc XYZ 123 ,.;:!?\"'\\/{}[]",
        "".join(map(chr, range(0x20))) + "\x7f\u2028\u2029\ufeff\u3000\u00a0",
        "😀𠀀\U0010ffff\ue000",
    ] + (["\ud800\udbff\udc00\udfff"] if surrogates else [])
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


def _random_json_line(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    text = _random_text(rng, rng.randrange(0, 200))
    if kind == 0:  # lone and paired surrogate escapes
        esc = rng.choice(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\udc80x", "\\ud83d"])
        return b'{"id": "s", "text": "' + esc.encode() + b'"}'
    if kind == 1:  # nesting, closed or not, inside an object or bare
        depth = rng.choice([10, 1000, 50_000, 200_000])
        nest = b"[" * depth + b"]" * rng.choice([0, depth])
        return nest if rng.random() < 0.5 else b'{"text": "x", "n": ' + nest + b"}"
    if kind == 2:  # random bytes, never blank and never a line break
        return b"x" + bytes(rng.choice([b for b in range(256) if b != 10]) for _ in range(50))
    if kind == 3:  # ASCII escapes, lone surrogates among them
        noisy = _random_text(rng, rng.randrange(1, 50), surrogates=True)
        return json.dumps({"id": rng.random(), "text": noisy}).encode()
    if kind == 4:
        value = rng.choice([None, 1, [text], {"a": text}, "", " ", 10**20])
        return json.dumps({"id": text[:5], "text": value}, ensure_ascii=False).encode()
    if kind == 5:
        return json.dumps([text]).encode()
    if kind == 6:
        return json.dumps({"id": text[:8], "text": text}, ensure_ascii=False).encode(
            rng.choice(["utf-8", "gb18030"]), "ignore"
        )
    return json.dumps({"text": SAFETY + text}, ensure_ascii=False).encode()


def test_fuzz_predict_gives_one_record_per_document(
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(20240613)
    docs = tmp_path / "docs"
    docs.mkdir()
    expected: dict[str, int] = {}  # records per file
    for i in range(200):  # whole files of random bytes: one record each
        suffix = rng.choice([".txt", ".md", ".html", ".docx"])
        kind = rng.randrange(6)
        n = rng.randrange(0, 3000)
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(n))
        elif kind == 1:
            data = rng.choice([b"", b"\x00" * n, b"\xff\xfe" + b"\x00" * n, b"\xef\xbb\xbf"])
        elif kind == 2:
            data = _random_text(rng, n).encode(rng.choice(["utf-8", "utf-16", "gb18030"]), "ignore")
        elif kind == 3:
            data = (SAFETY * (1 + n // 50)).encode(
                rng.choice(["gbk", "big5", "utf-16-le"]), "ignore"
            )
        elif kind == 4:
            data = b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(n))
        else:
            data = _random_text(rng, n).encode("utf-8", "surrogatepass")
        name = f"f{i:03d}".encode() + rng.choice([b"", b"\xff", b"\xe4\xb8"]) + suffix.encode()
        with open(os.path.join(os.fsencode(docs), name), "wb") as fh:
            fh.write(data)
        expected[f"{docs}/{name.decode('utf-8', 'backslashreplace')}"] = 1
    for i in range(3):  # JSONL: one record per line
        lines = [_random_json_line(rng) for _ in range(60)]
        (docs / f"j{i}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        expected[f"{docs}/j{i}.jsonl"] = len(lines)
    for i in range(3):  # CSV: one record per row
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "text"])
        rows = 0
        for r in range(60):
            if rng.random() < 0.1:  # a row that is not valid in any encoding (below)
                buf.write(f"bad{r},@BAD@\n")
            else:
                w.writerow([f"r{r}", _random_text(rng, rng.randrange(0, 300))])
            rows += 1
        data = buf.getvalue().encode("utf-8").replace(b"@BAD@", b"\xff\xfe")
        (docs / f"c{i}.csv").write_bytes(data)
        expected[f"{docs}/c{i}.csv"] = rows
    out = tmp_path / "out.jsonl"
    # main() configures logging once per process: not to a stream of an earlier test's capsys
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    code = _predict(models, str(docs), "-o", str(out))
    assert code in (0, 1)
    recs = _records(out)
    # one record per file, JSONL line, CSV row; each names its file (and line or row)
    per_file = Counter(re.sub(r":(row )?\d+$", "", r["source"]) for r in recs)
    assert per_file == expected
    assert all(("error" in r) != ("themes" in r) for r in recs)
    assert 50 < sum("themes" in r for r in recs) < len(recs) - 50  # both kinds, many of each
    assert "Traceback" not in capsys.readouterr().err
