"""Barcodes read as proteins (clibd_cli/embedding/translation.py) and the k-mer profile that
adds them (``--model kmer-aa``)."""

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from Bio.Seq import Seq

from clibd_cli.embedding.kmer import MODEL_FREE, PEPTIDE_MODEL, KmerProfileModel, kmer_profile
from clibd_cli.embedding.translation import (AMINO_ACIDS, IN_FRAME_LOG_ODDS, STOP, UNKNOWN, codon_blocks, frame_breaks,
                                             frame_stops, hashed_column, peptide_profile)
from fixtures.samples import bold_table

LETTERS = AMINO_ACIDS + "*X"
ROOT = Path(__file__).resolve().parents[1]
TABLE_5 = {a + b + c: str(Seq(a + b + c).translate(table=5)) for a in "ACGT" for b in "ACGT" for c in "ACGT"}


def translate(barcode: str) -> np.ndarray:
    """The barcode's amino-acid codes (0..19, STOP, UNKNOWN) in its frame with the fewest stop codons
    (the first such frame), as ``peptide_profile`` reads it."""
    ((_, codons),) = codon_blocks([barcode])
    return codons.codes[codons.best_frame()]


def protein(barcode: str) -> str:
    return "".join(LETTERS[c] for c in translate(barcode))


def test_invertebrate_mitochondrial_code():
    # table 5 differs from the standard code here: TGA = W, ATA = M, AGA = AGG = S
    assert protein("TGGATAAGAAGGTTTTAT") == "WMSSFY"
    assert protein("tgaATGCCCGGG") == "WMPG"  # lower case; TGA is no stop


def test_frame_with_fewest_stops_gaps_dropped_rna_and_ambiguous_codons():
    # frame 0 reads TAA (stop) first; frame 1 reads "AAT GGT TTT" = N G F without a stop
    assert protein("TAATGGTTTTA") == "NGF"
    assert protein("ATG---CCC..GGG") == protein("ATGCCCGGG") == "MPG"
    assert protein("AUGCCC") == protein("augccc") == "MP"  # RNA in either case
    codes = translate("ATGNCCGGG")
    assert codes.tolist() == [AMINO_ACIDS.index("M"), UNKNOWN, AMINO_ACIDS.index("G")]
    assert translate("").size == 0 and translate("AC").size == 0


def test_frame_stops_counts_a_frame_shift_as_one_stop():
    clean = "AAAATAAAT" * 20  # K M N ... in frame 0; frames 1 and 2 meet TAA every third codon
    assert frame_stops([clean, "T" + clean, "TAATAGTAA"]).tolist() == [0, 0, 0]  # the best frame
    assert frame_stops([clean[1:] + "AA", clean[2:] + "A"]).tolist() == [0, 0]
    # frame 0 before an insertion (or a deletion), another frame after it: one shift
    assert frame_stops([clean + "C" + clean, clean + clean[1:], clean + "CC" + clean]).tolist() == [1, 1, 1]
    assert frame_stops([clean + "C" + clean + "C" + clean]).tolist() == [2]
    assert frame_stops(["", "AC", "NNNNNNTAA"]).tolist() == [0, 0, 0]


def test_a_reads_frame_shift_is_read_through():
    """A read with an insertion or a deletion (``query_kinds.READ_KIND``) is translated through
    the frame shift where its amino acids say so (``peptide_profile(reads=True)``): its profile is the
    clean barcode's, where the plain reading translates the rest of it in a wrong frame."""
    clean = "AAAATAAAT" * 10 + "ACTAGAGTA" * 10  # K M N ... then T S V ... in frame 0; frames 1, 2 meet stops
    reference = peptide_profile([clean])[0]
    for noisy in (clean[:90] + "C" + clean[90:], clean[:90] + clean[91:], clean[:90] + "GG" + clean[90:]):
        assert float(peptide_profile([noisy], reads=True)[0] @ reference) > 0.95
        assert float(peptide_profile([noisy])[0] @ reference) < 0.7
        assert float(peptide_profile([noisy], reads=True, shift_cost=1e6)[0] @ reference) < 0.8  # no shift pays
    assert np.array_equal(peptide_profile([clean], reads=True), peptide_profile([clean]))
    # real barcodes with 1 % errors: their amino acids near the clean barcode's again
    from clibd_cli.io.sequences import with_errors

    rows = [r for r in bold_table()[1] if r["split"] == "test" and len(r["dna_barcode"].strip("-N")) >= 600][:200]
    barcodes = [r["dna_barcode"].replace("-", "").strip("N") for r in rows]
    reads = [with_errors(b, 0.01, random.Random(r["processid"])) for b, r in zip(barcodes, rows)]
    broken = frame_breaks(reads) > 0
    assert broken.mean() > 0.8 and not (frame_breaks(barcodes) > 0).any()
    clean_profiles = peptide_profile(barcodes)
    assert np.array_equal(peptide_profile(barcodes, reads=True), clean_profiles)
    through = np.einsum("ij,ij->i", peptide_profile(reads, reads=True), clean_profiles)[broken]
    plain = np.einsum("ij,ij->i", peptide_profile(reads), clean_profiles)[broken]
    assert np.median(through) > 0.94 and np.median(plain) < 0.8 and (through > plain).mean() > 0.9


def test_in_frame_log_odds_are_those_of_bold_barcodes():
    """``IN_FRAME_LOG_ODDS`` is what benchmarks/frame_usage.py measures on BOLD ``train``."""
    spec = importlib.util.spec_from_file_location("frame_usage", ROOT / "benchmarks" / "frame_usage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    barcodes = [r["dna_barcode"].replace("-", "").strip("N") for r in bold_table()[1] if r["split"] == "train"][:5000]
    assert np.allclose(module.in_frame_log_odds(barcodes), IN_FRAME_LOG_ODDS, atol=0.006)


def test_kmer_aa_embeds_reads_through_their_frame_shifts():
    clean = "AAAATAAAT" * 10 + "ACTAGAGTA" * 10
    # the kmer-aa model embeds reads so (Embedder.reads); its 5-mers are the same either way
    model = MODEL_FREE[PEPTIDE_MODEL]()
    noisy = clean[:90] + "C" + clean[90:]
    read, plain = model.embed_barcodes([noisy], reads=True)[0], model.embed_barcodes([noisy])[0]
    assert float(read @ model.embed_barcodes([clean])[0]) > float(plain @ model.embed_barcodes([clean])[0]) + 0.1
    assert np.allclose(read[: 4**5] / np.linalg.norm(read[: 4**5]), plain[: 4**5] / np.linalg.norm(plain[: 4**5]))


def test_real_barcodes_read_as_protein_and_shuffled_ones_do_not():
    """``frame_stops`` tells COI from the same bases shuffled (the off-target guard's second rule,
    clibd_cli/reference/sketch.py): of 1,000 real BOLD barcodes of 500 bases or more, at most two
    meet three stops; of the same barcodes shuffled, at least 90 %."""
    import random

    rows = [r for r in bold_table()[1] if len(r["dna_barcode"].replace("-", "").replace("N", "")) >= 500][:1000]
    barcodes = [r["dna_barcode"].replace("-", "") for r in rows]
    assert len(barcodes) == 1000
    rng = random.Random(0)
    assert (frame_stops(barcodes) >= 3).sum() <= 2
    assert (frame_stops(["".join(rng.sample(b, len(b))) for b in barcodes]) >= 3).mean() >= 0.9


def test_agrees_with_biopython_on_real_barcodes():
    """Biopython's table 5 is the oracle, in the frame clibd picks, on 300 real BOLD barcodes
    (codons with an N aside: Biopython names GCN alanine, clibd calls it unknown)."""
    checked = 0
    for row in bold_table()[1][:300]:
        barcode = row["dna_barcode"].replace("-", "")
        codes = translate(barcode)
        frames = [str(Seq(barcode[f: f + 3 * ((len(barcode) - f) // 3)]).translate(table=5)) for f in range(3)]
        mine = "".join(LETTERS[c] for c in codes)
        stops = [f.count("*") for f in frames]
        frame = stops.index(min(stops))
        theirs = frames[frame]
        assert len(mine) == len(theirs)
        assert all(a == b for a, b in zip(mine, theirs) if a != "X")
        assert mine.count("*") == min(stops)
        checked += "X" not in mine
    assert checked > 250


def test_hashed_columns_hold_the_whole_profiles_counts():
    """``columns`` counts each amino-acid k-mer in the column ``hashed_column`` gives it: the
    whole profile's squared values (its counts, up to scale) summed by column are the hashed one's."""
    barcodes = [r["dna_barcode"].replace("-", "") for r in bold_table()[1][:40]]
    whole, hashed = peptide_profile(barcodes, 3), peptide_profile(barcodes, 3, columns=64)
    assert hashed.shape == (40, 64)
    folded = np.zeros((40, 64))
    np.add.at(folded.T, hashed_column(np.arange(20**3), 64), (whole**2).T)
    folded = np.sqrt(folded) / np.linalg.norm(np.sqrt(folded), axis=1, keepdims=True)
    assert np.allclose(folded, hashed, atol=1e-5)
    assert len(set(hashed_column(np.arange(20**3), 1024).tolist())) == 1024  # every column used
    assert float((whole @ whole.T - hashed @ hashed.T).std()) > 0  # not the same profile


def test_peptide_profile_counts_amino_acid_pairs():
    x = peptide_profile(["ATGCCCGGGATG", "TAA", "NNNNNN", ""], k=2)
    assert x.shape == (4, 400) and x.dtype == np.float32
    m, p, g = (AMINO_ACIDS.index(a) for a in "MPG")
    assert np.flatnonzero(x[0]).tolist() == sorted([m * 20 + p, p * 20 + g, g * 20 + m])
    assert np.linalg.norm(x[0]) == pytest.approx(1.0)
    mm, mp = peptide_profile(["ATGATGATGCCC"])[0][[m * 20 + m, m * 20 + p]]  # M M M P: MM twice, MP once
    assert mm / mp == pytest.approx(np.sqrt(2))  # square-root scaled counts
    assert not x[1:].any()  # stops and unknown codons make no pair: zero vectors
    assert STOP == 20
    # every frame holds a stop; frame 0 (the first of the ties) reads M P * G T S L T
    stopped = "ATGCCCTAAGGGACTAGTTTAACC"
    assert protein(stopped) == "MP*GTSLT"
    pairs = [AMINO_ACIDS.index(a) * 20 + AMINO_ACIDS.index(b) for a, b in ("MP", "GT", "TS", "SL", "LT")]
    assert np.flatnonzero(peptide_profile([stopped], k=2)[0]).tolist() == sorted(pairs)  # none across *


def test_kmer_aa_model_mixes_the_two_cosines():
    model = MODEL_FREE[PEPTIDE_MODEL]()
    assert model.peptide_k == 3 and model.embed_dim == 4**5 + 1024
    assert model.fingerprint() != KmerProfileModel().fingerprint()
    barcodes = [row["dna_barcode"].replace("-", "") for row in bold_table()[1][:6]]
    x = model.embed_barcodes(barcodes)
    assert np.linalg.norm(x, axis=1) == pytest.approx(np.ones(6), abs=1e-5)
    nt, aa = kmer_profile(barcodes, 5), peptide_profile(barcodes, 3, columns=1024)
    w = model.peptide_weight
    expected = (nt @ nt.T + w * aa @ aa.T) / (1 + w)
    assert x @ x.T == pytest.approx(expected, abs=1e-5)
    assert KmerProfileModel().embed_barcodes(barcodes) == pytest.approx(nt)


def _fewest_stops_oracle(barcode: str) -> int:
    """Codon by codon through the three frames, a change of frame costing one stop: the plain
    dynamic programme over TAA/TAG (the stops of the invertebrate mitochondrial code)."""
    bases = barcode.upper().replace("-", "").replace("U", "T")
    stops = [bases[i : i + 3] in ("TAA", "TAG") for i in range(len(bases))]
    best = [0, 0, 0]
    for at in range(0, len(stops), 3):
        best = [best[f] + (at + f < len(stops) and stops[at + f]) for f in range(3)]
        best = [min(b, min(best) + 1) for b in best]
    return min(best)


def test_frame_stops_agree_with_the_plain_reading_across_blocks():
    """Random AT-rich barcodes of 60–300 bases (0 to 6 stops, a shift often saving some), more
    than one block of 4,096: each one's count is the plain dynamic programme's."""
    rng = np.random.default_rng(7)
    barcodes = ["".join(rng.choice(list("ACGT"), rng.integers(60, 300), p=[0.35, 0.15, 0.15, 0.35]))
                for _ in range(4500)]
    expected = [_fewest_stops_oracle(b) for b in barcodes]
    assert frame_stops(barcodes).tolist() == expected
    assert max(expected) >= 4 and sum(e >= 3 for e in expected[4096:]) >= 10


def test_peptide_profile_of_a_batch_is_each_barcodes_own():
    """Barcodes are read a block at a time, concatenated: no k-mer spans two barcodes, and every
    block lands in its own rows (600 barcodes at k = 3 are two blocks)."""
    rng = np.random.default_rng(3)
    barcodes = ["".join(rng.choice(list("ACGT"), rng.integers(20, 90))) for _ in range(600)]
    batch = peptide_profile(barcodes, k=3)
    assert np.array_equal(batch, np.vstack([peptide_profile([b], k=3) for b in barcodes]))


def _read_through_oracle(barcode: str, cost: float | None = None) -> list[int]:
    """Where the codons a read (``peptide_profile(reads=True)``) is translated by start: its best
    frame's where that meets no stop, else the plain Viterbi path, one codon per three bases,
    through the three frames (``IN_FRAME_LOG_ODDS``, a change of frame costing ``cost``, by default
    ``FRAME_SHIFT_COST``; staying in a frame wins ties, then the first frame)."""
    from clibd_cli.embedding.translation import FRAME_SHIFT_COST, GAPS

    cost = FRAME_SHIFT_COST if cost is None else cost

    bases = barcode.translate(GAPS).upper().replace("U", "T")
    codes = [LETTERS.index(TABLE_5.get(bases[at : at + 3], "X")) for at in range(len(bases))]
    stops = [codes[f : len(bases) - 2 : 3].count(STOP) for f in range(3)]
    if min(stops) == 0:
        return list(range(stops.index(0), len(bases) - 2, 3))
    score, back = [0.0, 0.0, 0.0], []
    for slot in range((len(bases) + 2) // 3):
        top = max(score)
        came = [f if score[f] >= top - cost else score.index(top) for f in range(3)]
        odds = [float(IN_FRAME_LOG_ODDS[codes[3 * slot + f]]) if 3 * slot + f < len(codes) else 0.0 for f in range(3)]
        score = [score[came[f]] - cost * (came[f] != f) + odds[f] for f in range(3)]
        back.append(came)
    frame, path = score.index(max(score)), []
    for slot in range(len(back) - 1, -1, -1):
        path.append(3 * slot + frame)
        frame = back[slot][frame]
    return sorted(at for at in path if at <= len(bases) - 3)


def test_reads_are_read_through_as_the_plain_viterbi_reads_them(monkeypatch):
    """``peptide_profile(reads=True)`` translates each barcode at the oracle's codons, whatever
    else its block holds: real BOLD barcodes with seeded errors (gaps and N runs kept, lower case,
    U for T), random ones of 0 to 1,000 bases (lengths not a multiple of 3 too), in blocks of 7, and
    the profile of each is its own."""
    from clibd_cli.io.sequences import with_errors
    from clibd_cli.embedding import translation

    blocks = translation.codon_blocks
    monkeypatch.setattr(translation, "codon_blocks", lambda barcodes, block=4096: blocks(barcodes, 7))
    rng = random.Random(11)
    real = [r["dna_barcode"] for r in bold_table()[1][::500]][:120]
    barcodes = [with_errors(b, rng.choice([0.005, 0.01, 0.03, 0.1]), rng) for b in real]
    barcodes += ["".join(rng.choice("ACGT") for _ in range(n)) for n in [0, 1, 2, 3, 4, 5, 8, 301, 659, 1000] * 4]
    barcodes += [b[:90].lower() + "N" * rng.randint(1, 9) + b[90:].replace("T", "U") for b in barcodes[:60]]
    barcodes += ["TAA", "TAANTAATAA", "uaauagNNN", "--TAG-TAA-TGA--", "TAATAGTAAC"]
    barcodes += ["NTAGAGAAATAAGAAANTAA", "NCGCTAACTCGTAGAGTGTAGNT", "NTAGGTNTAANTAANGTNTAG"]  # frames tie at the end
    rng.shuffle(barcodes)
    oracle = [_read_through_oracle(b) for b in barcodes]
    assert sum(bool((np.diff(o) % 3).any()) for o in oracle) > 100, oracle[:3]  # most change frame
    read = []
    for _, codons in translation.codon_blocks(barcodes):
        chosen = translation._read_through(codons)
        read += [codons.at[chosen & (codons.owner == b)].tolist() for b in range(len(codons.lengths))]
    assert read == oracle
    assert np.array_equal(peptide_profile(barcodes, k=2, reads=True),
                          np.vstack([peptide_profile([b], k=2, reads=True) for b in barcodes]))
    for cost in (0.5, 12.0):  # the cost a change of frame is given is the one the path pays
        cheap = [_read_through_oracle(b, cost) for b in barcodes]
        assert cheap != oracle
        read = []
        for _, codons in translation.codon_blocks(barcodes):
            chosen = translation._read_through(codons, cost)
            read += [codons.at[chosen & (codons.owner == b)].tolist() for b in range(len(codons.lengths))]
        assert read == cheap


def test_a_long_read_costs_its_own_length_not_its_blocks():
    """The read-through reads each read up to its own last codon: one read of 30 kb among a
    thousand of 300 bases (each with stops in every frame) costs about what their plain reading costs."""
    import tracemalloc

    rng = np.random.default_rng(5)
    barcodes = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(1000)] + ["".join(rng.choice(list("ACGT"), 30000))]
    peaks = []
    for reads in (False, True):
        tracemalloc.start()
        peptide_profile(barcodes, reads=reads)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks  # 1.2x; 23x where every read was padded to the longest
