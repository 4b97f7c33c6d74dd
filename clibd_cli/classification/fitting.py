"""Fitting the confidence calibration (``clibd_cli/classification/calibration.py``).

On the reference itself (:func:`fit_calibration`: its records as seen, unseen-species,
unseen-genus and unseen-family pseudo-queries) or on labelled held-out queries (:func:`fit_calibration_held_out`):
per rank, the vote temperatures, then a logistic map of the features refined by isotonic
regression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from clibd_cli.classification.barcode_gap import NEIGHBOURS, RankGaps, fit_gaps
from clibd_cli.classification.batch_prior import HELD_OUT_SCENARIOS, SCENARIOS, fit_scenario_model
from clibd_cli.classification.calibration import (Calibration, containment_part, part_only, query_columns,
                                                  rank_similarities, search_part)
from clibd_cli.classification.contained import records_counter, search_held_whole
from clibd_cli.classification.decision import Neighbours
from clibd_cli.classification.probability_map import fit_logistic, refined
from clibd_cli.classification.pseudo_queries import Nodes, Reading, search_pseudo_queries
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.defaults import CALIBRATION
from models.errors import ClibdError

# Ridge of the feature -> probability maps (``probability_map.fit_logistic``, the best refined). Maps fitted on held-out
# queries get a stronger one: a few thousand queries, few of them wrong at the coarse ranks, separate
# almost perfectly, and nearly unpenalised a map's coefficients can turn round (with 1e-2 the map of
# seen partial barcodes read an exact match as unsure: order confidence 0.6, or 0). Of 1, 10 and
# 100, which all mend that on BOLD's batches, 1 is the least and cost less than 10 on a small
# held-out set (the 150-base stretches of tests/test_partial_barcodes.py; 100 not tried there).
# benchmarks/README.md, *kmer-aa*, held-out calibration.
# A reference too small to fill the pseudo-query sample is in the held-out queries' case: 180
# records of 60 species, two seen pseudo-queries wrong, and at 1e-2 the species map read its own
# records, similarity 1, as new species (tests/test_kmer_mode.py). So its maps get the stronger one.
MAP_RIDGE = 1e-2  # maps fitted on the reference's pseudo-queries
HELD_OUT_RIDGE = 1.0  # maps fitted on held-out queries, or on a small reference's pseudo-queries


def fit_calibration(
    index, *, query_vectors: np.ndarray | None = None, query_rows: np.ndarray | None = None,
    query_bases: np.ndarray | None = None, k: int = CALIBRATION.neighbours,
    n_queries: int = CALIBRATION.pseudo_queries,
    prior_unseen: float | None = None,
    unseen_genus_fraction: float = CALIBRATION.unseen_genus_fraction, seed: int = 0,
    barcode_gaps: bool = False, gap_ranks: Sequence[str] = (),
    rank_parts: dict[str, list[int]] | None = None, species_weight: float = 1.0, sisters: int = 0,
    containment: Sequence[str] = (), containment_source: str = "vectors", query_profiles: np.ndarray | None = None,
    contained_search: bool = False, threads: int = 1, query_rates: np.ndarray | None = None,
    stop_model: dict | None = None, contained_slack: int = 0,
) -> Calibration:
    """Fit the confidence calibration on a :class:`~clibd_cli.reference.hnsw_index.ReferenceIndex` itself.

    ``n_queries`` records drawn uniformly (``seed``) among those whose species has other
    records are searched exactly as seen queries (excluding only themselves), and
    ``n_queries`` drawn uniformly over species (each species is an equally good proxy for a
    new one, whatever its sampling effort; ``species_weight`` P draws a record with probability
    proportional to its species' records^-P, 1 by default) as unseen-species and unseen-genus queries.
    ``prior_unseen`` fixes the share of queries whose species is absent from the reference
    (None: estimated per run, see ``batch_prior.py``) and ``unseen_genus_fraction``
    the share of those whose genus is absent too, when fixed; the decision rule is fitted at
    0.5 and 0.1 either way. Vote temperatures are picked from ``CALIBRATION.taus`` (see
    :func:`_fit_ranks`). For queries of another modality, ``query_vectors[i]`` is record ``i`` seen
    that way (e.g. the photo of the specimen whose barcode is record ``i``); all-zero rows (no
    photo) are not sampled. With
    ``query_rows``, ``query_vectors[j]`` is record ``query_rows[j]`` and only those are sampled;
    with ``query_bases`` (the unambiguous bases of each query vector's barcode) the maps also read
    the query's length (``by_length``: partial barcodes); with ``query_rates`` (the errors per base each
    was copied with, ``read_errors.PARTIAL_RATES``) its log rate too, told at run time by ``stop_model``
    (``error_rate.py``; ``by_rate``: partial reads).
    With ``barcode_gaps`` the maps also read the winner's label's barcode gap (``barcode_gap.py``;
    measured on the reference's nearest neighbours, ``index.search``); without it, the maps of the ranks in
    ``gap_ranks`` alone read it (the others read it as 0): ``--model kmer-aa``'s family, where the new-family
    pseudo-queries lie as near their winner as the new-genus ones, but farther than its genera from each
    other (BOLD without 30 of its families: a batch of their records had its family's ECE fall from 77 to 4
    points). ``rank_parts`` (rank ->
    ``[start, stop)``): those ranks read the similarity of that part of the vectors
    (``calibration.rank_similarities``; the ranks in ``containment`` by k-mer containment). With
    ``sisters`` N the unseen-species pseudo-queries also leave out the species of their nearest
    remaining record, N times over (harder: a new species whose closest relatives are missing from
    the reference too; not where that leaves none: a reference with no genus of three species); the
    scenario model reads them both ways, with those relatives left out and left in (``_fit_ranks``'s
    ``stand_in``): a batch's new species mostly keep theirs, and read the harder way alone its new
    genera looked like new species, EM putting next to none of it on new genera
    (``benchmarks/new_species_batches.py``).
    With ``containment_source`` "holdings" containment is read from the index's holdings and
    ``query_profiles`` (the query vectors' barcodes' square-root 5-mer profiles; records queried
    as themselves read their own holdings); with ``contained_search`` too, a query held whole by a
    record (all its 5-mers but ``contained_slack``) is searched by its 5-mers (``contained.py``).
    ``threads``: the pseudo-queries' nearest records are picked on that many threads
    (``search.smallest_k``; the same calibration).
    """
    rank_parts, containment = dict(rank_parts or {}), sorted(containment)
    if (query_bases is not None or query_rates is not None) and query_vectors is None:
        raise ValueError("query_bases and query_rates are those of query_vectors: give both")
    if (query_rates is None) != (stop_model is None):
        raise ValueError("maps that read the run's error rate need the stop model that tells it: give both")
    if set(containment) - set(rank_parts):
        raise ValueError("a rank read by k-mer containment needs a part of the vectors (rank_parts)")
    holdings = None
    if contained_search and not containment:
        raise ValueError("partial barcodes are searched by their 5-mers only where a rank reads their containment")
    if containment_source == "holdings":
        if index.holdings is None or (query_vectors is not None and query_profiles is None):
            raise ValueError("containment read from holdings needs the index's and the queries' 5-mers")
        holdings = (query_profiles, index.holdings)
    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    nodes = Nodes(index.node_vectors(), index.nodes)  # not a per-record copy: 1 GB at 1M references
    n = len(nodes.of_record)
    bases = rates = None  # of every record, where queried
    if query_vectors is None:
        source = None
        usable = np.flatnonzero((np.einsum("ij,ij->i", nodes.vectors, nodes.vectors) > 0)[nodes.of_record])
    else:
        vectors = np.asarray(query_vectors, dtype=np.float32)
        at = np.arange(n) if query_rows is None else np.asarray(query_rows, dtype=np.int64)
        if vectors.shape != (len(at), nodes.vectors.shape[1]) or (len(at) and not 0 <= at.min() <= at.max() < n):
            raise ClibdError(f"query vectors {list(vectors.shape)} do not match the reference "
                             f"{[n, nodes.vectors.shape[1]]}")
        position = np.full(n, -1)
        position[at] = np.arange(len(at))
        source = (vectors, position)
        usable = np.sort(at[np.einsum("ij,ij->i", vectors, vectors) > 0])
        if query_bases is not None:
            bases = np.zeros(n)
            bases[at] = query_bases
        if query_rates is not None:
            rates = np.ones(n)
            rates[at] = query_rates
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(nodes.of_record) - 1))
    ranks = reference.ranks[::-1]  # finest first
    finest = reference.codes[ranks[0]]
    records_of = np.bincount(finest[finest >= 0], minlength=len(reference.names[ranks[0]]) + 1)
    kept = usable[(finest[usable] < 0) | (records_of[np.maximum(finest[usable], 0)] > 1)]
    seen = rng.choice(kept, min(n_queries, len(kept)), replace=False)
    labelled = usable[finest[usable] >= 0]
    unseen = labelled
    if len(labelled) > n_queries:
        rarity = 1.0 / np.bincount(finest[labelled])[finest[labelled]] ** species_weight
        unseen = rng.choice(labelled, n_queries, replace=False, p=rarity / rarity.sum())
    unseen_plans = [(ranks[i], ranks[i + 1] if i + 1 < len(ranks) else None)
                    for i in range(min(len(SCENARIOS) - 1, len(ranks)))]
    read = Reading(rank_parts, containment, holdings, contained_search, contained_slack)
    found = (search_pseudo_queries(source, nodes, seen, reference, k, [(None, None)], read, threads=threads)
             + search_pseudo_queries(source, nodes, unseen, reference, k, unseen_plans, read, sisters, threads))
    if sisters and unseen_plans and not len(found[1][0]):  # no genus of three species: better their sister
        sisters = 0  # left in than no new species at all (every query then assumed known)
        found = found[:1] + search_pseudo_queries(source, nodes, unseen, reference, k, unseen_plans, read, 0, threads)
    # a scenario the reference cannot stage (e.g. no genus of two species) is left out
    kept = [(name, found_, share, left_out) for name, found_, share, left_out
            in zip(SCENARIOS, found, (0.5, 0.4, 0.05, 0.05), [None, *ranks]) if name == "seen" or len(found_[0])]
    names = [name for name, *_ in kept]
    stand_in = None  # the scenario model's new species also as they keep their sister species (fit_calibration)
    if sisters and "unseen_species" in names:
        stand_in = names.index("unseen_species")
        kept.append(("", search_pseudo_queries(source, nodes, unseen, reference, k, unseen_plans[:1], read, 0,
                                               threads)[0], 0.0, ranks[0]))
    scenarios = [({r: reference.codes[r][queries] for r in reference.ranks}, rows, sims, share, left_out)
                 for _, (queries, rows, sims, _), share, left_out in kept]
    by_rank = [found_[3] for _, found_, *_ in kept]
    gaps = None
    gap_at = reference.ranks if barcode_gaps else [rank for rank in reference.ranks if rank in gap_ranks]
    if gap_at and len(nodes.of_record) > 1:
        gaps = {rank: fit for rank, fit in reference_gaps(index, reference, rank_parts, containment,
                                                          containment_source).items() if rank in gap_at}
    own = None if bases is None and rates is None else [
        query_columns(None if bases is None else bases[queries], None if rates is None else rates[queries])
        for _, (queries, *_), *_ in kept]
    ridge = MAP_RIDGE if len(seen) >= n_queries else HELD_OUT_RIDGE  # a small reference's: few, separable
    fitted, model = _fit_ranks(scenarios, reference, k, gaps=gaps, own=own, rank_sims=by_rank, ridge=ridge,
                               stand_in=stand_in)
    return Calibration(
        k, prior_unseen, unseen_genus_fraction, fitted,
        {"pseudo_queries": [len(s[1]) for s in scenarios[:len(names)]], "seed": seed,
         "references": len(nodes.of_record), **({"sisters": sisters} if sisters else {}),
         **({"species_weight": species_weight} if species_weight != 1.0 else {})},
        names, model, gaps and {rank: g.to_json() for rank, g in gaps.items()},
        query_bases is not None, rank_parts, containment, containment_source, contained_search,
        contained_slack, stop_model=stop_model,
    )


def reference_gaps(index, reference: ReferenceTaxonomy, rank_parts: dict[str, list[int]] | None = None,
                   containment: Sequence[str] = (), containment_source: str = "vectors") -> dict[str, RankGaps]:
    """The barcode gaps of ``index``'s labels (``barcode_gap.fit_gaps``), read as ``rank_parts``,
    ``containment`` and ``containment_source`` read each rank, from each record's ``NEIGHBOURS``
    nearest records."""
    vectors = index.vectors()
    near, sims = index.search(vectors, min(NEIGHBOURS + 1, len(vectors)))
    held = (index.holdings, index.holdings, near) if containment_source == "holdings" else None
    return fit_gaps(reference, near, sims, rank_similarities(rank_parts, vectors, vectors, near,
                                                             containment=containment, holdings=held))


ABSENT = np.iinfo(np.int64).max  # truth code of a label the reference lacks: never a winner


def fit_calibration_held_out(
    index, query_vectors: np.ndarray, query_labels: Mapping[str, Sequence[str | None]],
    decisions: Calibration, *, prior_unseen: float | None = None, query_bases: np.ndarray | None = None,
    query_profiles: np.ndarray | None = None, query_rates: np.ndarray | None = None,
) -> Calibration:
    """Refit the confidences of ``decisions`` on labelled held-out queries searched in ``index``.

    The decision rule (neighbour count, vote temperatures) stays that of ``decisions``, fitted
    on the reference's many pseudo-queries; only the feature -> probability maps are fitted on
    the real queries. Only queries labelled at the finest rank are used: one whose label there
    is not in the reference is *unseen* (its answer at that rank is wrong by definition), the
    others *seen*; both kinds are needed, and get one map each (scenarios ``seen``, ``unseen``).
    ``prior_unseen`` fixes the share of unseen queries (None: estimated per run). Search is exact.
    ``query_bases`` (each query's unambiguous bases) are needed if ``decisions`` is ``by_length``,
    ``query_rates`` (the errors per base each was copied with) if it is ``by_rate``,
    ``query_profiles`` (their barcodes' square-root 5-mer profiles) if it reads the index's holdings.
    """
    from clibd_cli.reference.search import exact_search

    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    vectors = index.vectors()
    queries = np.asarray(query_vectors, dtype=np.float32).reshape(-1, vectors.shape[1])
    truth = {}
    for rank in reference.ranks:
        lookup = {name: code for code, name in enumerate(reference.names[rank])}
        truth[rank] = np.array([-1 if v is None else lookup.get(v, ABSENT) for v in query_labels[rank]],
                               dtype=np.int64)
    finest = reference.ranks[-1]
    labelled = truth[finest] != -1
    unseen = truth[finest][labelled] == ABSENT
    if unseen.all() or not unseen.any():
        raise ClibdError(
            f"the held-out queries must include both {finest} in the reference and {finest} absent from it "
            f"to calibrate (usable queries labelled at {finest}: {int((~unseen).sum())} in the reference, "
            f"{int(unseen.sum())} absent; check that their names are spelled as the reference's)")
    truth = {rank: t[labelled] for rank, t in truth.items()}
    k = decisions.k
    searched = part_only(queries[labelled], search_part(decisions.rank_parts, reference.ranks))
    rows, sims = exact_search(vectors, searched, k)
    held = profiles = None
    if decisions.containment_source == "holdings":
        if query_profiles is None or index.holdings is None:
            raise ValueError("a calibration reading holdings needs the index's and the held-out queries' 5-mers")
        profiles = np.asarray(query_profiles)[labelled]
    if decisions.contained_search:  # by 5-mer profiles, or by a model-free index's vectors' 5-mer part
        five_mers = containment_part(decisions.rank_parts, decisions.containment)
        mers = queries[labelled][:, five_mers[0]:five_mers[1]] if profiles is None else profiles
        rows, sims = _contained(searched, mers, vectors, index.holdings, rows, sims, five_mers,
                                decisions.contained_slack)
    if profiles is not None:
        held = (profiles, index.holdings, rows)
    by_rank = rank_similarities(decisions.rank_parts, queries[labelled], vectors, rows,
                                containment=decisions.containment, holdings=held)
    mix = float(unseen.mean())
    groups = (~unseen, unseen)
    scenarios = [({r: t[group] for r, t in truth.items()}, rows[group], sims[group], share, None)
                 for group, share in zip(groups, (0.5, 0.5))]
    above = reference.ranks[-2] if len(reference.ranks) > 1 else None
    new_above = float((truth[above][unseen] == ABSENT).mean()) if above else 0.0
    vote_taus = {rank: fit["tau_vote"] for rank, fit in decisions.ranks.items()}
    if decisions.by_length and query_bases is None:
        raise ValueError("a calibration by length needs the held-out queries' bases")
    if decisions.by_rate and query_rates is None:
        raise ValueError("a calibration by error rate needs the held-out queries' rates")
    own = query_columns(None if not decisions.by_length else np.asarray(query_bases)[labelled],
                        None if not decisions.by_rate else np.asarray(query_rates)[labelled])
    own = None if own is None else [own[group] for group in groups]
    fitted, model = _fit_ranks(scenarios, reference, k, vote_taus, decisions.rank_gaps() or None, own,
                               [{r: x[group] for r, x in by_rank.items()} for group in groups], HELD_OUT_RIDGE)
    return Calibration(
        k, prior_unseen, new_above, fitted,
        {"held_out_queries": [int((~unseen).sum()), int(unseen.sum())], "held_out_unseen_share": mix,
         "references": len(vectors), "seed": decisions.fitted_on.get("seed", 0)},
        list(HELD_OUT_SCENARIOS), model, decisions.gaps, decisions.by_length, decisions.rank_parts,
        decisions.containment, decisions.containment_source, decisions.contained_search,
        decisions.contained_slack, stop_model=decisions.stop_model,
    )


def _contained(queries: np.ndarray, profiles: np.ndarray, vectors: np.ndarray, holdings: np.ndarray | None,
               rows: np.ndarray, sims: np.ndarray, five_mers: list[int], slack: int = 0,
               block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The held-out queries' neighbours ``rows``, ``sims`` (``queries``: as searched) with those held
    whole by a record (but ``slack`` 5-mers) searched by their 5-mer ``profiles`` instead
    (``contained.search_held_whole``), a block at a time; the records' 5-mers are the index's
    ``holdings`` or, where it keeps none, the part ``five_mers`` of its ``vectors`` (a model-free
    index's 5-mer profile)."""
    counter = records_counter(holdings, vectors, five_mers)
    return search_held_whole(counter, profiles, queries, vectors, rows, sims, block=block, slack=slack)[:2]


def _fit_ranks(
    scenarios: list, reference: ReferenceTaxonomy, k: int,
    vote_taus: Mapping[str, float] | None = None, gaps: dict[str, RankGaps] | None = None,
    own: list[np.ndarray] | None = None, rank_sims: list[dict[str, np.ndarray]] | None = None,
    ridge: float = MAP_RIDGE, stand_in: int | None = None,
) -> tuple[dict[str, dict], dict]:
    """Per rank, top-down: the vote temperature (of ``CALIBRATION.taus``) that makes the most
    correct winners at the scenarios' shares (unless given in ``vote_taus``), the vote-share
    temperature whose per-scenario logistic maps have the least log-loss, and those maps refined by isotonic
    regression; then the scenario model on every rank's features (with the ranks' barcode
    ``gaps``, five of them; then each scenario's queries' ``own`` features, ``calibration.query_columns``:
    their log length, their log error rate). A scenario is ``(truth codes by rank, rows, sims, share,
    the rank whose taxon its queries left out of the reference or None)``; ``rank_sims``, per scenario, the similarities
    of the ranks read from a part of the vectors; ``ridge``: the maps' ridge (``l2`` of
    ``probability_map.fit_logistic``, the best refined). With ``stand_in`` S, the last scenario (share 0: no
    map, no vote) is read by the scenario model as scenario S too, beside S's own queries.
    Returns the ranks' fits and the scenario model (JSON)."""
    rank_sims = rank_sims or [{} for _ in scenarios]
    mapped = len(scenarios) - (stand_in is not None)
    views = [Neighbours(rows[:, :k], sims[:, :k], {r: x[:, :k] for r, x in by_rank.items()})
             for (_, rows, sims, *_), by_rank in zip(scenarios, rank_sims)]
    above: list[np.ndarray | None] = [None] * len(scenarios)
    fitted, stacked = {}, [[] for _ in scenarios]
    for rank in reference.ranks:
        votes = [view.at_rank(reference, rank, up) for view, up in zip(views, above)]
        truth = [codes[rank] for codes, *_ in scenarios]
        weight = [np.where((t >= 0) & v.valid.any(axis=1), share / max(len(t), 1), 0.0)
                  for t, v, (*_, share, _) in zip(truth, votes, scenarios)]
        best = None
        # ascending: ties go to the sharper vote
        for tau in CALIBRATION.taus if vote_taus is None else [vote_taus[rank]]:
            picks = [v.pick(tau) for v in votes]
            hits = sum(float((w * (v.winner(p) == t)).sum())
                       for v, p, t, w in zip(votes, picks, truth, weight))
            if best is None or hits > best[0] + 1e-12:
                best = (hits, tau, picks)
        _, tau_vote, picks = best
        winners = [v.winner(p) for v, p in zip(votes, picks)]
        weight = [np.where(wn >= 0, w, 0.0) for wn, w in zip(winners, weight)]  # a rank left unknown is not scored
        right = [(wn == t).astype(float) for wn, t in zip(winners, truth)]
        excluded = [_left_out(reference, gaps[rank], wn, rank, left_out, codes) if gaps and rank in gaps else None
                    for wn, (codes, *_, left_out) in zip(winners, scenarios)]
        best = None
        for tau in CALIBRATION.taus:  # logistic maps at each; the isotonic step only for the best
            x = [v.features(p, tau, (gaps or {}).get(rank), ex, bool(gaps))
                 for v, p, ex in zip(votes, picks, excluded)]
            x = x if own is None else [np.hstack([xs, mine]) for xs, mine in zip(x, own)]
            fits = [fit_logistic(xs[w > 0], y[w > 0], w[w > 0], ridge)
                    for xs, y, w in zip(x[:mapped], right, weight)]
            loss = sum(f.pop("loss") for f in fits)
            if best is None or loss < best[0]:
                best = (loss, tau, fits, x)
        _, tau_share, fits, x = best
        maps = [refined(f, y[w > 0], w[w > 0]) for f, y, w in zip(fits, right, weight)]
        fitted[rank] = {"tau_vote": tau_vote, "tau_share": tau_share, "maps": maps}
        for out, xs in zip(stacked, x):
            out.append(xs)
        above = winners
    features = [np.concatenate(parts, axis=1) for parts in stacked]
    if stand_in is not None:
        features[stand_in] = np.concatenate([features[stand_in], features.pop()])
    model = fit_scenario_model(np.concatenate(features),
                               np.concatenate([np.full(len(f), s) for s, f in enumerate(features)]),
                               len(features))
    return fitted, model.to_json()


def _left_out(reference: ReferenceTaxonomy, gaps: RankGaps, winner: np.ndarray, rank: str,
              left_out: str | None, truth: dict[str, np.ndarray]) -> np.ndarray | None:
    """``[Q, OTHERS]``: which of each winner's nearest other labels lie in the taxon its
    pseudo-query left out of the reference (at rank ``left_out``; None: nothing left out)."""
    ranks = reference.ranks
    if left_out is None or ranks.index(rank) < ranks.index(left_out):
        return None
    up = np.arange(len(reference.names[rank]) + 1)
    up[-1] = -1
    for step in range(ranks.index(rank), ranks.index(left_out), -1):
        up = reference.parents[ranks[step]][up]
    others = gaps.others[np.maximum(winner, 0)]
    return (others >= 0) & (up[others] == truth[left_out][:, None])
