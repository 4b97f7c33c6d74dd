"""What ``clibd index info`` prints about a reference index (clibd_cli/reference/hnsw_index.py)."""

from __future__ import annotations

from clibd_cli.io.lineages import ranks_named_above
from clibd_cli.reference.holdings import HOLDINGS_FILE
from models.errors import counted


def describe_index(index) -> str:
    """A human-readable summary of ``index`` in the spirit of ``blastdbcmd -info``."""
    m = index.manifest
    h = m["hnsw"]
    lines = [
        f"Index: {index.path or '(not saved)'}",
        f"\t{counted(len(index), 'record')}; {m['modality']} embeddings, {m['dim']} dimensions; "
        f"metric {m['metric']}",
        f"\tModel fingerprint: {m['model_fingerprint']}",
        f"\tHNSW: M={h['M']} ef_construction={h['ef_construction']} ef={h['ef']} "
        f"seed={h['seed']}",
        f"\tCreated {m['created']} by clibd {m['clibd_version']} (format {m['format_version']})",
        f"\tCommand: {m['command']}",
    ]
    for entry in m.get("appended", []):
        lines.append(f"\tAppended {counted(entry['count'], 'record')} {entry['created']}: "
                     f"{entry['command']}")
    lines.append("\tRanks (labelled records, distinct labels):")
    for rank, values in index.labels.items():
        present = [v for v in values if v is not None]
        lines.append(f"\t\t{rank}: {counted(len(present), 'record')}, "
                     f"{counted(len(set(present)), 'label')}")
    if m.get("above_order"):  # domain to class, as each order's records name them
        lines.append(f"\t\tabove order: {', '.join(ranks_named_above(m['above_order']))} "
                     f"(for {counted(len(m['above_order']), 'order')})")
    kinds = ", ".join(index.calibration or {}) or "none"
    lines.append(f"\tConfidence calibration for queries: {kinds}")
    if index.sketch is not None:
        lines.append(f"\tOff-target guard: {index.sketch.describe()}")
    read = [data for data in (index.calibration or {}).values() if isinstance(data, dict) and data.get("containment")]
    if read:  # partial barcodes' species by containment: of the holdings (reference/holdings.py) or the vectors
        held = index.holdings is not None and any(data.get("containment_source") == "holdings" for data in read)
        searched = any(data.get("contained_search") for data in read)  # contained.py
        slack = max((data.get("contained_slack") or 0 for data in read), default=0)
        lines.append("\tPartial barcodes' species: by k-mer containment in the records' 5-mers "
                     + (f"({HOLDINGS_FILE})" if held else "(their vectors' 5-mer profiles)")
                     + ("; those a record holds whole searched by their 5-mers" if searched else "")
                     + (f" (reads with errors: all but {slack} of them)" if searched and slack else ""))
    rated = [kind for kind, data in (index.calibration or {}).items() if isinstance(data, dict)
             and isinstance(data.get("stop_model"), dict) and isinstance(data["stop_model"].get("rates"), list)]
    if rated:  # classification/error_rate.py
        low, high = index.calibration[rated[0]]["stop_model"]["rates"][:2]
        lines.append(f"\tReads' confidences ({', '.join(rated)}): read a run's error rate, told from its stops "
                     f"(fitted {100 * low:g}-{100 * high:g} %)")
    for name, digest in m.get("sha256", {}).items():
        lines.append(f"\t{name}: sha256 {digest}")
    return "\n".join(lines)
