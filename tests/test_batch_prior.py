"""The share of new species per run: EM on scenario posteriors, and `clibd classify --prior-unseen`."""

import json
from pathlib import Path

import numpy as np
import pytest

from clibd_cli.classification import batch_prior
from clibd_cli.classification.batch_prior import ScenarioModel, adjust, estimate_shares, fit_scenario_model
from fixtures.specimens import run, specimens, tsv, write_fasta


def gaussian_features(rng, scenario: np.ndarray) -> np.ndarray:
    """Two features whose means move with the scenario (0 seen, 1 new species, 2 new genus)."""
    centres = np.array([[0.0, 0.0], [1.5, 1.0], [3.0, 2.5]])
    return centres[scenario] + rng.normal(size=(len(scenario), 2))


def test_em_recovers_a_known_mixture():
    rng = np.random.default_rng(0)
    training = np.repeat([0, 1, 2], 3000)
    model = fit_scenario_model(gaussian_features(rng, training), training, 3)
    assert model.training_shares == pytest.approx([1 / 3] * 3)
    default = np.array([0.5, 0.45, 0.05])
    for truth in ([0.7, 0.27, 0.03], [0.02, 0.9, 0.08], [1.0, 0.0, 0.0]):
        batch = rng.choice(3, 20000, p=truth)
        posterior = model.posterior(gaussian_features(rng, batch))
        assert posterior.sum(axis=1) == pytest.approx(np.ones(len(batch)))
        shares = estimate_shares(posterior, np.array(model.training_shares), default)
        assert shares == pytest.approx(np.bincount(batch, minlength=3) / len(batch), abs=0.03)
        # the unadjusted posteriors' mean is biased towards the training shares
        naive = posterior.mean(axis=0)
        assert abs(naive[0] - truth[0]) > abs(shares[0] - truth[0])
    again = ScenarioModel.from_json(json.loads(json.dumps(model.to_json())))
    x = gaussian_features(rng, np.array([0, 1, 2]))
    assert again.posterior(x) == pytest.approx(model.posterior(x))


def test_the_scenario_posteriors_are_at_equal_shares_whatever_the_pseudo_query_counts():
    """Features that say nothing of the scenario: the posterior is the training shares (1/S each),
    not the pseudo-queries' proportions, which EM and the fixed shares would then count twice."""
    rng = np.random.default_rng(0)
    scenario = np.repeat([0, 1, 2], [3000, 1000, 500])
    model = fit_scenario_model(rng.normal(size=(len(scenario), 2)), scenario, 3)
    assert model.posterior(rng.normal(size=(2000, 2))).mean(axis=0) == pytest.approx([1 / 3] * 3, abs=0.03)
    # and the model says so: re-expressed at other shares, such features take those shares
    target = np.array([0.6, 0.3, 0.1])
    adjusted = adjust(model.posterior(rng.normal(size=(2000, 2))), np.array(model.training_shares), target)
    assert adjusted.mean(axis=0) == pytest.approx(target, abs=0.03)


def test_fixed_shares_split_new_species_by_the_new_genus_fraction():
    from clibd_cli.classification.calibration import Calibration

    calibration = Calibration(10, None, 0.1, {}, {}, ["seen", "unseen_species", "unseen_genus", "unseen_family"])
    shares = calibration.shares(0.4)
    assert shares == pytest.approx([0.6, 0.36, 0.036, 0.004])  # of new genera, the same fraction new families
    assert calibration.new_genus_share(np.array([0.5, 0.3, 0.15, 0.05])) == pytest.approx(0.2)


def test_a_batch_of_new_families_can_raise_the_new_family_share():
    """At a default share of 0 (before), EM (multiplicative) could never raise the new-family scenario:
    a batch of families absent from the reference was taken for new genera, its wrong families named
    at 0.96 (BOLD without 30 of its families: half its records named a family at >= 0.8)."""
    from clibd_cli.classification.calibration import Calibration

    calibration = Calibration(10, None, 0.1, {}, {}, ["seen", "unseen_species", "unseen_genus", "unseen_family"])
    far = np.array([[0.0, 0.05, 0.15, 0.8]] * 50)  # queries that look like new families
    assert estimate_shares(far, np.full(4, 0.25), calibration.shares(0.5))[3] > 0.5


def test_a_new_family_scenario_stands_for_new_genera_where_no_new_genus_could_be_staged():
    """A reference with no family of two genera has no new-genus scenario: its new genera are the
    new-family scenario's, else their share was 0 and EM (multiplicative) could never raise it, so
    every query, a far one of another order included, was taken for a new species of a known genus."""
    from clibd_cli.classification.calibration import Calibration

    calibration = Calibration(10, None, 0.1, {}, {}, ["seen", "unseen_species", "unseen_family"])
    assert calibration.shares(0.4) == pytest.approx([0.6, 0.36, 0.04])
    far = np.array([[0.0, 0.0, 1.0]] * 50)  # queries that look like new families
    assert calibration.new_genus_share(estimate_shares(far, np.full(3, 1 / 3), calibration.shares(0.5))) > 0.5


def sister_tree(rng) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Records of 2 families x 3 genera x 2 pairs of 3 sister species, 4 records each: sisters lie
    nearer each other than the pairs of a genus do."""
    basis = iter(np.linalg.qr(rng.normal(size=(128, 128)))[0])
    vectors, labels = [], {rank: [] for rank in ("family", "genus", "species")}
    for family in range(2):
        f = next(basis)
        for genus in range(3):
            g = next(basis)
            for pair in range(2):
                p = next(basis)
                for species in range(3):
                    centre = f + 0.7 * g + 0.5 * p + 0.25 * next(basis)
                    vectors.append(centre + 0.1 * rng.normal(size=(4, 128)) / np.sqrt(128))
                    for rank, name in zip(labels, (f"F{family}", f"G{family}{genus}", f"s{family}{genus}{pair}{species}")):
                        labels[rank] += [name] * 4
    x = np.concatenate(vectors).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_the_scenario_model_reads_new_species_also_with_their_sister_species_left_in(monkeypatch):
    """``--model kmer-aa``'s new-species pseudo-queries leave out their nearest species too (``sisters``);
    read that way alone by the scenario model, a batch's new species, which mostly keep theirs, made its
    new genera look like new species (BOLD train without a fold's 150 species: EM put next to none of the
    batch on new genera). The scenario model reads them both ways; the maps, the harder way alone."""
    from clibd_cli.classification import fitting
    from clibd_cli.reference.hnsw_index import build_index

    vectors, labels = sister_tree(np.random.default_rng(0))
    index = build_index(vectors, [f"r{i}" for i in range(len(vectors))], labels, model_fingerprint="f",
                        modality="dna", M=8)
    read = {}

    def model(x, scenario, n):
        read["x"], read["scenario"] = x, scenario
        return fit_scenario_model(x, scenario, n)

    monkeypatch.setattr(fitting, "fit_scenario_model", model)
    plain = fitting.fit_calibration(index, k=5, n_queries=60)
    plain_read = read.copy()
    harder = fitting.fit_calibration(index, k=5, n_queries=60, sisters=1)
    assert harder.fitted_on["sisters"] == 1 and harder.scenarios == plain.scenarios
    assert len(harder.ranks["species"]["maps"]) == len(harder.scenarios)  # no map of the extra queries
    new_species = [np.flatnonzero(found["scenario"] == 1) for found in (plain_read, read)]
    counts = [harder.fitted_on["pseudo_queries"][1], plain.fitted_on["pseudo_queries"][1]]
    assert len(new_species[1]) == sum(counts)  # both ways
    species_distance = read["x"][:, -3]  # the species rank's log distance (its three features come last)
    harder_way, kept_in = species_distance[new_species[1][:counts[0]]], species_distance[new_species[1][counts[0]:]]
    assert np.median(kept_in) < np.median(harder_way)  # their sister left in: nearer
    assert np.sort(kept_in) == pytest.approx(np.sort(plain_read["x"][new_species[0], -3]))


def test_few_queries_stay_near_the_default_share():
    posterior = np.array([[0.0, 1.0]] * 3)  # three queries that look new
    shares = estimate_shares(posterior, np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    assert 0.5 < shares[1] < 0.65  # 20 pseudo-queries of prior against 3 queries
    assert adjust(np.array([[0.5, 0.5]]), np.array([0.5, 0.5]), np.array([0.9, 0.1]))[0] == pytest.approx([0.9, 0.1])


def test_a_batch_s_estimate_leans_on_the_share_it_is_given():
    """Partial barcodes' estimate is shrunk towards the run's whole barcodes' share of new species
    (``Classifier._shares``), not towards 0.5: a few partial barcodes among many whole ones keep it."""
    from clibd_cli.classification.calibration import Calibration

    rng = np.random.default_rng(0)
    training = np.repeat([0, 1, 2], 1000)
    model = fit_scenario_model(gaussian_features(rng, training), training, 3)
    calibration = Calibration(10, None, 0.1, {}, {}, ["seen", "unseen_species", "unseen_genus"], model.to_json())
    few = gaussian_features(rng, np.array([0, 1, 2]))
    low, high = (calibration.unseen_share(calibration.estimate_shares(few, prior)) for prior in (0.1, 0.9))
    assert low < 0.25 and high > 0.75


def test_a_posterior_on_ruled_out_scenarios_takes_the_target_shares():
    """A near-identical match is surely 'seen'; told that every query is new, Bayes' rule has
    nothing left to weigh: the target shares, not a row of zeros (which read as confidence 0)."""
    posterior = np.array([[1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    out = adjust(posterior, np.full(3, 1 / 3), np.array([0.0, 0.8, 0.2]))
    assert out[0] == pytest.approx([0.0, 0.8, 0.2])
    assert out[1] == pytest.approx([0.0, 0.24, 0.02] / np.float64(0.26))


def test_posteriors_are_re_expressed_from_the_training_shares_they_were_made_at():
    """Bayes' rule divides out the training shares: an even posterior made where 80% of the
    training queries were seen says the features are 4x likelier for a new species."""
    out = adjust(np.array([[0.5, 0.5]]), np.array([0.8, 0.2]), np.array([0.5, 0.5]))
    assert out[0] == pytest.approx([0.2, 0.8])


@pytest.fixture(scope="module")
def kmer_run(tmp_path_factory):
    """A k-mer index of real barcodes and queries: one held-out record per species, plus records
    of species left out of the reference."""
    root = tmp_path_factory.mktemp("prior")
    records = specimens(n_species=8, per_species=4, unnamed=0)
    species = sorted({r.lineage["species"] for r in records})
    new = set(species[:2])
    queries, references, taken = [], [], set()
    for r in records:
        if r.lineage["species"] in new or r.lineage["species"] not in taken:
            queries.append(r)
            taken.add(r.lineage["species"])
        else:
            references.append(r)
    index = root / "index"
    built = run("-q", "index", "-m", "kmer", "-k", "5", write_fasta(root / "ref.fa", references), "-o", index)
    assert built.exit_code == 0, built.stderr
    return index, write_fasta(root / "q.fa", queries, sintax=False), len(queries)


def test_auto_estimates_reports_and_differs_from_fixed(kmer_run):
    index, fasta, n = kmer_run
    auto = run("classify", "--index", index, fasta)
    assert auto.exit_code == 0, auto.stderr
    line = next(s for s in auto.stderr.splitlines() if "estimated share" in s)
    assert f"(EM on the first {n} dna queries)" in line
    share = float(line.split("reference: ")[1].split()[0])
    rows = tsv(auto.stdout)
    assert {row["prior_unseen"] for row in rows} == {f"{float(rows[0]['prior_unseen']):.4f}"}
    assert abs(float(rows[0]["prior_unseen"]) - share) < 0.006
    low, high = (tsv(run("classify", "--index", index, "--prior-unseen", p, fasta).stdout) for p in ("0.05", "0.95"))
    assert {row["prior_unseen"] for row in low} == {"0.0500"}
    assert all(float(a["species_conf"]) >= float(b["species_conf"]) for a, b in zip(low, high))
    assert sum(float(a["species_conf"]) for a in low) > sum(float(b["species_conf"]) for b in high) + 0.1
    jsonl = run("classify", "--index", index, "--format", "jsonl", "--prior-unseen", "0.3", fasta)
    assert {json.loads(line)["prior_unseen"] for line in jsonl.stdout.splitlines()} == {0.3}
    # told every query is new, a query identical to a reference still gets its genus: species
    # confidences all but vanish, the ranks above do not
    twin = tsv(run("classify", "--index", index, "--prior-unseen", "1", write_fasta(fasta.parent / "ref-q.fa",
               specimens(n_species=8, per_species=4, unnamed=0)[-2:], sintax=False)).stdout)
    assert all(float(row["genus_conf"]) > 0.5 and float(row["species_conf"]) < 0.1 for row in twin), twin
    bad = run("classify", "--index", index, "--prior-unseen", "1.5", fasta)
    assert bad.exit_code == 2 and "give auto or a share between 0 and 1" in bad.stderr


def test_the_estimate_counts_one_query_as_one(kmer_run, tmp_path):
    index, fasta, _ = kmer_run
    one = tmp_path / "one.fa"
    one.write_text(">" + fasta.read_text().split(">")[1])
    result = run("classify", "--index", index, one)
    assert result.exit_code == 0 and "(EM on the first 1 dna query)" in result.stderr, result.stderr


def test_estimation_block_then_constant_batches(kmer_run, monkeypatch):
    """Only the first ESTIMATION_QUERIES records are held at once; the rest streams in batches."""
    from clibd_cli.classification.classifier import Classifier

    index, fasta, n = kmer_run
    sizes = []
    classify = Classifier.classify

    def spy(self, queries, *args, **kwargs):
        sizes.append(len(queries))
        return classify(self, queries, *args, **kwargs)

    monkeypatch.setattr(batch_prior, "ESTIMATION_QUERIES", 5)
    monkeypatch.setattr(Classifier, "classify", spy)
    result = run("classify", "--index", index, "--batch-size", "3", fasta)
    assert result.exit_code == 0, result.stderr
    assert sizes[0] == 5 and max(sizes[1:]) <= 3 and sum(sizes) == n
    assert "(EM on the first 5 dna queries)" in result.stderr
    assert len(tsv(result.stdout)) == n


def test_a_kind_first_met_after_the_first_records_takes_the_whole_barcodes_share(kmer_run, monkeypatch):
    """Whole barcodes fill the estimation block; the partial ones after it take the whole barcodes'
    share, reported as such, whatever --batch-size cuts the rest into (estimated on their own first
    batch, they were answered differently at --batch-size 1, 3 and 10)."""
    index, fasta, n = kmer_run
    records = fasta.read_text().split(">")[1:]
    whole = [">" + r for r in records]
    partial = [">cut-" + r.split("\n", 1)[0] + "\n" + r.split("\n", 1)[1].replace("\n", "")[:300] + "\n"
               for r in records]
    (fasta.parent / "late.fa").write_text("".join(whole + partial))
    monkeypatch.setattr(batch_prior, "ESTIMATION_QUERIES", n)
    runs = [run("classify", "--index", index, "--batch-size", size, fasta.parent / "late.fa") for size in (1, 3, n)]
    assert all(result.exit_code == 0 for result in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout == runs[2].stdout
    assert {row["prior_unseen"] for row in tsv(runs[0].stdout)} == {tsv(runs[0].stdout)[0]["prior_unseen"]}
    lines = [s for s in runs[0].stderr.splitlines() if "estimated share" in s]
    assert f"(EM on the first {n} dna queries)" in lines[0], lines
    assert (f"(the whole barcodes' share: partial barcodes, no dna<500 query to estimate it on in the first {n} "
            "records)") in lines[1], lines


def test_a_kind_first_met_after_records_with_no_whole_barcode_takes_the_default_share(kmer_run, monkeypatch):
    """No whole barcode among the first records (invalid ones): the partial barcodes after them
    take the default share, and stderr says so (not 'the whole barcodes' share')."""
    index, fasta, n = kmer_run
    records = fasta.read_text().split(">")[1:]
    partial = [">" + r.split("\n", 1)[0] + "\n" + r.split("\n", 1)[1].replace("\n", "")[:300] + "\n" for r in records]
    (fasta.parent / "invalid-first.fa").write_text(">bad1\nNNNNNNNNNNNN\n>bad2\nNNNNNNNNNNNN\n" + "".join(partial))
    monkeypatch.setattr(batch_prior, "ESTIMATION_QUERIES", 2)
    result = run("classify", "--index", index, fasta.parent / "invalid-first.fa")
    assert result.exit_code == 0, result.stderr
    assert ("(the default share: partial barcodes, no dna<500 query to estimate it on in the first 2 records)"
            in result.stderr), result.stderr


def test_the_readme_python_example_streams_every_record(kmer_run, capsys):
    """The README's *From Python* block, run as written on a small index, prints one line per record."""
    index, fasta, n = kmer_run
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b.split("\n", 1)[1] for b in readme.split("```python")[1:] if "classifier.stream(" in b)
    code = block.split("```")[0].replace('"coi_ref/"', repr(str(index))).replace('"run42.fasta.gz"', repr(str(fasta)))
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    ids = [line[1:].split()[0] for line in fasta.read_text().splitlines() if line.startswith(">")]
    assert [line.split()[0] for line in lines] == ids and len(ids) == n
    assert all("'species'" in line for line in lines), lines[:3]


def test_each_stream_of_one_classifier_estimates_its_own_share(kmer_run):
    """A Classifier streaming a second input estimates that input's share of new species, as a
    fresh one would, not the first input's (README: two runs each estimate their own share)."""
    from clibd_cli.classification.classifier import Classifier
    from clibd_cli.classification.queries import iter_queries

    index, fasta, n = kmer_run
    records = fasta.read_text().split(">")[1:]
    (fasta.parent / "few.fa").write_text("".join(">" + r for r in records[: n // 3]))

    def shares(classifier, path):
        return [r.prior_unseen for block in classifier.stream(iter_queries([str(path)], []), 8) for r in block]

    reused = Classifier(str(index))
    first, second = shares(reused, fasta.parent / "few.fa"), shares(reused, fasta)
    assert second == shares(Classifier(str(index)), fasta) and second[0] != first[0]


def test_two_streams_of_one_classifier_interleaved_keep_their_own_share(kmer_run, monkeypatch):
    """Two streams of one Classifier read in turn (two threads, or zip): the second's start must
    not reset the first's estimate, which its later blocks read (they took the default 0.5)."""
    from clibd_cli.classification.classifier import Classifier
    from clibd_cli.classification.queries import iter_queries

    index, fasta, n = kmer_run
    records = fasta.read_text().split(">")[1:]
    (fasta.parent / "last.fa").write_text("".join(">" + r for r in records[-4:]))
    monkeypatch.setattr(batch_prior, "ESTIMATION_QUERIES", 4)

    def shares(blocks):
        return [r.prior_unseen for block in blocks for r in block]

    classifier = Classifier(str(index))
    alone = shares(classifier.stream(iter_queries([str(fasta)], []), 3))
    first = classifier.stream(iter_queries([str(fasta)], []), 3)
    head = next(first)
    other = shares(classifier.stream(iter_queries([str(fasta.parent / "last.fa")], []), 3))
    assert other[0] != alone[0] and shares([head, *first]) == alone


def test_progress_on_a_terminal_only_with_messages_above_it(kmer_run, monkeypatch):
    """On a terminal stderr shows records classified; the run's messages still reach stderr whole.
    Not on a terminal (a pipe, a log file): no bar."""
    from clibd_cli.main import Settings

    index, fasta, n = kmer_run
    quiet = run("classify", "--index", index, fasta)
    assert "classified" not in quiet.stderr and "records" not in quiet.stderr.replace("EM on", "")
    monkeypatch.setattr(Settings, "progress", lambda self: True)
    shown = run("classify", "--index", index, fasta)
    assert shown.exit_code == 0 and len(tsv(shown.stdout)) == n
    lines = shown.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith("classified: 0 records") for line in lines), shown.stderr
    assert any(line.startswith("clibd: estimated share") for line in lines), shown.stderr
