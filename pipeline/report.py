"""A self-contained HTML report of an evaluation: charts inlined as PNG, tables, worst errors.

Reads the dict written by the evaluate stage, so a report can be rebuilt from any
``evaluation.json``. matplotlib is imported here only (the ``report`` extra).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _charts(ev: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    themes = ev["themes"]
    model, base = ev["model"]["per_theme"], ev["baseline"]["per_theme"]
    x = np.arange(len(themes))
    out: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(x - 0.2, [model[t]["f1"] for t in themes], 0.4, label="model")
    ax.bar(x + 0.2, [base[t]["f1"] for t in themes], 0.4, label="keyword baseline")
    ax.set_xticks(x, themes, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (grouped CV, seed units)")
    ax.legend()
    ax.set_title("Per-theme F1: model vs keyword baseline")
    out["f1"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(x - 0.2, [model[t]["false_positives"] for t in themes], 0.4, label="false positives")
    ax.bar(x + 0.2, [model[t]["false_negatives"] for t in themes], 0.4, label="false negatives")
    ax.set_xticks(x, themes, rotation=20)
    ax.set_ylabel("units (mean over repeats)")
    ax.legend()
    ax.set_title("Errors per theme")
    out["errors"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for t, c in ev.get("pr_curves", {}).items():
        ax.plot(c["recall"], c["precision"], label=t)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Precision-recall per theme (first repeat, out-of-fold scores)")
    out["pr"] = _png(fig)

    # two panels, each against its own count: all labelled units (written and real), and the
    # real seed units alone with the written corpus fixed (on one axis the second would be a
    # vertical line at the far right)
    curves = [
        ("all training units", "labelled training units", ev.get("learning_curve") or []),
        (
            "real seed units (written corpus fixed)",
            "real seed units on the training side",
            ev.get("learning_curve_seed") or [],
        ),
    ]
    curves = [c for c in curves if c[2]]
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), squeeze=False)
        for ax, (title, xlabel, points) in zip(axes[0], curves, strict=True):
            key = "seed_units" if points[0].get("seed_units") else "train_units"
            ax.plot([q[key] for q in points], [q["macro_f1"] for q in points], "o-")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("macro-F1 (seed units)")
            ax.set_title(f"Learning curve: {title}", fontsize=10)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out["learning"] = _png(fig)
    out.update(_out_of_source_charts(ev.get("out_of_source"), plt))
    return out


def _out_of_source_charts(oos: dict[str, Any] | None, plt: Any) -> dict[str, str]:
    """Per-source F1 against the baseline; the real-unit learning curve, random against
    queue-chosen."""
    if not oos:
        return {}
    out: dict[str, str] = {}
    per = sorted(oos["per_source"].items(), key=lambda kv: kv[1]["macro_f1"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(per) + 1.2))
    names = [k.removeprefix("pool:") for k, _ in per]
    y = list(range(len(per)))
    ax.barh([v - 0.2 for v in y], [v["macro_f1"] for _, v in per], 0.4, label="model")
    ax.barh([v + 0.2 for v in y], [v["baseline_macro_f1"] for _, v in per], 0.4, label="baseline")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("macro-F1, held-out source (themes present)")
    ax.legend(fontsize=8)
    ax.set_title("Out of source: each source scored by a model that never saw it")
    out["sources"] = _png(fig)
    lc, qc = oos.get("learning_curve_real") or [], oos.get("queue_curve") or []
    if lc or qc:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        if lc:
            ax.plot(
                [p["real_training_units"] for p in lc],
                [p["macro_f1"] for p in lc],
                "o-",
                label="random documents",
            )
        if qc:
            ax.plot(
                [p["random_real_training_units"] for p in qc],
                [p["random_macro_f1"] for p in qc],
                "s--",
                label="random + as many more random",
            )
            ax.plot(
                [p["queue_real_training_units"] for p in qc],
                [p["queue_macro_f1"] for p in qc],
                "^-",
                label="random + queue-chosen",
            )
        ax.set_xlabel("real labelled units on the training side (mean over folds)")
        ax.set_ylabel("macro-F1, out of source")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Learning curve in real labelled units")
        out["learning_real"] = _png(fig)
    return out


def write_plots(ev: dict[str, Any], folder: Path) -> list[Path]:
    """The report's charts as PNG files (logged to MLflow as artefacts)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, uri in _charts(ev).items():
        path = folder / f"{name}.png"
        path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        paths.append(path)
    return paths


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def render_report(ev: dict[str, Any], title: str = "gov-topics evaluation") -> str:
    """The report as one HTML string with every chart inlined."""
    charts = _charts(ev)
    m, b, s = ev["model"], ev["baseline"], ev["model_seed_only"]
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(t)}</td><td>{_fmt(v['precision'])}</td><td>{_fmt(v['recall'])}</td>"
        f"<td>{_fmt(v['f1'])}</td><td>{_fmt(b['per_theme'][t]['f1'])}</td><td>{v['support']}</td>"
        f"<td>{v['false_positives']:.1f}</td><td>{v['false_negatives']:.1f}</td></tr>"
        for t, v in m["per_theme"].items()
    )
    errors = "".join(
        f"<tr><td>{e(x['id'])}</td><td>{e(', '.join(x['gold']) or '—')}</td>"
        f"<td>{e(', '.join(x['predicted']) or '—')}</td><td class='text'>{e(x['text'])}</td></tr>"
        for x in ev.get("errors", [])
    )
    imgs = "".join(f"<figure><img alt='{k}' src='{v}'></figure>" for k, v in charts.items())
    oos = _out_of_source_html(ev.get("out_of_source"))
    p = ev["protocol"]
    search = ""
    if ev.get("search"):
        search = f"<p>Nested search chose per outer fold: <code>{e(str(ev['search']))}</code></p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }}
td.text {{ text-align: left; max-width: 640px; }}
td:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }}
</style></head><body>
<h1>{e(title)}</h1>
{oos}
<h2>Seed-unit cross-validation (secondary)</h2>
<p>Experiment <b>{e(ev["experiment"])}</b>. {p["repeats"]}×{p["folds"]}-fold grouped cross-validation
by article (seed {p["seed"]}); scored on {e(p["scored_on"])}; written units on the training side:
{p["written_units_on_training_side"]}; thresholds: {e(p["threshold_tuning"])}.
{ev["data"]["seed_units"]} seed units in {ev["data"]["seed_articles"]} articles,
{ev["data"]["written_units"]} written units.</p>
<table><tr><th></th><th>macro-F1</th><th>micro-F1</th><th>document macro-F1</th></tr>
<tr><td>model</td><td>{_fmt(m["macro_f1"]["mean"])} ± {_fmt(m["macro_f1"]["std"])}</td>
<td>{_fmt(m["micro_f1"]["mean"])}</td><td>{_fmt(m["document_macro_f1"]["mean"])}</td></tr>
<tr><td>model, seed units only</td><td>{_fmt(s["macro_f1"]["mean"])}</td>
<td>{_fmt(s["micro_f1"]["mean"])}</td><td>{_fmt(s["document_macro_f1"]["mean"])}</td></tr>
<tr><td>keyword baseline</td><td>{_fmt(b["macro_f1"]["mean"])}</td>
<td>{_fmt(b["micro_f1"]["mean"])}</td><td>{_fmt(b["document_macro_f1"]["mean"])}</td></tr></table>
{search}
<h2>Charts</h2>{imgs}
<h2>Per theme</h2>
<table><tr><th>theme</th><th>precision</th><th>recall</th><th>F1</th><th>baseline F1</th>
<th>support</th><th>false pos.</th><th>false neg.</th></tr>{rows}</table>
<h2>The {len(ev.get("errors", []))} worst errors</h2>
<table><tr><th>unit</th><th>gold</th><th>predicted</th><th>text</th></tr>{errors}</table>
</body></html>
"""


def _out_of_source_html(oos: dict[str, Any] | None) -> str:
    """The headline section: leave-one-source-out figures overall, per source and doctype."""
    if not oos:
        return ""
    e = html.escape
    m, b = oos["model"], oos["baseline"]

    def table(kind: str) -> str:
        rows = "".join(
            f"<tr><td>{e(name.removeprefix('pool:'))}</td><td>{v['units']}</td>"
            f"<td>{_fmt(v['macro_f1'])}</td><td>{_fmt(v['baseline_macro_f1'])}</td>"
            f"<td class='text'>{e(', '.join(f'{t} {f:.2f}' for t, f in v['per_theme_f1'].items()))}</td></tr>"
            for name, v in sorted(oos[f"per_{kind}"].items(), key=lambda kv: kv[1]["macro_f1"])
        )
        return (
            f"<table><tr><th>{kind}</th><th>units</th><th>macro-F1</th><th>baseline</th>"
            f"<th>F1 per theme present</th></tr>{rows}</table>"
        )

    themes = "".join(
        f"<tr><td>{e(t)}</td><td>{_fmt(v['precision'])}</td><td>{_fmt(v['recall'])}</td>"
        f"<td>{_fmt(v['f1'])}</td><td>{_fmt(b['per_theme'][t]['f1'])}</td><td>{v['support']}</td></tr>"
        for t, v in m["per_theme"].items()
    )
    curve = "".join(
        f"<tr><td>{p['fraction']:.2f}</td><td>{p['real_training_units']}</td>"
        f"<td>{_fmt(p['macro_f1'])}</td></tr>"
        for p in oos.get("learning_curve_real", [])
    )
    qc = oos.get("queue_curve") or []
    queue = ""
    if qc:
        rows = "".join(
            f"<tr><td>{p['fraction']:.2f}</td><td>{p['random_real_training_units']}</td>"
            f"<td>{_fmt(p['random_macro_f1'])}</td><td>{p['queue_real_training_units']}</td>"
            f"<td>{_fmt(p['queue_macro_f1'])}</td></tr>"
            for p in qc
        )
        queue = (
            "<h3>Queue-chosen against random, same folds and scored units</h3>"
            "<table><tr><th>fraction</th><th>units (random arm)</th><th>macro-F1</th>"
            f"<th>units (queue arm)</th><th>macro-F1</th></tr>{rows}</table>"
        )
    errors = "".join(
        f"<tr><td>{e(src.removeprefix('pool:'))}</td><td>{e(', '.join(x['gold']) or '—')}</td>"
        f"<td>{e(', '.join(x['predicted']) or '—')}</td><td class='text'>{e(x['text'])}</td></tr>"
        for src, xs in oos.get("errors_per_source", {}).items()
        for x in xs
    )
    return f"""<h2>Out of source: the headline</h2>
<p>Leave one source out: each of the {len(oos["protocol"]["sources"])} real sources (the seed
documents and each repository of the real labelled corpus) is scored by a model trained on every
other source and the written corpus; {oos["units"]} real units scored; about
{oos.get("real_training_units_per_fold", "?")} real units on the training side of a fold. Per source
and doctype, macro-F1 is over the themes present there.</p>
<table><tr><th></th><th>macro-F1</th><th>micro-F1</th></tr>
<tr><td>model</td><td>{_fmt(m["macro_f1"])}</td><td>{_fmt(m["micro_f1"])}</td></tr>
<tr><td>keyword baseline</td><td>{_fmt(b["macro_f1"])}</td><td>{_fmt(b["micro_f1"])}</td></tr></table>
<h3>Per doctype</h3>{table("doctype")}
<h3>Per source (weakest first)</h3>{table("source")}
<h3>Per theme</h3>
<table><tr><th>theme</th><th>precision</th><th>recall</th><th>F1</th><th>baseline F1</th>
<th>support</th></tr>{themes}</table>
<h3>Learning curve in real labelled units (random documents)</h3>
<table><tr><th>fraction</th><th>real training units</th><th>macro-F1</th></tr>{curve}</table>
{queue}
<h3>Worst errors per source</h3>
<table><tr><th>source</th><th>gold</th><th>predicted</th><th>text</th></tr>{errors}</table>"""
