"""Options that contradict each other, or that would do nothing, are usage errors (exit 2) naming
the option, before any work and before any output is made: index, import, train, prepare, embed,
evaluate."""

import pytest
from click.testing import CliRunner

from clibd_cli.io.images import IMAGE_SUFFIXES
from clibd_cli.main import cli
from fixtures.specimens import error_line


@pytest.mark.parametrize("args, message", [
    (["index", "-m", "kmer", "{fa}", "--calibrate-split", "test"], "--calibrate-split goes with --calibrate-on"),
    (["index", "-m", "kmer", "{fa}", "--modality", "image", "--images", "{tmp}"], "--images goes with --modality dna"),
    (["index", "-m", "kmer", "{fa}", "--modality", "text", "--calibrate-on", "{fa}"],
     "--calibrate-on calibrates barcode or photo indexes"),
    (["index", "-m", "kmer", "{fa}", "--nproc-per-node", "2"], "the kmer model runs in one process"),
    (["import", "--from", "barcodebert", "{fa}", "--config", "{fa}"],
     "--config applies to --from clibd-checkpoint only"),
    (["train", "--data", "{fa}", "--modalities", "dna"], "name at least two of image, dna, text"),
    (["train", "-m", "clibd-tiny", "-d", "{fa}", "--modalities", "dna", "-o", "{tmp}/out"],  # -m -d -o as elsewhere
     "name at least two of image, dna, text"),
    (["train", "--data", "{fa}", "--modalities", "image,dna", "--positives", "label"],
     "labels come from the text modality"),
    (["train", "--data", "{fa}", "--dna-dna", "0.5"], "needs --positives label and dna in --modalities"),
    (["train", "--data", "{fa}", "--modalities", "image,text", "--dna-crop", "0.5"], "crops barcodes"),
    (["train", "--data", "{fa}", "--train-splits", "train", "--best-metric", "bogus"],
     "'bogus' is not reported for image,dna,text"),
    (["train", "--data", "{fa}", "--train-splits", "train", "--best-metric", "dna-dna.species.macro.hmm"],
     "'dna-dna.species.macro.hmm' is not reported for image,dna,text; did you mean dna-dna.species.macro.hm, "),
    (["prepare", "--format", "synthetic", "{fa}", "--partition", "{tmp}", "--resize", "64"],
     "--partition, --resize: not for --format synthetic"),
    (["prepare", "{fa}", "--resize", "64", "--workers", "2"], "--resize, --workers: for the photos of --images"),
    (["prepare", "{fa}", "--image-package", "original_full"], "--image-package: for the photos of --images"),
    (["embed", "-m", "kmer", "{fa}", "--split", "test"], "--split chooses what to embed of a dataset HDF5"),
    (["embed", "-m", "kmer", "{fa}", "--modality", "text"], "--modality chooses what to embed of a dataset HDF5"),
    (["index", "{fa}", "--append", "--M", "8", "--ef", "20"],
     "--M, --ef: an index's HNSW settings are fixed when it is built; --append keeps the index's"),
    (["evaluate", "-d", "{fa}", "--baselines", "kmer", "--cache", "{tmp}", "--no-cache"],
     "--cache names the embedding cache that --no-cache turns off; give one of them"),
    (["evaluate", "-d", "{fa}", "--baselines", "kmer", "--pairs", "dna-dna"],
     "--pairs: the pairs are a model's (query and key embeddings); give --model too"),
])
def test_contradicting_options_are_usage_errors_before_any_work(tmp_path, args, message):
    fasta = tmp_path / "r.fa"
    fasta.write_text(">a;tax=o:Diptera;\nACGTACGTACGT\n")
    out = tmp_path / "out"
    words = [word.format(fa=fasta, tmp=tmp_path) for word in args]
    words += ["--out" if args[0] == "train" else "-o", str(out)]
    result = CliRunner().invoke(cli, words)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("args, hint", [
    (["classify", "--images", "{fa}"],
     "barcode files are inputs, given without an option (clibd classify BARCODES.fasta --images PHOTOS/)"),
    (["classify", "--images", "{fa}.gz"], "barcode files are inputs"),
    (["index", "-m", "kmer", "{fa}", "--images", "{fa}"], "reference barcodes are REFERENCES, given without"),
    (["prepare", "{fa}", "--images", "{tmp}", "--images", "{fa}"], "the barcodes are INPUT (clibd prepare"),
])
def test_a_fasta_given_as_photos_is_a_usage_error_saying_where_barcodes_go(tmp_path, args, hint):
    """``classify --images plate.fasta`` was one invalid row ("not an image") and exit 0; index and
    prepare read it as a photo named after no record. The check is index --modality image's."""
    import gzip

    fasta = tmp_path / "r.fa"
    fasta.write_text(">a;tax=o:Diptera;\n" + "ACGT" * 60 + "\n")
    (tmp_path / "r.fa.gz").write_bytes(gzip.compress(fasta.read_bytes()))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [word.format(fa=fasta, tmp=tmp_path) for word in args] + ["-o", str(out)])
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"clibd: error: {args[-1].format(fa=fasta)}: --images takes photos")
    assert f"(folders, or {', '.join(sorted(IMAGE_SUFFIXES))} files), and this is a FASTA/FASTQ file; " + hint \
        in error_line(result)
    assert not out.exists()


@pytest.mark.parametrize("where", ["references", "--calibrate-on"])
def test_a_folder_given_for_a_file_is_a_usage_error(tmp_path, where):
    """A folder where a FASTA goes is named as such, exit 2 as click's own check of the same mistake
    (``clibd classify FOLDER``), and nothing is written."""
    folder, out, fasta = tmp_path / "photos", tmp_path / "out", tmp_path / "r.fa"
    folder.mkdir()
    fasta.write_text(">a;tax=o:Diptera;\n" + "ACGT" * 60 + "\n")
    inputs = [folder] if where == "references" else [fasta, "--calibrate-on", folder]
    result = CliRunner().invoke(cli, ["index", "-m", "kmer", *map(str, inputs), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{folder}: is a directory, expected a file" in result.stderr and not out.exists()


@pytest.mark.parametrize("args", [
    ["--threads", "-1", "classify", "{fa}"], ["classify", "--top-k", "0", "{fa}"],
    ["classify", "--min-confidence", "2", "{fa}"], ["classify", "--nope", "{fa}"], ["classify", "{tmp}/missing.fa"],
    ["index", "-m", "kmer", "{fa}", "-o", "{tmp}/i", "--M", "1"], ["index", "info", "{fa}"],
    ["embed", "-m", "kmer", "{fa}"], ["prepare", "{fa}", "-o", "{tmp}/p.h5", "--format", "xml"],
    ["evaluate", "-d", "{fa}"], ["import", "{fa}", "-o", "{tmp}/m"], ["train", "--out", "{tmp}/r"],
])
def test_every_usage_error_ends_in_one_clibd_error_line(tmp_path, args):
    """click's usage errors ended in its 'Error: ...' line, clibd's own (an -o refused, an unknown
    model; exit 2 too) in 'clibd: error: ...': every failure now ends in the one form DESIGN.md gives,
    after click's usage line and its hint to --help, and still with exit status 2."""
    fasta = tmp_path / "r.fa"
    fasta.write_text(">a;tax=o:Diptera;\n" + "ACGT" * 60 + "\n")
    result = CliRunner().invoke(cli, [word.format(fa=fasta, tmp=tmp_path) for word in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Usage: ") and "for help." in lines[1], result.stderr
    assert error_line(result) == lines[-1] and not any(line.startswith("Error:") for line in lines)


@pytest.mark.parametrize("args, why", [
    (["classify", "--summary", "{tmp}/s.tsv", "--counts", "-", "{fa}"], "standard input is for the queries"),
    (["index", "-m", "kmer", "{fa}", "--taxonomy", "-"], "index reads the taxonomy table once per reference input"),
])
def test_standard_input_for_a_table_is_refused_as_not_a_file(tmp_path, args, why):
    """``-`` for --counts or --taxonomy is said to be standard input, which goes elsewhere (was click's
    "File '-' does not exist"), exit 2, nothing written."""
    fasta, out = tmp_path / "r.fa", tmp_path / "out"
    fasta.write_text(">a;tax=o:Diptera;\n" + "ACGT" * 60 + "\n")
    words = [word.format(fa=fasta, tmp=tmp_path) for word in args]
    result = CliRunner().invoke(cli, [*words, "-o", str(out)], input="")
    assert result.exit_code == 2, result.output
    assert f"'-': {why}" in result.stderr and "save standard input to a file and give its path" in result.stderr
    assert "does not exist" not in result.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["r.fa"]


@pytest.mark.parametrize("args", [
    ["index", "-m", "kmer", "{fa}", "-o", ""], ["embed", "-m", "kmer", "{fa}", "-o", ""], ["prepare", "{fa}", "-o", ""],
    ["evaluate", "-d", "{fa}", "--baselines", "kmer", "-o", ""], ["import", "--from", "barcodebert", "{fa}", "-o", ""],
    ["classify", "{fa}", "--summary", ""], ["classify", "{fa}", "-o", ""], ["train", "-d", "{fa}", "-o", ""],
])
def test_an_empty_output_path_is_refused_by_every_command(tmp_path, monkeypatch, args):
    """``-o "$UNSET"``: click read ``''`` as the current folder, so index, evaluate and import wrote
    into it (exit 0) and embed, prepare and --summary called it a folder; it is named for what it is."""
    fasta, here = tmp_path / "r.fa", tmp_path / "here"
    fasta.write_text(">a;tax=o:Diptera,f:Culicidae,g:Aedes,s:Aedes_aegypti;\n" + "ACGT" * 60 + "\n")
    here.mkdir()
    monkeypatch.chdir(here)
    result = CliRunner().invoke(cli, [word.format(fa=fasta) for word in args])
    assert result.exit_code == 2, result.output
    assert "an empty path was given (an unset variable?); give its name" in error_line(result)
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["train", "-d", "{fa}", "--modalities", "dna,rna"], "rna: choose from image, dna, text"),
    (["evaluate", "-d", "{fa}", "--baselines", "kmer,blast"], "blast: choose from kmer, vsearch-global"),
    (["embed", "-m", "kmer", "{fa}", "--nproc-per-node", "0"],
     "'--nproc-per-node': 0 is not in the range x>=1"),
    (["index", "-m", "kmer", "{fa}", "--calibrate-errors", "0.05,0.3"], "0.3 is not in the range 0<=x<=0.2"),
])
def test_an_option_value_outside_its_names_or_range_is_a_usage_error(tmp_path, args, message):
    fasta, out = tmp_path / "r.fa", tmp_path / "out"
    fasta.write_text(">a;tax=o:Diptera;\n" + "ACGT" * 60 + "\n")
    result = CliRunner().invoke(cli, [*(word.format(fa=fasta) for word in args), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in error_line(result) and not out.exists()


def test_name_and_rate_lists_read_as_their_help_says():
    """``a,b`` or a repeated option: each name once, spaces around it dropped; ``auto`` (or nothing)
    the command's choice, ``none`` no name; rates of 0 dropped, no value the command's default."""
    from clibd_cli.commands.options import name_list, rate_list

    modalities = name_list(("image", "dna", "text"))
    assert modalities(None, None, "dna, image,dna, ") == ("dna", "image")
    assert modalities(None, None, ("text", "dna,text")) == ("text", "dna")
    baselines = name_list(("kmer", "rdp"), auto=True, none=True)
    assert baselines(None, None, "auto") is None and baselines(None, None, None) is None
    assert baselines(None, None, "none") == () and baselines(None, None, "rdp") == ("rdp",)
    rates = rate_list(0, 0.2)
    assert rates(None, None, None) is None and rates(None, None, "0") == ()
    assert rates(None, None, "0.05, 0, 0.1") == (0.05, 0.1)


@pytest.mark.parametrize("args", [
    ["embed", "-m", "kmer", "{h5}", "--split", "nosuch", "-o", "{tmp}/e.h5"],
    ["embed", "-m", "kmer", "{h5}", "--split", "train+nosuch", "-o", "{tmp}/e.h5"],
    ["index", "-m", "kmer", "{h5}", "--split", "nosuch", "-o", "{tmp}/i"],
    ["index", "-m", "kmer", "{h5}", "--calibrate-on", "{h5}", "--calibrate-split", "nosuch", "-o", "{tmp}/i"],
    ["train", "-m", "clibd-tiny", "-d", "{h5}", "--modalities", "dna,text", "--train-splits", "nosuch",
     "--out", "{tmp}/run"],
])
def test_a_split_the_dataset_lacks_is_a_usage_error(tmp_path, args):
    """``--split nosuch`` was a data error (exit 1) where a missing tower is a usage error: now exit 2
    in every command that reads splits (``Dataset.resolve`` in ``clibd_cli/data/store.py``), its one
    line naming the file, the split and the splits the file has."""
    from fixtures.samples import clibd_hdf5

    data = tmp_path / "clibd.h5"
    clibd_hdf5(data)
    result = CliRunner().invoke(cli, [word.format(h5=data, tmp=tmp_path) for word in args])
    assert result.exit_code == 2, result.output
    assert f"{data}: no split 'nosuch'; this file has seen_keys, val_seen" in error_line(result)
    assert [p.name for p in tmp_path.iterdir()] == ["clibd.h5"]
