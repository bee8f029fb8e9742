"""``topics``: the command line. It only parses arguments and calls the stage functions.

Library errors (:class:`~pipeline.errors.GovTopicsError`) become one line on stderr and an exit
code: 1 for data problems, 2 for usage errors (bad config, no such model or path). Never a
traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import GovTopicsError, Terminated, UsageError

log = logging.getLogger("pipeline")


def _workspace(args: argparse.Namespace, model: bool = True) -> Any:
    from pipeline.workspace import Workspace

    exp = Path(args.exp) if args.exp else None
    return Workspace.open(exp, build=Path(args.build), model=model)


def _gate_workspace(args: argparse.Namespace) -> Any:
    from pipeline.workspace import Workspace

    return Workspace.open(Path(args.gate_exp), build=Path(args.build))


def _print_table(rows: list[tuple[str, Any]], out: Any = sys.stderr) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)


def cmd_ingest(args: argparse.Namespace) -> int:
    """Read the experiment's raw documents (its data.raw), clean them and write its paragraph
    units (build/<exp>/units.jsonl)."""
    from pipeline import ingest
    from pipeline.stages import run_ingest

    ws = _workspace(args)
    raw = ws.data_path(ws.cfg.data.raw)
    if args.update_checksums:
        path = ingest.write_checksums(raw, ingest.raw_files(raw))
        print(
            f"recorded sha256 of {len(ingest.raw_files(raw))} raw file(s) in {path}",
            file=sys.stderr,
        )
    ws.write_input_stamps()  # what make compares: units made now are newer, so make skips them
    s = run_ingest(ws)
    print(
        f"ingest: {s.documents} documents, {s.articles} articles -> {s.units} units ({ws.units})",
        file=sys.stderr,
    )
    print("dropped (reason: count):", file=sys.stderr)
    _print_table(sorted(s.dropped.items()))
    print("changed (action: count):", file=sys.stderr)
    _print_table(sorted(s.actions.items()))
    print(f"every dropped line, with its reason: {ws.ingest_report}", file=sys.stderr)
    return 0


def cmd_inputs(args: argparse.Namespace) -> int:
    """Record the checksums of the experiment's data files in build/<exp>/inputs/ (one file per
    stage, rewritten only when a file changed: what make's stage targets depend on). It reads the
    data section only: make runs it every time, and the stages check the rest."""
    ws = _workspace(args, model=False)
    for stamp in ws.write_input_stamps():
        print(f"inputs: {stamp} data changed ({ws.inputs_dir / stamp}.sha256)", file=sys.stderr)
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment the labelled units with jieba (all cores) into build/<exp>/segmented.jsonl."""
    from pipeline.stages import run_segment

    ws = _workspace(args)
    m = run_segment(ws, jobs=args.jobs)
    print(
        f"segment: {m.units} units ({m.seed_units} seed, {m.written_units} written, "
        f"{m.real_units} real pool units to train on) with "
        f"{m.backend} in {m.seconds}s; dictionary sha256 {m.dictionary_sha256[:12]}",
        file=sys.stderr,
    )
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Fit the TF-IDF (and lexicon) features; write the vocabulary summary."""
    from pipeline.stages import run_features

    ws = _workspace(args)
    s = run_features(ws)
    print(
        f"features: {s.n_features} features {s.by_branch} over {s.units} units; "
        f"top terms per theme in {ws.vocabulary}",
        file=sys.stderr,
    )
    return 0


def cmd_vectors(args: argparse.Namespace) -> int:
    """Train domain word vectors (word2vec) on the unlabelled pool for `vectors` features."""
    from pipeline.stages import run_vectors

    s = run_vectors(_workspace(args))
    print(
        f"vectors: {s.words} words x {s.dim} from {s.paragraphs} pool paragraphs in {s.seconds}s "
        f"-> {s.path}",
        file=sys.stderr,
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Fit the multi-label classifier and tune its per-theme thresholds."""
    from pipeline.stages import run_train

    ws = _workspace(args)
    s = run_train(ws)
    print(
        f"train: {s.units} units; thresholds {s.thresholds} -> {ws.classifier}",
        file=sys.stderr,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Out-of-source evaluation on the real units (leave one source out) and grouped
    cross-validation on the seed units; write the JSON and HTML reports."""
    from pipeline.stages import run_evaluate

    ws = _workspace(args)
    s = run_evaluate(ws, learning_curve=not args.no_learning_curve)
    if s.out_of_source_macro_f1 is not None:
        print(
            f"evaluate (leave one source out, real units): macro-F1 {s.out_of_source_macro_f1:.3f} "
            f"(keyword baseline {s.out_of_source_baseline_macro_f1:.3f})",
            file=sys.stderr,
        )
    print(
        f"evaluate ({ws.cfg.evaluation.repeats}x{ws.cfg.evaluation.folds}-fold grouped CV on seed units): "
        f"macro-F1 {s.macro_f1:.3f} (seed units only: {s.macro_f1_seed_only:.3f}; "
        f"keyword baseline {s.baseline_macro_f1:.3f}); micro-F1 {s.micro_f1:.3f}; "
        f"document macro-F1 {s.document_macro_f1:.3f} -> {ws.evaluation}",
        file=sys.stderr,
    )
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Save the model as a new version under models/ and log the run to MLflow."""
    from pipeline.stages import run_register

    ws = _workspace(args)
    store = _store(args)
    s = run_register(ws, store, name=args.name, track=not args.no_track, fmt=args.format)
    print(
        f"register: {s.name} version {s.version} (macro-F1 {s.macro_f1:.3f}) at {s.path}"
        + (f"; MLflow run {s.mlflow_run_id}" if s.mlflow_run_id else ""),
        file=sys.stderr,
    )
    if not args.promote:
        return 0
    from pipeline.promote import promote, workspace_gate

    p = promote(
        store,
        s.name,
        str(s.version),
        "production",
        gate_scorer=workspace_gate(lambda: _gate_workspace(args)),
        reason="register --promote",
        track=not args.no_track,
    )
    _print_gate(p)
    if p.refused:  # registered, not promoted: production stays the better model
        print(
            f"register --promote: production stays {p.name}:{p.previous} "
            f"({p.name}:{p.version} is worse)",
            file=sys.stderr,
        )
        return 0
    before = f"{p.name}:{p.previous}" if p.previous is not None else "(none)"
    print(f"production: {before} -> {p.name}:{p.version}", file=sys.stderr)
    return _report_promotion(p)


def cmd_labels_check(args: argparse.Namespace) -> int:
    """Check the gold labels: every unit labelled, known theme ids, no stale sha1s."""
    from pipeline.ingest import read_units
    from pipeline.labels import check_labels, load_gold, load_real, load_written

    ws = _workspace(args)
    tax = ws.taxonomy()
    units = list(read_units(ws.require(ws.units, "ingest")))
    rep = check_labels(
        units,
        load_gold(ws.data_path(ws.cfg.data.gold)),
        load_written(ws.data_path(ws.cfg.data.extra)),
        tax,
        load_real(ws.data_path(ws.cfg.data.real)) if ws.cfg.data.real else [],
    )
    print(
        f"seed: {rep.seed_units} units ({rep.seed_unlabelled} with no theme); "
        f"written: {rep.written_units} units ({rep.written_unlabelled} with no theme); "
        f"real: {rep.real_units} units ({rep.real_unlabelled} with no theme)"
    )
    print(f"  {'theme':<12} {'seed':>6} {'written':>8} {'real':>6}")
    for t in tax.ids:
        print(
            f"  {t:<12} {rep.seed_counts[t]:>6} {rep.written_counts[t]:>8} {rep.real_counts[t]:>6}"
        )
    if rep.problems:
        for p in rep.problems:
            print(f"problem: {p}", file=sys.stderr)
        print(f"labels check: {len(rep.problems)} problem(s)", file=sys.stderr)
        return 1
    print("labels check: ok")
    return 0


def _predict_summary(summary: Any, name: str, note: str = "") -> None:
    per_theme = ", ".join(f"{t} {c}" for t, c in summary.themes.most_common()) or "none"
    n = summary.documents
    rate = f", {n / summary.seconds:.0f} docs/s" if summary.seconds >= 1 else ""
    print(
        f"predict: {n} document{'' if n == 1 else 's'} ({summary.chars / 1e6:.2f} M characters) "
        f"in {summary.seconds:.1f}s{rate}{note} with {name}; themes: {per_theme}; "
        f"errors: {summary.errors}",
        file=sys.stderr,
    )


def _predict_spark(args: argparse.Namespace) -> int:
    """``--engine spark``: the same records, scored and written by Spark (:mod:`pipeline.spark`)."""
    if sys.modules.get("pandas", False) is None:  # run() hid pandas from predict; pyspark needs it
        del sys.modules["pandas"]
    from pipeline.spark import predict_files

    summary, name, startup = predict_files(
        args.paths,
        args.output,
        master=args.master,
        model=args.model,
        store=args.models,
        fmt=args.format or "parquet",
        text_field=args.text_field,
        id_field=args.id_field,
        paragraphs=args.paragraphs,
        top_k=args.top_k,
    )
    _predict_summary(summary, name, f" on Spark (+{startup:.1f}s start-up)")
    return 0 if summary.errors == 0 else 1


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict themes for files (.txt, .md, .jsonl, .csv, .docx, .html), folders (recursive)
    or - (stdin). One record per document, in input order."""
    import itertools

    if args.engine == "spark":
        return _predict_spark(args)
    if args.format == "parquet" or args.master:
        what = "--format parquet" if args.format == "parquet" else "--master"
        raise UsageError(f"{what} is for --engine spark", "add --engine spark")

    from pipeline.batch import RecordWriter, check_output, run_batch, sigterm_raises
    from pipeline.documents import estimate_count, iter_documents
    from pipeline.predict import Predictor
    from pipeline.registry import parse_ref

    check_output(args.output, args.paths)  # before the model is loaded: fails in a moment
    store = _store(args)
    ref = parse_ref(args.model)  # no --model: the production model
    if sys.stderr.isatty():  # the seconds before the progress bar, said (like the bar, only here)
        print(f"topics predict: loading model {ref.name}:{store.resolve(ref)} ...", file=sys.stderr)
    model, manifest = store.load(ref)
    name = f"{manifest['name']}:{manifest['version']}"
    predictor = Predictor(model, name=name)
    model_ref = (str(store.root), manifest["name"], int(manifest["version"]))
    items = iter_documents(
        args.paths, text_field=args.text_field, id_field=args.id_field, skip=args.output
    )
    progress = None

    def report(err: Any) -> None:
        msg = f"topics predict: {err.source}: {err.error}"
        if progress is not None:
            progress.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    try:
        with sigterm_raises():  # SIGTERM cleans up as Ctrl-C does: no .partial file is left
            first = next(items, None)  # a missing path fails here, before any output is started
            if first is not None:
                # the tokenizer and evidence tables, built lazily by the first batch: built here,
                # so the bar starts when scoring does and its rate counts scoring alone
                predictor.warm()
            if sys.stderr.isatty():
                from tqdm import tqdm

                progress = tqdm(
                    total=estimate_count(args.paths),
                    unit="doc",
                    file=sys.stderr,
                    dynamic_ncols=True,
                )
            stream = itertools.chain([first], items) if first is not None else iter(())
            writer = None
            try:
                writer = RecordWriter(args.output, args.format or "jsonl", predictor.themes)
                summary = run_batch(
                    stream,
                    predictor,
                    writer,
                    jobs=args.jobs,
                    paragraphs=args.paragraphs,
                    top_k=args.top_k,
                    model_ref=model_ref,
                    progress=progress,
                    on_error=report,
                )
                writer.commit()
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
    except Terminated:
        print("topics predict: terminated; no output file was left", file=sys.stderr)
        return 143
    finally:
        if progress is not None:
            progress.close()
    _predict_summary(summary, name)
    return 0 if summary.errors == 0 else 1


def cmd_labels_import(args: argparse.Namespace) -> int:
    """Import one labelling pass of a batch (the queue's file with `labels` filled in): the
    whole file is validated first (unknown theme ids, unfilled labels, edited text, duplicates)
    and nothing is imported if any line is wrong."""
    from pipeline.labels import import_pass

    ws = _workspace(args)
    batch = args.batch or Path(args.file).name.split(".")[0]
    r = import_pass(
        Path(args.file), ws.taxonomy(), ws.data_path(ws.cfg.data.passes), batch, args.pass_id
    )
    print(f"labels import: {r.units} units of batch {r.batch}, pass {r.pass_id} -> {r.path}")
    return 0


def cmd_labels_adjudicate(args: argparse.Namespace) -> int:
    """Agreement (Cohen's kappa per theme) between passes A and B of a batch; write the
    disagreements for a third decision, and with --decisions (that file, decided) write the
    adjudicated labels into the real labelled corpus."""
    from pipeline.labels import adjudicate

    ws = _workspace(args)
    r = adjudicate(
        ws.taxonomy(),
        ws.data_path(ws.cfg.data.passes),
        ws.data_path(ws.cfg.data.real),
        args.batch,
        Path(args.decisions) if args.decisions else None,
    )
    ag = r.agreement
    print(f"batch {args.batch}: {ag['units']} units, {ag['exact']} with identical label sets")
    print("  " + "  ".join(f"{t} {k:.3f}" for t, k in ag["kappa"].items()) + "  (Cohen's kappa)")
    if r.pending is not None:
        print(
            f"{r.disagreements} disagreement(s) to decide: fill `labels` and `reason` in "
            f"{r.pending}, then run again with --decisions {r.pending}"
        )
        return 1
    print(f"adjudicated {r.disagreements} disagreement(s); labelled units -> {r.written}")
    return 0


def _queue_report(args: argparse.Namespace) -> int:
    """What the queue bought: out-of-source macro-F1 at equal numbers of real training units,
    queue-chosen against random (from the experiment's last evaluation)."""
    ws = _workspace(args)
    ev = json.loads(ws.require(ws.evaluation, "evaluate").read_text("utf-8"))
    curve = (ev.get("out_of_source") or {}).get("queue_curve")
    if not curve:
        raise UsageError(
            f"{ws.evaluation} has no queue curve",
            "label a queue batch into the real corpus, set evaluation.queue_curve in the "
            "experiment and run `make evaluate`",
        )
    print(f"{'fraction':>8}  {'units':>6}  {'random':>7}  {'units':>6}  {'queue':>7}  gain")
    for p in curve:
        print(
            f"{p['fraction']:>8.2f}  {p['random_real_training_units']:>6}  "
            f"{p['random_macro_f1']:>7.3f}  {p['queue_real_training_units']:>6}  "
            f"{p['queue_macro_f1']:>7.3f}  {p['queue_macro_f1'] - p['random_macro_f1']:+.3f}"
        )
    print(f"chart: {ws.plots / 'learning_real.png'}; report: {ws.report}")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    """Propose the unlabelled paragraphs most worth labelling next (the label queue): read
    documents in any input format predict reads, cut them into units, skip every unit already
    labelled in the experiment's data, and write N units with the model's proposed themes and an
    empty `labels` field."""
    from pipeline.batch import RecordWriter
    from pipeline.documents import DocumentError, iter_documents
    from pipeline.paragraphs import split_paragraphs
    from pipeline.queue import candidates_from, select
    from pipeline.registry import parse_ref
    from pipeline.stages import labelled_fingerprints

    if args.report:
        return _queue_report(args)
    if not args.paths:
        raise UsageError("give the unlabelled documents to choose from", "e.g. seeds/pool/")
    store = _store(args)
    ref = parse_ref(args.model)
    if args.model is None and "production" in store.aliases(ref.name):
        ref = parse_ref(f"{ref.name}@production")
    model, manifest = store.load(ref)
    ws = _workspace(args)
    errors: list[DocumentError] = []

    def units() -> Any:
        items = iter_documents(args.paths, text_field=args.text_field, id_field=args.id_field)
        for c in candidates_from(items, split_paragraphs):
            if isinstance(c, DocumentError):
                errors.append(c)
                print(f"topics queue: {c.source}: {c.error}", file=sys.stderr)
            else:
                yield c

    batch = select(
        model,
        units(),
        args.n,
        strategy=args.strategy,
        random_share=args.random_share,
        seed=args.seed,
        exclude=labelled_fingerprints(ws),
    )
    fields = ["id", "text", "labels", "proposed", "selected_by", "uncertainty", "source"]
    fields += ["repo", "commit", "path", "file", "doctype", "region", "year"]
    writer = RecordWriter(args.output, args.format, [], fields=fields)
    try:
        for s in batch:
            writer.write(s.record())
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    by = {
        k: sum(1 for s in batch if s.selected_by == k)
        for k in sorted({s.selected_by for s in batch})
    }
    print(
        f"queue: {len(batch)} units with {manifest['name']}:{manifest['version']} "
        f"({', '.join(f'{v} {k}' for k, v in by.items())}); {len(errors)} input error(s)"
        + (f" -> {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    return 0 if not errors else 1


def cmd_models_list(args: argparse.Namespace) -> int:
    """List model versions with their metrics and aliases."""
    store = _store(args)
    aliases = store.aliases(args.name)
    by_version: dict[int, list[str]] = {}
    for a, v in aliases.items():
        by_version.setdefault(v, []).append(a)
    versions = store.versions(args.name)
    if not versions:
        print(f"no versions of {args.name} in {store.root}")
        return 0
    print(f"{'version':>7}  {'created':<25}  {'macro-F1':>8}  {'experiment':<16}  aliases")
    damaged = 0
    for v in versions:
        tags = by_version.get(v, []) + (["latest"] if v == versions[-1] else [])
        try:
            m = store.manifest(args.name, v)
        except GovTopicsError as exc:  # one bad version never hides the others
            damaged += 1
            print(f"{v:>7}  damaged: {exc.message}  {', '.join(tags)}")
            continue
        f1 = (m.get("metrics") or {}).get("macro_f1")
        f1_text = f"{f1:>8.3f}" if isinstance(f1, int | float) else f"{'-':>8}"
        print(
            f"{v:>7}  {m.get('created', '-')!s:<25}  {f1_text}  "
            f"{m.get('experiment', '-')!s:<16}  {', '.join(tags)}"
        )
    return 1 if damaged else 0


def cmd_models_show(args: argparse.Namespace) -> int:
    """Print a version's manifest."""
    from pipeline.registry import ModelRef

    store = _store(args)
    v = store.resolve(ModelRef(args.name, args.version))
    print(json.dumps(store.manifest(args.name, v), ensure_ascii=False, indent=2))
    return 0


def _store(args: argparse.Namespace) -> Any:
    from pipeline.registry import ModelStore

    return ModelStore(Path(args.models) if args.models else None)


def _report_promotion(p: Any) -> int:
    if p.mlflow_warning:
        print(f"topics models: warning: {p.mlflow_warning}", file=sys.stderr)
        return 1
    return 0


def _print_gate(p: Any) -> None:
    if p.gate is not None:
        g = p.gate
        print(
            f"gate: candidate {p.name}:{p.version} macro-F1 {g['candidate']:.4f} vs production "
            f"{p.name}:{p.previous} {g['production']:.4f} ({g['basis']})",
            file=sys.stderr,
        )


def cmd_models_promote(args: argparse.Namespace) -> int:
    """Point an alias at a version. Promotion to production is gated: the candidate's
    cross-validated macro-F1 on the current gold set must be at least production's under the
    same folds (--force with --reason overrides, and is logged)."""
    from pipeline.promote import promote, workspace_gate

    p = promote(
        _store(args),
        args.name,
        args.version,
        args.to,
        gate_scorer=workspace_gate(lambda: _gate_workspace(args)),
        force=args.force,
        reason=args.reason or "",
        track=not args.no_track,
    )
    _print_gate(p)
    if p.refused:
        print(
            f"topics models promote: refused: {p.name}:{p.version} is worse than production "
            "(use --force --reason '...' to override; it is logged)",
            file=sys.stderr,
        )
        return 1
    print(f"{p.alias}: {p.name}:{p.previous} -> {p.name}:{p.version}", file=sys.stderr)
    return _report_promotion(p)


def cmd_models_rollback(args: argparse.Namespace) -> int:
    """Point production back at the version it pointed to before its last move."""
    from pipeline.promote import rollback

    p = rollback(_store(args), args.name, reason=args.reason or "", track=not args.no_track)
    print(f"production: {p.name}:{p.previous} -> {p.name}:{p.version} (rollback)", file=sys.stderr)
    return _report_promotion(p)


def cmd_models_diff(args: argparse.Namespace) -> int:
    """Per-theme metric and config changes between two versions."""
    from pipeline.registry import ModelRef, diff_versions

    store = _store(args)
    v1 = store.resolve(ModelRef(args.name, args.v1))
    v2 = store.resolve(ModelRef(args.name, args.v2))
    d = diff_versions(store, args.name, v1, v2)
    print(
        f"{args.name}:{v1} -> {args.name}:{v2}"
        + ("  (training data changed)" if d["training_data_changed"] else "")
    )
    print(f"  {'metric':<24} {'from':>8} {'to':>8} {'change':>8}")
    for k, m in d["metrics"].items():
        a = "" if m["from"] is None else f"{m['from']:.3f}"
        b = "" if m["to"] is None else f"{m['to']:.3f}"
        print(f"  {k:<24} {a:>8} {b:>8} {m['change']:>+8.3f}")
    if d["config"]:
        print("  config changes:")
        for k, c in d["config"].items():
            print(f"    {k}: {c['from']!r} -> {c['to']!r}")
    else:
        print("  config: unchanged")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="topics", description="Tag Chinese government news and reports by theme."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    from pipeline import __version__

    p.add_argument("--version", action="version", version=f"topics (gov-topics) {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # shared options, declared once
    exp = argparse.ArgumentParser(add_help=False)
    exp.add_argument("--exp", default="experiments/default.yaml", help="experiment config (YAML)")
    exp.add_argument("--build", default="build", help="folder for stage outputs")
    # the promotion gate's evaluation set: fixed, never the candidate's own labelled data
    gate = argparse.ArgumentParser(add_help=False)
    gate.add_argument(
        "--gate-exp",
        default="experiments/default.yaml",
        help="experiment whose labelled units the metric gate re-evaluates both versions on "
        "when their stored figures are not comparable (default: %(default)s)",
    )
    gate.add_argument("--build", default="build", help="folder for stage outputs")
    models = argparse.ArgumentParser(add_help=False)
    models.add_argument(
        "--models", help="model store folder (default: $GOV_TOPICS_MODELS or models/)"
    )
    track = argparse.ArgumentParser(add_help=False)
    track.add_argument("--no-track", action="store_true", help="do not log to MLflow")

    def command(parent: Any, name: str, func: Any, *parents: Any) -> argparse.ArgumentParser:
        doc = " ".join((func.__doc__ or "").split())
        first = doc.split(". ", 1)[0].split(": ", 1)[0].rstrip(".")  # the first sentence
        sp = parent.add_parser(name, help=first, description=doc, parents=list(parents))
        sp.set_defaults(func=func)
        return sp

    sp = command(sub, "ingest", cmd_ingest, exp)
    sp.add_argument(
        "--update-checksums",
        action="store_true",
        help="record the raw files' sha256 (after a deliberate change)",
    )
    command(sub, "inputs", cmd_inputs, exp)
    sp = command(sub, "segment", cmd_segment, exp)
    sp.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    command(sub, "features", cmd_features, exp)
    command(sub, "vectors", cmd_vectors, exp)
    command(sub, "train", cmd_train, exp)
    sp = command(sub, "evaluate", cmd_evaluate, exp)
    sp.add_argument("--no-learning-curve", action="store_true", help="skip the learning curve")
    sp = command(sub, "register", cmd_register, exp, models, track)
    sp.add_argument(
        "--name",
        default="gov-topics",
        help="model name in the store and the MLflow registry (default: %(default)s); a model "
        "trained on your own data and themes gets its own name",
    )
    sp.add_argument(
        "--gate-exp",
        default="experiments/default.yaml",
        help="with --promote: the experiment whose labelled units the metric gate re-evaluates "
        "on (a fixed set, not this experiment's own; default: %(default)s)",
    )
    sp.add_argument(
        "--format",
        choices=("pickle", "joblib", "skops"),
        default="pickle",
        help="artefact format: pickle (fastest to load), joblib, or skops (safe loading: "
        "allow-listed types only)",
    )
    sp.add_argument(
        "--promote",
        action="store_true",
        help="then make it production if it passes the metric gate (the first version always "
        "does); a worse one is registered but production stays",
    )

    lp = sub.add_parser("labels", help="check, import and adjudicate labels")
    lsub = lp.add_subparsers(dest="labels_command", required=True, metavar="SUBCOMMAND")
    command(lsub, "check", cmd_labels_check, exp)
    sp = command(lsub, "import", cmd_labels_import, exp)
    sp.add_argument("file", help="the labelled batch (JSONL)")
    sp.add_argument("--pass", dest="pass_id", required=True, choices=("A", "B"))
    sp.add_argument("--batch", help="batch name (default: the file name up to its first dot)")
    sp = command(lsub, "adjudicate", cmd_labels_adjudicate, exp)
    sp.add_argument("--batch", required=True, help="the batch name given at import")
    sp.add_argument("--decisions", help="the disagreements file with labels and reasons filled")

    sp = command(sub, "predict", cmd_predict, models)
    sp.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or - for stdin")
    sp.add_argument(
        "-o",
        "--output",
        help="write JSONL here (atomically) instead of stdout; with --engine spark, a folder",
    )
    sp.add_argument(
        "--model",
        default=None,
        help="NAME[@ALIAS|:VERSION]; a name alone means its production version (default: "
        "gov-topics@production; NAME@latest for the newest)",
    )
    sp.add_argument("--text-field", default="text", help="JSONL field holding the text")
    sp.add_argument("--id-field", default="id", help="JSONL field holding the id")
    sp.add_argument("--paragraphs", action="store_true", help="add paragraph-level themes")
    sp.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        default=None,
        help="output format: jsonl (default), csv (one score column per theme); with --engine "
        "spark parquet (default) or jsonl",
    )
    sp.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    sp.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local (default) or spark: the same records, scored by Apache Spark "
        "(pip install 'gov-topics[spark]'; Java 17+)",
    )
    sp.add_argument(
        "--master",
        default=None,
        help="with --engine spark: the Spark master (default local[*]; ignored under "
        "spark-submit, whose own settings apply)",
    )
    sp.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="keep each document's K best themes and main themes (K >= 1; default: all)",
    )

    sp = command(sub, "queue", cmd_queue, models, exp)
    sp.add_argument("paths", nargs="*", metavar="PATH", help="unlabelled files, folders or -")
    sp.add_argument("-n", type=int, default=100, help="batch size (default 100)")
    sp.add_argument(
        "--report", action="store_true", help="show what the queue bought (queue vs random)"
    )
    sp.add_argument("-o", "--output", help="write the batch here (atomically) instead of stdout")
    sp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    sp.add_argument(
        "--strategy",
        choices=("uncertainty", "diverse", "random"),
        default="uncertainty",
        help="how units are chosen (default uncertainty)",
    )
    sp.add_argument(
        "--random-share", type=float, default=0.1, help="share drawn at random (default 0.1)"
    )
    sp.add_argument("--seed", type=int, default=0, help="same seed, same batch")
    sp.add_argument("--model", default=None, help="NAME[@ALIAS|:VERSION] (default as predict)")
    sp.add_argument("--text-field", default="text", help="JSONL/CSV field holding the text")
    sp.add_argument("--id-field", default="id", help="JSONL/CSV field holding the id")

    mp = sub.add_parser("models", help="list and inspect model versions")
    msub = mp.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    name = argparse.ArgumentParser(add_help=False)
    name.add_argument("--name", default="gov-topics", help="model name (default gov-topics)")
    command(msub, "list", cmd_models_list, models, name)
    sp = command(msub, "show", cmd_models_show, models, name)
    sp.add_argument("version", nargs="?", default="latest", help="version, alias or latest")
    sp = command(msub, "promote", cmd_models_promote, models, name, track, gate)
    sp.add_argument("version", help="version number, alias or latest")
    sp.add_argument("--to", required=True, choices=("production", "staging"))
    sp.add_argument("--force", action="store_true", help="override the metric gate")
    sp.add_argument("--reason", help="why (kept in the audit log)")
    sp = command(msub, "rollback", cmd_models_rollback, models, name, track)
    sp.add_argument("--reason", help="why (kept in the audit log)")
    sp = command(msub, "diff", cmd_models_diff, models, name)
    sp.add_argument("v1")
    sp.add_argument("v2")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except GovTopicsError as exc:
        print(f"topics {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"topics {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"topics {args.command}: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return 0


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated


def run() -> int:
    """The ``topics`` console command.

    Two start-up costs of ``topics predict`` are cut here, in the command's own process, never in
    :func:`main`, which other programs call. scikit-learn imports pandas whenever it is installed
    (MLflow installs it), about 0.4 s and 60 MB in every process; nothing on the predict path
    uses pandas, so for ``predict`` it is marked unavailable before anything imports it. And the
    process exits without tearing down the interpreter once everything is written.
    """
    # SIGTERM (a scheduler's stop, `kill`) unwinds like Ctrl-C in every command: partial outputs
    # are removed, a half-registered version is taken back and its MLflow run marked FAILED
    signal.signal(signal.SIGTERM, _terminated)
    predict = sys.argv[1:2] == ["predict"]
    if predict and "pandas" not in sys.modules:
        sys.modules["pandas"] = None  # type: ignore[assignment]
    code = main()
    if predict:
        # Everything is written (an output file is synced and renamed before main returns):
        # skip tearing down a model's worth of objects, a quarter of a second on a small input.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
