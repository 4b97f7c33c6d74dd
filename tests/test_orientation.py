"""Orientation and the off-target guard (issue #17 items 2 and 4): the reference's k-mer sketch."""

import csv
import dataclasses
import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from clibd_cli.classification.queries import Query
from clibd_cli.indexing.bundled import PACK
from clibd_cli.io.sequences import reverse_complement, unambiguous_bases, with_errors
from clibd_cli.reference import sketch as sketch_module
from clibd_cli.reference.protein_sketch import ProteinSketch
from clibd_cli.reference.sketch import PARTIAL_LENGTHS, WHOLE_FROM, fit_sketch, load_sketch, no_protein, orient_queries
from fixtures.samples import bold_table
from fixtures.specimens import run, specimens, tsv, write_fasta

SAMPLE = Path(__file__).parents[1] / "examples" / "bold-sample.csv.gz"


def _fasta(path, named):
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in named))
    return path


@pytest.fixture(scope="module")
def records():
    return specimens(n_species=8, per_species=3, unnamed=4)


@pytest.fixture(scope="module")
def kmer_index(records, tmp_path_factory):
    """A k-mer index whose reference holds one reverse-complemented record, as BOLD's MEDLI019-20 is."""
    root = tmp_path_factory.mktemp("orientation")
    fasta = write_fasta(root / "ref.fa", records)
    flipped = records[0]
    text = fasta.read_text().replace(flipped.barcode[:60], "")  # drop its forward lines ...
    lines = [line for line in text.splitlines() if line]
    out, i = [], 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i] == flipped.sintax():
            out.append(reverse_complement(flipped.barcode))  # ... and store it turned around
            i += 1
            while i < len(lines) and not lines[i].startswith(">"):
                i += 1
            continue
        i += 1
    fasta.write_text("\n".join(out) + "\n")
    index = root / "index"
    built = run("index", "-m", "kmer", "-k", "3", fasta, "-o", index)
    assert built.exit_code == 0, built.stderr
    assert f"1 reference barcode reverse-complemented; indexed turned around: {flipped.id}" in built.stderr
    return index


def test_reverse_complemented_queries_are_classified_like_their_forward_strand(kmer_index, records, tmp_path):
    queries = [r for r in records if r.lineage["species"]][::3]
    forward = _fasta(tmp_path / "f.fa", [(r.id, r.barcode) for r in queries])
    backward = _fasta(tmp_path / "r.fa", [(r.id, reverse_complement(r.barcode)) for r in queries])
    rows_f = tsv(run("classify", "--index", kmer_index, forward).stdout)
    rows_r = tsv(run("classify", "--index", kmer_index, backward).stdout)
    assert [r["strand"] for r in rows_f] == ["+"] * len(queries)
    assert [r["strand"] for r in rows_r] == ["-"] * len(queries)
    for a, b in zip(rows_f, rows_r):
        assert {k: v for k, v in a.items() if k != "strand"} == {k: v for k, v in b.items() if k != "strand"}
    jsonl = run("classify", "--index", kmer_index, "--format", "jsonl", backward).stdout
    assert {json.loads(line)["strand"] for line in jsonl.splitlines()} == {"-"}


def test_the_turned_reference_is_found_from_the_forward_strand(kmer_index, records, tmp_path):
    flipped = records[0]
    twin = next(r for r in records[1:] if r.lineage == flipped.lineage)
    rows = tsv(run("classify", "--index", kmer_index, "--top-k", "3",
                   _fasta(tmp_path / "q.fa", [("q", twin.barcode)])).stdout)
    assert flipped.id in {row["reference_id"] for row in rows}
    manifest = json.loads((kmer_index / "manifest.json").read_text())
    assert manifest["sketch"]["turned"] == 1 and "sketch.npy" in manifest["sha256"]


def _random_sequences(n, seed=0):
    rng = random.Random(seed)
    return [("random%d" % i, "".join(rng.choice("ACGT") for _ in range(658))) for i in range(n)]


def _shuffled(records, seed=0):
    rng = random.Random(seed)
    out = []
    for r in records:
        bases = list(r.barcode)
        rng.shuffle(bases)
        out.append((f"shuffled-{r.id}", "".join(bases)))
    return out


def test_random_shuffled_and_repeat_sequences_are_unassigned(kmer_index, records, tmp_path):
    off = _random_sequences(20) + _shuffled(records[:10]) + [("repeat", "ACGTTGCA" * 82), ("polyAT", "AT" * 330)]
    result = run("classify", "--index", kmer_index, _fasta(tmp_path / "off.fa", off))
    rows = tsv(result.stdout)
    assert [r["status"] for r in rows] == ["unassigned"] * len(off)
    assert all(r[rank] == "" for r in rows for rank in ("order", "family", "genus", "species"))
    assert all(float(r["species_conf"]) == 0.0 for r in rows)
    assert "unlike every reference barcode" in result.stderr
    real = run("classify", "--index", kmer_index, _fasta(tmp_path / "real.fa", [(r.id, r.barcode) for r in records]))
    assert "unlike every reference barcode" not in real.stderr
    assert sum(r["status"] == "assigned" for r in tsv(real.stdout)) > len(records) // 2


def test_a_near_identical_match_stays_on_target_below_the_floor(kmer_index, records, tmp_path):
    """A reference's own odd barcode lies below the floor; a query matching a record that closely
    (NEAR_IDENTICAL) keeps its call. Here a raised floor makes every barcode odd: the reference's
    own barcodes keep their confidences, a random sequence still gets none."""
    raised = tmp_path / "raised"
    shutil.copytree(kmer_index, raised)
    manifest = json.loads((raised / "manifest.json").read_text())
    manifest["sketch"].update(floor=0.9999, short_floors=None)
    (raised / "manifest.json").write_text(json.dumps(manifest))
    cut = records[0].barcode[:60]  # the fixture's edit cut these bases out of every record holding them
    own = [(r.id, r.barcode) for r in records[1:] if cut not in r.barcode][:5]
    result = run("classify", "--index", raised, _fasta(tmp_path / "q.fa", own + _random_sequences(1)))
    assert result.exit_code == 0, result.stderr
    *matches, stranger = tsv(result.stdout)
    assert len(matches) == len(own) == 5
    assert all(float(row["nearest_sim"]) > 0.99 and float(row["order_conf"]) > 0 for row in matches)
    assert stranger["status"] == "unassigned" and float(stranger["order_conf"]) == 0.0
    assert result.stderr.count("unlike every reference barcode") == 1


def test_sketch_orients_real_barcodes_both_ways(records):
    barcodes = [r.barcode for r in records]
    mixed = [reverse_complement(b) if i % 5 == 0 else b for i, b in enumerate(barcodes)]
    sketch, reverse = fit_sketch(mixed)
    assert reverse.tolist() == [i % 5 == 0 for i in range(len(mixed))]
    turned, similarity = sketch.look([reverse_complement(b) for b in barcodes])
    assert turned.all() and (similarity >= sketch.floor).all()
    randoms = [s for _, s in _random_sequences(5)]
    assert sketch.off_target(sketch.look(randoms)[1], randoms).all()
    assert reverse_complement("ACGTNRYU-") == "-ARYNACGT"
    assert np.isclose(sketch.look(["ACGT" * 50])[1][0], sketch.look([reverse_complement("ACGT" * 50)])[1][0])
    # as like the reference on both strands (its own reverse complement, or no 5-mer): read as given
    ties = [Query("palindrome", barcode="ACGT" * 50), Query("no k-mer", barcode="NNNNNNNN"), Query("short", barcode="ACG")]
    orient_queries(sketch, ties, [200, 0, 3])
    assert [(q.strand, q.barcode) for q in ties] == [("+", "ACGT" * 50), ("+", "NNNNNNNN"), ("+", "ACG")]


def test_insects_of_genera_missing_from_a_reference_of_whole_barcodes_pass_the_off_target_guard():
    """A curated reference: whole barcodes, up to 10 per species. Its own barcodes lie close to
    their centroids and new species farther, so a floor from each barcode's own centroid turned
    away 1.6 % of the real new species of its orders (some of genera it holds); the floor is
    fitted as if each barcode's centroid were missing, as a new genus's would be."""
    _, rows = bold_table()
    whole = [r for r in rows if unambiguous_bases(r["dna_barcode"].replace("-", "")) >= 600]
    by_species: dict[str, list[str]] = {}
    for r in whole:
        if r["split"] == "train":
            by_species.setdefault(r["species"], []).append(r["dna_barcode"].replace("-", ""))
    kept = sorted(by_species)
    random.Random(7).shuffle(kept)
    kept = kept[:350]
    sketch, _ = fit_sketch([b for species in kept for b in by_species[species][:10]])
    orders = {r["order"] for r in whole if r["species"] in set(kept)}
    new = [r["dna_barcode"].replace("-", "") for r in whole if r["split"] == "test_unseen" and r["order"] in orders]
    assert len(new) > 1000
    assert sketch.off_target(sketch.look(new)[1], new).mean() < 0.002
    randoms = [s for _, s in _random_sequences(20)]
    assert sketch.off_target(sketch.look(randoms)[1], randoms).all()


def test_shuffled_barcodes_that_read_as_no_protein_are_held_to_a_higher_floor(monkeypatch):
    """Base-shuffled COI keeps the reference's composition: by k-mers alone the bundled
    reference's floor turns away few of them. It meets stop codons in every reading frame where
    COI does not, and such barcodes are held to a floor that 99 % of the reference's barcodes
    reach: nearly all are turned away; the 3,000 real barcodes of the committed sample, and the
    same with 1 % insertions and deletions (sequencing errors), none."""
    sketch = load_sketch(PACK, json.loads((PACK / "pack.json").read_text())["manifest"], "reinstall")
    assert sketch.stop_floor is not None and sketch.stop_floor > sketch.floor
    with gzip.open(SAMPLE, "rt") as handle:
        real = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle)]
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(b, len(b))) for b in real[:500]]
    noisy = ["".join(c + rng.choice("ACGT") if rng.random() < 0.005 else "" if rng.random() < 0.005 else c
                     for c in b) for b in real[:1000]]

    def turned_away(sketch, barcodes):
        reverse, similarity = sketch.look(barcodes)
        return sketch.off_target(similarity, [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)])

    assert not turned_away(sketch, real).any() and not turned_away(sketch, noisy).any()
    assert turned_away(sketch, shuffled).mean() >= 0.98  # measured: 0.986 (0.968 without the shuffle rule)
    why = sketch.judge(sketch.look(shuffled[:20])[1], shuffled[:20])
    assert sum("reads as no protein" in (w or "") for w in why) >= 15
    monkeypatch.setattr(sketch_module, "COMPOSITION_MARGIN", -np.inf)  # neither later rule: few turned away
    assert turned_away(sketch, shuffled).mean() >= 0.95  # 0.968
    assert turned_away(dataclasses.replace(sketch, stop_floor=None), shuffled).mean() <= 0.3  # 0.154
    # a reference that does not read as protein (rRNA, say) gets no such rule
    assert fit_sketch(shuffled)[0].stop_floor is None and fit_sketch(real[:500])[0].stop_floor is not None


def test_a_small_reference_turns_away_barcodes_no_more_like_it_than_their_own_shuffles(monkeypatch):
    """A reference of 32 barcodes per order sets its floors low (they rest on its own spread), and
    long shuffled barcodes (many k-mers) pass them all: each whole barcode is compared with its own
    shuffles instead. The committed sample's other 2,476 barcodes, and 500 with 5 % errors, pass."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["species"]]
    rng = random.Random(3)
    by_order: dict[str, list[dict]] = {}
    for r in rows:
        by_order.setdefault(r["order"], []).append(r)
    reference = [r for order in sorted(by_order) for r in rng.sample(by_order[order], 32)]
    sketch = fit_sketch([r["dna_barcode"].replace("-", "") for r in reference])[0]
    rest = [r["dna_barcode"].replace("-", "") for r in rows if r not in reference]
    whole = [b for b in rest if unambiguous_bases(b) >= WHOLE_FROM]
    shuffled = ["".join(rng.sample(b, len(b))) for b in whole[:400]]
    long = ["".join(rng.sample(a + b, len(a + b))) for a, b in zip(whole[400:450], whole[450:500])]
    noisy = [with_errors(b, 0.05, rng) for b in whole[:500]]

    def turned_away(barcodes):
        reverse, similarity = sketch.look(barcodes)
        return sketch.off_target(similarity, [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)])

    assert not turned_away(rest).any() and not turned_away(noisy).any()
    assert turned_away(long).all() and turned_away(shuffled).mean() >= 0.99  # measured: 0.995
    why = sketch.judge(sketch.look(long[:5])[1], long[:5])
    assert all(w.startswith("no more like the reference's barcodes than its own bases shuffled") for w in why)
    monkeypatch.setattr(sketch_module, "COMPOSITION_MARGIN", -np.inf)  # without the rule
    assert not turned_away(long).any() and turned_away(shuffled).mean() <= 0.85  # 0.78


def test_other_markers_the_bundled_reference_named_are_turned_away_by_their_shuffles_or_their_protein(monkeypatch):
    """Real sequences of other markers (``fixtures/other_markers.fasta``, from Debian ncbi-data's
    BLAST databases, public domain): 16 plant plastid *matK* genes (protein-coding: they read as
    protein) and 8 salamanders' mitochondrial large-subunit rRNAs. The bundled reference's floors
    let each through and its model named an insect order for each (Diptera at 0.99, some). The
    rRNAs are no more like the reference than their own shuffles; the *matK* genes translate to a
    protein unlike COI's, and the last 8 beat their shuffles: only the translation sketch turns
    them away."""
    markers = Path(__file__).parent / "fixtures" / "other_markers.fasta"
    result = run("-v", "classify", markers)
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in tsv(result.stdout)] == ["unassigned"] * 24
    assert result.stderr.count("translates to a protein unlike the reference's") == 16
    assert result.stderr.count("no more like the reference's barcodes than its own bases shuffled") == 8
    monkeypatch.setattr(ProteinSketch, "similarity", lambda self, barcodes: np.ones(len(barcodes), np.float32))
    without = run("-v", "classify", markers)
    assert [r["status"] for r in tsv(without.stdout)] == ["unassigned"] * 16 + ["assigned"] * 8
    assert without.stderr.count("no more like the reference's barcodes than its own bases shuffled") == 16
    monkeypatch.setattr(sketch_module, "COMPOSITION_MARGIN", -np.inf)
    assert [r["status"] for r in tsv(run("classify", markers).stdout)] == ["assigned"] * 24


def test_stretches_of_other_markers_the_bundled_reference_named_are_turned_away_by_their_stops(monkeypatch):
    """313- and 150-base stretches of mitochondrial rRNAs (``fixtures/other_marker_stretches.fasta``,
    of vertebrates, ticks and others, from Debian ncbi-data's BLAST databases, public domain) that
    passed every k-mer floor and that the bundled reference named an insect order (Hymenoptera at
    0.84-1.00, one Diptera): each meets a stop codon in every frame and reads as a protein under
    the translation sketch's floor for reads of its length."""
    stretches = Path(__file__).parent / "fixtures" / "other_marker_stretches.fasta"
    result = run("-v", "classify", stretches)
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in tsv(result.stdout)] == ["unassigned"] * 12
    assert result.stderr.count("a partial barcode whose every reading frame meets a stop codon") == 12
    monkeypatch.setattr(ProteinSketch, "read_floor", lambda self, bases: np.full(len(bases), -np.inf))
    assert all(r["order"] for r in tsv(run("classify", stretches).stdout))


def test_the_shuffle_rule_answers_the_same_in_any_batch_and_is_met_at_the_margin(monkeypatch):
    """A barcode's shuffles are seeded by the barcode: alone or among others, first or last, it gets
    the same answer; one exactly ``COMPOSITION_MARGIN`` above its shuffles is on target."""
    with gzip.open(SAMPLE, "rt") as handle:
        real = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle)][:300]
    sketch = fit_sketch(real[:100])[0]
    rng = random.Random(5)
    batch = ["".join(rng.sample(b, len(b))) + "".join(rng.sample(b, len(b))) for b in real[100:130]] + real[130:160]
    similarity = sketch.look(batch)[1]
    together = sketch.judge(similarity, batch)
    assert together[::-1] == sketch.judge(similarity[::-1], batch[::-1])
    assert together == [sketch.judge(similarity[i : i + 1], batch[i : i + 1])[0] for i in range(len(batch))]
    assert None not in together[:30] and together[30:] == [None] * 30
    assert sum(w.startswith("no more like") for w in together[:30]) >= 10
    assert (sketch.composition_limit(batch[:30]) > similarity[:30]).all()
    monkeypatch.setattr(sketch_module.Sketch, "shuffled_similarity",
                        lambda self, barcodes: np.array([0.5] * len(barcodes), np.float32))
    at = np.array([0.5 + sketch_module.COMPOSITION_MARGIN], np.float32)
    bare = dataclasses.replace(sketch, floor=0.0, short_floors=None, stop_floor=None)  # this rule alone
    bare.composition_limit = lambda barcodes: np.ones(len(barcodes))
    assert bare.judge(at, real[:1]) == [None]
    assert bare.judge(np.nextafter(at, 0), real[:1])[0].startswith("no more like")
    assert bare.judge(np.nextafter(at, 0), [real[0][:WHOLE_FROM - 1]]) == [None]  # whole barcodes only
    assert bare.judge(np.nextafter(at, 0), [real[0][:WHOLE_FROM]])[0].startswith("no more like")  # from WHOLE_FROM


def test_index_names_reference_barcodes_that_read_as_no_protein(tmp_path):
    """A reference of real barcodes with one shuffled in (as a pseudogene or a frame-shifted
    record would be): `clibd index` names it and keeps it."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["species"]][:150]
    named = [(f"{r['processid']};tax=o:{r['order']},f:{r['family']},g:{r['genus']},s:{r['species'].replace(' ', '_')};",
              r["dna_barcode"].replace("-", "")) for r in rows]
    odd = named[0][1]
    named.append(("SHUFFLED1;tax=o:Diptera,f:Culicidae,g:Culex,s:Culex_pipiens;",
                  "".join(random.Random(1).sample(odd, len(odd)))))
    built = run("index", "-m", "kmer", "-k", "3", _fasta(tmp_path / "ref.fa", named), "-o", tmp_path / "index")
    assert built.exit_code == 0, built.stderr
    assert "1 reference barcode reading as no protein" in built.stderr and "kept: SHUFFLED1" in built.stderr
    assert "read as protein: --model kmer-aa also reads their amino acids" in built.stderr
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["count"] == 151 and manifest["sketch"]["stop_floor"] > manifest["sketch"]["floor"]
    assert len(manifest["sketch"]["short_stop_floors"]) == len(manifest["sketch"]["short_floors"])


def test_only_a_plain_kmer_index_of_barcodes_that_read_as_protein_points_to_kmer_aa(tmp_path):
    """`clibd index -m kmer` of COI (above) points to `kmer-aa`; of barcodes that do not read as
    protein (another marker, here the same shuffled), or with `-m kmer-aa` itself, it does not."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["species"]][:150]
    named = [(f"{r['processid']};tax=o:{r['order']},f:{r['family']},g:{r['genus']},s:{r['species'].replace(' ', '_')};",
              r["dna_barcode"].replace("-", "")) for r in rows]
    shuffled = [(name, "".join(random.Random(i).sample(b, len(b)))) for i, (name, b) in enumerate(named)]
    for model, reference in (("kmer-aa", named), ("kmer", shuffled)):
        built = run("index", "-m", model, _fasta(tmp_path / f"{model}.fa", reference), "-o", tmp_path / model)
        assert built.exit_code == 0, built.stderr
        assert "kmer-aa also reads" not in built.stderr


def test_the_no_protein_rule_is_fitted_on_the_references_strand_and_held_by_length():
    """A reference with one barcode in ten stored reverse-complemented (a quarter of COI's reverse
    complements meet three stops in every frame) still gets the rule; a partial barcode is held to
    the rule's own floor for its length, above the first floor's; a barcode with exactly
    ``STOPS`` stops is named, and a reference that reads as no protein names none."""
    with gzip.open(SAMPLE, "rt") as handle:
        real = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle)][:500]
    sketch = fit_sketch([reverse_complement(b) if i % 10 == 0 else b for i, b in enumerate(real)])[0]
    assert sketch.stop_floor is not None and all(np.greater(sketch.short_stop_floors, sketch.short_floors))
    assert np.allclose(sketch.stop_floors([*PARTIAL_LENGTHS, WHOLE_FROM]), [*sketch.short_stop_floors, sketch.stop_floor])
    clean = "AAAATAAAT" * 20
    assert no_protein(sketch, [clean, "C".join([clean] * 4)]) == [1]  # three frame shifts: three stops
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(b, len(b))) for b in real]
    assert no_protein(fit_sketch(shuffled)[0], shuffled) == []


def test_off_target_queries_do_not_count_in_the_estimated_share_of_new_species(kmer_index, records, tmp_path):
    """Random sequences in a batch are turned away; they must not make the batch's real queries
    look like new species (the share estimated per run is estimated on the on-target ones)."""
    real = [(r.id, r.barcode) for r in records if r.lineage["species"]][:8]
    alone = tsv(run("classify", "--index", kmer_index, _fasta(tmp_path / "real.fa", real)).stdout)
    mixed = run("classify", "--index", kmer_index, _fasta(tmp_path / "mixed.fa", real + _random_sequences(24)))
    rows = tsv(mixed.stdout)
    assert [r["status"] for r in rows[len(real):]] == ["unassigned"] * 24
    assert [r["prior_unseen"] for r in rows[: len(real)]] == [r["prior_unseen"] for r in alone]
    assert [r["species_conf"] for r in rows[: len(real)]] == [r["species_conf"] for r in alone]
    assert f"(EM on the first {len(real)} dna queries)" in mixed.stderr


def test_the_floors_are_reached_at_equality(monkeypatch):
    """A barcode exactly at the floor is on target; one exactly at STOPS stop codons reads as no protein."""
    sketch = sketch_module.Sketch(np.zeros((1, 4 ** 5), np.float32), floor=0.8, stop_floor=0.9)
    barcode = "ACGT" * 200
    assert sketch.judge(np.array([0.8]), [barcode]) == [None]
    assert sketch.judge(np.array([0.79]), [barcode])[0].startswith("unlike every reference barcode")
    monkeypatch.setattr(sketch_module, "frame_stops", lambda barcodes: np.full(len(barcodes), sketch_module.STOPS))
    assert sketch.judge(np.array([0.85]), [barcode])[0].startswith("reads as no protein")


def test_a_note_tells_a_similarity_from_the_floor_it_is_under():
    """Two decimals unless they round alike ("0.760 < 0.762", not "0.76 < 0.76")."""
    sketch = sketch_module.Sketch(np.zeros((1, 4 ** 5), np.float32), floor=0.7616)
    assert "(k-mer similarity 0.760 < 0.762, " in sketch.judge(np.array([0.7596]), ["ACGT" * 200])[0]
    assert "(k-mer similarity 0.50 < 0.76, " in sketch.judge(np.array([0.5]), ["ACGT" * 200])[0]
