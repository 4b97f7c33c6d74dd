"""Barcodes read as proteins (clibd_cli/embedding/translation.py) and the k-mer profile that
adds them (``--model kmer-aa``)."""

import numpy as np
import pytest
from Bio.Seq import Seq

from clibd_cli.embedding.kmer import MODEL_FREE, PEPTIDE_MODEL, KmerProfileModel, kmer_profile
from clibd_cli.embedding.translation import AMINO_ACIDS, STOP, UNKNOWN, peptide_profile, translate
from fixtures.samples import bold_table

LETTERS = AMINO_ACIDS + "*X"


def protein(barcode: str) -> str:
    return "".join(LETTERS[c] for c in translate([barcode])[0])


def test_invertebrate_mitochondrial_code():
    # table 5 differs from the standard code here: TGA = W, ATA = M, AGA = AGG = S
    assert protein("TGGATAAGAAGGTTTTAT") == "WMSSFY"
    assert protein("tgaATGCCCGGG") == "WMPG"  # lower case; TGA is no stop


def test_frame_with_fewest_stops_gaps_dropped_rna_and_ambiguous_codons():
    # frame 0 reads TAA (stop) first; frame 1 reads "AAT GGT TTT" = N G F without a stop
    assert protein("TAATGGTTTTA") == "NGF"
    assert protein("ATG---CCC..GGG") == protein("ATGCCCGGG") == "MPG"
    assert protein("AUGCCC") == "MP"
    codes = translate(["ATGNCCGGG"])[0]
    assert codes.tolist() == [AMINO_ACIDS.index("M"), UNKNOWN, AMINO_ACIDS.index("G")]
    assert translate([""])[0].size == 0 and translate(["AC"])[0].size == 0


def test_agrees_with_biopython_on_real_barcodes():
    """Biopython's table 5 is the oracle, in the frame clibd picks, on 300 real BOLD barcodes
    (codons with an N aside: Biopython names GCN alanine, clibd calls it unknown)."""
    checked = 0
    for row in bold_table()[1][:300]:
        barcode = row["dna_barcode"].replace("-", "")
        codes = translate([barcode])[0]
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


def test_peptide_profile_counts_amino_acid_pairs():
    x = peptide_profile(["ATGCCCGGGATG", "TAA", "NNNNNN", ""], k=2)
    assert x.shape == (4, 400) and x.dtype == np.float32
    m, p, g = (AMINO_ACIDS.index(a) for a in "MPG")
    assert np.flatnonzero(x[0]).tolist() == sorted([m * 20 + p, p * 20 + g, g * 20 + m])
    assert np.linalg.norm(x[0]) == pytest.approx(1.0)
    assert not x[1:].any()  # stops and unknown codons make no pair: zero vectors
    assert STOP == 20
    # every frame holds a stop; frame 0 (the first of the ties) reads M P * G T S L T
    stopped = "ATGCCCTAAGGGACTAGTTTAACC"
    assert protein(stopped) == "MP*GTSLT"
    pairs = [AMINO_ACIDS.index(a) * 20 + AMINO_ACIDS.index(b) for a, b in ("MP", "GT", "TS", "SL", "LT")]
    assert np.flatnonzero(peptide_profile([stopped], k=2)[0]).tolist() == sorted(pairs)  # none across *


def test_kmer_aa_model_mixes_the_two_cosines():
    model = MODEL_FREE[PEPTIDE_MODEL]()
    assert model.peptide_k == 2 and model.embed_dim == 4**5 + 400
    assert model.fingerprint() != KmerProfileModel().fingerprint()
    barcodes = [row["dna_barcode"].replace("-", "") for row in bold_table()[1][:6]]
    x = model.embed_barcodes(barcodes)
    assert np.linalg.norm(x, axis=1) == pytest.approx(np.ones(6), abs=1e-5)
    nt, aa = kmer_profile(barcodes, 5), peptide_profile(barcodes, 2)
    w = model.peptide_weight
    expected = (nt @ nt.T + w * aa @ aa.T) / (1 + w)
    assert x @ x.T == pytest.approx(expected, abs=1e-5)
    assert KmerProfileModel().embed_barcodes(barcodes) == pytest.approx(nt)
