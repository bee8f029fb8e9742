"""Check that a refactoring changed no prediction and no metric on the seed corpus.

``capture`` writes the reference from a trained model and its evaluation; ``check`` compares the
current ones with it, byte for byte (predictions with paragraphs and evidence, thresholds, every
cross-validated figure of the model, the seed-only model and the keyword baseline, per repeat and
per theme, and the whole out-of-source section: per source, doctype and theme, learning curves). `make check-unchanged` trains and evaluates the default experiment, then checks.

    python scripts/check_unchanged.py capture build/default   # after a deliberate change
    python scripts/check_unchanged.py check build/default     # exit 1 on any difference
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def predictions(build: Path) -> str:
    import joblib

    from pipeline.predict import predict_batch

    model = joblib.load(build / "model.joblib")
    files = sorted((ROOT / "seeds" / "raw").glob("*.txt"))
    texts = [f.read_text("utf-8") for f in files]
    recs = predict_batch(model, texts, paragraphs=True, evidence=True)
    clf = model.named_steps["clf"]
    lines = [json.dumps({"thresholds": [float(t) for t in clf.thresholds_]})]
    lines += [
        json.dumps({"file": f.name, **r}, ensure_ascii=False, sort_keys=True)
        for f, r in zip(files, recs, strict=True)
    ]
    return "\n".join(lines) + "\n"


def metrics(build: Path) -> str:
    ev = json.loads((build / "evaluation.json").read_text("utf-8"))
    parts = ("model", "model_seed_only", "baseline", "data", "errors", "out_of_source")
    keep = {k: ev[k] for k in parts if k in ev}
    for part in ("model", "model_seed_only", "baseline"):
        keep[part].pop("search_choices", None)
    return json.dumps(keep, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("capture", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    build = Path(argv[1])
    got = {"seed_predictions.jsonl": predictions(build), "seed_metrics.json": metrics(build)}
    if argv[0] == "capture":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in got.items():
            (GOLDEN / name).write_text(text, "utf-8")
        print(f"captured {', '.join(got)} in {GOLDEN}")
        return 0
    bad = [name for name, text in got.items() if (GOLDEN / name).read_text("utf-8") != text]
    for name in bad:
        print(f"check-unchanged: {name} differs from {GOLDEN / name}", file=sys.stderr)
    if not bad:
        print("check-unchanged: predictions and metrics on the seed corpus are identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
