"""`--model kmer`: the model-free k-mer profile index, end to end on real BOLD barcodes."""

import json

from fixtures.specimens import run, specimens, tsv, write_fasta


def test_kmer_index_classifies_held_out_barcodes(tmp_path, tiny_model):
    records = specimens(n_species=6, per_species=4, unnamed=2)
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
        # barcodes of the same species are far more alike than any other: the best label is right
        best = dict(part.split("(")[0].split(":", 1) for part in row["lineage"].split(","))
        assert best["s"] == query.lineage["species"].replace(" ", "_")
        assert row["genus"] in ("", query.lineage["genus"])  # never a wrong assigned genus
        assert float(row["nearest_sim"]) > 0.5

    # a trained model is refused on the k-mer index, and --model must be a directory or kmer
    refused = run("classify", "--index", index, "-m", tiny_model, write_fasta(tmp_path / "q2.fa", queries))
    assert refused.exit_code == 1 and "index was built with model kmer (fingerprint kmer-profile" in refused.stderr
    missing = run("index", "-m", "no/such/model", write_fasta(tmp_path / "r2.fa", references), "-o", tmp_path / "x")
    assert missing.exit_code == 2 and "not a model directory" in missing.stderr
