"""`clibd evaluate` pipeline on a hand-built dataset whose answers can be checked by hand.

Keys are one-hot vectors (one dimension per key record); each query's vector weights the keys,
so its ranking of the keys is set by hand. Seen species A1 has 3 queries, B1 one: micro and
macro accuracy differ. The barcodes are built the same way (a random sequence per genus,
mutated per species and per record) for the k-mer and alignment baselines.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from clibd_cli.data.store import Record
from clibd_cli.data.store_writer import DatasetWriter
from clibd_cli.evaluation.protocol import Records, scenarios
from clibd_cli.evaluation.report import text_report, write_json, write_tsv
from clibd_cli.evaluation.run import Plan, run_evaluation
from clibd_cli.io.outputs import UsageError
from models.errors import ClibdError
from fixtures.programs import require_programs

LINEAGE = {  # species -> (order, family, genus)
    "A1": ("O1", "F1", "GA"), "A2": ("O1", "F1", "GA"), "A3": ("O1", "F1", "GA"),
    "B1": ("O1", "F1", "GB"), "C1": ("O2", "F2", "GC"),
}
KEYS = [("k0", "A1", "train"), ("k1", "A1", "train"), ("k2", "A2", "train"), ("k3", "B1", "train"),
        ("k4", "C1", "train"), ("k5", "A3", "key_unseen")]
QUERIES = {  # id: (species, split, {key: weight})
    "q1": ("A1", "test", {"k0": 1.0, "k1": 0.5}),
    "q2": ("A1", "test", {"k2": 1.0, "k0": 0.8, "k3": 0.6}),  # nearest is A2: wrong species, right genus
    "q3": ("A1", "test", {"k1": 1.0}),
    "q4": ("B1", "test", {"k3": 1.0}),
    "u1": ("A3", "test_unseen", {"k5": 1.0, "k0": 0.9}),
    "u2": ("A3", "test_unseen", {"k2": 1.0, "k4": 0.9, "k5": 0.8}),  # A3 only third
}


def _vector(weights: dict[str, float]) -> np.ndarray:
    v = np.array([0.001 * (6 - j) for j in range(6)])  # tiny distinct weights: no ties
    for key, w in weights.items():
        v[int(key[1:])] = w
    return (v / np.linalg.norm(v)).astype(np.float32)


VECTORS = {**{k: _vector({k: 1.0}) for k, _, _ in KEYS},
           **{q: _vector(w) for q, (_, _, w) in QUERIES.items()}}


class FixedVectors:
    """A vector source that looks the vectors up by record id (``VECTORS`` unless given), counting
    its calls; ``fingerprint`` set makes :class:`Embeddings` cache them."""

    modalities = ("dna",)
    precision = "fp32"

    def __init__(self, vectors: dict | None = None, fingerprint: str | None = None):
        self.vectors, self.fingerprint, self.calls = vectors or VECTORS, fingerprint, 0
        self.rows = {}  # (group, modality) -> the rows asked for (None: all)

    def embed(self, records, modality, progress=False, rows=None):
        self.calls += 1
        self.rows[records.groups[0], modality] = None if rows is None else rows.tolist()
        vectors = np.stack([self.vectors[i] for i in records.split.ids()])
        if rows is not None:
            vectors[np.setdiff1d(np.arange(len(vectors)), rows)] = 0.0
        return vectors


def _mutate(seq: str, rate: float, rng) -> str:
    bases = np.array(list(seq))
    hit = rng.random(len(bases)) < rate
    bases[hit] = rng.choice(list("ACGT"), hit.sum())
    return "".join(bases)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(7)
    genus = {g: "".join(rng.choice(list("ACGT"), 600)) for g in ("GA", "GB", "GC")}
    species = {s: _mutate(genus[g], 0.06, rng) for s, (_, _, g) in LINEAGE.items()}
    path = tmp_path_factory.mktemp("evaluate") / "hand.h5"
    with DatasetWriter(path) as writer:
        rows = KEYS + [(q, s, split) for q, (s, split, _) in QUERIES.items()]
        for pid, name, split in rows:
            order, family, genus_name = LINEAGE[name]
            writer.add(split, Record(pid, barcode=_mutate(species[name], 0.005, rng), order=order,
                                     family=family, genus=genus_name, species=name))
        writer.add("val", Record("v1", barcode=species["A1"], order="O1", family="F1", genus="GA",
                                 species="A1"))
    return path


@pytest.fixture(scope="module")
def hand(dataset):
    plan = Plan(data=dataset, baselines=(), seed=0)
    return run_evaluation(plan, sources={"dna-dna": (FixedVectors(), "dna", "dna")}).metrics


def test_protocol_resolves_keys_and_queries_of_both_scenarios(dataset):
    from clibd_cli.data.store import open_dataset

    with open_dataset(dataset) as ds:
        found, notes = scenarios(ds, "test")
        assert [(s.name, s.keys, s.queries) for s in found] == [
            ("paper", ("train", "key_unseen"), {"seen": ("test",), "unseen": ("test_unseen",)}),
            ("left-out", ("train",), {"seen": ("test",), "unseen": ("test_unseen",)}),
        ]
        found, notes = scenarios(ds, "val")  # no val_unseen: seen only, no left-out scenario
        assert [s.name for s in found] == ["paper"] and len(notes) == 2
        assert len(Records(ds, ("train", "key_unseen"))) == 6
        keys = Records(ds, ("train", "key_unseen"))
        for limit in (3, 5):  # --limit: distinct records, each query evaluated once
            assert len(set(keys.sample(limit, seed=0).tolist())) == limit


def test_paper_scenario_top_k_micro_macro_and_harmonic_mean(hand):
    r = hand["retrieval"]["paper"]["dna-dna"]
    assert r["queries"] == {"seen": 4, "unseen": 2}
    seen, unseen = r["seen"]["species"], r["unseen"]["species"]
    assert seen["top1"]["micro"] == pytest.approx(3 / 4)  # q2 wrong
    assert seen["top1"]["macro"] == pytest.approx((2 / 3 + 1) / 2)  # A1 2 of 3, B1 1 of 1
    assert seen["top3"] == {"micro": pytest.approx(1.0), "macro": pytest.approx(1.0)}  # q2: A1 second
    assert unseen["top1"] == {"micro": pytest.approx(0.5), "macro": pytest.approx(0.5)}
    assert unseen["top3"]["micro"] == pytest.approx(1.0)  # u2: A3 third
    assert r["hm"]["species"]["top1"]["macro"] == pytest.approx(2 * (5 / 6) * 0.5 / (5 / 6 + 0.5))  # 0.625
    assert r["seen"]["genus"]["top1"]["micro"] == r["unseen"]["genus"]["top1"]["micro"] == pytest.approx(1.0)
    assert r["seen"]["family"]["top1"]["macro"] == pytest.approx(1.0)


def test_left_out_scenario_has_no_right_species_but_right_genera(hand):
    r = hand["retrieval"]["left-out"]["dna-dna"]
    assert r["seen"]["species"]["top1"]["micro"] == pytest.approx(3 / 4)  # seen keys unchanged
    assert r["unseen"]["species"]["top5"]["micro"] == 0.0
    assert r["unseen"]["genus"]["top1"]["micro"] == pytest.approx(1.0)  # u1 -> A1, u2 -> A2: genus GA
    assert r["hm"]["species"]["top1"]["macro"] == 0.0
    open_set = hand["open_set"]["left-out"]["dna-dna"]
    for part in ("seen", "unseen"):
        for rank in ("order", "family", "genus", "species"):
            row = open_set[part][rank]
            assert set(row) == {"best_accuracy", "assigned_rate", "assigned_accuracy", "known_fraction",
                                "known_correct", "ece"}
            assert 0 <= row["assigned_rate"] <= 1
    assert open_set["unseen"]["species"]["known_fraction"] == 0.0  # A3 is not among these keys
    assert open_set["unseen"]["species"]["best_accuracy"] == 0.0
    assert 0 <= open_set["reliability"]["species"]["ece"] <= 1


def test_open_set_rates_of_hand_made_calls():
    from clibd_cli.evaluation.retrieval import Calls, Outcome
    from clibd_cli.evaluation.scores import open_set_scores

    # five species queries: right and sure, wrong and sure, right but unsure, sure of a species
    # the keys lack, and one without a true species (not scored, but its call is counted)
    truth = np.array(["A", "A", "B", "C", None], dtype=object)
    best = np.array(["A", "B", "B", "A", "A"], dtype=object)
    confidence = np.array([0.85, 0.95, 0.35, 0.92, 0.96])
    asserted = confidence >= 0.8
    empty = {r: np.array([None] * 5, dtype=object) for r in ("order", "family", "genus")}
    calls = Calls({**empty, "species": best}, {**{r: np.zeros(5, bool) for r in empty}, "species": asserted},
                  {**{r: np.zeros(5) for r in empty}, "species": confidence})
    outcome = Outcome({**empty, "species": truth}, {}, calls=calls)
    keys = {**{r: np.array([None, None], dtype=object) for r in empty}, "species": np.array(["A", "B"], dtype=object)}
    row = open_set_scores({"seen": outcome}, keys)["seen"]["species"]
    assert row["best_accuracy"] == pytest.approx(2 / 4)  # A, B right of the four scored
    assert row["assigned_rate"] == pytest.approx(4 / 5)  # every query with a sure call
    assert row["assigned_accuracy"] == pytest.approx(1 / 3)  # of the three scored sure calls only A is right
    assert row["known_fraction"] == pytest.approx(3 / 4)  # C is not among the keys
    assert row["known_correct"] == pytest.approx(1 / 3)  # of A, A, B: asserted and right only the first
    # bins 0.3 (0.35, right), 0.8 (0.85, right), 0.9 (0.95 and 0.92, both wrong), over 4 queries
    assert row["ece"] == pytest.approx((0.65 + 0.15 + 0.95 + 0.92) / 4)


@pytest.mark.parametrize("cutoff, rate", [(0.0, 1.0), (1.01, 0.0)])
def test_open_set_rates_follow_the_confidence_cutoff(dataset, cutoff, rate):
    plan = Plan(data=dataset, baselines=(), seed=0, min_confidence=cutoff)
    open_set = run_evaluation(plan, sources={"dna-dna": (FixedVectors(), "dna", "dna")}).metrics["open_set"]
    assert open_set["left-out"]["dna-dna"]["seen"]["species"] == pytest.approx({
        "best_accuracy": 0.75, "assigned_rate": rate, "assigned_accuracy": 0.75 if rate else None,
        "known_fraction": 1.0, "known_correct": 0.75 * rate,  # q2's nearest key is A2: wrong species
        "ece": open_set["left-out"]["dna-dna"]["seen"]["species"]["ece"]})
    unseen = open_set["left-out"]["dna-dna"]["unseen"]
    assert unseen["genus"] == pytest.approx({
        "best_accuracy": 1.0, "assigned_rate": rate, "assigned_accuracy": 1.0 if rate else None,
        "known_fraction": 1.0, "known_correct": rate, "ece": unseen["genus"]["ece"]})
    assert unseen["species"]["assigned_rate"] == rate and unseen["species"]["assigned_accuracy"] == (
        0.0 if rate else None)


def test_json_tsv_and_text_outputs(hand, tmp_path):
    write_json(tmp_path / "metrics.json", hand)
    write_tsv(tmp_path / "metrics.tsv", hand)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["format"] == "clibd-evaluate/1"
    species = data["retrieval"]["paper"]["dna-dna"]["seen"]["species"]
    assert species["top1"]["macro"] == pytest.approx(0.833333)
    lines = (tmp_path / "metrics.tsv").read_text().splitlines()
    assert lines[0] == "scenario\tmethod\tpart\trank\tmetric\tvalue"
    assert "paper\tdna-dna\tseen\tspecies\ttop1_micro\t0.75" in lines
    assert "paper\tdna-dna\thm\tspecies\ttop1_macro\t0.625" in lines
    text = text_report(data)
    assert re.search(r"\nspecies +83\.3 / 50\.0 / 62\.5\n", text)  # the paper's layout: seen / unseen / H
    assert "scenario left-out" in text and "targets:" in text


def test_kmer_baseline_finds_the_species_of_near_copies(dataset):
    metrics = run_evaluation(Plan(data=dataset, baselines=("kmer",))).metrics
    r = metrics["retrieval"]["left-out"]["kmer"]
    assert r["seen"]["species"]["top1"]["micro"] == 1.0
    assert r["unseen"]["genus"]["top1"]["micro"] == 1.0 and r["unseen"]["species"]["top1"]["micro"] == 0.0
    assert metrics["retrieval"]["paper"]["kmer"]["unseen"]["species"]["top1"]["micro"] == 1.0


def test_vsearch_baselines(dataset):
    require_programs("vsearch")
    metrics = run_evaluation(Plan(data=dataset, baselines=("vsearch-global", "vsearch-sintax"))).metrics
    for name in ("vsearch-global", "vsearch-sintax"):
        paper, left_out = metrics["retrieval"]["paper"][name], metrics["retrieval"]["left-out"][name]
        assert paper["seen"]["species"]["top1"]["micro"] == 1.0
        assert paper["unseen"]["species"]["top1"]["micro"] == 1.0
        assert left_out["unseen"]["species"]["top1"]["micro"] == 0.0
        assert left_out["unseen"]["genus"]["top1"]["micro"] == 1.0
    assert metrics["retrieval"]["paper"]["vsearch-sintax"]["seen"]["species"]["top3"]["micro"] is None
    global_ = metrics["open_set"]["left-out"]["vsearch-global"]
    # seen queries are ~99 % identical to keys of their species: every rank asserted and right;
    # A3 is ~91 % identical to A1/A2: family (>= 90 %) asserted, genus (95 %) and species (97 %) not
    assert all(global_["seen"][rank]["assigned_rate"] == global_["seen"][rank]["known_correct"]
               == global_["seen"][rank]["assigned_accuracy"] == 1.0 for rank in ("family", "genus", "species"))
    unseen = global_["unseen"]
    assert unseen["family"]["assigned_rate"] == unseen["family"]["assigned_accuracy"] == 1.0
    assert unseen["genus"]["assigned_rate"] == unseen["genus"]["known_correct"] == 0.0
    assert unseen["genus"]["best_accuracy"] == 1.0 and unseen["genus"]["assigned_accuracy"] is None
    assert unseen["species"]["assigned_rate"] == 0.0 and unseen["species"]["known_fraction"] == 0.0
    assert "reliability" in metrics["open_set"]["left-out"]["vsearch-sintax"]


def test_rdp_baseline_is_trained_on_the_keys(dataset):
    require_programs("java", "rdp_classifier")
    metrics = run_evaluation(Plan(data=dataset, baselines=("rdp",))).metrics
    paper, left_out = metrics["retrieval"]["paper"]["rdp"], metrics["retrieval"]["left-out"]["rdp"]
    assert paper["seen"]["species"]["top1"]["micro"] == 1.0 and paper["unseen"]["species"]["top1"]["micro"] == 1.0
    assert left_out["unseen"]["species"]["top1"]["micro"] == 0.0  # A3 has no key: never its species
    assert left_out["unseen"]["genus"]["top1"]["micro"] == 1.0
    assert paper["seen"]["species"]["top3"]["micro"] is None  # one answer per rank
    open_set = metrics["open_set"]["left-out"]["rdp"]
    assert "reliability" in open_set and set(open_set["batches"]["ece"]) == {"seen", "unseen", "mix"}
    assert open_set["batches"]["prior_unseen"] == {"seen": None, "unseen": None, "mix": None}  # no estimate


def test_reliability_per_batch_and_operating_curve(dataset):
    metrics = run_evaluation(Plan(data=dataset, baselines=("kmer",))).metrics
    batches = metrics["open_set"]["left-out"]["kmer"]["batches"]
    # 4 seen queries and both unseen ones (round(4 x 0.3 / 0.7) = 2): a third of the mix is new
    assert batches["new_share"] == pytest.approx({"seen": 0.0, "unseen": 1.0, "mix": 1 / 3})
    estimates = batches["prior_unseen"]
    assert all(0.0 <= estimates[b] <= 1.0 for b in ("seen", "unseen", "mix"))
    assert estimates["seen"] < estimates["mix"] < estimates["unseen"]  # estimated per batch
    assert all(0.0 <= batches["ece"][b][r] <= 1.0 for b in batches["ece"] for r in batches["ece"][b])
    curve = batches["curve"]
    assert [p["cutoff"] for p in curve] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    for key in ("known_species_named", "new_species_asserted", "new_genus_right", "new_genus_wrong"):
        values = [p[key] for p in curve]
        assert values == sorted(values, reverse=True)  # a higher cutoff names no more
    assert "paper" in metrics["open_set"] and "batches" in metrics["open_set"]["paper"]["kmer"]
    text = text_report(metrics)
    assert "reliability per batch" in text and "operating curve on the mix" in text


def test_metrics_tsv_holds_every_number_of_the_json_but_the_reliability_bins(dataset, tmp_path):
    metrics = run_evaluation(Plan(data=dataset, baselines=("kmer",))).metrics
    metrics["retrieval"]["paper"]["kmer"]["missing"]["seen"] = 3  # a count that tells its line apart
    write_tsv(tmp_path / "metrics.tsv", metrics)
    lines = (tmp_path / "metrics.tsv").read_text().splitlines()
    estimate = metrics["retrieval"]["paper"]["kmer"]["extra"]["unseen"]["prior_unseen"]
    assert f"paper\tkmer\tunseen\t\tprior_unseen\t{estimate:.6g}" in lines
    assert "paper\tkmer\tseen\t\tmissing\t3" in lines and "left-out\tkmer\tunseen\t\tmissing\t0" in lines
    # the printed report said nothing of them: image-image scores of half the queries (those with a
    # photo) stood beside dna-dna's of all, with the same query counts above both
    text = text_report(metrics).splitlines()
    said = ("   queries a method could not take (no photo, an unusable barcode), left out of its scores: "
            "kmer seen 3")
    assert text[text.index("== scenario paper: " + metrics["scenarios"]["paper"]["title"]) + 2] == said
    assert said not in text[text.index("== scenario left-out: " + metrics["scenarios"]["left-out"]["title"]):]
    batches = metrics["open_set"]["left-out"]["kmer"]["batches"]
    assert f"left-out\tkmer\tmix\t\tbatch_new_share\t{batches['new_share']['mix']:.6g}" in lines
    assert f"left-out\tkmer\tunseen\tgenus\tbatch_ece\t{batches['ece']['unseen']['genus']:.6g}" in lines
    point = batches["curve"][7]
    assert f"left-out\tkmer\tmix\t\tnew_genus_right@0.8\t{point['new_genus_right']:.6g}" in lines
    ece = metrics["open_set"]["left-out"]["kmer"]["reliability"]["species"]["ece"]
    assert f"left-out\tkmer\t\tspecies\tece\t{ece:.6g}" in lines

    def leaves(tree, path=()):
        if isinstance(tree, dict):
            for key, value in tree.items():
                yield from leaves(value, path + (key,))
        elif isinstance(tree, list) and tree and isinstance(tree[0], dict):
            for point in tree:
                yield from leaves({f"{k}@{point['cutoff']:g}": v for k, v in point.items() if k != "cutoff"}, path)
        elif not isinstance(tree, list) and path[0] in ("retrieval", "open_set"):
            yield path, tree

    rows = [line.split("\t") for line in lines[1:]]
    numbers = [(path, value) for path, value in leaves(metrics)
               if not (len(path) > 4 and path[3] == "reliability" and path[5] != "ece")]
    assert len(rows) == len(numbers)  # one line each, none twice


def test_blastn_baseline(dataset):
    require_programs("makeblastdb", "blastn")
    metrics = run_evaluation(Plan(data=dataset, baselines=("blastn",))).metrics
    r = metrics["retrieval"]["paper"]["blastn"]
    assert r["seen"]["species"]["top1"]["micro"] == 1.0 and r["unseen"]["species"]["top1"]["micro"] == 1.0


def test_mmseqs_baseline(dataset, tmp_path, monkeypatch):
    """MMseqs2's nucleotide top hit: right species when the keys have it, right genus when not; the
    keys' database and k-mer index are made once a scenario and each part searched against them; a
    part without a usable barcode is not searched (mmseqs fails on an empty FASTA); its errors are
    one line."""
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation import baselines
    from clibd_cli.evaluation.baselines import AlignmentBaseline
    from clibd_cli.evaluation.retrieval import Queries

    require_programs("mmseqs")
    commands, call = [], baselines._call
    monkeypatch.setattr(baselines, "_call", lambda command: (commands.append(command), call(command)))
    metrics = run_evaluation(Plan(data=dataset, baselines=("mmseqs",))).metrics
    steps = [c[1] for c in commands]
    assert steps == ["createdb", "createindex", "easy-search", "easy-search"] * 2  # paper, left-out: seen, unseen
    assert {Path(c[3]).name for c in commands if c[1] == "easy-search"} == {"keys"}
    paper, left_out = metrics["retrieval"]["paper"]["mmseqs"], metrics["retrieval"]["left-out"]["mmseqs"]
    assert paper["seen"]["species"]["top1"]["micro"] == paper["unseen"]["species"]["top1"]["micro"] == 1.0
    assert left_out["unseen"]["species"]["top1"]["micro"] == 0.0
    assert left_out["unseen"]["genus"]["top1"]["micro"] == 1.0
    unseen = metrics["open_set"]["left-out"]["mmseqs"]["unseen"]  # A3 ~91 % like A1/A2: family, not genus
    assert unseen["family"]["assigned_rate"] == 1.0 and unseen["genus"]["assigned_rate"] == 0.0
    baseline = AlignmentBaseline("mmseqs", tmp_path)
    with open_dataset(dataset) as ds:
        keys, test = Records(ds, ("train",)), Records(ds, ("test",))
        empty = baseline.run(None, keys, {"seen": Queries(test, np.arange(0))})["seen"]
    assert len(empty.calls.labels["species"]) == 0
    with pytest.raises(ClibdError, match=r"^mmseqs failed \(exit 1\): Input .*absent.fasta does not exist$"):
        baseline._hits(tmp_path / "mmseqs" / "seen.fasta", tmp_path / "absent.fasta", tmp_path / "hits.tsv")


def test_mmseqs_rows_become_top_hits_and_a_query_without_one_is_unassigned(tmp_path, monkeypatch):
    """mmseqs writes ``query target pident bits`` in its threads' order and no row for a query
    without hits: rows are read best bit score first, as blastn's, with clibd's thread count."""
    from types import SimpleNamespace

    from clibd_cli.evaluation import baselines
    from models.config import RANKS

    commands = []

    def mmseqs(command: list[str]) -> None:
        commands.append(command)
        Path(command[4]).write_text("q1\tu0;tax=o:O1;\t91.500\t700\n"
                                    "q0\tu1;tax=o:O1;\t96.000\t900\nq0\tu0;tax=o:O1;\t99.100\t1100\n")

    monkeypatch.setattr(baselines, "_call", mmseqs)
    baseline = baselines.AlignmentBaseline("mmseqs", tmp_path, threads=3)
    hits = baseline._hits(tmp_path / "seen.fasta", tmp_path / "keys.fasta", tmp_path / "hits.tsv")
    assert hits == [(0, 0, 0.991, 1100.0), (0, 1, 0.96, 900.0), (1, 0, 0.915, 700.0)]
    command = " ".join(commands[0])
    assert command.startswith("mmseqs easy-search ") and "--search-type 3" in command and "--threads 3" in command
    names = {"order": "O1", "family": "F1", "genus": "GA", "species": ["A1", "A2"]}
    keys = SimpleNamespace(labels={r: np.array(names[r] if r == "species" else [names[r]] * 2, dtype=object)
                                   for r in RANKS})
    reference = baselines._Reference(["A", "C"], [(), ()], [np.array([0]), np.array([1])])
    outcome = SimpleNamespace(extra={})
    baselines._top_hits(outcome, hits, reference, keys, 3)  # q2: no row
    assert list(outcome.calls.labels["species"]) == ["A1", "A1", None]
    assert [list(outcome.calls.asserted[r]) for r in ("species", "genus", "family")] == [
        [True, False, False], [True, False, False], [True, True, False]]  # 91.5 %: family only
    assert list(outcome.neighbours["species"][0][:2]) == ["A1", "A2"] and outcome.extra["no_hit"] == 1


def test_missing_peer_programs_skip_here_and_fail_in_ci(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs the peer tools: vsearch not on PATH"):
        require_programs("vsearch")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_programs("vsearch")


def test_missing_tools_are_skipped_with_a_note(dataset, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    metrics = run_evaluation(Plan(data=dataset, baselines=("kmer", "vsearch-sintax", "blastn", "mmseqs"))).metrics
    assert list(metrics["retrieval"]["paper"]) == ["kmer"]
    assert any("vsearch-sintax skipped: vsearch not found" in n for n in metrics["notes"])
    assert any("blastn skipped" in n for n in metrics["notes"])
    assert "baseline mmseqs skipped: mmseqs not found on PATH" in metrics["notes"]


def test_nothing_left_to_evaluate_says_why_each_chosen_method_was_skipped(dataset, monkeypatch):
    # "--pairs image-image" on a file without photos, or "--baselines blastn" without blastn, ended in
    # "nothing to evaluate: no model pair and no baseline selected": the user had selected one
    with pytest.raises(ClibdError, match="--pairs: pair image-image cannot be evaluated: the dataset has no "
                                         "photos for it; leave it out") as unfit:
        run_evaluation(Plan(data=dataset, model="clibd-tiny", pairs=("image-image",), baselines=()))
    assert isinstance(unfit.value, UsageError)  # a pair the data cannot give: exit 2
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ClibdError, match="nothing to evaluate: baseline blastn skipped: makeblastdb, "
                                         "blastn not found on PATH") as missing:
        run_evaluation(Plan(data=dataset, baselines=("blastn",)))
    assert not isinstance(missing.value, UsageError)  # this machine lacks a program: exit 1, not a usage error


def test_hnsw_search_gives_the_exact_answers_here(dataset, hand):
    plan = Plan(data=dataset, baselines=(), search="hnsw", scenarios=("paper",))
    approximate = run_evaluation(plan, sources={"dna-dna": (FixedVectors(), "dna", "dna")}).metrics
    exact = hand["retrieval"]["paper"]["dna-dna"]
    assert approximate["retrieval"]["paper"]["dna-dna"]["seen"] == exact["seen"]
    assert approximate["settings"]["search"] == "hnsw"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_hnsw_search_in_evaluate_recalls_the_exact_neighbours_among_1000_random_keys(tmp_path, monkeypatch):
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.retrieval import PairMethod, Queries
    from clibd_cli.evaluation.vectors import Embeddings
    from clibd_cli.reference import hnsw_index

    rng = np.random.default_rng(5)
    keys = _unit(rng.normal(size=(1000, 32)))
    queries = _unit(keys[rng.integers(0, 1000, 200)] + 0.15 * rng.normal(size=(200, 32)))
    vectors = {**{f"k{i}": v for i, v in enumerate(keys)}, **{f"q{i}": v for i, v in enumerate(queries)}}
    with DatasetWriter(tmp_path / "random.h5") as writer:
        for i in range(1000):
            writer.add("train", Record(f"k{i}", barcode="ACGT" * 50, order="O", family="F", genus=f"G{i // 10}",
                                       species=f"S{i}"))
        for i in range(200):
            writer.add("test", Record(f"q{i}", barcode="ACGT" * 50, order="O", family="F", genus="G0", species="S0"))
    built = []  # sizes of the HNSW graphs evaluate built
    build = hnsw_index.build_index
    monkeypatch.setattr(hnsw_index, "build_index", lambda vectors, *a, **kw: built.append(len(vectors)) or build(
        vectors, *a, **kw))
    with open_dataset(tmp_path / "random.h5") as ds:
        test = Records(ds, ("test",))
        method = PairMethod("dna-dna", FixedVectors(vectors), "dna", "dna", search="hnsw")
        found = method.run(Embeddings(ds, None), Records(ds, ("train",)), {"seen": Queries(test, np.arange(200))})
    assert built == [1000]
    rows = np.array([[int(label[1:]) for label in row] for row in found["seen"].neighbours["species"]])
    exact = np.argsort(-(queries @ keys.T), axis=1)[:, :5]
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(rows, exact)])
    assert recall >= 0.98, recall


def test_embedding_cache_is_read_back_and_keyed_by_model_precision_and_dataset(dataset, tmp_path):
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.vectors import Embeddings

    data, cache = tmp_path / "hand.h5", tmp_path / "cache"
    shutil.copy(dataset, data)

    def embeds(source) -> int:
        """Calls ``source`` made to embed the train split in a fresh session."""
        calls = source.calls
        with open_dataset(data) as ds:
            vectors = Embeddings(ds, cache).get(source, ("train",), "dna")
        assert np.array_equal(vectors, np.stack([VECTORS[k] for k, _, split in KEYS if split == "train"]))
        return source.calls - calls

    model = FixedVectors(fingerprint="model-1")
    assert embeds(model) == 1 and embeds(model) == 0  # the second session reads the cache
    assert embeds(FixedVectors(fingerprint="model-2")) == 1  # another model: a new entry
    bf16 = FixedVectors(fingerprint="model-1")
    bf16.precision = "bf16"
    assert embeds(bf16) == 1
    assert len(list(cache.glob("train.dna.*.npy"))) == 3
    data.write_bytes(data.read_bytes() + b"\0")  # the dataset file changed (size, mtime)
    assert embeds(model) == 1 and embeds(model) == 0
    assert embeds(FixedVectors()) == 1  # no fingerprint: never cached


def test_a_file_with_keys_of_val_unseen_species_only_keeps_them_in_the_paper_keys(tmp_path):
    """A small FASTA prepared in the CLIBD 1M layout may hold `val_unseen_keys` but no
    `test_unseen_keys`: the paper keys are the seen keys and those, and left-out differs."""
    from clibd_cli.data.store import open_dataset

    path = tmp_path / "small.h5"
    with DatasetWriter(path) as writer:
        for pid, split, name in (("k0", "seen_keys", "A1"), ("k1", "seen_keys", "B1"), ("u0", "val_unseen_keys", "A3"),
                                 ("v0", "val_seen", "A1"), ("v1", "val_unseen", "A3")):
            order, family, genus = LINEAGE[name]
            writer.add(split, Record(pid, barcode="ACGT" * 100, order=order, family=family, genus=genus, species=name))
    with open_dataset(path) as ds:
        found, notes = scenarios(ds, "val")
        assert [(s.name, s.keys) for s in found] == [("paper", ("seen_keys", "val_unseen_keys")),
                                                     ("left-out", ("seen_keys",))]
    alone = tmp_path / "alone.h5"  # no unseen species at all: no left-out scenario to run
    with DatasetWriter(alone) as writer:
        for pid, split, name in (("k0", "train", "A1"), ("q0", "test", "A1")):
            order, family, genus = LINEAGE[name]
            writer.add(split, Record(pid, barcode="ACGT" * 100, order=order, family=family, genus=genus, species=name))
    with open_dataset(alone) as ds:
        found, notes = scenarios(ds, "test")
        assert [s.name for s in found] == ["paper"] and "scenario left-out skipped" in " ".join(notes)
        with pytest.raises(ClibdError, match="nothing to evaluate: .*scenario left-out skipped"):
            scenarios(ds, "test", ("left-out",))  # found no scenario: an IndexError later
    no_unseen_keys = tmp_path / "no-unseen-keys.h5"  # unseen queries, no keys of theirs: left-out only
    with DatasetWriter(no_unseen_keys) as writer:
        for pid, split, name in (("k0", "train", "A1"), ("q0", "test", "A1"), ("u0", "test_unseen", "A3")):
            order, family, genus = LINEAGE[name]
            writer.add(split, Record(pid, barcode="ACGT" * 100, order=order, family=family, genus=genus, species=name))
    with open_dataset(no_unseen_keys) as ds:
        found, notes = scenarios(ds, "test")  # paper would have run left-out's keys a second time
        assert [(s.name, s.keys) for s in found] == [("left-out", ("train",))]
        assert "scenario paper skipped: the file has no keys of unseen species" in " ".join(notes)
        with pytest.raises(ClibdError, match="nothing to evaluate: .*; evaluate --scenario left-out$"):
            scenarios(ds, "test", ("paper",))


def test_batches_without_usable_queries_score_as_undefined_not_a_crash():
    """A query split whose barcodes are all unusable (or photos absent) gives empty batches: their
    numbers are undefined (None), where batch_scores stopped with 'internal error (TypeError ...)'."""
    from clibd_cli.evaluation.retrieval import Calls, Outcome
    from clibd_cli.evaluation.scores import batch_scores
    from models.config import RANKS

    def empty() -> Outcome:
        calls = Calls({r: np.array([], dtype=object) for r in RANKS}, {r: np.zeros(0, dtype=bool) for r in RANKS},
                      {r: np.zeros(0) for r in RANKS})
        return Outcome({r: np.array([], dtype=object) for r in RANKS},
                       {r: np.zeros((0, 5), dtype=object) for r in RANKS}, calls=calls)

    keys = {r: np.array(["x"], dtype=object) for r in RANKS}
    scores = batch_scores({"seen": empty(), "unseen": empty(), "mix": empty()}, keys)
    assert scores["new_share"] == {"seen": None, "unseen": None, "mix": None}
    assert all(point["new_species_asserted"] is None for point in scores["curve"])


def test_a_full_disk_under_the_baselines_scratch_files_names_the_file():
    """vsearch's scratch FASTA lives in a temporary folder, not beside -o: a full disk there was
    `clibd: error: File too large` (or no space) with no file named."""
    from clibd_cli.evaluation.baselines import _write_fasta

    with pytest.raises(ClibdError, match=r"/dev/full: cannot write \(No space left on device\)"):
        _write_fasta(Path("/dev/full"), ["q0"], ["ACGT" * 30])


def _objects(values) -> np.ndarray:
    return np.array(values, dtype=object)


def test_harmonic_means_pair_seen_and_unseen_of_the_same_kind():
    """H of macro accuracy is that of the seen and unseen macro accuracies, H of micro that of
    the micro ones (unseen micro 2/3 and macro 1/2 here: a mix-up shows)."""
    from clibd_cli.evaluation.retrieval import Outcome
    from clibd_cli.evaluation.scores import retrieval_scores
    from models.config import RANKS

    def outcome(truth: list, nearest: list) -> Outcome:
        return Outcome({r: _objects(truth) for r in RANKS},
                       {r: _objects([[n] * 5 for n in nearest]) for r in RANKS})

    scores = retrieval_scores({"seen": outcome(["A", "B"], ["A", "B"]),
                               "unseen": outcome(["C", "C", "D"], ["C", "C", "X"])})
    unseen = scores["unseen"]["species"]["top1"]
    assert unseen == pytest.approx({"micro": 2 / 3, "macro": 1 / 2})
    assert scores["hm"]["species"]["top1"] == pytest.approx({"micro": 2 * (2 / 3) / (1 + 2 / 3),
                                                             "macro": 2 * (1 / 2) / (1 + 1 / 2)})


def _calls_outcome(truth: dict, labels: dict, confidence: dict, extra: dict | None = None):
    """An Outcome with calls at every rank (ranks not given: one label 'x', sure, right)."""
    from clibd_cli.evaluation.retrieval import Calls, Outcome
    from models.config import RANKS

    n = len(truth["species"])
    full = {r: (_objects(truth[r]) if r in truth else _objects(["x"] * n)) for r in RANKS}
    best = {r: (_objects(labels[r]) if r in labels else _objects(["x"] * n)) for r in RANKS}
    sure = {r: (np.array(confidence[r], dtype=float) if r in confidence else np.ones(n)) for r in RANKS}
    calls = Calls(best, {r: sure[r] >= 0.8 for r in RANKS}, sure)
    return Outcome(full, {r: best[r][:, None] for r in RANKS}, depth=1, calls=calls, extra=extra or {})


def test_pooled_reliability_holds_the_seen_and_the_unseen_queries():
    from clibd_cli.evaluation.scores import open_set_scores
    from models.config import RANKS

    keys = {r: _objects(["x", "A"] if r == "species" else ["x"]) for r in RANKS}
    seen = _calls_outcome({"species": ["A", "A"]}, {"species": ["A", "A"]}, {"species": [0.95, 0.95]})
    unseen = _calls_outcome({"species": ["B"]}, {"species": ["A"]}, {"species": [0.15]})
    pooled = open_set_scores({"seen": seen, "unseen": unseen}, keys)["reliability"]["species"]
    assert pooled["count"][9] == 2 and pooled["count"][1] == 1 and sum(pooled["count"]) == 3
    assert pooled["ece"] == pytest.approx((2 * 0.05 + 0.15) / 3)


def test_operating_curve_and_share_of_new_species_of_hand_made_calls():
    """On the mix: a call counts at a cutoff its confidence reaches (≥), a new species' genus is
    wrong only where it is named, and a query without a true species is neither known nor new."""
    from clibd_cli.evaluation.scores import CURVE_CUTOFFS, batch_scores
    from models.config import RANKS

    keys = {r: _objects({"genus": ["GA", "GB"], "species": ["A1", "B1"]}.get(r, ["x", "x"])) for r in RANKS}
    # q0 known A1, named; q1 new (A2, genus GA in keys): genus GA right at 0.5; q2 new (B2, genus GB
    # in keys): genus called GA, wrong, at 0.3; q3 no species label
    mix = _calls_outcome({"genus": ["GA", "GA", "GB", "GA"], "species": ["A1", "A2", "B2", None]},
                         {"genus": ["GA", "GA", "GA", "GA"], "species": ["A1", "A1", "B1", "A1"]},
                         {"genus": [0.95, 0.5, 0.3, 0.95], "species": [0.9, 0.5, 0.3, 0.9]},
                         extra={"prior_unseen": 0.4})
    scores = batch_scores({"mix": mix}, keys)
    assert scores["new_share"] == {"mix": 0.5} and scores["prior_unseen"] == {"mix": 0.4}
    curve = {point["cutoff"]: point for point in scores["curve"]}
    assert list(curve) == list(CURVE_CUTOFFS)
    assert curve[0.5] == {"cutoff": 0.5, "known_species_named": 1.0, "new_species_asserted": 0.5,
                          "new_genus_right": 0.5, "new_genus_wrong": 0.0}
    assert curve[0.3]["new_genus_wrong"] == 0.5 and curve[0.3]["new_species_asserted"] == 1.0
    assert curve[0.6] == {"cutoff": 0.6, "known_species_named": 1.0, "new_species_asserted": 0.0,
                          "new_genus_right": 0.0, "new_genus_wrong": 0.0}


def test_a_label_is_asserted_at_a_confidence_equal_to_the_cutoff(dataset):
    """As clibd classify: asserted when the confidence reaches the cutoff (≥), not only above it."""
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.retrieval import PairMethod, Queries
    from clibd_cli.evaluation.vectors import Embeddings

    with open_dataset(dataset) as ds:
        keys, test = Records(ds, ("train",)), Records(ds, ("test",))
        method = PairMethod("dna-dna", FixedVectors(), "dna", "dna", min_confidence=0.0)

        def calls():
            return method.run(Embeddings(ds, None), keys, {"seen": Queries(test, np.arange(4))})["seen"].calls

        confidence = calls().confidence["genus"]
        method.min_confidence = float(confidence[0])
        assert method.min_confidence > 0 and calls().asserted["genus"][0]


def test_queries_without_a_vector_are_counted_missing_not_scored(dataset):
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.retrieval import PairMethod, Queries
    from clibd_cli.evaluation.vectors import Embeddings

    vectors = {**VECTORS, "q3": np.zeros_like(VECTORS["q3"])}  # q3: no photo, unusable barcode
    with open_dataset(dataset) as ds:
        method = PairMethod("dna-dna", FixedVectors(vectors), "dna", "dna")
        found = method.run(Embeddings(ds, None), Records(ds, ("train",)),
                           {"seen": Queries(Records(ds, ("test",)), np.arange(4))})["seen"]
    assert found.missing == 1 and len(found) == 3
    assert list(found.truth["species"]) == ["A1", "A1", "B1"]


def test_a_top_hit_stands_for_its_key_copies_and_is_asserted_at_the_identity_cutoff():
    """A hit on a dereplicated barcode is each of its copies in key order (as tied vectors in the
    exact search); a top hit exactly at a rank's identity cutoff (97 % species) is asserted."""
    from types import SimpleNamespace

    from clibd_cli.evaluation import baselines
    from models.config import RANKS

    species = ["A1", "B1", "A1"]  # keys 0 and 2: one barcode, one lineage
    keys = SimpleNamespace(labels={r: _objects(species if r == "species" else ["x"] * 3) for r in RANKS})
    reference = baselines._Reference(["A", "C"], [(), ()], [np.array([0, 2]), np.array([1])])
    outcome = SimpleNamespace(extra={})
    baselines._top_hits(outcome, [(0, 0, 0.97, 100.0), (0, 1, 0.90, 90.0), (1, 1, 0.9699, 80.0)],
                        reference, keys, 2)
    assert list(outcome.neighbours["species"][0]) == ["A1", "A1", "B1", None, None]
    assert list(outcome.calls.asserted["species"]) == [True, False]
    assert outcome.extra["top_hit_identity_mean"] == pytest.approx((0.97 + 0.9699) / 2)


def test_sintax_labels_are_the_keys_names_not_their_sintax_spelling(tmp_path, monkeypatch):
    """SINTAX headers spell ``Aedes albopictus`` as ``Aedes_albopictus``: its answer is read back
    as the keys' name, so that it matches the true label; a support equal to the cutoff asserts it."""
    from clibd_cli.evaluation import baselines
    from clibd_cli.evaluation.retrieval import Outcome
    from models.config import RANKS

    lineage = ("Diptera", "Culicidae", "Aedes", "Aedes albopictus")
    out = tmp_path / "seen.sintax.tsv"
    monkeypatch.setattr(baselines, "_call", lambda command: out.write_text(
        "q0\to:Diptera(1.00),f:Culicidae(1.00),g:Aedes(0.95),s:Aedes_albopictus(0.80)\t+\t"
        "o:Diptera,f:Culicidae,g:Aedes,s:Aedes_albopictus\n"))
    outcome = Outcome({r: _objects([name]) for r, name in zip(RANKS, lineage)}, {})
    reference = baselines._Reference(["ACGT"], [lineage], [np.array([0])])
    sintax = baselines.AlignmentBaseline("vsearch-sintax", tmp_path, min_confidence=0.8)
    sintax._sintax(outcome, tmp_path / "q.fasta", tmp_path / "keys.fasta", out, 1, reference)
    assert list(outcome.calls.labels["species"]) == ["Aedes albopictus"]
    assert list(outcome.calls.confidence["species"]) == [0.8] and outcome.calls.asserted["species"][0]


def test_open_set_table_has_the_ece_of_species_and_genus(hand):
    from clibd_cli.evaluation.report import open_set_table

    rows = {row[0]: row[1:] for row in open_set_table(hand, "left-out")}
    for rank in ("species", "genus"):
        ece = hand["open_set"]["left-out"]["dna-dna"]["reliability"][rank]["ece"]
        assert rows[f"ECE {rank} (seen + unseen), points"] == [f"{100 * ece:.1f}"]


def test_ece_is_shown_in_percentage_points_in_every_table(dataset, tmp_path):
    """The open-set table (headed %) showed ECE as a fraction (0.130), the per-batch table in
    points (25.5): one unit, points, and the tables say so."""
    from clibd_cli.evaluation.plots import write_html
    from clibd_cli.evaluation.report import EXPLANATION, TARGETS, batch_table, open_set_table

    metrics = run_evaluation(Plan(data=dataset, baselines=("kmer",), scenarios=("left-out",))).metrics
    scores = metrics["open_set"]["left-out"]["kmer"]
    ece, mixed = scores["reliability"]["species"]["ece"], scores["batches"]["ece"]["mix"]["species"]
    assert 0.01 < ece < 0.1 and 0.01 < mixed < 0.1  # metrics.json keeps the fraction
    opened = {row[0]: row[1:] for row in open_set_table(metrics, "left-out")}
    assert opened["ECE species (seen + unseen), points"] == [f"{100 * ece:.1f}"]
    header, *batches = batch_table(metrics, "left-out")
    assert header[2:6] == [f"ECE {rank}, points" for rank in ("order", "family", "genus", "species")]
    assert next(row for row in batches if row[0] == "mix")[5] == f"{100 * mixed:.1f}"
    write_html(tmp_path / "report.html", metrics, [], EXPLANATION)
    page = (tmp_path / "report.html").read_text()
    assert "ECE species (seen + unseen), points" in page and TARGETS in page and TARGETS in text_report(metrics)


def test_the_descriptions_of_sintax_and_rdp_state_the_cutoff_they_ran_with(dataset):
    require_programs("vsearch", "java", "rdp_classifier")
    metrics = run_evaluation(Plan(data=dataset, baselines=("vsearch-sintax", "rdp"), min_confidence=0.9,
                                  scenarios=("paper",))).metrics
    assert metrics["methods"]["vsearch-sintax"]["description"] == "vsearch --sintax (cutoff 0.9)"
    assert metrics["methods"]["rdp"]["description"].endswith("(cutoff 0.9)")


def test_text_keys_say_why_they_have_no_open_set_numbers(dataset, tmp_path):
    """dna-text (keys: label strings) printed no open-set or per-batch section, and no note said why."""
    metrics = run_evaluation(Plan(data=dataset, baselines=(), scenarios=("left-out",)),
                             sources={"dna-text": (FixedVectors(), "dna", "text")}).metrics
    assert metrics["open_set"] == {} and "dna-text" in metrics["retrieval"]["left-out"]
    (note,) = [n for n in metrics["notes"] if n.startswith("open-set and per-batch numbers are not computed")]
    assert "for dna-text: their keys are label strings" in note
    assert f"note: {note}" in text_report(metrics)


def test_a_limited_run_embeds_only_the_sampled_queries_and_caches_them_apart(dataset, tmp_path):
    """--limit sampled the queries after embedding every record of their splits; a sample's
    vectors must not be read back as the whole split's."""
    source = FixedVectors(fingerprint="model-1")
    limited = run_evaluation(Plan(data=dataset, baselines=(), limit=2, cache=tmp_path),
                             sources={"dna-dna": (source, "dna", "dna")}).metrics
    assert len(source.rows["test", "dna"]) == 2 and source.rows["train", "dna"] is None
    assert source.rows["test_unseen", "dna"] is None  # its 2 records: all of them, embedded whole
    assert limited["retrieval"]["paper"]["dna-dna"]["queries"] == {"seen": 2, "unseen": 2}
    again = FixedVectors(fingerprint="model-1")
    run_evaluation(Plan(data=dataset, baselines=(), limit=2, cache=tmp_path),
                   sources={"dna-dna": (again, "dna", "dna")})
    assert again.calls == 0  # the sample's vectors are cached
    whole = FixedVectors(fingerprint="model-1")
    metrics = run_evaluation(Plan(data=dataset, baselines=(), cache=tmp_path),
                             sources={"dna-dna": (whole, "dna", "dna")}).metrics
    assert whole.rows == {("test", "dna"): None}  # the sample's cache is not the whole split's
    assert metrics["retrieval"]["paper"]["dna-dna"]["queries"] == {"seen": 4, "unseen": 2}


def test_report_page_has_each_scenarios_tables_and_escapes_notes(hand, tmp_path):
    from clibd_cli.evaluation.plots import write_html
    from clibd_cli.evaluation.report import EXPLANATION

    metrics = {**hand, "notes": ["pair <image-dna> skipped & noted"]}
    write_html(tmp_path / "report.html", metrics, [], EXPLANATION)
    page = (tmp_path / "report.html").read_text()
    assert page.count("<h3>Open set") == 2 and page.count("<h3>Top-1 macro accuracy") == 2
    assert "<li>pair &lt;image-dna&gt; skipped &amp; noted</li>" in page
    write_html(tmp_path / "report.html", {**metrics, "open_set": {"left-out": hand["open_set"]["left-out"]}},
               [], EXPLANATION)  # e.g. methods without calls in scenario paper
    assert (tmp_path / "report.html").read_text().count("<h3>Open set") == 1


def test_baselines_that_write_ascii_files_keep_names_with_other_letters(tmp_path):
    """A key named ``Aëdes ñu`` (a name with a letter beyond ASCII, as some in BOLD): it was written
    to vsearch's and RDP's files as ``A?des ?u``, so vsearch-sintax never named it right and RDP's
    training stopped (its FASTA and its taxonomy file named different taxa)."""
    require_programs("vsearch", "java", "rdp_classifier")
    rng = np.random.default_rng(1)
    genus = "".join(rng.choice(list("ACGT"), 600))
    with DatasetWriter(tmp_path / "names.h5") as writer:
        for s, name in enumerate(("Aëdes ñu", "Aedes nu", "Aedes vexans")):
            species = _mutate(genus, 0.1, rng)
            for i, split in enumerate(("train", "train", "test")):
                writer.add(split, Record(f"r{s}{i}", barcode=_mutate(species, 0.005, rng), order="Diptera",
                                         family="Culicidae", genus=name.split()[0], species=name))
    metrics = run_evaluation(Plan(data=tmp_path / "names.h5", baselines=("vsearch-sintax", "rdp"),
                                  scenarios=("paper",))).metrics
    for name in ("vsearch-sintax", "rdp"):
        seen = metrics["retrieval"]["paper"][name]["seen"]
        assert seen["species"]["top1"]["micro"] == seen["genus"]["top1"]["micro"] == 1.0, name


def test_text_report_has_its_three_accuracy_tables_and_every_note(hand):
    report = text_report({**hand, "notes": ["first note", "second note"]})
    for table in ("top-1 macro accuracy % (the paper's table)", "top-1 micro accuracy %",
                  "top-5 macro accuracy %"):
        assert report.count(f"{table}: seen / unseen / harmonic mean") == 2  # one per scenario
    assert report.endswith("\nnote: first note\nnote: second note")


def test_html_tables_escape_every_cell():
    from clibd_cli.evaluation.report import html_table

    assert html_table([["method", "a<b"], ["x & y", "<i>"]]) == (
        "<table><thead><tr><th>method</th><th>a&lt;b</th></tr></thead>"
        "<tbody><tr><td>x &amp; y</td><td>&lt;i&gt;</td></tr></tbody></table>")


def test_kmer_profiles_of_unusable_barcodes_are_zero_and_counted_missing(tmp_path):
    """A record whose barcode clibd classify would refuse (too short) has no k-mer vector: it is a
    missing query, not one matched by its few k-mers."""
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.retrieval import PairMethod, Queries
    from clibd_cli.evaluation.vectors import Embeddings, KmerProfiles

    rng = np.random.default_rng(3)
    barcode = "".join(rng.choice(list("ACGT"), 600))
    labels = {"order": "O", "family": "F", "genus": "G", "species": "G s"}
    with DatasetWriter(tmp_path / "short.h5") as writer:
        writer.add("train", Record("k0", barcode=barcode, **labels))
        writer.add("test", Record("q0", barcode=barcode[:300], **labels))
        writer.add("test", Record("q1", barcode=barcode[:40], **labels))
    with open_dataset(tmp_path / "short.h5") as ds:
        test = Records(ds, ("test",))
        vectors = KmerProfiles(5).embed(test, "dna")
        assert np.abs(vectors[0]).sum() > 0 and not vectors[1].any()
        found = PairMethod("kmer", KmerProfiles(5), "dna", "dna").run(
            Embeddings(ds, None), Records(ds, ("train",)), {"seen": Queries(test, np.arange(2))})["seen"]
    assert found.missing == 1 and len(found) == 1


def test_no_label_is_asserted_even_at_cutoff_zero(tmp_path):
    """Keys without species: no query gets a species, so none is asserted, whatever the cutoff."""
    rng = np.random.default_rng(4)
    genus = {g: "".join(rng.choice(list("ACGT"), 600)) for g in ("GA", "GB")}
    with DatasetWriter(tmp_path / "genera.h5") as writer:
        for i in range(12):
            g = ("GA", "GB")[i % 2]
            writer.add("train" if i < 8 else "test", Record(f"r{i}", barcode=_mutate(genus[g], 0.02, rng),
                                                            order="O", family="F", genus=g))
    metrics = run_evaluation(Plan(data=tmp_path / "genera.h5", baselines=("kmer",), min_confidence=0.0,
                                  scenarios=("paper",))).metrics
    seen = metrics["open_set"]["paper"]["kmer"]["seen"]
    assert seen["genus"]["assigned_rate"] == 1.0 and seen["species"]["assigned_rate"] == 0.0


def test_a_limited_run_says_how_many_queries_it_evaluated(dataset):
    metrics = run_evaluation(Plan(data=dataset, baselines=(), limit=2, scenarios=("paper",)),
                             sources={"dna-dna": (FixedVectors(), "dna", "dna")}).metrics
    queries = metrics["scenarios"]["paper"]["queries"]
    assert queries["seen"] == {"groups": ["test"], "records": 4, "evaluated": 2}
    assert metrics["retrieval"]["paper"]["dna-dna"]["queries"] == {"seen": 2, "unseen": 2}
    assert re.search(r"; queries: seen test 4 \(2 evaluated\), unseen test_unseen 2$", text_report(metrics), re.M)


def test_a_cached_embedding_of_another_length_is_made_again(dataset, tmp_path):
    """A cache entry whose rows are not the group's records (a run killed mid-way on another
    version) is not read: the group is embedded again."""
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.vectors import Embeddings

    model = FixedVectors(fingerprint="model-1")
    with open_dataset(dataset) as ds:
        Embeddings(ds, tmp_path).get(model, ("train",), "dna")
        (cached,) = tmp_path.glob("train.dna.*.npy")
        np.save(cached, np.zeros((2, 6), dtype=np.float32))
        vectors = Embeddings(ds, tmp_path).get(model, ("train",), "dna")
    assert model.calls == 2 and len(vectors) == 5 and vectors.any(axis=1).all()


def test_an_unreadable_photo_is_named_by_its_file_and_record(tmp_path, caplog):
    # the warning named it "('test',):1", the repr of a tuple of group names and a row number
    from clibd_cli.data.store import open_dataset
    from clibd_cli.evaluation.vectors import ModelVectors
    from fixtures.samples import PHOTOS_5M

    photo = sorted(PHOTOS_5M.glob("*.jpg"))[0].read_bytes()
    with DatasetWriter(tmp_path / "photos.h5", images=True) as writer:
        for pid, image in (("q0", photo), ("q1", photo[:len(photo) // 2])):
            writer.add("test", Record(pid, barcode="ACGT" * 50, order="O", image=image))
    with open_dataset(tmp_path / "photos.h5") as ds:
        kept, images = ModelVectors._photos(Records(ds, ("test",)), np.arange(2))
    assert kept.tolist() == [0] and len(images) == 1
    assert f"{tmp_path / 'photos.h5'}:test:q1: unreadable image" in caplog.text
