"""Streams clibd cannot use as it would a file: a standard input or output closed at start (`<&-`,
`>&-`, some daemons and schedulers; Python sets sys.stdin/stdout to None) is one line, not an
internal error; a pipe (`<(zcat ref.fa.gz)`, a FIFO) given to a command that reads its input twice
is refused, not waited on for ever; one that reads it once reads a pipe whole, compressed or not,
and names a pipe that is not UTF-8 without opening it again; standard output is UTF-8, as a file output is,
whatever the locale."""

import bz2
import gzip
import os
import subprocess
import sys
import threading

import pytest

from fixtures.specimens import run, specimens, write_fasta, write_taxonomy


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("closed")
    reference = write_fasta(root / "ref.fa", specimens(n_species=4, per_species=3, unnamed=0))
    assert run("-q", "index", "-m", "kmer", "-k", "3", reference, "-o", root / "index").exit_code == 0
    return root / "index"


def _closed(stream: str, *args) -> subprocess.CompletedProcess:
    """clibd ARGS run with file descriptor 0 (``stdin``) or 1 (``stdout``) closed."""
    fd = {"stdin": 0, "stdout": 1}[stream]
    command = ["sh", "-c", f'exec "$@" {fd}>&-', "sh", sys.executable, "-m", "clibd_cli", *map(str, args)]
    return subprocess.run(command, stderr=subprocess.PIPE, text=True, timeout=300)


@pytest.mark.parametrize("command", ["classify", "embed"])
def test_reading_a_closed_standard_input_is_one_line(index, tmp_path, command):
    out = tmp_path / "out"
    args = ("classify", "--index", index) if command == "classify" else ("embed", "-m", "kmer")
    proc = _closed("stdin", *args, "-", "-o", out)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("clibd: error: <stdin>: standard input is closed; "
                                                    "give a file, or pipe the records in"), proc.stderr
    assert "internal error" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == []


def test_writing_a_closed_standard_output_is_one_line(index, tmp_path):
    query = write_fasta(tmp_path / "q.fa", specimens(n_species=1, per_species=1, unnamed=0), sintax=False)
    proc = _closed("stdout", "-q", "classify", "--index", index, query)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == ("clibd: error: standard output is closed; give -o FILE or redirect it "
                                   "(> FILE)"), proc.stderr


@pytest.mark.parametrize("command", [["prepare", "{fifo}"], ["index", "-m", "kmer", "{fifo}"],
                                     ["index", "-m", "kmer", "{fa}", "--calibrate-on", "{fifo}"],
                                     ["index", "-m", "kmer", "{fa}", "--calibrate-on", "{fa}", "--taxonomy",
                                      "{fifo}"],
                                     ["index", "-m", "kmer", "{fa}", "{fa}", "--taxonomy", "{fifo}"]])
def test_a_pipe_given_to_a_command_that_reads_its_input_twice_is_refused(tmp_path, command):
    fifo, fasta = tmp_path / "ref.fa", tmp_path / "r.fa"
    os.mkfifo(fifo)
    write_fasta(fasta, specimens(n_species=2, per_species=2, unnamed=0))
    words = [word.format(fifo=fifo, fa=fasta) for word in command]
    proc = subprocess.run([sys.executable, "-m", "clibd_cli", *words, "-o", str(tmp_path / "out")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"'{fifo}': is a pipe (a FIFO or <(...));" in proc.stderr and "save it to a file" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.fa", "ref.fa"]


def _feed(path_or_fd: int | os.PathLike, data: bytes) -> threading.Thread:
    """A thread writing ``data`` into a pipe (an open write end, or a FIFO's path) and closing it."""
    def write():
        try:
            with open(path_or_fd, "wb") as pipe:
                pipe.write(data)
        except BrokenPipeError:  # the reader stopped early
            pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_a_compressed_pipe_is_read_whole(index, tmp_path, compress):
    """<(cat run.fa.gz): its first bytes, read to tell gzip, cannot be read again by opening it anew
    (was: no records, exit 0, and a named FIFO waited on for ever)."""
    records = specimens(n_species=4, per_species=3, unnamed=0)
    data = compress(write_fasta(tmp_path / "q.fa", records, sintax=False).read_bytes())
    read_end, write_end = os.pipe()
    feeding = _feed(write_end, data)
    proc = subprocess.run([sys.executable, "-m", "clibd_cli", "-q", "classify", "--index", str(index),
                           f"/dev/fd/{read_end}"], pass_fds=(read_end,), capture_output=True, text=True,
                          timeout=60)
    os.close(read_end)
    feeding.join(10)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()[1:]] == [r.id for r in records]


def test_a_counts_table_read_once_may_be_a_pipe(index, tmp_path):
    """--counts <(zcat otutab.tsv.gz) is read whole, as --counts - is refused (its stdin refusal)."""
    records = specimens(n_species=2, per_species=1, unnamed=0)
    query = write_fasta(tmp_path / "q.fa", records, sintax=False)
    table = "#OTU ID\tS1\n" + "".join(f"{r.id}\t{n}\n" for n, r in enumerate(records, 2))
    read_end, write_end = os.pipe()
    feeding = _feed(write_end, table.encode())
    proc = subprocess.run([sys.executable, "-m", "clibd_cli", "-q", "classify", "--index", str(index), str(query),
                           "--summary", str(tmp_path / "s.tsv"), "--counts", f"/dev/fd/{read_end}", "-o",
                           str(tmp_path / "p.tsv")], pass_fds=(read_end,), capture_output=True, text=True, timeout=60)
    os.close(read_end)
    feeding.join(10)
    assert proc.returncode == 0, proc.stderr
    assert "S1" in (tmp_path / "s.tsv").read_text()


def test_a_taxonomy_table_read_once_may_be_a_pipe(tmp_path):
    """index REF --taxonomy <(cut ... table.tsv): one reference input, one process, no --calibrate-on
    read it once, as before; it was refused as a pipe, as where it is read twice."""
    records = specimens(n_species=3, per_species=3, unnamed=0)
    fasta = write_fasta(tmp_path / "r.fa", records, sintax=False)
    table = write_taxonomy(tmp_path / "t.tsv", {r.id: r.lineage for r in records}).read_bytes()
    read_end, write_end = os.pipe()
    feeding = _feed(write_end, table)
    proc = subprocess.run([sys.executable, "-m", "clibd_cli", "-q", "index", "-m", "kmer", str(fasta),
                           "--taxonomy", f"/dev/fd/{read_end}", "-o", str(tmp_path / "index")],
                          pass_fds=(read_end,), capture_output=True, text=True, timeout=120)
    os.close(read_end)
    feeding.join(10)
    assert proc.returncode == 0, proc.stderr
    assert "9 records" in run("index", "info", tmp_path / "index").stdout


def test_a_fifo_that_is_not_utf8_is_one_error_not_a_wait(index, tmp_path):
    fifo = tmp_path / "q.fa"
    os.mkfifo(fifo)
    text = write_fasta(tmp_path / "plain.fa", specimens(n_species=4, per_species=3, unnamed=0), sintax=False)
    feeding = _feed(fifo, text.read_bytes() * 20 + b">caf\xe9\nACGT\n")  # the bad byte past the first block
    proc = subprocess.run([sys.executable, "-m", "clibd_cli", "classify", "--index", str(index), str(fifo)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    feeding.join(10)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"clibd: error: {fifo}:"), proc.stderr
    assert "not UTF-8 text" in proc.stderr


def test_standard_output_is_utf8_whatever_the_locale(index, tmp_path):
    """Ids in any script reach stdout as they reach -o FILE (was: an internal UnicodeEncodeError
    under an ASCII or Latin-1 locale)."""
    query = write_fasta(tmp_path / "q.fa", specimens(n_species=1, per_species=1, unnamed=0), sintax=False)
    barcode = query.read_text().split("\n", 1)[1]
    query.write_text(f">蚊子_1 mosquito\n{barcode}>Müller_2\n{barcode}")
    command = [sys.executable, "-m", "clibd_cli", "-q", "classify", "--index", str(index), str(query)]
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    piped = subprocess.run(command, capture_output=True, env=env, timeout=60)
    assert piped.returncode == 0, piped.stderr
    written = subprocess.run([*command, "-o", str(tmp_path / "out.tsv")], capture_output=True, env=env,
                             timeout=60)
    assert written.returncode == 0, written.stderr
    assert piped.stdout == (tmp_path / "out.tsv").read_bytes()
    assert "蚊子_1\tdna\t" in piped.stdout.decode("utf-8")
