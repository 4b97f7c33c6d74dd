"""PNG figures (matplotlib, Agg) and the one-page ``report.html`` that shows them.

* ``accuracy_<scenario>.png``: per method, top-1 macro accuracy per rank, seen and unseen bars,
  harmonic mean as a marker (the paper's table as a picture);
* ``open_set.png``: per scenario and method, unseen species asserted, unseen genus right,
  seen species right;
* ``reliability_<scenario>.png``: per method with confidences, accuracy against confidence
  per rank (bins of 0.1; the diagonal is perfect calibration), ECE in the legend;
* ``embedding_map.png``: PCA of key embeddings coloured by order.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from clibd_cli.evaluation.report import (
    TARGETS, accuracy_table, batch_table, curve_table, html_table, left_out_line, open_set_table,
    scenario_line,
)
from models.config import RANKS
from models.files import atomic_open, atomic_path

COLORS = {"seen": "#1f5a96", "unseen": "#e08a2c", "hm": "#222222"}


def write_plots(folder: Path, metrics: dict, embedding_map: dict | None) -> list[str]:
    """Write every figure into ``folder``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    names = []
    for scenario, methods in metrics["retrieval"].items():
        names.append(_save(folder, f"accuracy_{scenario}.png", _accuracy(scenario, methods)))
        calibrated = {m: s for m, s in metrics["open_set"].get(scenario, {}).items() if "reliability" in s}
        if calibrated:
            names.append(_save(folder, f"reliability_{scenario}.png", _reliability(scenario, calibrated)))
    if any(metrics["open_set"].values()):
        names.append(_save(folder, "open_set.png", _open_set(metrics["open_set"])))
    if embedding_map is not None:
        names.append(_save(folder, "embedding_map.png", _embedding_map(embedding_map)))
    return names


def _save(folder: Path, name: str, figure) -> str:
    import matplotlib.pyplot as plt

    with atomic_path(folder / name) as temp:
        figure.savefig(temp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return name


def _grid(n: int, width: float = 4.2, height: float = 3.2):
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    figure, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                                layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return figure, list(axes.flat)


def _accuracy(scenario: str, methods: dict):
    figure, axes = _grid(len(methods))
    x = np.arange(len(RANKS))
    for ax, (name, scores) in zip(axes, methods.items()):
        for shift, part in ((-0.2, "seen"), (0.2, "unseen")):
            if part in scores:
                values = [_value(scores[part][r]["top1"]["macro"]) for r in RANKS]
                ax.bar(x + shift, values, 0.4, color=COLORS[part], label=part)
        if "hm" in scores:
            ax.plot(x, [_value(scores["hm"][r]["top1"]["macro"]) for r in RANKS], "D",
                    color=COLORS["hm"], markersize=5, label="harmonic mean")
        ax.set_xticks(x, RANKS)
        ax.set_ylim(0, 100)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("top-1 macro accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    figure.suptitle(f"Scenario {scenario}: top-1 macro accuracy per rank", fontsize=11)
    return figure


def _reliability(scenario: str, methods: dict):
    figure, axes = _grid(len(methods), 3.6, 3.4)
    colors = dict(zip(RANKS, ("#4c72b0", "#55a868", "#c44e52", "#8172b2")))
    for ax, (name, scores) in zip(axes, methods.items()):
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=1, linestyle="--")
        for rank, bins in scores["reliability"].items():
            count = np.array(bins["count"])
            used = count > 0
            x, y = np.array(bins["confidence"])[used], np.array(bins["accuracy"])[used]
            ax.plot(x, y, "-", color=colors[rank], linewidth=1, alpha=0.7,
                    label=f"{rank} (ECE {100 * bins['ece']:.1f} points)")
            ax.scatter(x, y, s=4 + 60 * np.sqrt(count[used] / count.sum()), color=colors[rank], zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("accuracy")
    figure.suptitle(f"Scenario {scenario}: reliability (seen + unseen queries; dot area ~ queries)",
                    fontsize=11)
    return figure


def _open_set(open_set: dict):
    bars = (("unseen", "species", "assigned_rate", "unseen: species asserted", "#c44e52"),
            ("unseen", "genus", "known_correct", "unseen: genus right", "#55a868"),
            ("seen", "species", "known_correct", "seen: species right", "#4c72b0"))
    scenarios = [s for s, methods in open_set.items() if methods]
    figure, axes = _grid(len(scenarios), 5.5, 3.4)
    for ax, scenario in zip(axes, scenarios):
        methods = open_set[scenario]
        x = np.arange(len(methods))
        for i, (part, rank, metric, label, color) in enumerate(bars):
            values = [_value(s[part][rank][metric]) if part in s else 0 for s in methods.values()]
            ax.bar(x + (i - 1) * 0.27, values, 0.27, color=color, label=label)
        ax.set_xticks(x, list(methods), rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"scenario {scenario}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("% of queries")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    figure.suptitle("Open set: calls at the confidence cutoff", fontsize=11)
    return figure


def _embedding_map(emap: dict):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    orders = np.array(["(none)" if o is None else str(o) for o in emap["order"]])
    names, counts = np.unique(orders, return_counts=True)
    top = list(names[np.argsort(-counts)][:9])
    palette = plt.get_cmap("tab10")
    for i, name in enumerate([*top, "other"]):
        at = ~np.isin(orders, top) if name == "other" else orders == name
        if at.any():
            ax.scatter(*emap["xy"][at].T, s=4, alpha=0.6, color=palette(i % 10), label=f"{name} ({at.sum()})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(emap["title"], fontsize=9)
    ax.legend(fontsize=7, markerscale=3, loc="best")
    return figure


def _value(v) -> float:
    return 0.0 if v is None else 100 * v


def write_html(path: Path, metrics: dict, figures: list[str], explanation: str) -> None:
    """``report.html``: provenance, per scenario the tables and figures, notes, what the numbers mean."""
    e = html.escape
    model = metrics["model"]
    model_text = (f"<code>{e(model['spec'])}</code> ({e(model['fingerprint'][:12])})" if model
                  else "none (baselines only)")
    parts = [f"<h1>clibd evaluate</h1><p class='meta'>dataset <code>{e(metrics['dataset']['path'])}</code>, "
             f"queries <b>{e(metrics['dataset']['on'])}</b>; model {model_text}; "
             f"search {e(metrics['settings']['search'])}; clibd {e(metrics['clibd_version'])}, "
             f"{e(metrics['created'])}<br><code>{e(metrics['command'])}</code></p>"]
    for scenario, info in metrics["scenarios"].items():
        if scenario not in metrics["retrieval"]:
            continue
        parts.append(f"<h2>Scenario <i>{e(scenario)}</i> — {e(info['title'])}</h2>"
                     f"<p>{e(scenario_line(info))}<br>{e(left_out_line(metrics['retrieval'][scenario]))}</p>")
        tables = [("Top-1 macro accuracy % (the paper's), seen / unseen / H", "top1", "macro", True),
                  ("Top-1 micro", "top1", "micro", False), ("Top-5 macro", "top5", "macro", False)]
        parts.append("<div class='row'>" + "".join(
            f"<div><h3>{e(title)}</h3>{html_table(accuracy_table(metrics, scenario, k, kind, timed))}</div>"
            for title, k, kind, timed in tables) + "</div>")
        if f"accuracy_{scenario}.png" in figures:
            parts.append(f"<img src='accuracy_{scenario}.png' alt='accuracy {e(scenario)}'>")
        parts.append("<div class='row'>")
        if metrics["open_set"].get(scenario):
            targets = f"<p>{e(TARGETS)}</p>" if scenario == "left-out" else ""
            parts.append(f"<div><h3>Open set (confidence ≥ {metrics['settings']['min_confidence']}), %</h3>"
                         f"{html_table(open_set_table(metrics, scenario))}{targets}</div>")
        if f"reliability_{scenario}.png" in figures:
            parts.append(f"<img src='reliability_{scenario}.png' alt='reliability {e(scenario)}'>")
        parts.append("</div>")
        if len(batch_table(metrics, scenario)) > 1:
            parts.append(f"<div class='row'><div><h3>Reliability per batch, %</h3>{html_table(batch_table(metrics, scenario))}"
                         f"</div><div><h3>Operating curve on the mix: known species named / new species asserted / "
                         f"new genus right / wrong, %</h3>{html_table(curve_table(metrics, scenario))}</div></div>")
    for name, alt in (("open_set.png", "open set"), ("embedding_map.png", "embedding map")):
        if name in figures:
            parts.append(f"<h2>{e(alt.capitalize())}</h2><img src='{name}' alt='{alt}'>")
    if metrics["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in metrics["notes"]) + "</ul>")
    parts.append(f"<h2>What the numbers mean</h2><pre class='explain'>{e(explanation)}</pre>")
    style = ("body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}"
             "table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
             "th{background:#f2f2f2}img{max-width:100%;margin:8px 0}.row{display:flex;gap:24px;"
             "flex-wrap:wrap;align-items:flex-start}.meta{color:#555}h2{border-bottom:1px solid #ddd;"
             "margin-top:28px}.explain{white-space:pre-wrap;background:#fafafa;padding:10px}")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>clibd evaluate</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    with atomic_open(path, encoding="utf-8") as f:
        f.write(page)
