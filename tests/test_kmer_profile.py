"""The model-free k-mer profile embedding of barcodes."""

import numpy as np
import pytest

from clibd_cli.embedding.kmer import composition_profile, kmer_profile


def test_counts_overlapping_kmers_sqrt_scaled_and_normalised():
    x = kmer_profile(["ACGTA", "AACC"], k=2)
    assert x.shape == (2, 16) and x.dtype == np.float32
    # ACGTA: AC=1, CG=6, GT=11, TA=12 once each (A,C,G,T = 0,1,2,3)
    assert np.flatnonzero(x[0]).tolist() == [1, 6, 11, 12]
    assert x[0, [1, 6, 11, 12]] == pytest.approx([0.5] * 4)
    # AACC: AA, AC, CC once each
    assert np.flatnonzero(x[1]).tolist() == [0, 1, 5]
    assert np.linalg.norm(x, axis=1) == pytest.approx([1.0, 1.0])


def test_ambiguous_bases_break_kmers_and_case_is_ignored():
    x = kmer_profile(["ACNGT", "acgt", "ACGT"], k=2)
    assert np.flatnonzero(x[0]).tolist() == [1, 11]  # AC and GT; CN, NG skipped
    assert np.array_equal(x[1], x[2])


def test_no_kmer_spans_two_barcodes_and_chunks_do_not_matter():
    barcodes = ["ACGTTGCA" * 5, "", "NNNN", "A", "TTTTGGGGCCCCAAAA" * 3] * 7
    one = kmer_profile(barcodes, k=3, chunk=1)
    many = kmer_profile(barcodes, k=3, chunk=1000)
    assert np.allclose(one, many)
    assert not one[1].any() and not one[2].any() and not one[3].any()  # no valid k-mer: zero


def test_scales_and_bad_arguments():
    assert kmer_profile(["AAAAAC"], k=1)[0, :2] == pytest.approx(np.sqrt([5, 1]) / np.sqrt(6))  # sqrt: default
    log = kmer_profile(["AAAAAC"], k=1, scale="log")
    raw = kmer_profile(["AAAAAC"], k=1, scale="none")
    assert raw[0, 0] / raw[0, 1] == pytest.approx(5.0)
    assert log[0, 0] / log[0, 1] == pytest.approx(np.log(6) / np.log(2))
    assert kmer_profile(["ACGTACGTA"], k=8).shape == (1, 4**8)  # 8-mers the longest
    for k in (0, 9):
        with pytest.raises(ValueError, match="k must be in 1..8"):
            kmer_profile(["ACGT"], k=k)
    with pytest.raises(ValueError):
        kmer_profile(["ACGT"], scale="cube")


def test_the_fingerprint_names_the_peptide_weight():
    """An index of one mix of nucleotide and amino-acid cosines is refused by another mix."""
    from clibd_cli.embedding.kmer import KmerProfileModel

    prints = {KmerProfileModel(peptide_k=2, peptide_weight=w).fingerprint() for w in (1.0, 2.0)}
    assert len(prints | {KmerProfileModel().fingerprint()}) == 3


def test_the_composition_profile_is_the_square_root_of_its_bases_shares_products():
    """What endless k-mers of ``AAAC``'s composition (A 3/4, C 1/4) would give, square-root scaled
    as :func:`kmer_profile` scales counts: AA, AC, CA, CC in the shares' products."""
    shares = np.sqrt([0.75 * 0.75, 0.75 * 0.25, 0.25 * 0.75, 0.25 * 0.25])
    profile = composition_profile(["AAAC", "CAAA"], k=2)
    assert profile[0, [0, 1, 4, 5]] == pytest.approx(shares / np.linalg.norm(shares))
    assert np.array_equal(profile[0], profile[1]) and np.count_nonzero(profile[0]) == 4
