"""`--model kmer`: the model-free k-mer profile index, end to end on real BOLD barcodes."""

import json

from fixtures.specimens import run, specimens, tsv, write_fasta

RANKS = ("order", "family", "genus", "species")


def test_kmer_index_classifies_held_out_barcodes(tmp_path, tiny_model):
    # Acleris chalybeana and A. macdunnoughi share barcodes in BOLD (k-mer cosine up to 0.999): no
    # barcode can tell them apart, so they are left out of a test of telling species apart.
    records = [r for r in specimens(n_species=8, per_species=4, unnamed=2) if r.lineage["genus"] != "Acleris"]
    named = [r for r in records if r.lineage["species"]]
    held_out = {}
    for r in named:  # one record of each species becomes a query, the rest the reference
        held_out.setdefault(r.lineage["species"], r)
    queries = list(held_out.values())
    references = [r for r in records if r not in queries]
    index = tmp_path / "kmer_ref"
    built = run("-q", "index", "-m", "kmer", "-k", "5", write_fasta(tmp_path / "ref.fa", references), "-o", index)
    assert built.exit_code == 0, built.stderr
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["model"] == "kmer" and manifest["dim"] == 4**5
    assert manifest["model_fingerprint"] == "kmer-profile-k5-sqrt"

    result = run("classify", "--index", index, write_fasta(tmp_path / "q.fa", queries, sintax=False))
    assert result.exit_code == 0, result.stderr
    rows = tsv(result.stdout)
    assert [row["query_id"] for row in rows] == [q.id for q in queries]
    for row, query in zip(rows, queries):
        # barcodes of the same species are far more alike than any other: named to species, right
        assert [row[rank] for rank in RANKS] == [query.lineage[rank] for rank in RANKS], row
        assert row["status"] == "assigned" and float(row["species_conf"]) >= 0.8
        assert float(row["nearest_sim"]) < 0.9999  # not a copy of a reference

    # a trained model is refused on the k-mer index, and --model must be a directory or kmer
    refused = run("classify", "--index", index, "-m", tiny_model, write_fasta(tmp_path / "q2.fa", queries))
    assert refused.exit_code == 1 and "index was built with model kmer (fingerprint kmer-profile" in refused.stderr
    # so is the other model-free profile: the message tells the two fingerprints apart
    refused = run("classify", "--index", index, "-m", "kmer-aa", write_fasta(tmp_path / "q3.fa", queries))
    assert refused.exit_code == 1, refused.stderr
    assert "(fingerprint kmer-profile-k5-sqrt) but the model given is kmer-aa (fingerprint " \
        "kmer-profile-k5-sqrt+peptide" in refused.stderr
    missing = run("index", "-m", "no/such/model", write_fasta(tmp_path / "r2.fa", references), "-o", tmp_path / "x")
    assert missing.exit_code == 2 and "not a model directory" in missing.stderr


def test_species_absent_from_the_reference_stop_at_genus(tmp_path):
    records = specimens(n_species=12, per_species=4, unnamed=2)
    absent = {"Acronicta psi", "Acronicta increta"}  # congeners of reference species (not Acleris:
    # A. macdunnoughi shares its barcode with A. chalybeana, so a barcode names the latter)
    queries = [r for r in records if r.lineage["species"] in absent]
    references = [r for r in records if r not in queries]
    assert len(queries) >= 6 and all(any(r.lineage["genus"] == q.lineage["genus"] for r in references)
                                     for q in queries)
    index = tmp_path / "kmer_ref"
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", references), "-o", index).exit_code == 0
    rows = tsv(run("classify", "--index", index, write_fasta(tmp_path / "q.fa", queries, sintax=False)).stdout)
    assert len(rows) == len(queries)
    for row, query in zip(rows, queries):
        assert [row[rank] for rank in RANKS] == [*(query.lineage[r] for r in RANKS[:3]), ""], row
        assert float(row["genus_conf"]) >= 0.8 > float(row["species_conf"])


def test_calibration_on_held_out_queries(tmp_path):
    import pytest

    from clibd_cli.reference.index_reading import load_index
    from clibd_cli.indexing.pack import pack_index
    from models.errors import ClibdError

    records = [r for r in specimens(n_species=8, per_species=5) if r.lineage["species"]]
    species = sorted({r.lineage["species"] for r in records})
    new = set(species[:2])  # absent from the reference: all their records are held out
    seen_queries = {}
    for r in records:
        if r.lineage["species"] not in new:
            seen_queries.setdefault(r.lineage["species"], r)
    held_out = [r for r in records if r.lineage["species"] in new] + list(seen_queries.values())
    references = [r for r in records if r not in held_out]
    ref_fa, held_fa = write_fasta(tmp_path / "ref.fa", references), write_fasta(tmp_path / "held.fa", held_out)

    plain, calibrated = tmp_path / "plain", tmp_path / "calibrated"
    assert run("-q", "index", "-m", "kmer", ref_fa, "-o", plain).exit_code == 0
    built = run("-q", "index", "-m", "kmer", ref_fa, "-o", calibrated, "--calibrate-on", held_fa)
    assert built.exit_code == 0, built.stderr
    fitted = json.loads((calibrated / "calibration.json").read_text())["dna"]
    pseudo = json.loads((plain / "calibration.json").read_text())["dna"]
    n_unseen = sum(r.lineage["species"] in new for r in held_out)
    assert fitted["fitted_on"]["held_out_queries"] == [len(held_out) - n_unseen, n_unseen]
    assert fitted["fitted_on"]["held_out_unseen_share"] == pytest.approx(n_unseen / len(held_out))
    assert fitted["prior_unseen"] is None and fitted["scenarios"] == ["seen", "unseen"]  # estimated per run
    # the decisions stay those fitted on the reference's pseudo-queries; only the confidences move
    assert {r: v["tau_vote"] for r, v in fitted["ranks"].items()} == \
        {r: v["tau_vote"] for r, v in pseudo["ranks"].items()}
    assert fitted["ranks"]["species"]["maps"][0]["coef"] != pseudo["ranks"]["species"]["maps"][0]["coef"]

    result = run("classify", "--index", calibrated, write_fasta(tmp_path / "q.fa", held_out, sintax=False))
    assert result.exit_code == 0, result.stderr
    for row, query in zip(tsv(result.stdout), held_out):
        if query.lineage["species"] in new:
            assert row["species"] == ""  # a species missing from the reference is never asserted

    again = run("-q", "index", "-m", "kmer", ref_fa, "-o", tmp_path / "p2", "--calibrate-on", held_fa,
                "--prior-unseen", "0.2")
    assert again.exit_code == 0
    assert json.loads((tmp_path / "p2" / "calibration.json").read_text())["dna"]["prior_unseen"] == 0.2
    fixed = run("classify", "--index", tmp_path / "p2", write_fasta(tmp_path / "q.fa", held_out, sintax=False))
    assert {row["prior_unseen"] for row in tsv(fixed.stdout)} == {"0.2000"}  # kept, not estimated
    assert "estimated share" not in fixed.stderr
    assert run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-split", "val").exit_code == 2
    overlap = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-on", ref_fa)
    assert overlap.exit_code == 1 and "held-out queries are reference records too" in overlap.stderr
    unlabelled = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x",
                     "--calibrate-on", write_fasta(tmp_path / "bare.fa", held_out, sintax=False))
    assert unlabelled.exit_code == 1 and "--calibrate-on: no reference record carries a taxonomy" in unlabelled.stderr
    one_sided = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-on",
                    write_fasta(tmp_path / "seen.fa", list(seen_queries.values())))
    assert one_sided.exit_code == 1 and "must include both species in the reference and species absent" \
        in one_sided.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written
    with pytest.raises(ClibdError, match="held-out queries"):
        pack_index(load_index(calibrated), tmp_path / "pack")
    # the bundled pack's recipe: refit on the packed vectors and the same held-out queries
    from clibd_cli.embedding.kmer import kmer_profile
    from clibd_cli.indexing.pack import unpack_index

    labels = {rank: [r.lineage[rank] for r in held_out] for rank in ("order", "family", "genus", "species")}
    pack_index(load_index(calibrated), tmp_path / "pack", held_out=(kmer_profile([r.barcode for r in held_out]), labels))
    packed = json.loads((tmp_path / "pack" / "pack.json").read_text())["calibration"]["dna"]
    assert packed["scenarios"] == ["seen", "unseen"]
    assert packed["fitted_on"]["held_out_queries"] == fitted["fitted_on"]["held_out_queries"]
    assert unpack_index(tmp_path / "pack").calibration["dna"] == packed


def test_a_small_reference_names_its_own_records(tmp_path):
    """60 species x 3 BOLD records: its seen pseudo-queries are 180, two of them wrong, and with the
    pseudo-query ridge (fitting.MAP_RIDGE) the species map turned round: 125 records classified
    as themselves (similarity 1, their two conspecifics next) were left without their species
    (confidence 0.00 for Tenthredo brevicornis), and 53 of 60 further records of those species."""
    import random
    from collections import defaultdict

    from fixtures.samples import bold_table
    from fixtures.specimens import Specimen

    by_species = defaultdict(list)
    for row in bold_table()[1]:
        if row["species"] and len(row["dna_barcode"]) > 500:
            by_species[row["species"]].append(row)
    species = [s for s in by_species if len(by_species[s]) >= 4]
    random.seed(1)
    random.shuffle(species)
    records = [Specimen(row["processid"], row["dna_barcode"], {rank: row[rank] for rank in RANKS})
               for name in species[:60] for row in by_species[name][:3]]
    index = tmp_path / "small"
    built = run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", records), "-o", index)
    assert built.exit_code == 0, built.stderr
    result = run("classify", "-q", "--index", index, write_fasta(tmp_path / "q.fa", records, sintax=False))
    assert result.exit_code == 0, result.stderr
    named = [row["species"] == r.lineage["species"] for row, r in zip(tsv(result.stdout), records, strict=True)]
    assert sum(named) >= 0.95 * len(records), sum(named)  # measured: 180 (55 before)


def test_device_cuda_without_a_gpu_is_refused_on_a_kmer_index_too(tmp_path, monkeypatch):
    """--device cuda where PyTorch sees no GPU: the model path's error (exit 1), not a silent CPU run."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    records = specimens(n_species=2, per_species=2, unnamed=0)
    index = tmp_path / "kmer_ref"
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", records), "-o", index).exit_code == 0
    result = run("--device", "cuda", "classify", "--index", index, write_fasta(tmp_path / "q.fa", records[:1]))
    assert result.exit_code == 1 and result.stdout == ""
    assert "clibd: error: --device cuda was requested but no CUDA GPU is visible" in result.stderr


def test_an_exact_copy_keeps_its_order_confidence_when_every_query_is_taken_for_a_new_species(tmp_path):
    """--prior-unseen 1 reads the new-species maps only, fitted on queries never as close as a
    reference record's copy: a map sloping the wrong way out there (as the bundled reference's order
    map does) gave the copy an order confidence of 0.00. It is read at the edge of the map's data."""
    records = specimens(n_species=4, per_species=3, unnamed=0)
    index = tmp_path / "kmer_ref"
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", records), "-o", index).exit_code == 0
    calibration = json.loads((index / "calibration.json").read_text())
    dna = calibration["dna"] if "dna" in calibration else calibration
    assert dna["scenarios"][0] == "seen" and len(dna["scenarios"]) > 1
    # sure (0.88 or more) within 4 standard deviations of the log distances it was fitted on, and sloping
    # the wrong way past them (a fit's artefact): at a copy's log distance, 33 below, it reads 0
    sloped = {"mean": [-1.0, 0.3, 0.5], "scale": [0.25, 0.1, 0.2], "coef": [1.0, 0.0, 0.0], "intercept": 6.0,
              "iso_x": [], "iso_y": []}
    for rank in RANKS[:3]:
        dna["ranks"][rank]["maps"][1:] = [sloped] * (len(dna["scenarios"]) - 1)
    (index / "calibration.json").write_text(json.dumps(calibration))
    query = write_fasta(tmp_path / "q.fa", records[:1], sintax=False)
    result = run("classify", "--no-verify", "--index", index, "--prior-unseen", "1", query)
    assert result.exit_code == 0, result.stderr
    row = tsv(result.stdout)[0]
    assert row["nearest_sim"] == "1.0000" and row["order"] == records[0].lineage["order"], row
    assert float(row["order_conf"]) >= 0.8 and row["species_conf"] == "0.0000", row
