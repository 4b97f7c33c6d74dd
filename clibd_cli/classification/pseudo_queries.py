"""The reference's records searched as queries of the calibration (``fitting.fit_calibration``).

Each sampled record (or its stretch, photo or copy with errors: ``source``) is searched exactly
against every other record, once per plan: as a seen query (only itself left out) and as a query
of a new species, genus or family (its taxon left out). ``Reading`` says what the ranks read
besides the vectors' cosine, and whether partial barcodes held whole by a record are searched by
their 5-mers (``contained.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from clibd_cli.classification.calibration import containment_part, part_only, rank_similarities, search_part
from clibd_cli.classification.contained import contained_neighbours, held_whole, kmer_bits, records_counter
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.reference.search import smallest_k

_SCORES_PER_CHUNK = 1 << 24  # query x reference scores at once: ~20 bytes each with masks and top-k (~0.3 GB)
_ROWS_PER_BLOCK = 64  # fewest rows a thread's chunk of pseudo-queries holds (at 1M references a chunk
# is 16 rows: split on two threads the build took 972 s, 913 s before; benchmarks/README.md, *Scaling*)


@dataclass
class Nodes:
    """The reference's distinct vectors ``[nodes, D]`` and each record's node ``[N]``."""

    vectors: np.ndarray
    of_record: np.ndarray


class Reading(NamedTuple):
    """What a calibration's ranks read besides the cosine of the whole vectors (``Calibration``)."""

    rank_parts: dict[str, list[int]]  # rank -> [start, stop) of the vectors it reads
    containment: Sequence[str]  # ranks read by k-mer containment
    holdings: tuple[np.ndarray | None, np.ndarray] | None = None  # queries' 5-mer profiles, the index's holdings
    contained: bool = False  # partial barcodes held whole by a record searched by their 5-mers (contained.py;
    # from holdings if given, else from the vectors' part read by containment: a model-free index's)
    slack: int = 0  # 5-mers of such a barcode a record may miss and hold it whole (contained.held_whole)


def search_pseudo_queries(
    source: tuple[np.ndarray, np.ndarray] | None, nodes: Nodes, sample: np.ndarray, reference: ReferenceTaxonomy,
    k: int, plans: list[tuple[str | None, str | None]], read: Reading, sisters: int = 0, threads: int = 1,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """Exact neighbours ``(queries, rows, sims, {rank: sims})`` of sampled records, one per plan
    (the last: the similarities of the ranks that read a part of the vectors, as ``read`` says,
    ``calibration.rank_similarities``; searched with that part alone when every rank reads the same
    one, ``calibration.search_part``; with ``read.contained``, a query held whole by a record left
    in is searched by its 5-mers, ``contained.contained_neighbours``).

    Record ``q`` queries as ``vectors[position[q]]`` for ``source = (vectors, position)`` (its
    own vector if ``source`` is None) against every reference record.

    A plan ``(rank, above)`` excludes every record sharing the query's label at ``rank``
    (unseen species / unseen genus), and the records of its ``above`` taxon not labelled at
    ``rank`` (BIOSCAN's pretrain records lack species: they may be of the query's species).
    The query is kept only if labelled at ``rank`` and its ``above`` taxon still has records
    left (a species of a monotypic genus simulates an unseen genus, not an unseen species).
    ``(None, None)`` excludes only the record itself (seen). With ``sisters`` N a plan at the finest
    rank also excludes the records of the label of the query's nearest remaining record, N times.
    """
    rank_parts, containment, holdings, contained, slack = read
    five_mers = None if holdings is not None or not contained else containment_part(rank_parts, containment)
    counter = None
    if contained:  # of the distinct vectors' 5-mers where the index keeps none
        counter = records_counter(None if holdings is None else holdings[1], nodes.vectors, five_mers, nodes.of_record)
    part = search_part(rank_parts, reference.ranks)  # searched with that part alone (partial barcodes)
    lengths: dict = {}  # the references' part norms, for every chunk
    n = len(nodes.of_record)
    # the sample in one contiguous block per thread, each searched chunk by chunk on its own: the
    # same answers, in about half the time on two (the masks are numpy passes that let go of the GIL);
    # chunks shrink with the threads, so memory stays flat; one block where a thread's chunk would
    # be under _ROWS_PER_BLOCK rows (large references)
    step = int(np.clip(_SCORES_PER_CHUNK // max(n, 1), 8, 256))  # flat up to ~2M references
    blocks = np.array_split(np.sort(sample), max(1, min(threads, len(sample), step // _ROWS_PER_BLOCK)))
    step //= len(blocks)

    def search(block: np.ndarray) -> list[list]:
        found: list[list] = [[] for _ in plans]
        for start in range(0, len(block), step):
            queries = block[start : start + step]
            rows = nodes.vectors[nodes.of_record[queries]] if source is None else source[0][source[1][queries]]
            node_scores = _scores(part_only(rows, part), nodes.vectors)  # [Q, nodes]: a record's is its node's
            costs = -node_scores
            scores = None  # [Q, N], made only where the sister species are looked for
            profiles = None
            if holdings is not None:  # the queries' own holdings where they are the records themselves
                profiles = holdings[1][queries] if source is None else holdings[0][source[1][queries]]
            if contained:
                bits = kmer_bits(profiles if five_mers is None else rows[:, five_mers[0]:five_mers[1]])
                shared = counter(bits)
            for (rank, above), out in zip(plans, found):
                if rank is None:
                    excluded, keep = np.arange(n)[None, :] == queries[:, None], queries >= 0
                else:
                    code = reference.codes[rank]
                    excluded = code[None, :] == code[queries][:, None]
                    for _ in range(sisters if rank == reference.ranks[-1] else 0):
                        scores = node_scores[:, nodes.of_record] if scores is None else scores
                        nearest = code[np.argmax(np.where(excluded | (code < 0)[None, :], -np.inf, scores), axis=1)]
                        excluded |= code[None, :] == nearest[:, None]
                    keep = code[queries] >= 0
                    if above is not None:
                        up = reference.codes[above]
                        kin = up[None, :] == up[queries][:, None]
                        excluded |= kin & (code < 0)[None, :]  # unlabelled kin may be the same taxon
                        keep &= (kin & ~excluded).any(axis=1) & (up[queries] >= 0)
                whole = (held_whole(bits, shared, excluded, slack) if contained
                         else np.zeros(len(queries), dtype=bool))
                near, sims = np.zeros((len(queries), k), dtype=np.int64), np.zeros((len(queries), k), np.float32)
                rest = slice(None) if not whole.any() else ~whole  # the nearest vectors
                near[rest], sims[rest] = _nearest(costs[rest], nodes.of_record, excluded[rest], k,
                                                  threads if len(blocks) == 1 else 1)
                if whole.any():  # held whole by a record left in: by its 5-mers (contained.py)
                    mine = node_scores[whole][:, nodes.of_record]
                    near[whole], sims[whole] = contained_neighbours(shared[whole], lambda q, c: mine[q, c], k,
                                                                    excluded=excluded[whole])
                held = None if holdings is None else (profiles[keep], holdings[1], near[keep])
                by_rank = rank_similarities(rank_parts, rows[keep], nodes.vectors, nodes.of_record[near[keep]],
                                            lengths=lengths, containment=containment, holdings=held)
                out.append((queries[keep], near[keep], sims[keep], by_rank))
        return found

    if len(blocks) > 1:
        with ThreadPoolExecutor(len(blocks)) as pool:
            searched = list(pool.map(search, blocks))
    else:
        searched = [search(blocks[0])]
    empty = (np.zeros(0, np.int64), np.zeros((0, k), np.int64), np.zeros((0, k), np.float32),
             {rank: np.zeros((0, k)) for rank in rank_parts})
    found = [[empty, *(o for block in searched for o in block[plan])] for plan in range(len(plans))]
    return [(*(np.concatenate(parts) for parts in zip(*[o[:3] for o in out])),
             {rank: np.concatenate([o[3][rank] for o in out]) for rank in rank_parts}) for out in found]


def _nearest(costs: np.ndarray, of_record: np.ndarray, excluded: np.ndarray, k: int,
             threads: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest records ``(rows, sims)`` of each query by its negated similarities to the
    nodes ``costs`` ``[Q, nodes]``, the records ``excluded`` ``[Q, N]`` left out: ``search.smallest_k``
    of the records' negated similarities, +inf where excluded, made a block of rows at a time."""

    def records(part: slice) -> np.ndarray:
        block = costs[part][:, of_record]
        block[excluded[part]] = np.inf
        return block

    rows, found = smallest_k(records, excluded.shape, k, threads)
    return rows, -found


def _scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``queries @ vectors.T``, each row in the same bits in a chunk of any size (numpy multiplies a
    lone row another way, by gemv: it goes with a copy of itself)."""
    return (np.repeat(queries, 2, axis=0) @ vectors.T)[:1] if len(queries) == 1 else queries @ vectors.T
