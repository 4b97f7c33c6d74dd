"""Confidence calibration: the fitted feature -> probability maps, stored per query kind.

Confidence. For the winning label three features are computed: the distance ``1 - sim`` of the
nearest neighbour carrying it (log scale), its margin over the nearest neighbour carrying a
different label at that rank (or over the k-th neighbour if there is none: any other label lies
at least that far), and its vote share (temperature ``tau_share``); calibrations fitted with
held-out queries add two: the winner's similarity against its label's barcode gap
(``barcode_gap.py``; ``--model kmer-aa``'s fitted on pseudo-queries, at the family rank alone, the
other ranks reading them as 0: what tells a new family from a new genus, ``fitting.fit_calibration``); calibrations for partial barcodes add the query's log length (its
unambiguous bases: the shorter the stretch, the farther its species' records lie), and those for
reads with errors (``dna<500~``, ``dna~``) the run's log error rate per base too (``error_rate.py``: the more
errors, the farther). A rank may read
its similarities from a part of the vectors (``rank_parts``), by cosine or, for k-mer profiles, by
containment (``containment``: the partial barcodes of a barcode index at species, from the
vectors of a model-free index or, ``containment_source`` "holdings", from the 5-mers each record
of a learned model's index holds, ``clibd_cli/reference/holdings.py``; :func:`rank_similarities`;
and a partial barcode a record holds whole is searched by its 5-mers, ``contained_search``,
``contained.py``).
Vote shares alone would be
overconfident: ten neighbours of one species at 0.85 similarity vote 100% for it although the
query is most likely of a species missing from the reference. So the features are mapped to the
probability that the label is right by a per-rank logistic regression refined by isotonic
regression, fitted on the reference itself (``fit_calibration``): reference records serve
as pseudo-queries searched (a) as *seen* queries, excluding only the record itself, (b) as
*unseen-species* queries, excluding every record of their species (the species answer is then
wrong by definition), (c) as *unseen-genus* and (d) *unseen-family* queries, excluding their
whole genus or family. One map per rank and scenario is fitted, and a scenario model
``P(scenario | every rank's features)`` (``batch_prior.py``); a query's confidence at a rank
is the mixture of the scenario maps weighted by its scenario posterior at the batch's scenario shares, which are either fixed (``prior_unseen``, the share of queries whose
species is absent from the reference, of which ``unseen_genus_fraction`` are of new genera) or
estimated by EM from the batch itself. Both temperatures are fitted per rank, on a 0.5 mix.
Where labelled held-out queries are at hand (e.g. a dataset's ``val`` and ``val_unseen``
splits), the maps can be refitted on them (``fit_calibration_held_out``; scenarios
``seen`` and ``unseen``).
Finally a rank's confidence is capped by the rank above (a species
cannot be more certain than its genus; a label outside the parent picked above by ``1 -`` that
parent's confidence), so the labels passing a cutoff form an unbroken lineage from the top.

The maps are fitted in ``clibd_cli/classification/fitting.py``; this module owns their JSON form
(``calibration.json`` of an index, ``pack.json`` of a pack: ``{query kind: calibration}``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from clibd_cli.classification.barcode_gap import GAP_FEATURES, RankGaps
from clibd_cli.classification.batch_prior import ScenarioModel, adjust, estimate_shares
from clibd_cli.classification.error_rate import check_stop_model
from clibd_cli.classification.probability_map import apply_map, check_map
from clibd_cli.defaults import CALIBRATION
from clibd_cli.reference.holdings import unpacked
from models.errors import ClibdError

FEATURES = ("log_distance", "margin", "vote_share")
LENGTH_FEATURE = "log_bases"  # of partial-barcode calibrations: a stretch lies farther, the shorter it is
RATE_FEATURE = "log_error_rate"  # of reads' (dna<500~, dna~): the run's errors per base (error_rate.py)
FORMAT = "clibd-calibration/2"
SOURCES = ("vectors", "holdings")  # where ranks read by k-mer containment read it
READ_WITHIN = 4.0  # standard deviations of its fitted features a new-species map is read within (_within_reach)
_NORM_ROWS = 65_536  # reference rows whose part norms rank_similarities computes at once


@dataclass
class Calibration:
    """Fitted feature -> probability maps per rank and scenario (JSON-serialisable).

    A scenario is what the query is to the reference: of a species in it (``seen``), of a new
    species of a known genus, of a new genus (``batch_prior.SCENARIOS``; ``seen`` and
    ``unseen`` when fitted on held-out queries). A rank's confidence is the mixture of its
    per-scenario maps weighted by the query's scenario posterior at the batch's shares.
    """

    k: int  # neighbours the features look at
    prior_unseen: float | None  # share of queries from new species fixed at index time; None: auto
    unseen_genus_fraction: float  # share of those whose genus is new too, when the share is fixed
    ranks: dict[str, dict]  # rank -> {"tau_vote", "tau_share", "maps": [probability_map per scenario]}
    fitted_on: dict  # provenance: pseudo-query counts and seed, or held-out query counts
    scenarios: list[str] = field(default_factory=lambda: ["fixed"])
    scenario_model: dict | None = None  # batch_prior.ScenarioModel as JSON; None: one fixed mix
    gaps: dict | None = None  # rank -> barcode_gap.RankGaps as JSON; None: the three features only
    by_length: bool = False  # the maps also read the query's log unambiguous bases (partial barcodes)
    rank_parts: dict[str, list[int]] = field(default_factory=dict)  # rank -> [start, stop) of the vectors
    containment: list[str] = field(default_factory=list)  # ranks of rank_parts read by k-mer containment
    containment_source: str = "vectors"  # read from the vectors' part, or the index's "holdings"
    contained_search: bool = False  # partial barcodes a record holds whole searched by their 5-mers (contained.py)
    contained_slack: int = 0  # 5-mers of such a barcode a record may miss and hold it whole (dna<500~ since
    # session 29: contained.READ_SLACK)
    read_run: bool = False  # dna<500~ fitted on every partial copy with errors: a run of reads may send every
    # partial barcode here (query_kinds.read_run); before session 25, on those meeting a stop only
    stop_model: dict | None = None  # dna<500~ and dna~ since session 26: its maps read the run's error rate, told
    # from its stops by this model (error_rate.py)

    @property
    def by_rate(self) -> bool:
        """Whether the maps also read the run's error rate per base (``error_rate.run_rate``)."""
        return self.stop_model is not None

    def fitted_rate(self, rate: float | None) -> float | None:
        """A run's error ``rate`` within those the maps were fitted on (None unless they read it): the stop
        model that told it may span more (``dna<500~``'s 0.5-5 % against ``--calibrate-errors 0.01,0.02``)."""
        return float(np.clip(rate, *self.stop_model["rates"])) if self.by_rate and rate is not None else None

    @property
    def held_out(self) -> bool:
        """Whether the maps were fitted on held-out queries (else on the reference's pseudo-queries)."""
        return "held_out_queries" in self.fitted_on

    @property
    def seen_only(self) -> bool:
        """Whether the maps know queries of the reference's species alone: its reference had no
        taxon to leave out to stand for a new one (the share of new species is then moot)."""
        return self.scenarios == ["seen"]

    @property
    def adaptive(self) -> bool:
        """Whether the share of new species can be set per run (format 2; else fixed at index time)."""
        return self.scenario_model is not None

    @property
    def feature_names(self) -> list[str]:
        """The features each rank's maps read: ``FEATURES``, then the barcode-gap ones if fitted,
        then the query's length if ``by_length``, then the run's error rate if ``by_rate``."""
        return feature_names(bool(self.gaps), self.by_length, self.by_rate)

    def check(self) -> None:
        """ValueError (KeyError, TypeError, AttributeError) unless every rank has one map per
        scenario, each as ``probability_map.fit_map`` writes it for :attr:`feature_names`, and the
        stop model, if any, is as ``error_rate.fit_stop_model`` writes it."""
        width = len(self.feature_names)
        for fit in self.ranks.values():
            for params in fit["maps"]:
                check_map(params, width)
        if any(len(fit["maps"]) != len(self.scenarios) for fit in self.ranks.values()):
            raise ValueError("one map per scenario expected")
        if self.stop_model is not None:  # read by the Classifier at a run's first call
            check_stop_model(self.stop_model)

    def rank_gaps(self) -> dict[str, RankGaps]:
        """The barcode gaps per rank (empty without them)."""
        return {rank: RankGaps.from_json(data) for rank, data in (self.gaps or {}).items()}

    def to_json(self) -> dict:
        data = {"format": FORMAT, "features": self.feature_names, **self.__dict__}
        if self.containment_source == "vectors":  # as every calibration read before holdings
            del data["containment_source"]
        if not self.contained_search:  # as every calibration read before it
            del data["contained_search"]
        if not self.contained_slack:  # as every calibration read before it
            del data["contained_slack"]
        if not self.read_run:  # as every calibration read before it
            del data["read_run"]
        if self.stop_model is None:  # as every calibration read before it
            del data["stop_model"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        features = feature_names(bool(data.get("gaps")), data.get("by_length", False),
                                 data.get("stop_model") is not None)
        contained, parts = data.get("containment", []), data.get("rank_parts", {})
        slack = data.get("contained_slack", 0)  # of a contained search alone
        if (data.get("features") != features or data.get("format") not in (FORMAT, "clibd-calibration/1")
                or not isinstance(contained, list) or not all(rank in parts for rank in contained)
                or data.get("containment_source", "vectors") not in SOURCES
                or data.get("contained_search", False) not in (False, bool(contained))
                or type(slack) is not int or slack < 0 or (slack and not data.get("contained_search"))):
            raise ClibdError("unsupported calibration format; rebuild the index with clibd index")
        data = {k: v for k, v in data.items() if k not in ("format", "features")}
        if "scenarios" not in data:  # format 1: one map per rank, for the share fixed at index time
            data["ranks"] = {rank: {"tau_vote": fit["tau_vote"], "tau_share": fit["tau_share"],
                                    "maps": [{k: v for k, v in fit.items() if k not in ("tau_vote", "tau_share")}]}
                             for rank, fit in data["ranks"].items()}
        return cls(**data)

    def shares(self, prior_unseen: float | None = None) -> np.ndarray:
        """Scenario shares for a share ``prior_unseen`` of queries from new species (the one
        fixed at index time, else 0.5, if None)."""
        p = self.prior_unseen if prior_unseen is None else prior_unseen
        p = CALIBRATION.prior_unseen if p is None else p
        if len(self.scenarios) == 1:  # one pooled map, or a reference with no new species to stage
            return np.ones(1)
        g = self.unseen_genus_fraction
        # of new genera, a share g of new families too (at 0, EM could never raise it: a batch of new families
        # was taken for new genera, its wrong families named at 0.96); where no family of two genera let a
        # genus be left out, the new-family scenario stands for new genera
        genera, families = "unseen_genus" in self.scenarios, "unseen_family" in self.scenarios
        split = {"unseen": 1.0, "unseen_species": 1 - g, "unseen_genus": g * (1 - g) if families else g,
                 "unseen_family": g * g if genera else g}
        weights = np.array([split[name] for name in self.scenarios[1:]])  # the new-species scenarios fitted
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / len(weights))
        return np.concatenate([[1 - p], p * weights])

    def new_genus_share(self, shares: np.ndarray) -> float | None:
        """The share of queries from genera absent from the reference that ``shares`` mean (None:
        the calibration does not tell them apart)."""
        at = [i for i, name in enumerate(self.scenarios) if name in ("unseen_genus", "unseen_family")]
        return float(shares[at].sum()) if at else None

    def unseen_share(self, shares: np.ndarray) -> float:
        """The share of queries from species absent from the reference that ``shares`` mean."""
        if not self.adaptive:
            return CALIBRATION.prior_unseen if self.prior_unseen is None else self.prior_unseen
        return float(1.0 - shares[0])

    def posterior(self, stacked: np.ndarray, shares: np.ndarray) -> np.ndarray:
        """``[Q, S]`` scenario posteriors at ``shares`` of queries with every rank's features
        ``stacked`` ``[Q, ranks x features]``."""
        if not self.adaptive:
            return np.ones((len(stacked), 1))
        model = ScenarioModel.from_json(self.scenario_model)
        return adjust(model.posterior(stacked), np.asarray(model.training_shares), shares)

    def estimate_shares(self, stacked: np.ndarray, prior_unseen: float = CALIBRATION.prior_unseen) -> np.ndarray:
        """Scenario shares of a batch estimated by EM on its queries' ``stacked`` features,
        shrunk toward a share ``prior_unseen`` of new species (``batch_prior.py``)."""
        if not self.adaptive:
            return self.shares()
        model = ScenarioModel.from_json(self.scenario_model)
        return estimate_shares(model.posterior(stacked), np.asarray(model.training_shares), self.shares(prior_unseen))

    def probability(self, rank: str, features: np.ndarray, posterior: np.ndarray) -> np.ndarray:
        """Calibrated probability that the winning label at ``rank`` is right."""
        maps = self.ranks[rank]["maps"]
        return sum(posterior[:, s] * apply_map(m, _within_reach(m, features) if name.startswith("unseen") else features)
                   for s, (m, name) in enumerate(zip(maps, self.scenarios)))


def _within_reach(fit: dict, features: np.ndarray) -> np.ndarray:
    """``features`` as a new-species map reads them: those of a query closer to its winner than the
    map's queries came (log distance more than ``READ_WITHIN`` standard deviations below their mean:
    a reference record's exact copy lies 11 below) are moved to within ``READ_WITHIN`` of their mean. Its
    logistic fit says nothing there, and it extrapolated an exact copy's order confidence to 0
    (``--prior-unseen 1`` reads these maps only); farther queries are read as they are."""
    mean, scale = np.asarray(fit["mean"]), np.asarray(fit["scale"])
    z = (features - mean) / scale
    closer = z[:, 0] < -READ_WITHIN
    if not closer.any():
        return features
    features = features.copy()
    features[closer] = mean + np.clip(z[closer], -READ_WITHIN, READ_WITHIN) * scale
    return features


def rank_similarities(rank_parts: dict[str, list[int]], queries: np.ndarray, vectors: np.ndarray,
                      rows: np.ndarray, chunk: int = 1024,
                      lengths: dict[tuple[int, int], np.ndarray] | None = None,
                      containment: Collection[str] = (),
                      holdings: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``{rank: [Q, K]}`` cosine over the part of the vectors each rank of ``rank_parts`` reads
    (``Calibration.rank_parts``; e.g. the nucleotide profile of ``--model kmer-aa`` at species)
    between ``queries`` ``[Q, D]`` and their neighbours ``vectors[rows]`` (``rows`` ``[Q, K]``),
    or for the ranks in ``containment`` the k-mer containment over that part (:func:`_containment`);
    computed once per distinct part and measure. ``lengths``: a dict the caller keeps for calls on
    the same ``vectors``, where each part's norms are computed once. ``holdings``: where the
    vectors are not k-mer profiles (``containment_source`` "holdings"), containment is read from
    ``(the queries' square-root 5-mer profiles [Q, 4**5] or packed holdings [Q, 128] of records
    read as queries, the index's holdings [N, 128], the neighbours' record rows [Q, K])``
    (``clibd_cli/reference/holdings.py``)."""
    by_part: dict[tuple[int, int, bool], np.ndarray] = {}
    lengths = {} if lengths is None else lengths
    for start, stop, contained in {(*part, rank in containment) for rank, part in rank_parts.items()}:
        part = vectors[:, start:stop]
        sims = by_part[start, stop, contained] = np.zeros(rows.shape)
        if contained:
            step = max(1, chunk // 8)  # [step, K, part] neighbour profiles at once (float64)
            for at in range(0, len(rows), step):
                if holdings is None:
                    sims[at: at + step] = _containment(queries[at: at + step, start:stop], part[rows[at: at + step]])
                    continue
                profiles, held, records = holdings
                mine = profiles[at: at + step]
                mine = unpacked(mine) if mine.shape[1] == held.shape[1] else mine
                sims[at: at + step] = _containment(mine, unpacked(held[records[at: at + step]]))
            continue
        if (start, stop) not in lengths:  # in blocks: no temporary the size of the part (GBs at 1M references)
            lengths[start, stop] = np.concatenate([np.linalg.norm(part[i: i + _NORM_ROWS], axis=1)
                                                   for i in range(0, len(part), _NORM_ROWS)] or [np.zeros(0)])
        for at in range(0, len(rows), chunk):
            q, near = queries[at: at + chunk, start:stop], rows[at: at + chunk]
            norms = np.linalg.norm(q, axis=1)[:, None] * lengths[start, stop][near]
            sims[at: at + chunk] = np.einsum("qd,qkd->qk", q, part[near]) / np.maximum(norms, 1e-12)
    return {rank: by_part[(*part, rank in containment)] for rank, part in rank_parts.items()}


def _containment(queries: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``[Q, K]``: the share of each query's k-mers that its neighbour holds, from square-root
    scaled k-mer profiles (``embedding/kmer.py``: a profile's squares are its k-mer counts over
    their sum) ``queries`` ``[Q, D]`` and ``neighbours`` ``[Q, K, D]``. A stretch of a record's own
    barcode is contained whole (1.0) however short, where its cosine to the whole barcode falls
    with its length; each differing base takes up to k k-mers away. Summed in float64 and rounded
    to float32: the same share for the same k-mers held whatever other neighbours are read beside
    (``--report``; float32 sums varied with them), so records holding a query whole tie exactly."""
    counts = queries.astype(np.float64) ** 2
    counts /= np.maximum(counts.sum(axis=1, keepdims=True), 1e-300)
    return np.matmul((neighbours > 0).astype(np.float64), counts[:, :, None])[..., 0].astype(np.float32)


def search_part(rank_parts: dict[str, list[int]], ranks: list[str]) -> list[int] | None:
    """The part of the vectors a calibration also searches with: the one every rank reads, when
    they all read the same (partial barcodes of ``--model kmer-aa``: the 5-mers), else None."""
    parts = {tuple(rank_parts.get(rank, ())) for rank in ranks}
    return list(parts.pop()) if len(parts) == 1 and ranks and ranks[0] in rank_parts else None


def containment_part(rank_parts: dict[str, list[int]], containment: Collection[str]) -> list[int]:
    """The part of the vectors a calibration reads k-mer containment from (a model-free index's
    5-mer profile: where ``contained_search`` finds a partial barcode's records, ``contained.py``)."""
    parts = {tuple(rank_parts[rank]) for rank in containment}
    if len(parts) != 1:
        raise ValueError(f"one part of the vectors read by k-mer containment expected (the 5-mers a partial "
                         f"barcode is searched by), found {len(parts)}")
    return list(parts.pop())


def part_only(vectors: np.ndarray, part: list[int] | None) -> np.ndarray:
    """``vectors`` with every dimension outside ``part`` zeroed (all of them if None): searching
    with them ranks references by that part alone."""
    if part is None:
        return vectors
    out = np.zeros_like(vectors)
    out[:, part[0]:part[1]] = vectors[:, part[0]:part[1]]
    return out


def feature_names(gaps: bool, by_length: bool, by_rate: bool = False) -> list[str]:
    """A probability map's features in column order: ``FEATURES``, then the barcode gap's, the
    barcode length's and the run's error rate's where the calibration reads them."""
    return [*FEATURES, *(GAP_FEATURES if gaps else ()), *((LENGTH_FEATURE,) if by_length else ()),
            *((RATE_FEATURE,) if by_rate else ())]


def query_columns(bases: np.ndarray | None, rates: np.ndarray | None) -> np.ndarray | None:
    """``[Q, 0-2]`` the features the maps read of the query itself, after the neighbours': its log
    unambiguous ``bases`` (``LENGTH_FEATURE``) and its run's log error ``rates`` (``RATE_FEATURE``), those
    given; None if neither is."""
    columns = [np.log(np.maximum(np.asarray(x, dtype=np.float64), floor))[:, None]
               for x, floor in ((bases, 1.0), (rates, 1e-6)) if x is not None]
    return np.hstack(columns) if columns else None


def calibrations(stored: dict | None) -> dict[str, Calibration]:
    """The typed calibrations by query kind (``dna``, ``image``, ``image+dna``) of an index or pack."""
    return {kind: Calibration.from_json(data) for kind, data in (stored or {}).items()}


def checked_calibrations(index) -> dict[str, Calibration]:
    """The index's calibrations, or a ClibdError naming calibration.json if one is not as clibd writes it."""
    try:
        found = calibrations(index.calibration)
        for calibration in found.values():
            calibration.check()
            if calibration.containment_source == "holdings" and index.holdings is None:
                raise ValueError("it reads the records' 5-mers (holdings.npy), which the index lacks")
        return found
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ClibdError(f"{index.path}/calibration.json: not a calibration clibd wrote ({type(exc).__name__}: "
                         f"{exc}); rebuild with clibd index") from None
