"""``metrics.json``, ``metrics.tsv`` and the tables (text for stdout, HTML for the page).

``metrics.json`` keys are stable (format ``clibd-evaluate/1``)::

    retrieval.<scenario>.<method>.<seen|unseen|hm>.<rank>.<top1|top3|top5>.<micro|macro>
    retrieval.<scenario>.<method>.{queries,missing}.<part>, .seconds, .extra.<part>.prior_unseen (clibd)
    open_set.<scenario>.<method>.<seen|unseen>.<rank>.<metric>   (see clibd_cli.evaluation.scores)
    open_set.<scenario>.<method>.reliability.<rank>.{edges,count,confidence,accuracy,ece}
    open_set.<scenario>.<method>.batches.{ece.<seen|unseen|mix>.<rank>, prior_unseen.<batch>,
        new_share.<batch>, curve[{cutoff, known_species_named, new_species_asserted,
        new_genus_right, new_genus_wrong}]}

Accuracies, rates and ECE are fractions (0-1); ``null`` where undefined (e.g. top-5 of sintax).
The tables show percentages, and ECE in percentage points. ``metrics.tsv`` holds the same numbers in long format, one per line.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from clibd_cli.evaluation.scores import CURVE_CUTOFFS
from models.config import RANKS
from models.files import atomic_open
from models.errors import counted

CURVE_KEYS = ("known_species_named", "new_species_asserted", "new_genus_right", "new_genus_wrong")

TARGETS = ("targets: unseen species asserted ≤ 2 %; unseen genus right ≥ 70 % of those whose genus "
           "is in the keys")  # under scenario left-out's open-set table, on stdout and in report.html
OPEN_SET_ROWS = (  # (part, rank, metric, label)
    ("seen", "species", "known_correct", "seen: species right"),
    ("seen", "species", "assigned_accuracy", "seen: precision of asserted species"),
    ("unseen", "species", "assigned_rate", "unseen: species asserted"),
    ("unseen", "genus", "known_correct", "unseen: genus right (genus in keys)"),
    ("unseen", "family", "known_correct", "unseen: family right (family in keys)"),
    ("unseen", "genus", "assigned_accuracy", "unseen: precision of asserted genus"),
)


def clean(value):
    """JSON-ready: NaN → None, floats to 6 decimals, numpy scalars and arrays to Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "tolist"):
        return clean(value.tolist())
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def write_json(path: Path, metrics: dict) -> None:
    """The metrics as JSON (:func:`clean`), written whole or not at all."""
    with atomic_open(path) as f:
        json.dump(clean(metrics), f, indent=1)
        f.write("\n")


def write_tsv(path: Path, metrics: dict) -> None:
    """One number per line: ``scenario method part rank metric value`` — every number of
    ``metrics.json`` but the reliability diagrams' bins (their ECE is here: metric ``ece``, part
    empty); a batch's numbers have the batch as part (``batch_ece``, ``batch_prior_unseen``,
    ``batch_new_share``), an operating curve's point the cutoff in its metric (``new_genus_right@0.8``)."""
    lines = ["scenario\tmethod\tpart\trank\tmetric\tvalue"]
    for scenario, methods in metrics["retrieval"].items():
        for method, scores in methods.items():
            lines.append(f"{scenario}\t{method}\t\t\tseconds\t{scores['seconds']}")
            for count in ("queries", "missing"):
                for part, value in scores.get(count, {}).items():
                    lines.append(f"{scenario}\t{method}\t{part}\t\t{count}\t{value}")
            lines += [f"{scenario}\t{method}\t{part}\t\t{name}\t{_num(value)}"
                      for part, extra in scores.get("extra", {}).items() for name, value in extra.items()]
            for part in ("seen", "unseen", "hm"):
                for rank in RANKS if part in scores else ():
                    for k, values in scores[part][rank].items():
                        for kind, value in values.items():
                            lines.append(f"{scenario}\t{method}\t{part}\t{rank}\t{k}_{kind}\t{_num(value)}")
    for scenario, methods in metrics["open_set"].items():
        for method, scores in methods.items():
            for part in ("seen", "unseen"):
                for rank in RANKS if part in scores else ():
                    for name, value in scores[part][rank].items():
                        lines.append(f"{scenario}\t{method}\t{part}\t{rank}\topen_{name}\t{_num(value)}")
            for rank, found in scores.get("reliability", {}).items():
                lines.append(f"{scenario}\t{method}\t\t{rank}\tece\t{_num(found['ece'])}")
            lines += [f"{scenario}\t{method}\t{part}\t{rank}\t{metric}\t{_num(value)}"
                      for part, rank, metric, value in _batch_rows(scores.get("batches"))]
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")


def _batch_rows(batches: dict | None) -> list[tuple[str, str, str, object]]:
    """``(part, rank, metric, value)`` of ``open_set.<scenario>.<method>.batches``."""
    if not batches:
        return []
    rows = [(part, rank, "batch_ece", value)
            for part, ranks in batches["ece"].items() for rank, value in ranks.items()]
    rows += [(part, "", f"batch_{name}", value) for name in ("prior_unseen", "new_share")
             for part, value in batches[name].items()]
    return rows + [("mix", "", f"{key}@{point['cutoff']:g}", point[key])
                   for point in batches["curve"] for key in CURVE_KEYS]


def _num(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def accuracy_table(metrics: dict, scenario: str, k: str = "top1", kind: str = "macro",
                   seconds: bool = False) -> list[list[str]]:
    """Rows (header first): rank, then "seen / unseen / H" per method; optionally wall times."""
    methods = metrics["retrieval"][scenario]
    rows = [["rank", *methods]]
    for rank in RANKS:
        row = [rank]
        for scores in methods.values():
            cells = [_pct(scores[p][rank][k][kind]) for p in ("seen", "unseen", "hm") if p in scores]
            row.append(" / ".join(cells))
        rows.append(row)
    if seconds:
        rows.append(["seconds", *(f"{s['seconds']:.1f}" for s in methods.values())])
    return rows


def open_set_table(metrics: dict, scenario: str) -> list[list[str]]:
    """Rows (header first): one per open-set number (%) and per ECE (percentage points), one
    column per method."""
    methods = metrics["open_set"].get(scenario, {})
    rows = [["open set", *methods]]
    for part, rank, metric, label in OPEN_SET_ROWS:
        rows.append([label, *(_pct(s[part][rank][metric]) if part in s else "–" for s in methods.values())])
    for rank in ("species", "genus"):
        rows.append([f"ECE {rank} (seen + unseen), points", *(
            _pct(s["reliability"][rank]["ece"]) if rank in s.get("reliability", {}) else "–"
            for s in methods.values())])
    return rows


def batch_table(metrics: dict, scenario: str) -> list[list[str]]:
    """Rows (header first): per method and batch, ECE (percentage points) per rank and the share
    of new species % (clibd's estimate / the truth)."""
    rows = [["batch", "method", *(f"ECE {r}, points" for r in RANKS), "new species %: estimate / truth"]]
    for method, scores in metrics["open_set"].get(scenario, {}).items():
        batches = scores.get("batches")
        for part in (batches or {}).get("ece", {}):
            estimate = batches["prior_unseen"][part]
            rows.append([part, method, *(_pct(batches["ece"][part][r]) for r in RANKS),
                         f"{_pct(estimate)} / {_pct(batches['new_share'][part])}"])
    return rows


def curve_table(metrics: dict, scenario: str) -> list[list[str]]:
    """Rows (header first): per cutoff, per method on the mix: known species named right / new
    species asserted / new species' genus right / wrong, %."""
    methods = {m: s["batches"]["curve"] for m, s in metrics["open_set"].get(scenario, {}).items()
               if "batches" in s}
    rows = [["cutoff", *methods]]
    for i, cutoff in enumerate(CURVE_CUTOFFS):
        rows.append([f"{cutoff:.2f}", *(" / ".join(_pct(points[i][key]) for key in CURVE_KEYS)
                                          for points in methods.values())])
    return rows


def scenario_line(info: dict) -> str:
    """``keys: ... ; queries: ...`` with record counts (and the evaluated sample, if smaller)."""
    def count(q: dict) -> str:
        evaluated = q.get("evaluated", q["records"])
        return f"{q['records']:,}" + (f" ({evaluated:,} evaluated)" if evaluated != q["records"] else "")

    queries = ", ".join(f"{p} {'+'.join(q['groups'])} {count(q)}" for p, q in info["queries"].items())
    keys = info["keys"]
    return f"keys: {'+'.join(keys['groups'])} ({counted(keys['records'], 'record')}); queries: {queries}"


def left_out_line(methods: dict) -> str:
    """The queries each method of a scenario (``retrieval.<scenario>``) could not take and its scores
    leave out (a query without a photo, an unusable barcode), or "" when every method took them all."""
    taken = []
    for method, scores in methods.items():
        missing = {part: n for part, n in scores.get("missing", {}).items() if n}
        if missing:
            taken.append(f"{method} {', '.join(f'{part} {n:,}' for part, n in missing.items())}")
    return ("queries a method could not take (no photo, an unusable barcode), left out of its scores: "
            + "; ".join(taken)) if taken else ""


def text_report(metrics: dict) -> str:
    """What ``clibd evaluate`` prints: per scenario the paper's table, micro, top-5, open set."""
    out = [f"clibd evaluate: {metrics['dataset']['path']} (queries: {metrics['dataset']['on']})"]
    if metrics["model"]:
        out.append(f"model: {metrics['model']['spec']} ({metrics['model']['fingerprint'][:12]})")
    for scenario, info in metrics["scenarios"].items():
        if scenario not in metrics["retrieval"]:
            continue
        out += ["", f"== scenario {scenario}: {info['title']}", f"   {scenario_line(info)}"]
        if left_out := left_out_line(metrics["retrieval"][scenario]):
            out.append(f"   {left_out}")
        for k, kind, what, timed in (("top1", "macro", "top-1 macro accuracy % (the paper's table)", True),
                                     ("top1", "micro", "top-1 micro accuracy %", False),
                                     ("top5", "macro", "top-5 macro accuracy %", False)):
            out += ["", f"{what}: seen / unseen / harmonic mean",
                    _format(accuracy_table(metrics, scenario, k, kind, seconds=timed))]
        if metrics["open_set"].get(scenario):
            cut = metrics["settings"]["min_confidence"]
            out += ["", f"open set, %: labels asserted at confidence ≥ {cut} "
                        "(top-hit tools: identity cutoffs)",
                    _format(open_set_table(metrics, scenario))]
            if scenario == "left-out":
                out.append(TARGETS)
            if len(batch_table(metrics, scenario)) > 1:
                out += ["", "reliability per batch (each batch one run; mix: all seen + "
                            "unseen queries, 30 % unseen), %", _format(batch_table(metrics, scenario)),
                        "", "operating curve on the mix: known species named right / new species asserted / "
                            "new species' genus right / wrong (genus in keys), %", _format(curve_table(metrics, scenario))]
    for note in metrics["notes"]:
        out.append(f"note: {note}")
    return "\n".join(out)


def _format(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w)
                               in enumerate(zip(row, widths))).rstrip() for row in rows)


def html_table(rows: list[list[str]]) -> str:
    """An HTML table of ``rows``, the first its header; every cell escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


EXPLANATION = """\
Keys and queries. Every key record is embedded (barcode, photo, or the text of its label
string) and keeps its order/family/genus/species labels; every query is embedded and matched to
its nearest keys by cosine similarity (exact search unless --search hnsw). Seen queries (val or
test) are of species with training records; unseen queries (val_unseen or test_unseen) are of
species the model never trained on.

Scenario paper: the keys hold records of the unseen species too (BIOSCAN-5M key_unseen, CLIBD-1M
*_unseen_keys), as in the CLIBD paper: seen and unseen queries search one pooled key set.
Scenario left-out: the keys are the seen species' records only, so an unseen query's species
has no right answer; a good classifier then stops at genus or family.

top-k accuracy at a rank: a query is right if its true label is among the labels of its k
nearest keys. micro = mean over queries; macro = mean over the true classes present among the
queries of each class's accuracy (every species counts the same, however many queries it has;
the paper reports top-1 macro). H = harmonic mean 2su/(s+u) of seen s and unseen u. Queries
without a label at a rank are not scored at that rank. sintax gives one answer per rank, so only
its top-1 is defined.

Open set: labels a classifier asserts. CLIBD pairs and the k-mer baseline: the confidence that
clibd classify reports (calibrated on the keys, clibd_cli/classification/), asserted when >= the cutoff;
vsearch-sintax: bootstrap support >= the cutoff; top-hit tools (vsearch-global, blastn,
mmseqs): the top hit's label, asserted at identity >= 97 % species, 95 % genus, 90 % family,
85 % order (BOLDigger3's defaults). "species asserted" = share of queries given a species; "X right (X in
keys)" = among queries whose true X occurs among the keys, the share asserted and right;
"precision" = share of asserted labels that are right.

Reliability: queries binned by confidence (width 0.1); per bin the mean confidence against the
share right. ECE = sum over bins of (bin share of queries) x |accuracy - confidence|, shown
in percentage points (metrics.json: the fraction); 0 is perfectly calibrated. Per batch: the seen queries, the unseen queries and a mix (all seen and
a seeded sample of unseen, 30 % of the batch) are each classified as one run, as clibd classify
would (it estimates the share of new species per run); the operating curve sweeps the cutoff
on the mix. RDP: the naive Bayesian classifier trained on the keys, bootstrap confidence."""
