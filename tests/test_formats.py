"""Input formats for `topics predict` (issue #15): the metadata table of a government web page is
not text, PDFs are read or reported, and a file of a type that cannot be read is reported, not
skipped without a word.

Every fixture is built here: the web pages as strings, the PDFs by hand (a few objects and a
cross-reference table; Chinese text through a font with a ToUnicode map and no glyphs, which is
all a text extractor reads). No model is needed: documents are read with `iter_documents`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.documents import Document, DocumentError, estimate_count, iter_documents

from .conftest import ROOT

SAFETY = "全面开展安全生产大检查,深入排查整治重大事故隐患,严防各类事故发生。"

# -- a policy page as www.gov.cn and provincial sites publish them ----------------------------

_METADATA_TABLE = """
<table class="border-table noneBorder pcTab"><tbody>
<tr><td class="first"><b>索<span>引</span>号：</b></td><td>000014349/2024-00012</td>
<td class="first"><b>主题分类：</b></td><td>安全生产监管\\安全生产</td></tr>
<tr><td class="first"><b>发文机关：</b></td><td>国务院安全生产委员会</td>
<td class="first"><b>成文日期：</b></td><td>2024年03月12日</td></tr>
<tr><td class="first"><b>标&nbsp;&nbsp;题：</b></td>
<td colspan="3">国务院安全生产委员会关于加强春季安全生产工作的通知</td></tr>
<tr><td class="first"><b>发文字号：</b></td><td>安委〔2024〕3号</td>
<td class="first"><b>发布日期：</b></td><td>2024年03月15日</td></tr>
</tbody></table>
"""

GOV_PAGE = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>国务院安全生产委员会关于加强春季安全生产工作的通知_国务院文件_中国政府网</title></head>
<body>
<div class="header"><ul class="nav">
<li><a href="/">首页</a></li><li><a href="/zhengce/">政策</a></li><li><a href="/hudong/">互动</a></li>
<li><a href="/fuwu/">服务</a></li><li><a href="/shuju/">数据</a></li></ul></div>
<div class="BreadcrumbNav"><a href="/">首页</a> &gt; <a href="/zhengce/">政策</a> &gt; 国务院文件</div>
<div class="article oneColumn pub_border">
<h1>国务院安全生产委员会关于加强春季安全生产工作的通知</h1>
<div class="pages-date">2024-03-15 10:00 来源： 国务院办公厅</div>
<div class="pages_content" id="UCAP-CONTENT">{_METADATA_TABLE}
<p>索引号：000014349/2024-00012　　主题分类：安全生产</p>
<p>各省、自治区、直辖市人民政府，新疆生产建设兵团，国务院安委会各成员单位：</p>
<p>当前正值春季复工复产关键时期，各类生产经营活动逐步增多，安全风险明显上升。为切实做好安全生产工作，坚决防范遏制重特大事故发生，现就有关事项通知如下。</p>
<p>一、全面开展安全生产大检查。各地区要组织力量深入企业一线，深入排查整治重大事故隐患，对矿山、危险化学品、消防、交通运输、建筑施工等重点行业领域开展全覆盖检查。</p>
<p>二、压实安全生产责任。各级党委政府要落实领导责任，行业主管部门要落实监管责任，企业要落实主体责任。</p>
<table border="1"><tbody>
<tr><th>重点行业</th><th>检查重点</th></tr>
<tr><td>矿山</td><td>通风、瓦斯抽采和防治水措施落实情况，严禁超能力、超强度、超定员组织生产</td></tr>
<tr><td>危险化学品</td><td>重大危险源包保责任制落实情况，动火、受限空间等特殊作业管理情况</td></tr>
</tbody></table>
<p>三、强化应急准备。各地区要完善应急预案，加强应急救援队伍建设，储备必要的应急物资，最大限度减少人员伤亡和财产损失。</p>
<p style="text-align:right">国务院安全生产委员会</p>
<p style="text-align:right">2024年3月12日</p>
</div></div>
<div class="footer"><p>版权所有：中国政府网 | 中文域名：中国政府网.政务</p>
<p>网站标识码bm01000001 京ICP备05070218号 京公网安备11010202000001号</p>
<a href="/zhuban/">主办单位：国务院办公厅</a> <a href="/lianxi/">联系我们</a></div>
</body></html>"""

# an older provincial site: the whole page laid out in tables, the metadata table without colons
TABLE_LAYOUT_PAGE = """<html><head><meta charset="utf-8"><title>通知</title></head><body>
<table width="1000"><tr><td><a href="/">首页</a> <a href="/x">政务公开</a></td></tr><tr><td>
<table class="xxgk"><tr><td>索引号</td><td>11370000004609769A/2024-01234</td>
<td>文号</td><td>鲁应急字〔2024〕12号</td></tr>
<tr><td>发布机构</td><td>省应急管理厅</td><td>发布日期</td><td>2024-05-08</td></tr></table>
<table width="900"><tr><td class="content"><p>各市应急管理局：</p>
<p>为深刻吸取近期事故教训，全面开展安全生产大检查，深入排查整治重大事故隐患，严防各类事故发生，现将有关事项通知如下。</p>
<p>一、各市要组织专门力量，对辖区内矿山、危险化学品、工贸等重点企业开展全覆盖检查，建立问题隐患和整改责任清单。</p>
</td></tr></table></td></tr></table></body></html>"""

METADATA_WORDS = ("索引号", "主题分类", "发文机关", "成文日期", "发文字号", "发布机构", "000014349")


def _read(*paths: Path) -> list[Document | DocumentError]:
    return list(iter_documents([str(p) for p in paths]))


def test_gov_cn_metadata_table_is_not_in_the_html_text(tmp_path: Path) -> None:
    """The metadata table of a policy page (索引号, 主题分类, 发文字号 ...) is dropped, a real
    table's rows are kept as text, and no line starts with a table's "|"."""
    (tmp_path / "a_gov.html").write_text(GOV_PAGE, "utf-8")
    (tmp_path / "b_layout.htm").write_text(TABLE_LAYOUT_PAGE, "utf-8")
    gov, layout = _read(tmp_path)
    assert isinstance(gov, Document) and isinstance(layout, Document), (gov, layout)
    for doc in (gov, layout):
        assert "深入排查整治重大事故隐患" in doc.text
        assert not [w for w in METADATA_WORDS if w in doc.text], doc.text
        assert not [x for x in doc.text.splitlines() if x.lstrip().startswith("|")], doc.text
    assert "矿山 通风、瓦斯抽采和防治水措施落实情况" in gov.text  # a real table row, as text
    assert "三、强化应急准备" in gov.text and "联系我们" not in gov.text
    assert "---" not in gov.text


# -- PDFs, written by hand ---------------------------------------------------------------------


def _pdf(pages: list[list[str]], image_only: bool = False) -> bytes:
    """A PDF with one page per list of lines (Chinese and Latin text, one line every 20 points
    down the page), or, with ``image_only``, pages holding only an image, as a scan does."""
    chars = sorted({ch for page in pages for line in page if not line.isascii() for ch in line})
    code = {ch: i + 1 for i, ch in enumerate(chars)}
    bfchar = "".join(f"<{i:04X}> <{ord(ch):04X}>\n" for ch, i in code.items())
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(code)} beginbfchar\n{bfchar}endbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end\n"
    ).encode()

    def show(line: str) -> str:
        if line.isascii():
            return f"/F1 11 Tf ({line}) Tj"
        return "/F2 11 Tf <" + "".join(f"{code[ch]:04X}" for ch in line) + "> Tj"

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /SimSun /Encoding /Identity-H "
        b"/DescendantFonts [5 0 R] /ToUnicode 6 0 R >>",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /SimSun /CIDSystemInfo "
        b"<< /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 1000 >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(cmap), cmap),
        b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length 4 >>\nstream\n\x10\x80\x80\x10\nendstream",
    ]
    kids = []
    for page in pages:
        if image_only:
            ops = "q 400 0 0 600 100 100 cm /Im1 Do Q"
        else:
            ops = " ".join(
                f"BT 1 0 0 1 72 {760 - 20 * i} Tm {show(line)} ET" for i, line in enumerate(page)
            )
        stream = ops.encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> /XObject << /Im1 7 0 R >> >> >>"
            % (len(objects))
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


# a notice set as government documents are: 28 characters a line, page numbers "- n -", a
# paragraph that goes on over a page break
NOTICE = [
    [
        "关于开展安全生产大检查的通知",
        "各区县人民政府,市政府各部门:",
        "为深刻吸取近期事故教训,全面开展安全生产大检查,深入排",
        "查整治重大事故隐患,严防各类事故发生,现将有关事项通知如",
        "下。",
        "一、各区县要组织专门力量,对辖区内矿山、危险化学品、工贸",
        "等重点企业开展全覆盖检查,建立问题隐患和整改责任清单,",
        "- 1 -",
    ],
    [
        "对重大事故隐患实行挂牌督办,整改不到位的一律不得恢复生",
        "产。",
        "Safety inspection notice, annex 2",
        "- 2 -",
    ],
]


def _encrypted(pdf: bytes, user_password: str) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_a_text_pdf_is_read_as_paragraphs_and_pypdf_loaded_only_for_it(tmp_path: Path) -> None:
    """A PDF's text is read, its broken lines joined into paragraphs (also over a page break),
    its page numbers dropped; pypdf and trafilatura are not imported until a file needs them."""
    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(_pdf(NOTICE))
    code = (
        "import json, sys\n"
        "from pipeline.documents import iter_documents\n"
        "before = sorted(m for m in ('pypdf', 'trafilatura', 'docx') if m in sys.modules)\n"
        "docs = list(iter_documents(sys.argv[1:]))\n"
        "print(json.dumps([before, [getattr(d, 'text', getattr(d, 'error', '')) for d in docs]]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(pdf)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    before, (text,) = json.loads(res.stdout)
    assert before == []
    assert text.splitlines() == [
        "关于开展安全生产大检查的通知",
        "各区县人民政府,市政府各部门:",
        "为深刻吸取近期事故教训,全面开展安全生产大检查,深入排查整治重大事故隐患,"
        "严防各类事故发生,现将有关事项通知如下。",
        "一、各区县要组织专门力量,对辖区内矿山、危险化学品、工贸等重点企业开展全覆盖检查,"
        "建立问题隐患和整改责任清单,对重大事故隐患实行挂牌督办,整改不到位的一律不得恢复生产。",
        "Safety inspection notice, annex 2",
    ]


def test_pdfs_that_cannot_be_read_are_one_error_each_and_the_batch_goes_on(
    tmp_path: Path,
) -> None:
    """A scan (no text layer), a PDF that needs a password, a damaged PDF and a file named .pdf
    that is not one are each one error record saying what to do; a PDF encrypted only against
    editing (no password to open it) is read, and so are the files around them."""
    text_pdf = _pdf(NOTICE)
    (tmp_path / "a.txt").write_text(SAFETY, "utf-8")
    (tmp_path / "b_scan.pdf").write_bytes(_pdf([[""], [""]], image_only=True))
    (tmp_path / "c_password.pdf").write_bytes(_encrypted(text_pdf, "secret"))
    (tmp_path / "d_restricted.pdf").write_bytes(_encrypted(text_pdf, ""))
    (tmp_path / "e_damaged.pdf").write_bytes(text_pdf[:120] + b"\x00garbage" * 50)
    (tmp_path / "f_not.pdf").write_text("<html><body>" + SAFETY + "</body></html>", "utf-8")
    (tmp_path / "g.txt").write_text(SAFETY, "utf-8")
    got = _read(tmp_path)
    assert [(type(d).__name__, Path(d.source).name) for d in got] == [
        ("Document", "a.txt"),
        ("DocumentError", "b_scan.pdf"),
        ("DocumentError", "c_password.pdf"),
        ("Document", "d_restricted.pdf"),
        ("DocumentError", "e_damaged.pdf"),
        ("DocumentError", "f_not.pdf"),
        ("Document", "g.txt"),
    ]
    errors = {Path(d.source).name: d.error for d in got if isinstance(d, DocumentError)}
    assert errors["b_scan.pdf"].startswith("no text layer") and "OCR" in errors["b_scan.pdf"]
    assert "encrypted" in errors["c_password.pdf"] and "password" in errors["c_password.pdf"]
    assert errors["e_damaged.pdf"].startswith("damaged PDF")
    assert errors["f_not.pdf"].startswith("not a PDF")
    assert all("\n" not in e for e in errors.values())
    restricted = next(d for d in got if isinstance(d, Document) and "restricted" in d.source)
    assert "深入排查整治重大事故隐患" in restricted.text


def test_files_of_other_types_in_a_folder_are_reported_not_skipped(tmp_path: Path) -> None:
    """A .doc, .xls or image in a folder is one error record saying what to save it as, in its
    place; hidden files and folders (.git, .DS_Store) and Thumbs.db are left out without a
    word; a gzipped JSONL file is read. The progress estimate counts the same records."""
    import gzip

    (tmp_path / "a.txt").write_text(SAFETY, "utf-8")
    (tmp_path / "b_report.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    (tmp_path / "c_table.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    (tmp_path / "d_scan.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "e_notes").write_text(SAFETY, "utf-8")
    (tmp_path / "f.jsonl.gz").write_bytes(
        gzip.compress(json.dumps({"id": "f1", "text": SAFETY}, ensure_ascii=False).encode())
    )
    (tmp_path / "g.txt").write_text(SAFETY, "utf-8")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "index").write_bytes(b"DIRC")
    (tmp_path / ".git" / "notes.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    got = _read(tmp_path)
    assert [(type(d).__name__, Path(d.source).name.split(":")[0]) for d in got] == [
        ("Document", "a.txt"),
        ("DocumentError", "b_report.doc"),
        ("DocumentError", "c_table.xls"),
        ("DocumentError", "d_scan.png"),
        ("DocumentError", "e_notes"),
        ("Document", "f.jsonl.gz"),
        ("Document", "g.txt"),
    ]
    errors = [d.error for d in got if isinstance(d, DocumentError)]
    assert errors[0] == "unsupported file type .doc: save it as .docx or .txt"
    assert errors[1].startswith("unsupported file type .xls: save it as .csv")
    assert errors[2].startswith("unsupported file type .png") and "OCR" in errors[2]
    assert errors[3].startswith("no file name extension")
    assert estimate_count([str(tmp_path)]) == len(got)


def test_a_pdf_over_the_page_or_text_cap_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PDF of more pages than MAX_PDF_PAGES, or more text than MAX_DOCUMENT_BYTES, is refused
    in one line naming the limit, as a file over the size cap is."""
    from pipeline import documents

    (tmp_path / "a_long.pdf").write_bytes(_pdf(NOTICE))
    monkeypatch.setattr(documents, "MAX_PDF_PAGES", 1)
    (err,) = _read(tmp_path)
    assert isinstance(err, DocumentError) and err.error.startswith("PDF of 2 pages"), err
    assert "1-page limit" in err.error and "split" in err.error
    monkeypatch.setattr(documents, "MAX_PDF_PAGES", 2000)
    monkeypatch.setattr(documents, "MAX_DOCUMENT_BYTES", 300)  # the file is larger: read it here
    err = documents.read_pdf(_pdf(NOTICE), "a_long.pdf")
    assert isinstance(err, DocumentError) and "PDF text larger than" in err.error, err
