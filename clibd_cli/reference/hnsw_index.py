"""The reference index directory: embeddings of labelled reference records, searchable.

Layout (this module owns it; README "Reference indexes and classification")::

    manifest.json     format version, clibd version, model fingerprint, modality, dim, metric,
                      HNSW parameters and seed, count, ranks, sha256 of every other file,
                      creation command line and time
    index.bin         hnswlib graph (space "ip": cosine similarity on L2-normalised vectors)
                      over the distinct vectors ("nodes")
    nodes.npy         int64 graph node of each record (numpy format, no pickle)
    records.tsv       the records and their labels (clibd_cli/reference/records.py)
    calibration.json  the confidence calibration per query kind (clibd_cli/classification/calibration.py)
    sketch.npy        barcode indexes: the k-mer sketch that orients barcodes and flags off-target
                      queries (clibd_cli/reference/sketch.py; its parameters in the manifest's "sketch")
    protein_sketch.npy  barcode indexes of a marker that reads as protein: the translation sketch
                      (clibd_cli/reference/protein_sketch.py; its floors under "sketch" "protein")
    holdings.npy      barcode indexes of a learned model: the 5-mers each record holds, which
                      partial barcodes' species are read from (clibd_cli/reference/holdings.py)

The directory is written atomically (temporary sibling directory, then rename) and verified
against the manifest checksums on load (:mod:`clibd_cli.reference.index_reading`). Records with identical vectors share one graph node.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
from tqdm import tqdm

from clibd_cli import __version__
from clibd_cli.defaults import HNSW
from clibd_cli.reference.graph_nodes import assign_nodes, node_keys
from clibd_cli.reference.hnsw_file import stored_view, stored_whole
from clibd_cli.reference.holdings import save_holdings
from clibd_cli.reference.records import check_records, clean_labels, write_records
from clibd_cli.reference.search import BLOCK, exact_search
from clibd_cli.reference.sketch import Sketch, save_sketch
from models.errors import ClibdError
from models.files import atomic_path, cannot_write, sha256_file

FORMAT_VERSION = 1
INDEX_FILE, NODES_FILE, RECORDS_FILE = "index.bin", "nodes.npy", "records.tsv"
CALIBRATION_FILE, MANIFEST_FILE = "calibration.json", "manifest.json"


@dataclass
class ReferenceIndex:
    """Reference records (ids, per-rank labels) and their embeddings in an hnswlib graph.

    Records with the same embedding (identical barcodes are common: half of BOLD's) share one
    graph node: clusters of exact duplicates break HNSW's navigability. ``nodes[i]`` is the
    graph node of record ``i``.
    """

    graph: hnswlib.Index
    ids: list[str]
    labels: dict[str, list[str | None]]  # rank -> label per record, ranks coarse to fine
    nodes: np.ndarray  # [N] int64 graph node per record
    manifest: dict
    calibration: dict | None = None
    path: Path | None = None
    sketch: Sketch | None = None
    holdings: np.ndarray | None = None  # [N, 128] uint8: each record's 5-mers (reference/holdings.py)
    _node_vectors: np.ndarray | None = field(default=None, repr=False)
    _view: tuple | None = field(default=None, repr=False)  # (node count, vector_view's mapping or None)
    _grouped: tuple | None = field(default=None, repr=False)  # (record count, node_records())

    @property
    def ranks(self) -> list[str]:
        return list(self.labels)

    def __len__(self) -> int:
        return len(self.ids)

    def node_vectors(self) -> np.ndarray:
        """The distinct reference vectors ``[nodes, D]`` float32 (read once, then cached)."""
        n = self.graph.get_current_count()
        if self._node_vectors is None or len(self._node_vectors) != n:
            mapped = self._mapped()
            self._node_vectors = np.ascontiguousarray(mapped[0][mapped[1]]) if mapped else np.ascontiguousarray(
                self.graph.get_items(np.arange(n), return_type="numpy"), dtype=np.float32)
        return self._node_vectors

    def vector_view(self) -> tuple[np.ndarray, np.ndarray]:
        """``(view, element)``: node ``i``'s vector is ``view[element[i]]``, mapped from ``index.bin``
        (no copy in memory; ``hnsw_file.stored_view``), else :meth:`node_vectors` and ``arange``."""
        return self._mapped() or (self.node_vectors(), np.arange(self.graph.get_current_count()))

    def _mapped(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``index.bin``'s vectors as :meth:`vector_view` gives them, mapped once per node count (at
        load: the file read with the rest, not one that replaced it since), or None."""
        n = self.graph.get_current_count()
        if self._view is None or self._view[0] != n:
            found = stored_view(self.path / INDEX_FILE, self.manifest["dim"]) if self.path else None
            self._view = (n, found if found is not None and len(found[1]) == n else None)
        return self._view[1]

    def node_records(self) -> tuple[np.ndarray, np.ndarray]:
        """``(members, starts)``: node ``i`` holds records ``members[starts[i]:starts[i + 1]]``, in
        record order (grouped once per record count, not per search)."""
        if self._grouped is None or self._grouped[0] != len(self.nodes):
            size = np.bincount(self.nodes, minlength=self.graph.get_current_count())
            self._grouped = (len(self.nodes), (np.argsort(self.nodes, kind="stable"),
                                               np.concatenate([[0], np.cumsum(size)])))
        return self._grouped[1]

    def vectors(self) -> np.ndarray:
        """The vector of every record ``[N, D]`` float32."""
        return self.node_vectors()[self.nodes]

    def search(
        self, queries: np.ndarray, k: int, *, exact: bool = False, ef: int | None = None,
        threads: int = -1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar records per query: ``(rows [Q,k] int64, sims [Q,k] float32)``.

        Rows index :attr:`ids`; similarities are descending (records sharing a vector in
        record order). ``k`` is clamped to the reference size. ``exact`` uses brute force
        (blocked matmul) instead of the HNSW graph.
        """
        queries = _as_vectors(queries, self.manifest["dim"], "queries")
        k = max(1, min(int(k), len(self)))
        n_nodes = self.graph.get_current_count()
        kn = min(k, n_nodes)  # k nodes always hold at least k records
        if exact:
            return self._expand(*exact_search(self.node_vectors(), queries, kn), k)
        ef = max(ef or self.manifest["hnsw"]["ef"], kn)
        while True:
            self.graph.set_ef(ef)
            try:
                found, dist = self.graph.knn_query(queries, k=kn, num_threads=threads)
                return self._expand(found.astype(np.int64), (1.0 - dist).astype(np.float32), k)
            except RuntimeError:  # "cannot return k results": graph too sparse for this ef
                if ef >= n_nodes:
                    return self._expand(*exact_search(self.node_vectors(), queries, kn), k)
                ef = min(ef * 4, n_nodes)

    def _expand(self, found: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Node hits ``[Q, kn]`` -> the first ``k`` records they hold, ``[Q, k]``."""
        members, starts = self.node_records()
        first, size = starts[:-1], np.diff(starts)
        ends = np.cumsum(size[found], axis=1)  # [Q, kn] records held up to each hit
        n_q, kn = found.shape
        shift = ends[:, -1:].max(initial=0) + 1  # offset rows apart to search them in one go
        rank = np.arange(k)[None, :] + shift * np.arange(n_q)[:, None]
        hit = np.searchsorted((ends + shift * np.arange(n_q)[:, None]).ravel(), rank.ravel(),
                              side="right").reshape(n_q, k) - kn * np.arange(n_q)[:, None]
        node = np.take_along_axis(found, hit, axis=1)
        within = np.arange(k)[None, :] - (np.take_along_axis(ends, hit, axis=1) - size[node])
        return members[first[node] + within], np.take_along_axis(sims, hit, axis=1)

    def check_model(self, fingerprint: str, name: str | None = None) -> None:
        """Refuse to use this index with a model other than the one that built it (``name``: the
        model as the user gave it, for the message)."""
        built = self.manifest["model_fingerprint"]
        if fingerprint != built:
            where = f"{self.path}: " if self.path else ""

            def model(label: str | None, print_: str) -> str:
                # a trained model's digest is cut to 12 digits; a named one (kmer-profile-k5-sqrt) kept whole
                shown = print_[:12] if re.fullmatch(r"[0-9a-f]{13,}", print_) else print_
                return f"{label} (fingerprint {shown})" if label else shown

            if name is not None and name == self.manifest.get("model"):  # the folder, retrained since
                raise ClibdError(f"{where}index was built with model {model(name, built)}, and that folder "
                                 f"now holds another one (fingerprint {model(None, fingerprint)}): trained "
                                 "again since; rebuild the index with clibd index")
            raise ClibdError(
                f"{where}index was built with model {model(self.manifest.get('model'), built)} but the "
                f"model given is {model(name, fingerprint)}; use that model or rebuild with clibd index"
            )

    def check_new_ids(self, ids: Sequence[str]) -> None:
        """ClibdError unless ``ids`` are new to the index and unique (what :meth:`append` takes;
        ``clibd index --append`` asks before it embeds them, naming where they are:
        ``reference.sources.refuse_indexed``)."""
        present, seen = set(self.ids), set()
        repeated = [i for i in ids if i in present or i in seen or seen.add(i)]
        if repeated:
            raise ClibdError(f"append: record ids must be new and unique; {', '.join(repeated[:5])}"
                             f"{' …' if len(repeated) > 5 else ''} {'is' if len(repeated) == 1 else 'are'} "
                             "already in the index or repeated; rename or drop them")

    def append(
        self, vectors: np.ndarray, ids: Sequence[str], labels: Mapping[str, Sequence[str | None]],
        command: str = "", holdings: np.ndarray | None = None,
    ) -> None:
        """Add records in place (the graph grows; nothing is rebuilt), with their ``holdings`` if
        the index keeps them. Save to persist."""
        vectors = _as_vectors(vectors, self.manifest["dim"], "vectors")
        if (self.holdings is None) != (holdings is None) or (holdings is not None and len(holdings) != len(vectors)):
            raise ValueError("appended records need their 5-mer holdings exactly when the index keeps them")
        check_records(ids, labels, len(vectors), self.ranks)
        self.check_new_ids(ids)
        known = node_keys(self.node_vectors())
        n_nodes = len(known)
        nodes, fresh = assign_nodes(vectors, known)
        if len(fresh):
            self.graph.resize_index(n_nodes + len(fresh))
            self.graph.add_items(vectors[fresh], np.arange(n_nodes, n_nodes + len(fresh)),
                                 num_threads=1)
        self.nodes = np.concatenate([self.nodes, nodes])
        if holdings is not None:
            self.holdings = np.concatenate([self.holdings, holdings])
        self.ids.extend(ids)
        for rank in self.ranks:
            self.labels[rank].extend(clean_labels(labels.get(rank, [None] * len(ids))))
        self.manifest["count"], self.manifest["nodes"] = len(self), len(known)
        self.manifest.setdefault("appended", []).append(
            {"count": len(ids), "command": command, "created": _now()}
        )

    def save(self, path: str | Path) -> None:
        """Write the index directory atomically (replacing an existing one at ``path``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, directory=True) as tmp:
            self.graph.save_index(str(tmp / INDEX_FILE))
            if not stored_whole(tmp / INDEX_FILE):  # hnswlib does not check its writes
                raise cannot_write(path, f"{INDEX_FILE} cut short: no space left on the disk?")
            np.save(tmp / NODES_FILE, self.nodes, allow_pickle=False)
            with open(tmp / RECORDS_FILE, "w", encoding="utf-8", newline="\n") as f:
                write_records(f, self.ids, self.labels)
            files = [INDEX_FILE, NODES_FILE, RECORDS_FILE]
            if self.calibration is not None:
                (tmp / CALIBRATION_FILE).write_text(json.dumps(self.calibration, indent=1) + "\n")
                files.append(CALIBRATION_FILE)
            if self.sketch is not None:
                files += save_sketch(self.sketch, tmp)
            files += save_holdings(self.holdings, tmp)
            self.manifest["sha256"] = {name: sha256_file(tmp / name) for name in files}
            (tmp / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2) + "\n")
        self.path = path


def build_index(
    vectors: np.ndarray,
    ids: Sequence[str],
    labels: Mapping[str, Sequence[str | None]],
    *,
    model_fingerprint: str,
    modality: str,
    M: int = HNSW.M,
    ef_construction: int = HNSW.ef_construction,
    ef: int = HNSW.ef,
    seed: int = 0,
    threads: int = 1,
    command: str = "",
    progress: bool = False,
) -> ReferenceIndex:
    """Build an in-memory index from L2-normalised float32 vectors (save it with ``.save``).

    ``labels`` maps rank (coarse to fine) to one label or ``None`` per record. With
    ``threads=1`` the graph is deterministic for a given ``seed``. ``progress`` shows a bar
    while the graph grows.
    """
    vectors = _as_vectors(vectors, None, "vectors")
    if len(vectors) == 0:
        raise ClibdError("cannot build an index without reference records")
    check_records(ids, labels, len(vectors), list(labels))
    if len(set(ids)) != len(ids):
        raise ClibdError("reference record ids must be unique")
    nodes, fresh = assign_nodes(vectors, {})
    # Insert in random order: references sorted by taxon make a much worse graph.
    order = np.random.default_rng(seed).permutation(len(fresh))
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    nodes, fresh = relabel[nodes], fresh[order]
    graph = hnswlib.Index(space="ip", dim=vectors.shape[1])
    graph.init_index(len(fresh), M=M, ef_construction=ef_construction, random_seed=seed)
    with tqdm(total=len(fresh), unit=" nodes", disable=not progress, leave=False, desc="HNSW graph") as bar:
        for start in range(0, len(fresh), BLOCK * 4):  # inserting in blocks gives the same graph
            block = fresh[start : start + BLOCK * 4]
            graph.add_items(vectors[block], np.arange(start, start + len(block)), num_threads=threads)
            bar.update(len(block))
    manifest = {
        "format_version": FORMAT_VERSION,
        "clibd_version": __version__,
        "model_fingerprint": model_fingerprint,
        "modality": modality,
        "dim": int(vectors.shape[1]),
        "metric": "cosine",
        "hnsw": {"space": "ip", "M": M, "ef_construction": ef_construction, "ef": ef, "seed": seed},
        "count": len(vectors),
        "nodes": len(fresh),
        "ranks": list(labels),
        "command": command,
        "created": _now(),
    }
    labels = {r: clean_labels(v) for r, v in labels.items()}
    return ReferenceIndex(graph, list(ids), labels, nodes, manifest,
                          _node_vectors=vectors[fresh])


def _as_vectors(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"[N, {dim}]" if dim is not None else "[N, D]"
        raise ClibdError(f"{what}: expected a {want} array, got shape {list(x.shape)}")
    return x


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
