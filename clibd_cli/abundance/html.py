"""The HTML page of ``clibd classify --summary``: one stacked bar per sample at each rank
(share of the sample's reads per taxon; the most abundant taxa in colour, the rest as
"other", unassigned reads in grey), a legend and the reads table under each chart.

Self-contained: inline CSS and SVG, no script, no external URL; opens offline.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

from clibd_cli.io.lineages import qiime_taxon
from models.config import RANKS
from models.errors import counted

COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#86bcb6", "#d37295", "#8cd17d")
OTHER, UNASSIGNED = "#c9c9c9", "#7f7f7f"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;text-transform:capitalize}
.bar{display:flex;align-items:center;margin:4px 0}.bar .name{width:180px;font-size:.9em;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}.bar svg{flex:1;height:22px}.bar .n{width:110px;text-align:right;
font-size:.85em;color:#555}.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:8px 0 12px;font-size:.85em}
.legend span{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
table{border-collapse:collapse;font-size:.85em}
td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}details{margin:6px 0 0}
"""


def render(tally, top: int = len(COLOURS)) -> str:
    """The whole page for ``tally`` (``clibd_cli/abundance/summary.py`` ``Tally``); ``top`` taxa
    per rank get their own colour."""
    samples = tally.samples
    totals = {s: sum(tally.reads[s].values()) for s in samples}
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>clibd classification summary</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>clibd classification summary</h1>",
             f"<p>{counted(len(samples), 'sample')}, "
             f"{counted(sum(totals.values()), 'read')}. Bars: share of each sample's reads per taxon; "
             "grey: reads without a label at that rank.</p>"]
    for rank in RANKS:
        parts += _rank_section(tally, rank, totals, top)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _rank_section(tally, rank: str, totals: dict[str, int], top: int) -> list[str]:
    per_sample = {s: tally.at_rank(s, rank) for s in tally.samples}
    overall: dict[tuple, int] = defaultdict(int)
    for taxa in per_sample.values():
        for lineage, reads, _ in taxa:
            if lineage is not None:
                overall[lineage] += reads
    ranked = sorted(overall, key=lambda k: (-overall[k], [n or "" for n in k]))
    colour = {lineage: COLOURS[i] for i, lineage in enumerate(ranked[:top])}
    out = [f"<h2>{escape(rank)}</h2>"]
    for sample, taxa in per_sample.items():
        out.append(_bar(sample, taxa, totals[sample], colour))
    legend = [(lineage[-1], colour[lineage]) for lineage in ranked[:top]]
    if len(ranked) > top:
        legend.append((f"other ({len(ranked) - top} taxa)", OTHER))
    legend.append(("unassigned", UNASSIGNED))
    out.append('<div class="legend">' + "".join(
        f'<div><span style="background:{c}"></span>{escape(name)}</div>' for name, c in legend) + "</div>")
    out.append(_table(rank, ranked, per_sample))
    return out


def _bar(sample: str, taxa: list, total: int, colour: dict) -> str:
    """One sample's stacked bar as inline SVG (viewBox in per-mille of the reads); the coloured
    taxa in the same order in every sample's bar."""
    reads = {lineage: n for lineage, n, _ in taxa}
    segments = [(qiime_taxon(dict(zip(RANKS, lineage))), fill, reads.get(lineage, 0))
                for lineage, fill in colour.items()]
    other = sum(n for lineage, n in reads.items() if lineage is not None and lineage not in colour)
    segments += [("other", OTHER, other), ("unassigned", UNASSIGNED, reads[None])]
    x, rects = 0.0, []
    for name, fill, n in segments:
        if n and total:
            width = 1000 * n / total
            rects.append(f'<rect x="{x:.2f}" y="0" width="{width:.2f}" height="22" fill="{fill}">'
                         f"<title>{escape(name)}: {counted(n, 'read')} ({100 * n / total:.1f} %)"
                         "</title></rect>")
            x += width
    return (f'<div class="bar"><div class="name" title="{escape(sample)}">{escape(sample)}</div>'
            f'<svg viewBox="0 0 1000 22" preserveAspectRatio="none" role="img" '
            f'aria-label="{escape(sample)}">{"".join(rects)}</svg>'
            f'<div class="n">{counted(total, "read")}</div></div>')


def _table(rank: str, ranked: list, per_sample: dict[str, list]) -> str:
    samples = list(per_sample)
    reads = {s: {lineage: n for lineage, n, _ in taxa} for s, taxa in per_sample.items()}
    head = "".join(f"<th>{escape(s)}</th>" for s in samples)
    body = []
    for lineage in [*ranked, None]:
        name = "unassigned" if lineage is None else lineage[-1]
        title = "" if lineage is None else f' title="{escape(qiime_taxon(dict(zip(RANKS, lineage))))}"'
        cells = "".join(f"<td>{reads[s].get(lineage, 0):,}</td>" for s in samples)
        body.append(f"<tr><td{title}>{escape(name)}</td>{cells}</tr>")
    return (f"<details><summary>reads per {escape(rank)} and sample</summary><table>"
            f"<tr><th>{escape(rank)}</th>{head}</tr>{''.join(body)}</table></details>")
