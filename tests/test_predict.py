"""The predictor: per-rank labels and calibrated confidences from nearest reference records."""

import json

import numpy as np
import pytest

from clibd_cli.classification import fitting
from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.decision import decide, label, predict
from clibd_cli.classification.fitting import fit_calibration, fit_calibration_held_out
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.evaluation import metrics
from clibd_cli.reference.hnsw_index import build_index
from models.errors import ClibdError
from clibd_cli.classification.probability_map import _isotonic, fit_logistic, fit_map

RANKS = ("order", "family", "genus", "species")
DIM = 64


class Tree:
    """A synthetic taxonomy: 2 orders x 2 families x 2 genera x 4 species, barcodes as vectors.

    A vector is a weighted sum of one random direction per rank plus noise, so records of one
    species are ~0.98 similar (noise 0.2; ~0.9 with noise 0.5), of one genus ~0.84, of one
    family ~0.65.
    """

    def __init__(self, seed: int = 0, noise: float = 0.2):
        self.rng, self.noise = np.random.default_rng(seed), noise
        self.species = [(f"O{o}", f"F{o}{f}", f"G{o}{f}{g}", f"G{o}{f}{g} s{s}")
                        for o in range(2) for f in range(2) for g in range(2) for s in range(4)]
        self.direction = {name: self._unit(DIM) for lineage in self.species for name in lineage}

    def _unit(self, *shape):
        x = self.rng.normal(size=shape)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def records(self, species: list[int], per_species: int):
        """Vectors and labels ``{rank: [...]}`` of ``per_species`` records of each species."""
        vectors, labels = [], {r: [] for r in RANKS}
        for i in species:
            lineage = self.species[i]
            centre = sum(w * self.direction[n] for w, n in zip((1.0, 0.8, 0.7, 0.6), lineage))
            vectors.append(centre + self.noise * self._unit(per_species, DIM))
            for rank, name in zip(RANKS, lineage):
                labels[rank] += [name] * per_species
        x = np.concatenate(vectors).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.fixture(scope="module")
def setup():
    """A reference lacking species 5 (G001 s1; the other 3 species of genus G001 are present)."""
    tree = Tree()
    seen = [i for i in range(len(tree.species)) if i != 5]
    vectors, labels = tree.records(seen, 6)
    ids = [f"r{i}" for i in range(len(vectors))]
    index = build_index(vectors, ids, labels, model_fingerprint="f", modality="dna", M=8)
    calibration = fit_calibration(index, k=10, n_queries=150, seed=0)
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    return tree, index, calibration, taxonomy


def classify(setup, vectors, min_confidence=0.8):
    _, index, calibration, taxonomy = setup
    rows, sims = index.search(vectors, 15)  # more neighbours than the calibration looks at
    return predict(rows, sims, taxonomy, calibration, min_confidence)


def test_seen_species_is_assigned(setup):
    tree = setup[0]
    queries, labels = tree.records([0, 17], 3)
    for pred, species in zip(classify(setup, queries), labels["species"]):
        assert pred.assigned["species"] == species
        assert pred.status == "assigned"
        assert pred.nearest_id.startswith("r") and 0.9 < pred.nearest_sim <= 1.0


def test_new_species_of_known_genus_gets_genus_but_no_species(setup):
    tree = setup[0]
    queries, labels = tree.records([5], 6)
    for pred in classify(setup, queries):
        assert labels["species"][0] == "G001 s1"
        assert pred.assigned["genus"] == "G001" and pred.assigned["family"] == "F00"
        assert pred.assigned["species"] is None
        assert pred.confidence["species"] < 0.5
        assert pred.labels["species"].startswith("G001 ")  # the best guess is still reported


def test_confidences_never_grow_down_the_lineage(setup):
    tree = setup[0]
    queries, _ = tree.records(list(range(32)), 2)
    for pred in classify(setup, queries):
        conf = [pred.confidence[r] for r in RANKS]
        assert all(0.0 <= c <= 1.0 for c in conf)
        assert conf == sorted(conf, reverse=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_confidence_means_what_it_says_for_the_assumed_mix(seed):
    """Half the queries of species absent from the reference (prior_unseen=0.5): confidence
    matches accuracy at every rank, though seen and unseen species overlap in similarity."""
    tree, held_out = Tree(seed, noise=0.5), [1, 9, 17, 25]  # one species of 4 genera
    seen = [i for i in range(32) if i not in held_out]
    vectors, labels = tree.records(seen, 10)
    index = build_index(vectors, [str(i) for i in range(len(vectors))], labels,
                        model_fingerprint="f", modality="dna", M=8)
    # k above the 10 records per species: with k = 10 a new record of a seen species has no other
    # species among its neighbours while a pseudo-query (its own record left out) has one
    calibration = fit_calibration(index, k=20, n_queries=200, prior_unseen=0.5)
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    seen_q, seen_l = tree.records(seen, 4)
    unseen_q, unseen_l = tree.records(held_out, 28)
    rows, sims = index.search(np.vstack([seen_q, unseen_q]), 20)
    codes, conf = decide(rows, sims, taxonomy, calibration)
    for rank in RANKS:
        names = np.array([*taxonomy.names[rank], None], dtype=object)
        truth = np.array(seen_l[rank] + unseen_l[rank], dtype=object)
        assert metrics.reliability(conf[rank], names[codes[rank]] == truth).ece < 0.08
    n = len(seen_q)
    assert np.mean(conf["species"][:n] >= 0.8) > 0.8  # seen species mostly assigned
    assert np.mean(conf["species"][n:] >= 0.8) < 0.05  # absent species hardly ever asserted
    assert np.mean(conf["genus"][n:] >= 0.8) > 0.7  # but their genus is


def test_a_rank_left_unknown_is_not_scored_as_a_wrong_answer_when_fitting():
    """Half the species have every other record filed with no family: their
    pseudo-queries' family is left unknown where such a twin lies nearest (decision.py). That says
    nothing of the family map; scored as wrong, it made the family of known, fully labelled species
    as unsure as 0.37 (below the 0.8 cutoff)."""
    tree = Tree(2)
    vectors, labels = tree.records(list(range(32)), 6)
    labels["family"] = [None if (i // 6) % 4 < 2 and i % 2 else f for i, f in enumerate(labels["family"])]
    index = build_index(vectors, [str(i) for i in range(len(vectors))], labels, model_fingerprint="f",
                        modality="dna", M=8)
    calibration = fit_calibration(index, k=10, n_queries=150, seed=0)
    queries, _ = tree.records([2, 3, 6, 7], 5)  # species whose records all name their family
    rows, sims = index.search(queries, 15)
    codes, conf = decide(rows, sims, ReferenceTaxonomy.from_labels(index.ids, index.labels), calibration)
    assert (codes["family"] >= 0).all() and conf["family"].min() > 0.9


def test_rank_without_labelled_neighbours_is_empty_with_zero_confidence():
    tree = Tree(1)
    vectors, labels = tree.records(list(range(32)), 5)
    labels["species"] = [None if g.startswith("G000") else s
                         for g, s in zip(labels["genus"], labels["species"])]  # like BIOSCAN pretrain
    index = build_index(vectors, [str(i) for i in range(len(vectors))], labels,
                        model_fingerprint="f", modality="dna")
    calibration = fit_calibration(index, k=8, n_queries=100)
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    queries, _ = tree.records([0], 3)  # genus G000: no neighbour is labelled at species
    rows, sims = index.search(queries, 8)
    for pred in predict(rows, sims, taxonomy, calibration):
        assert pred.labels["species"] is None and pred.confidence["species"] == 0.0
        assert pred.assigned["genus"] == "G000"
        assert "s:" not in pred.lineage()
    # a rank no neighbour labels adds no feature (not an infinite distance): the species of a
    # genus labelled at species is still named as surely as in a wholly labelled reference
    queries, _ = tree.records([9], 3)
    rows, sims = index.search(queries, 8)
    assert all(pred.assigned["species"] == "G010 s1" for pred in predict(rows, sims, taxonomy, calibration))


def handmade_calibration(ranks, tau_vote=1.0):
    """Confidence = sigmoid(5 * vote share - 2.5), the same for every rank."""
    fit = {"tau_vote": tau_vote, "tau_share": 1.0, "maps": [{"mean": [0, 0, 0], "scale": [1, 1, 1],
           "coef": [0, 0, 5], "intercept": -2.5, "iso_x": [], "iso_y": []}]}
    return Calibration(k=10, prior_unseen=0.5, unseen_genus_fraction=0.1,
                       ranks={r: dict(fit) for r in ranks}, fitted_on={})


def test_genus_is_picked_under_the_family_picked():
    labels = {"family": ["F2", "F1", "F1", "F1", "F1", "F1"],
              "genus": ["G3", None, None, None, None, "G1"]}
    taxonomy = ReferenceTaxonomy.from_labels([f"r{i}" for i in range(6)], labels)
    rows = np.arange(6)[None, :]
    sims = np.array([[0.95, 0.94, 0.94, 0.94, 0.94, 0.5]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, handmade_calibration(["family", "genus"]))[0]
    # F1 has 5 of 6 family votes; G3 is the nearest genus but lies under F2
    assert pred.labels == {"family": "F1", "genus": "G1"}
    assert pred.confidence["genus"] <= pred.confidence["family"]
    # no genus under F1 among the neighbours: G3 is reported, but capped by 1 - conf(F1)
    pred = predict(rows[:, :5], sims[:, :5], taxonomy, handmade_calibration(["family", "genus"]))[0]
    assert pred.labels["genus"] == "G3"
    assert pred.confidence["genus"] <= 1 - pred.confidence["family"] + 1e-12
    assert pred.assigned == {"family": "F1", "genus": None}


def test_a_genus_the_reference_files_under_no_family_does_not_contradict_the_family_picked():
    """The family is picked from a nearer record; the genus, whose records name no family, is not
    outside it, so its confidence is not capped at 1 - conf(family) as a clash's is."""
    labels = {"family": ["F1", None, None, None], "genus": [None, "G2", "G2", "G2"]}
    taxonomy = ReferenceTaxonomy.from_labels([f"r{i}" for i in range(4)], labels)
    rows, sims = np.arange(4)[None, :], np.array([[0.99, 0.98, 0.97, 0.96]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, handmade_calibration(["family", "genus"]), 0.8)[0]
    assert pred.assigned == {"family": "F1", "genus": "G2"}
    assert pred.confidence["genus"] == pytest.approx(pred.confidence["family"])  # share 1 at both


def test_a_genus_is_picked_among_all_where_the_family_was_left_unknown():
    """The family is unknown (a record filed with no family lies nearest): the genus is the one
    with most votes, not the one filed under no family."""
    labels = {"family": [None, "F1", "F1", "F1"], "genus": ["G0", "G1", "G1", "G1"]}
    taxonomy = ReferenceTaxonomy.from_labels([f"r{i}" for i in range(4)], labels)
    rows, sims = np.arange(4)[None, :], np.array([[0.99, 0.98, 0.97, 0.96]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, handmade_calibration(["family", "genus"]))[0]
    assert pred.labels == {"family": None, "genus": "G1"}


def test_a_genus_outside_the_family_picked_is_named_when_no_neighbour_offers_one_inside():
    labels = {"family": ["F1", "F2", "F1", "F1", "F1"], "genus": [None, "G3", None, None, None]}
    taxonomy = ReferenceTaxonomy.from_labels([f"r{i}" for i in range(5)], labels)
    rows, sims = np.arange(5)[None, :], np.array([[0.95, 0.94, 0.94, 0.94, 0.94]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, handmade_calibration(["family", "genus"]))[0]
    assert pred.labels == {"family": "F1", "genus": "G3"}


def test_a_twin_filed_under_no_family_does_not_unname_the_family():
    """Identical barcodes, one filed with its family and one with its genus only: the family is
    kept; only a family-less record strictly closer than the family's leaves it unknown."""
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b"], {"family": [None, "F1"], "genus": ["G1", "G1"]})
    calibration = handmade_calibration(["family", "genus"])
    for near, family in ((0.99, "F1"), (0.995, None)):
        rows, sims = np.array([[0, 1]]), np.array([[near, 0.99]], dtype=np.float32)
        assert predict(rows, sims, taxonomy, calibration)[0].labels == {"family": family, "genus": "G1"}


def test_the_margin_of_a_lone_label_is_over_the_kth_neighbour():
    """Every neighbour carries the winner's label: any other label lies at most as near as the
    k-th neighbour, and the margin feature is taken over it."""
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"genus": ["G1"] * 3})
    rows, sims = np.array([[0, 1, 2]]), np.array([[0.99, 0.95, 0.90]], dtype=np.float32)
    margin = label(rows, sims, taxonomy, handmade_calibration(["genus"])).features["genus"][0, 1]
    assert margin == pytest.approx(0.99 - 0.90)


def test_the_distance_feature_is_the_log_distance_of_the_winner_s_nearest_record():
    """The maps stored in an index (the bundled one's too) read log(1 - sim) of the winner's nearest
    record, floored at 1e-4 (duplicates): a query at 0.9 is 10x farther than one at 0.99."""
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"genus": ["G1", "G1", "G2"]})
    rows = np.array([[0, 1, 2]] * 3)
    sims = np.array([[0.9, 0.85, 0.8], [0.99, 0.85, 0.8], [1.0, 0.85, 0.8]], dtype=np.float32)
    distance = label(rows, sims, taxonomy, handmade_calibration(["genus"])).features["genus"][:, 0]
    assert distance == pytest.approx(np.log([0.1, 0.01, 1e-4]), abs=1e-3)


def test_a_sharp_vote_holds_at_low_similarities():
    """Photo queries lie at cosine ~0.2 from the barcodes they match; at the sharpest temperature
    (0.001) the weights are taken relative to the best neighbour, so they do not all underflow to
    0 (a vote share of 0: confidence 0.08 instead of 0.92)."""
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"genus": ["G1", "G2", "G2"]})
    calibration = handmade_calibration(["genus"], tau_vote=0.001)
    calibration.ranks["genus"]["tau_share"] = 0.001
    rows, sims = np.array([[0, 1, 2]]), np.array([[0.2, 0.19, 0.19]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, calibration)[0]
    assert pred.labels["genus"] == "G1" and pred.confidence["genus"] == pytest.approx(1 / (1 + np.exp(-2.5)), abs=1e-3)


def test_new_species_are_staged_only_where_their_genus_keeps_other_records():
    """Unseen-species pseudo-queries: a species of a genus with other species (G1), not one of a
    monotypic genus (G2: that is a new genus), nor one whose genus keeps only records unlabelled at
    species (G3: they may be of the left-out species itself)."""
    rng = np.random.default_rng(0)
    species = ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3 + ["s4"] * 3 + [None] * 2 + ["s5"]
    genus = ["G1"] * 6 + ["G2"] * 3 + ["G3"] * 5 + ["G1"]
    vectors = rng.normal(size=(len(species), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_index(vectors, [f"r{i}" for i in range(len(species))], {"genus": genus, "species": species},
                        model_fingerprint="f", modality="dna", M=8)
    calibration = fit_calibration(index, k=50, n_queries=100)
    assert calibration.k == len(species) - 1  # as many as a pseudo-query finds, itself left out
    assert calibration.scenarios[:2] == ["seen", "unseen_species"]
    # seen: the records of a species with others (or of none), not the lone s5 (it would be a new species)
    assert calibration.fitted_on["pseudo_queries"][:2] == [14, 7]


def test_a_label_s_parent_is_the_one_most_of_its_records_carry():
    labels = {"family": ["F2", "F1", "F1", "F1", "F2"], "genus": ["G1", "G1", "G1", "G1", "G2"]}
    taxonomy = ReferenceTaxonomy.from_labels([f"r{i}" for i in range(5)], labels)
    assert [taxonomy.names["family"][p] for p in taxonomy.parents["genus"][:2]] == ["F1", "F2"]
    # records that name no family do not outvote the one that does
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"family": [None, None, "F1"], "genus": ["G1"] * 3})
    assert taxonomy.parents["genus"][0] == taxonomy.names["family"].index("F1")  # not -1, no parent


def test_taxa_are_matched_whatever_their_case_and_underscores():
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"genus": ["Aedes", "Aedes", "Culex"],
                                                               "species": ["Aedes albopictus", None, "Culex pipiens"]})
    rows, unknown = taxonomy.rows_within(["aedes_ALBOPICTUS", " culex ", "Anopheles"])
    assert rows.tolist() == [0, 2] and unknown == ["Anopheles"]


def test_taxa_above_the_first_rank_are_matched_through_the_orders_lineages():
    """``Insecta`` is no label of the reference, but the lineage above two of its orders names it:
    their records are within it, and it is not reported as a taxon no record carries (nor does an
    order the lineages name without records, Lepidoptera, stop the look-up)."""
    above = {"Diptera": {"class": "Insecta"}, "Araneae": {"class": "Arachnida"},
             "Lepidoptera": {"class": "Insecta"}}
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"order": ["Diptera", "Araneae", "Diptera"]}, above)
    rows, unknown = taxonomy.rows_within(["insecta"])
    assert rows.tolist() == [0, 2] and unknown == []


def test_a_rank_is_never_more_confident_than_the_rank_above():
    """A species cannot be surer than its genus: the genus map says 0.27, the species map 0.88,
    and the species is reported at 0.27, below a 0.5 cutoff with its genus."""
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b"], {"genus": ["G1", "G1"], "species": ["s1", "s1"]})
    calibration = handmade_calibration(["genus", "species"])
    for rank, intercept in (("genus", -1.0), ("species", 2.0)):  # constant maps: coef 0
        calibration.ranks[rank] = {**calibration.ranks[rank], "maps": [
            {**calibration.ranks[rank]["maps"][0], "coef": [0, 0, 0], "intercept": intercept}]}
    rows, sims = np.array([[0, 1]]), np.array([[0.99, 0.98]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, calibration, 0.5)[0]
    assert pred.confidence["genus"] == pytest.approx(1 / (1 + np.exp(1.0)))
    assert pred.confidence["species"] == pytest.approx(pred.confidence["genus"])
    assert pred.assigned == {"genus": None, "species": None}


def test_a_prediction_carries_its_order_s_lineage_above_at_the_order_s_confidence():
    """Ranks above order are not decided: the best order's lineage (``above``) comes first, as sure
    as the order; a rank the order's lineage does not name is None with confidence 0, as a rank no
    neighbour labels."""
    labels = {"order": ["Diptera"] * 3 + ["Araneae"] * 3, "family": ["Culicidae"] * 3 + ["Lycosidae"] * 3}
    above = {"Diptera": {"phylum": "Arthropoda", "class": "Insecta"}, "Araneae": {"phylum": "Arthropoda"}}
    taxonomy = ReferenceTaxonomy.from_labels([f"r{i}" for i in range(6)], labels, above)
    rows = np.array([[0, 1, 2, 3], [3, 4, 5, 0]])
    sims = np.array([[0.99, 0.98, 0.97, 0.9], [0.99, 0.98, 0.97, 0.9]], dtype=np.float32)
    diptera, araneae = predict(rows, sims, taxonomy, handmade_calibration(["order", "family"]), 0.5)
    assert list(diptera.labels) == ["phylum", "class", "order", "family"]
    assert diptera.labels["class"] == "Insecta" and 0.5 < diptera.confidence["order"] < 1
    assert diptera.confidence["phylum"] == diptera.confidence["class"] == diptera.confidence["order"]
    assert araneae.labels["class"] is None and araneae.confidence["class"] == 0.0
    assert araneae.assigned["phylum"] == "Arthropoda" and araneae.lineage().startswith("p:Arthropoda(0.")


def test_lineage_status_and_cutoff():
    labels = {"order": ["Diptera"] * 3, "family": ["Culicidae"] * 3, "genus": ["Aedes"] * 3,
              "species": ["Aedes albopictus", "Aedes aegypti", "Aedes aegypti"]}
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], labels)
    rows, sims = np.array([[0, 1, 2]]), np.array([[0.99, 0.98, 0.97]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, handmade_calibration(RANKS, tau_vote=0.001), 0.8)[0]
    # species: vote share 1 / (1 + e^-0.01 + e^-0.02) = 0.337 -> sigmoid(5 * 0.337 - 2.5) = 0.31
    assert pred.lineage() == ("o:Diptera(0.92),f:Culicidae(0.92),g:Aedes(0.92),"
                              "s:Aedes_albopictus(0.31)")
    assert pred.assigned["species"] is None and pred.assigned["genus"] == "Aedes"
    assert pred.status == "assigned" and pred.nearest_id == "a"
    assert predict(rows, sims, taxonomy, handmade_calibration(RANKS), 0.95)[0].status == "unassigned"
    # the cutoff is reached at equality: --min-confidence 1 keeps the labels at confidence 1
    sure = predict(rows, sims, taxonomy, handmade_calibration(RANKS), 1.0)[0]
    sure.confidence["order"] = 1.0
    assert sure.assigned["order"] == "Diptera" and sure.status == "assigned"


def test_calibration_json_round_trip(setup):
    tree, index, calibration, taxonomy = setup
    text = json.dumps(calibration.to_json())
    again = Calibration.from_json(json.loads(text))
    queries, _ = tree.records([3, 5, 9], 2)
    rows, sims = index.search(queries, 10)
    first, second = decide(rows, sims, taxonomy, calibration), decide(rows, sims, taxonomy, again)
    for rank in RANKS:
        assert np.array_equal(first[0][rank], second[0][rank])
        assert np.allclose(first[1][rank], second[1][rank])
    with pytest.raises(ClibdError, match="unsupported calibration"):
        Calibration.from_json({"format": "something else"})



def test_format_1_calibration_reads_without_changing_its_json(setup):
    """An index from before per-batch shares (one map per rank, no scenarios) still loads, and
    reading its JSON leaves it as it was: it can be read again."""
    _, _, calibration, _ = setup
    old = {k: v for k, v in calibration.to_json().items() if k not in ("scenarios", "scenario_model")}
    old["format"] = "clibd-calibration/1"
    old["ranks"] = {rank: {"tau_vote": fit["tau_vote"], "tau_share": fit["tau_share"], **fit["maps"][0]}
                    for rank, fit in calibration.ranks.items()}
    text = json.dumps(old)
    first, second = Calibration.from_json(old), Calibration.from_json(old)
    assert json.dumps(old) == text and first == second and not first.adaptive
    assert first.ranks["genus"]["maps"] == [calibration.ranks["genus"]["maps"][0]]
    # its share of new species is the one fixed when it was built, whatever the run's
    fixed = Calibration.from_json({**old, "prior_unseen": 0.2})
    assert fixed.unseen_share(fixed.estimate_shares(np.zeros((1, 12)))) == 0.2

def test_vote_temperatures_that_tie_go_to_the_sharpest(setup):
    """Orders are told apart at every temperature tried: the sharpest is kept."""
    from clibd_cli.defaults import CALIBRATION

    assert setup[2].ranks["order"]["tau_vote"] == min(CALIBRATION.taus)


def test_the_vote_share_temperature_is_the_one_whose_maps_fit_best(setup, monkeypatch):
    """Maps whose loss falls as the vote shares grow: the sharpest temperature (the largest
    shares) fits best and is the one kept."""
    from clibd_cli.defaults import CALIBRATION

    def scored(x, y, w, l2):
        return {**fit_logistic(x, y, w, l2), "loss": -float(x[:, 2].sum())}

    monkeypatch.setattr(fitting, "fit_logistic", scored)
    assert fit_calibration(setup[1], k=10, n_queries=60).ranks["species"]["tau_share"] == min(CALIBRATION.taus)


def test_pseudo_queries_in_small_chunks_fit_the_same_calibration(setup, monkeypatch):
    """A large reference is scored a few pseudo-queries at a time (flat memory): same fit."""
    import clibd_cli.classification.pseudo_queries as pseudo_queries

    tree, index, calibration, taxonomy = setup
    monkeypatch.setattr(pseudo_queries, "_SCORES_PER_CHUNK", 1)  # 8 queries per chunk instead of 150+
    chunked = fit_calibration(index, k=10, n_queries=150, seed=0)
    assert chunked.fitted_on == calibration.fitted_on
    assert [fit["tau_vote"] for fit in chunked.ranks.values()] == [fit["tau_vote"] for fit in calibration.ranks.values()]
    queries, _ = tree.records([3, 5, 9], 2)
    rows, sims = index.search(queries, 10)
    (codes, conf), (codes2, conf2) = (decide(rows, sims, taxonomy, c) for c in (calibration, chunked))
    for rank in RANKS:  # the same up to the last bits of the matrix products
        assert np.array_equal(codes[rank], codes2[rank]) and np.allclose(conf[rank], conf2[rank], atol=1e-6)


def test_queries_decided_a_chunk_at_a_time_get_the_answers_they_get_at_once(setup, monkeypatch):
    """A run's first block (up to 10,000 queries) is decided ``_CHUNK`` queries at a time: every
    query keeps its own labels and features, none is dropped or shifted at a chunk's edge."""
    import clibd_cli.classification.decision as decision

    tree, index, calibration, taxonomy = setup
    queries, _ = tree.records([0, 5, 17, 30], 3)
    rows, sims = index.search(queries, 10)
    whole = label(rows, sims, taxonomy, calibration)
    monkeypatch.setattr(decision, "_CHUNK", 5)
    chunked = label(rows, sims, taxonomy, calibration)
    for rank in RANKS:
        assert np.array_equal(chunked.codes[rank], whole.codes[rank])
        assert np.array_equal(chunked.features[rank], whole.features[rank])


def test_cross_modal_calibration_uses_the_query_view(setup):
    tree, index, _, taxonomy = setup
    views = index.vectors() + 0.05 * tree._unit(len(index), DIM).astype(np.float32)
    views[::2] = 0  # half the records have no photo: never sampled
    calibration = fit_calibration(index, query_vectors=views, k=10, n_queries=100)
    assert set(calibration.ranks) == set(RANKS)
    assert calibration.fitted_on["pseudo_queries"][0] == len(index) // 2  # only records with a view, of 100
    # noisier views than the reference's own records: the confidences follow the views
    noisy = index.vectors() + 0.6 * tree._unit(len(index), DIM).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    own, viewed = (fit_calibration(index, query_vectors=v, k=10, n_queries=100) for v in (None, noisy))
    queries, _ = tree.records(list(range(0, 32, 3)), 3)
    queries = queries + 0.6 * tree._unit(len(queries), DIM).astype(np.float32)
    rows, sims = index.search(queries / np.linalg.norm(queries, axis=1, keepdims=True), 10)
    by_own, by_view = decide(rows, sims, taxonomy, own)[1], decide(rows, sims, taxonomy, viewed)[1]
    assert max(np.abs(by_own[r] - by_view[r]).max() for r in RANKS) > 0.05
    with pytest.raises(ClibdError, match="do not match"):
        fit_calibration(index, query_vectors=views[:, :10])


def test_isotonic_pools_adjacent_violators():
    x, y = _isotonic(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 0.0, 1.0, 1.0]), np.ones(4))
    assert x.tolist() == pytest.approx([0.15, 0.35]) and y.tolist() == [0.5, 1.0]


def test_a_rank_missing_above_does_not_zero_the_ranks_below():
    labels = {"family": [None, None, None], "genus": ["G1", "G1", "G1"]}
    taxonomy = ReferenceTaxonomy.from_labels(["a", "b", "c"], labels)
    rows, sims = np.array([[0, 1, 2]]), np.array([[0.99, 0.98, 0.97]], dtype=np.float32)
    pred = predict(rows, sims, taxonomy, handmade_calibration(["family", "genus"]))[0]
    assert pred.labels == {"family": None, "genus": "G1"} and pred.confidence["family"] == 0.0
    assert pred.confidence["genus"] == pytest.approx(1 / (1 + np.exp(-2.5)))  # share 1


def test_held_out_maps_are_fitted_with_the_stronger_ridge(monkeypatch):
    """Held-out queries are few and separate almost perfectly: their maps get HELD_OUT_RIDGE,
    pseudo-query maps MAP_RIDGE (fitting.py), and on separable data that bounds the coefficients."""
    x = np.r_[np.linspace(-3, -1, 50), np.linspace(1, 3, 50)][:, None]
    y = (x[:, 0] > 0).astype(float)
    loose, firm = (fit_map(x, y, np.ones(100), ridge) for ridge in (fitting.MAP_RIDGE, fitting.HELD_OUT_RIDGE))
    assert abs(loose["coef"][0]) > 8 > 4 > abs(firm["coef"][0]) > 0  # measured: 9.1, 3.5
    ridges = []
    monkeypatch.setattr(fitting, "fit_logistic", lambda x, y, w, l2: ridges.append(l2) or fit_logistic(x, y, w, l2))
    rng = np.random.default_rng(0)
    species = np.repeat(np.arange(6), 8)
    vectors = rng.normal(size=(6, 16))[species] + rng.normal(scale=0.3, size=(len(species), 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    labels = {"genus": [f"g{s // 2}" for s in species], "species": [f"s{s}" for s in species]}
    index = build_index(vectors, [str(i) for i in range(len(species))], labels, model_fingerprint="f",
                        modality="dna", M=8)
    decisions = fit_calibration(index, k=10, n_queries=40)
    assert set(ridges) == {fitting.MAP_RIDGE}
    ridges.clear()
    fit_calibration_held_out(index, vectors[:12] + 0.01, {"genus": labels["genus"][:10] + ["gx"] * 2,
                                                          "species": labels["species"][:10] + ["sx"] * 2}, decisions)
    assert set(ridges) == {fitting.HELD_OUT_RIDGE}


def test_a_genus_the_reference_files_under_no_family_leaves_the_family_unknown(tmp_path):
    """Records labelled o:...,g:... without their family: a query of that genus got the family of
    the nearest family-labelled records, another family, at confidence 1.00. Now the family is left
    unknown (empty, 0) and the genus is still named."""
    from fixtures.specimens import run, specimens, tsv, write_fasta

    records = specimens(n_species=10, per_species=4, unnamed=0)
    genus = records[0].lineage["genus"]
    for r in records:
        if r.lineage["genus"] == genus:
            r.lineage["family"] = None
    fasta = write_fasta(tmp_path / "ref.fa", records)
    built = run("-q", "index", "-m", "kmer", fasta, "-o", tmp_path / "idx")
    assert built.exit_code == 0, built.stderr
    queries = [r for r in records if r.lineage["genus"] == genus][:2]
    result = run("classify", "--index", tmp_path / "idx", write_fasta(tmp_path / "q.fa", queries, sintax=False))
    rows = tsv(result.stdout)
    assert result.exit_code == 0 and len(rows) == 2, result.stderr
    assert all(row["family"] == "" and float(row["family_conf"]) == 0.0 for row in rows), rows
    assert all(row["genus"] == genus for row in rows), rows
