"""Run a whole evaluation: scenarios × methods → the metrics dictionary behind every output."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from clibd_cli import __version__
from clibd_cli.defaults import CALIBRATION
from clibd_cli.evaluation import BASELINES, PAIRS
from clibd_cli.evaluation.baselines import IDENTITY_CUTOFFS, AlignmentBaseline, missing_tools
from clibd_cli.evaluation.protocol import PARTS, Records, Scenario, scenarios
from clibd_cli.evaluation.retrieval import PairMethod, Queries
from clibd_cli.evaluation.scores import batch_scores, open_set_scores, retrieval_scores
from clibd_cli.evaluation.vectors import Embeddings, KmerProfiles, ModelVectors
from clibd_cli.io.outputs import UsageError, output_path
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")
MIX_UNSEEN = 0.3  # share of unseen-species queries in the mixed batch (all seen queries and a sample of unseen)
DESCRIPTIONS = {  # {cutoff}: --min-confidence
    "kmer": "k-mer profile nearest neighbour (model-free)",
    "vsearch-global": "vsearch --usearch_global top hits (--id 0.8)",
    "vsearch-sintax": "vsearch --sintax (cutoff {cutoff})",
    "blastn": "blastn (megablast) top hits by bit score",
    "mmseqs": "mmseqs easy-search (nucleotide) top hits by bit score",
    "rdp": "RDP naive Bayesian classifier trained on the keys (cutoff {cutoff})",
}


@dataclass
class Plan:
    """What to evaluate and how (the options of ``clibd evaluate``)."""

    data: Path
    on: str = "test"
    model: str | None = None  # model directory or preset; None: baselines only
    pairs: tuple[str, ...] | None = None  # None: every pair the model and data support
    baselines: tuple[str, ...] | None = None  # None: every baseline whose tools are installed
    scenarios: tuple[str, ...] = ("paper", "left-out")
    search: str = "exact"
    min_confidence: float = CALIBRATION.min_confidence
    kmer: int = 5
    limit: int = 0  # queries per part (0: all)
    batch_size: int = 256
    cache: Path | None = None
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    precision: str = "auto"  # see clibd_cli.embedding.embedder.resolve_precision
    progress: bool = False
    command: str = "clibd evaluate"  # the command line as typed, recorded in metrics.json


@dataclass
class Evaluation:
    """The metrics (JSON-ready) and what the plots need besides them."""

    metrics: dict
    embedding_map: dict | None = None  # {"title", "xy" [N,2], "order" [N]}


def run_evaluation(plan: Plan, sources: dict | None = None) -> Evaluation:
    """Evaluate ``plan``. ``sources`` (method name -> (vector source, query modality, key
    modality)) replaces the model's pairs, e.g. with fixed vectors in tests."""
    from clibd_cli.data.store import open_dataset

    with open_dataset(plan.data) as dataset:
        found, notes = scenarios(dataset, plan.on, plan.scenarios)
        model_info, methods = None, []
        if sources is not None:
            methods = [_pair(plan, name, *spec) for name, spec in sources.items()]
        elif plan.model:
            model_info, methods = _model_pairs(plan, dataset, found, notes)
        methods += _baselines(plan, notes)
        if not methods:
            skipped = [note for note in notes if note.startswith(("pair ", "baseline "))]
            why = "; ".join(skipped) or "no model pair and no baseline selected"
            if any(note.endswith("not found on PATH") for note in skipped):  # this machine lacks a program
                raise ClibdError(f"nothing to evaluate: {why}")
            raise UsageError(f"nothing to evaluate: {why}")
        textual = [m.name for m in methods if isinstance(m, PairMethod) and not m.makes_calls]
        if textual:
            notes.append(f"open-set and per-batch numbers are not computed for {', '.join(textual)}: their "
                         "keys are label strings, not specimens, so there is no calibrated confidence to "
                         "assert a label with")
        queries = {s.name: _queries(plan, dataset, s) for s in found}
        keys = {group for s in found for group in s.keys}
        embeddings = Embeddings(dataset, plan.cache, plan.progress, _sampled_rows(queries.values(), keys))
        result = _header(plan, dataset, found, model_info, methods, notes)
        with tempfile.TemporaryDirectory(prefix="clibd-evaluate-") as workdir:
            for method in methods:
                if isinstance(method, AlignmentBaseline):
                    method.workdir = Path(workdir)
            for scenario in found:
                _run_scenario(dataset, scenario, queries[scenario.name], methods, embeddings, result, plan.seed)
        emap = _embedding_map(plan, dataset, found[0], methods, embeddings)
    for note in notes:
        log.info("note: %s", note)
    return Evaluation(result, emap)


def report_folder(output: Path, data: Path, model: str | None) -> Path:
    """``output`` as a report folder may be written (``io.outputs.output_path``): new, empty, an
    earlier report (it holds ``metrics.json``) or an interrupted run's (its ``cache/`` alone)."""
    resuming = output.is_dir() and {p.name for p in output.iterdir()} <= {"cache"}
    return output_path(output, directory=True, marker=None if resuming else "metrics.json",
                       inputs=(data,), reads=(model,))


def write_report(output: Path, result: Evaluation) -> Path:
    """``metrics.json``, ``metrics.tsv``, the PNG plots and ``report.html`` into ``output``, made
    only now (a failed run leaves no folder); returns the page's path."""
    from clibd_cli.evaluation.plots import write_html, write_plots
    from clibd_cli.evaluation.report import EXPLANATION, write_json, write_tsv

    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "metrics.json", result.metrics)
    write_tsv(output / "metrics.tsv", result.metrics)
    figures = write_plots(output, result.metrics, result.embedding_map)
    write_html(output / "report.html", result.metrics, figures, EXPLANATION)
    return output / "report.html"


def _queries(plan: Plan, dataset, scenario: Scenario) -> dict[str, Queries]:
    """Per part, the scenario's queries and the positions evaluated (``plan.limit`` sampled)."""
    parts = {}
    for part in PARTS:
        if part in scenario.queries:
            records = Records(dataset, scenario.queries[part])
            parts[part] = Queries(records, records.sample(plan.limit, plan.seed))
    return parts


def _sampled_rows(queries, keys: set[str]) -> dict[str, np.ndarray]:
    """Per query group of which only some records are evaluated (``--limit``), those rows: only
    they are embedded. A group that is also a key group is embedded whole."""
    rows: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for parts in queries:
        for part in parts.values():
            start = 0
            for group, size in zip(part.records.split.groups, part.records.split.sizes):
                mine = part.positions[(part.positions >= start) & (part.positions < start + size)] - start
                rows[group], sizes[group] = np.union1d(rows.get(group, mine), mine), size
                start += size
    return {group: r for group, r in rows.items() if group not in keys and len(r) < sizes[group]}


def _run_scenario(dataset, scenario: Scenario, parts: dict[str, Queries], methods: list, embeddings,
                  result: dict, seed: int) -> None:
    keys = Records(dataset, scenario.keys)
    for part, queries in parts.items():
        result["scenarios"][scenario.name]["queries"][part]["evaluated"] = len(queries.positions)
    mix = _mix(dataset, scenario, parts, seed) if len(parts) == len(PARTS) else None
    for method in methods:
        log.info("%s: %s", scenario.name, method.name)
        start = time.perf_counter()
        batched = mix is not None and method.gives_confidence
        outcomes = method.run(embeddings, keys, {**parts, "mix": mix} if batched else parts)
        mixed = outcomes.pop("mix", None)
        seconds = time.perf_counter() - start
        scores = retrieval_scores(outcomes)
        scores["seconds"] = round(seconds, 2)
        scores.update({"extra": {p: o.extra for p, o in outcomes.items()}} if any(
            o.extra for o in outcomes.values()) else {})
        result["retrieval"].setdefault(scenario.name, {})[method.name] = scores
        if all(o.calls is not None for o in outcomes.values()):
            scores = open_set_scores(outcomes, keys.labels)
            if mixed is not None and mixed.calls is not None:
                scores["batches"] = batch_scores({**outcomes, "mix": mixed}, keys.labels)
            result["open_set"].setdefault(scenario.name, {})[method.name] = scores


def _mix(dataset, scenario: Scenario, parts: dict[str, Queries], seed: int) -> Queries:
    """All evaluated seen queries and a seeded sample of unseen ones, ``MIX_UNSEEN`` of the batch:
    one run in which the share of new species is neither 0 nor 1."""
    seen, unseen = parts["seen"], parts["unseen"]
    n_new = min(len(unseen.positions), round(len(seen.positions) * MIX_UNSEEN / (1 - MIX_UNSEEN)))
    chosen = np.random.default_rng(seed).choice(unseen.positions, n_new, replace=False)
    records = Records(dataset, scenario.queries["seen"] + scenario.queries["unseen"])
    return Queries(records, np.sort(np.concatenate([seen.positions, len(seen.records) + chosen])))


def _pair(plan: Plan, name: str, source, query: str, key: str) -> PairMethod:
    return PairMethod(name, source, query, key, plan.search, plan.min_confidence, plan.seed, plan.threads)


def _model_pairs(plan: Plan, dataset, found: list[Scenario], notes: list[str]):
    from clibd_cli.embedding.embedder import Embedder, load_model_for, model_available, model_reference

    model = load_model_for(plan.model, [])
    if not model_available(plan.model):
        notes.append(f"model {plan.model} is a preset with untrained (random) weights")
    source = ModelVectors(Embedder(model, plan.device, plan.batch_size, plan.precision), plan.batch_size)
    photos = {name: bool(Records(dataset, groups).has_image.any())
              for s in found for name, groups in [("keys", s.keys), *s.queries.items()]}
    methods, unfit = [], []
    for pair in plan.pairs or PAIRS:
        query, key = pair.split("-")
        absent = [m for m in (query, key) if m not in model.modalities]
        if absent:
            unfit.append(f"pair {pair} skipped: the model has no {' or '.join(dict.fromkeys(absent))} encoder")
        elif "image" in (query, key) and not (photos["seen"] and (key != "image" or photos["keys"])):
            unfit.append(f"pair {pair} skipped: the dataset has no photos for it")
        else:
            methods.append(_pair(plan, pair, source, query, key))
    if plan.pairs and unfit:  # asked for by name: not quietly left out (the baselines alone ran, exit 0)
        raise UsageError(f"--pairs: {'; '.join(note.replace(' skipped:', ' cannot be evaluated:') for note in unfit)}; "
                         "leave it out (--pairs auto: every pair the model and dataset allow)")
    notes += unfit
    info = {"spec": model_reference(plan.model) if model_available(plan.model) else plan.model,
            "fingerprint": source.fingerprint, "modalities": list(model.modalities),
            "precision": source.precision}
    return info, methods


def _baselines(plan: Plan, notes: list[str]) -> list:
    chosen = plan.baselines if plan.baselines is not None else BASELINES
    methods: list = []
    for name in chosen:
        if name == "kmer":
            methods.append(_pair(plan, "kmer", KmerProfiles(plan.kmer), "dna", "dna"))
            continue
        absent = missing_tools(name)
        if absent:
            notes.append(f"baseline {name} skipped: {', '.join(absent)} not found on PATH")
        else:
            methods.append(AlignmentBaseline(name, Path("."), plan.threads, plan.seed, plan.min_confidence))
    return methods


def _header(plan: Plan, dataset, found: list[Scenario], model_info, methods, notes) -> dict:
    def describe(groups: tuple[str, ...]) -> dict:
        return {"groups": list(groups), "records": len(Records(dataset, groups))}

    return {
        "format": "clibd-evaluate/1",
        "clibd_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": plan.command,
        "dataset": {"path": str(Path(plan.data).resolve()), "on": plan.on, "limit": plan.limit},
        "model": model_info,
        "settings": {"search": plan.search, "min_confidence": plan.min_confidence, "kmer_k": plan.kmer,
                     "identity_cutoffs": IDENTITY_CUTOFFS, "seed": plan.seed, "threads": plan.threads},
        "scenarios": {s.name: {"title": s.title, "keys": describe(s.keys),
                               "queries": {p: describe(g) for p, g in s.queries.items()}} for s in found},
        "methods": {m.name: {"kind": "baseline" if m.name in BASELINES else "model",
                             "query": getattr(m, "query", "dna"), "key": getattr(m, "key", "dna"),
                             "description": DESCRIPTIONS.get(m.name, f"CLIBD {m.name.replace('-', ' → ')}").format(
                                 cutoff=f"{plan.min_confidence:g}")}
                    for m in methods},
        "retrieval": {},
        "open_set": {},
        "notes": notes,
    }


def _embedding_map(plan: Plan, dataset, scenario: Scenario, methods: list, embeddings,
                   n: int = 3000) -> dict | None:
    """2-D PCA of a sample of key vectors (the first embedding method's key modality)."""
    method = next((m for m in methods if isinstance(m, PairMethod) and m.key != "text"), None)
    if method is None:
        return None
    keys = Records(dataset, scenario.keys)
    vectors = embeddings.get(method.source, scenario.keys, method.key)
    usable = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
    if len(usable) < 3:
        return None
    rng = np.random.default_rng(plan.seed)
    pick = np.sort(rng.choice(usable, min(n, len(usable)), replace=False))
    x = vectors[pick] - vectors[pick].mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return {"title": f"{method.name} key embeddings ({method.key}), PCA of {counted(len(pick), 'record')}",
            "xy": x @ vt[:2].T, "order": keys.labels["order"][pick]}
