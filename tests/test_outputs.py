"""`-o` never destroys (issue #17 item 1) and two writers of one index never lose records (item 6)."""

import errno
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fixtures.specimens import error_line, run, specimens, write_fasta
from clibd_cli.io.outputs import UsageError, output_path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    return write_fasta(root / "ref.fa", specimens(n_species=4, per_species=3, unnamed=0))


def _index(reference, output, *extra):
    return run("-q", "index", "-m", "kmer", "-k", "3", reference, "-o", output, *extra)


def test_index_refuses_a_folder_that_is_not_an_index(tmp_path, reference):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "precious.jpg").write_text("x")
    result = _index(reference, folder)
    assert result.exit_code == 2, result.stderr
    assert "not an earlier output" in error_line(result)
    assert (folder / "precious.jpg").read_text() == "x"


def test_index_refuses_a_file_and_a_device(tmp_path, reference):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    assert _index(reference, file).exit_code == 2
    assert file.read_text() == "keep me"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert _index(reference, fifo).exit_code == 2
    assert fifo.is_fifo()
    assert _index(reference, os.devnull).exit_code == 2
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)


def test_index_replaces_an_earlier_index_and_fills_an_empty_folder(tmp_path, reference, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _index(reference, empty).exit_code == 0
    assert _index(reference, empty).exit_code == 0
    assert (empty / "manifest.json").is_file()
    monkeypatch.chdir(empty)  # `-o .` inside an index: replaced, nothing left behind
    assert _index(reference, ".").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no temporary, no lock file


def test_index_refuses_a_folder_holding_its_input(tmp_path, reference):
    index = tmp_path / "ref_index"
    assert _index(reference, index).exit_code == 0
    inside = index / "extra.fa"
    inside.write_text(reference.read_text())
    result = _index(inside, index)
    assert result.exit_code == 2 and "holds the input" in error_line(result)
    assert inside.is_file()


def test_index_writes_through_a_symlink(tmp_path, reference):
    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real)
    assert _index(reference, link).exit_code == 0
    assert link.is_symlink() and (real / "manifest.json").is_file()


def test_classify_refuses_its_own_input_and_devices(tmp_path, reference):
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    query = write_fasta(tmp_path / "q.fa", specimens(n_species=1, per_species=1, unnamed=0), sintax=False)
    before = query.read_text()
    result = run("classify", "--index", index, query, "-o", query)
    assert result.exit_code == 2 and "is the input" in error_line(result)
    assert query.read_text() == before
    alias = tmp_path / "alias.fa"
    alias.symlink_to(query)
    assert run("classify", "--index", index, query, "-o", alias).exit_code == 2
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert run("classify", "--index", index, query, "-o", fifo).exit_code == 2 and fifo.is_fifo()
    to_stdout = run("classify", "--index", index, query, "-o", "/dev/stdout")  # read as -, not refused as a device
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith("query_id")
    out_link = tmp_path / "out.tsv"
    out_link.symlink_to(tmp_path / "target.tsv")
    assert run("classify", "--index", index, query, "-o", out_link).exit_code == 0
    assert out_link.is_symlink() and (tmp_path / "target.tsv").read_text().startswith("query_id")


def test_output_path_messages(tmp_path):
    with pytest.raises(UsageError, match="is a device, not a file"):
        output_path(os.devnull)
    read_end, write_end = os.pipe()  # `-o /dev/stdout | cat`: a link to a pipe, which has no path to resolve
    try:
        with pytest.raises(UsageError, match=rf"^/dev/fd/{write_end}: is a pipe \(a FIFO\), not a file"):
            output_path(f"/dev/fd/{write_end}")
    finally:
        os.close(read_end), os.close(write_end)
    with pytest.raises(UsageError, match="is a folder, not a file"):
        output_path(tmp_path)
    assert output_path(tmp_path / "new.tsv") == tmp_path.resolve() / "new.tsv"
    with pytest.raises(UsageError, match="a folder, which cannot be written to standard output"):
        output_path("-", directory=True)  # index -o -, evaluate -o -: not a folder named '-'


def test_an_empty_output_path_is_a_usage_error(tmp_path, reference, monkeypatch):
    """``-o ''`` (an unset shell variable, ``-o "$OUT"``) is not the current folder: classify tried
    to rename its temporary onto the folder it ran in (exit 1, naming the temporary), train said
    ``: holds the input``."""
    with pytest.raises(UsageError, match="an empty path was given for a file"):
        output_path("")
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = run("classify", "--index", index, reference, "-o", "")
    assert result.exit_code == 2 and "'-o' / '--output': an empty path was given" in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


@pytest.mark.parametrize("name", ["/dev/stderr", "log.txt"])
def test_the_file_standard_error_goes_to_is_no_output(tmp_path, reference, name):
    """``-o /dev/stderr 2> log.txt`` (or ``-o log.txt 2> log.txt``) renamed the table over the log:
    every message of the run (invalid records, the estimated share of new species) was lost, exit 0."""
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "w") as stderr:
        command = [sys.executable, "-m", "clibd_cli", "classify", "--index", str(index), str(reference),
                   "-o", name]
        proc = subprocess.run(command, stderr=stderr, stdout=subprocess.PIPE, cwd=tmp_path, env=env,
                              timeout=300)
    assert proc.returncode == 2
    assert "is the file standard error goes to (clibd's messages)" in log.read_text()


def test_with_standard_error_closed_no_file_is_taken_for_it(tmp_path):
    """Started with ``2>&-``, descriptor 2 is the first file opened since: an output open there was
    refused as "the file standard error goes to"."""
    script = ("import os; from clibd_cli.io.outputs import output_path; os.open('out.tsv', os.O_RDONLY); "
              "print(output_path('out.tsv'))")
    (tmp_path / "out.tsv").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          text=True, preexec_fn=lambda: os.close(2), timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / "out.tsv")


def test_an_input_is_recognised_however_its_path_is_written(tmp_path, monkeypatch):
    """The input named relatively, or through a symlink, is still the file ``-o`` would destroy;
    a folder output holding it two levels down is refused too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.fa").write_text(">a\nACGT\n")
    (tmp_path / "alias.fa").symlink_to(tmp_path / "q.fa")
    for given in ("q.fa", "./q.fa", "alias.fa"):
        with pytest.raises(UsageError, match="is the input"):
            output_path(tmp_path / "q.fa", inputs=(given,))
    nested = tmp_path / "out" / "sub" / "ref.fa"
    nested.parent.mkdir(parents=True)
    nested.write_text(">a\nACGT\n")
    with pytest.raises(UsageError, match="holds the input"):
        output_path(tmp_path / "out", directory=True, inputs=("out/sub/ref.fa",))


def test_a_copy_of_an_input_or_an_index_s_own_folder_as_output(tmp_path):
    """A copy of the input (same bytes, another file) is not the input: it may be replaced. A folder
    output that is the very model or index folder read is refused, as one inside it is."""
    (tmp_path / "q.fa").write_text(">a\nACGT\n")
    (tmp_path / "copy.fa").write_text(">a\nACGT\n")
    assert output_path(tmp_path / "copy.fa", inputs=(tmp_path / "q.fa",)) == tmp_path.resolve() / "copy.fa"
    (tmp_path / "model").mkdir()
    with pytest.raises(UsageError, match="is inside .*model, an index or model folder this command reads"):
        output_path(tmp_path / "model", directory=True, reads=(tmp_path / "model",))


_APPEND = """
import sys
from click.testing import CliRunner
from clibd_cli.main import cli
result = CliRunner().invoke(cli, ["-q", "index", "-m", "kmer", "-k", "3", sys.argv[1], "-o", sys.argv[2], "--append"])
sys.stderr.write(result.output)
sys.exit(result.exit_code)
"""


def test_concurrent_appends_lose_nothing(tmp_path, reference):
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    extra = []
    for part in range(2):
        records = specimens(n_species=3, per_species=2, unnamed=0)
        fasta = write_fasta(tmp_path / f"more{part}.fa", records)
        fasta.write_text(fasta.read_text().replace(">", f">p{part}-"))
        extra.append(fasta)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _APPEND, str(fasta), str(index)], env=env,
                              stderr=subprocess.PIPE, text=True) for fasta in extra]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    rows = (index / "records.tsv").read_text().splitlines()
    assert len(rows) - 1 == len(reference.read_text().split(">")) - 1 + 12


def test_prepare_and_embed_refuse_their_own_input(tmp_path, reference):
    copy = tmp_path / "ref.fa"
    copy.write_text(reference.read_text())
    assert run("prepare", copy, "-o", copy).exit_code == 2
    assert run("embed", "-m", "kmer", copy, "-o", copy).exit_code == 2
    assert copy.read_text() == reference.read_text()


def test_a_file_output_ending_in_a_slash_is_refused_as_a_folder(tmp_path, reference):
    """`-o out.tsv/` names a folder (GNU tools say "Not a directory"): it wrote the file out.tsv."""
    with pytest.raises(UsageError, match="ends with '/', a folder, not a file"):
        output_path(f"{tmp_path}/out.tsv/")
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    assert output_path(f"{tmp_path}/fresh/", directory=True) == tmp_path / "fresh"  # a folder output may
    result = run("classify", "--index", index, reference, "-o", f"{tmp_path}/out.tsv/")
    assert result.exit_code == 2 and "ends with '/'" in error_line(result)
    assert not (tmp_path / "out.tsv").exists()


def test_a_file_output_into_a_missing_folder_is_refused_before_any_work(tmp_path, reference):
    """classify, embed and prepare alike: exit 2 naming the folder, nothing created (a mistyped
    folder is not made); a folder output (index -o) is created with its parents."""
    with pytest.raises(UsageError, match="the folder .*nope does not exist; create it"):
        output_path(tmp_path / "nope" / "out.tsv")
    (tmp_path / "link.tsv").symlink_to(tmp_path / "nope" / "out.tsv")  # was: 'the folder <tmp_path> does not exist'
    with pytest.raises(UsageError, match=re.escape(f"link.tsv: links to {tmp_path}/nope/out.tsv, whose folder "
                                                   f"{tmp_path}/nope does not exist; create it")):
        output_path(tmp_path / "link.tsv")
    index = tmp_path / "new" / "index"
    assert _index(reference, index).exit_code == 0 and (index / "manifest.json").is_file()
    for command in (["classify", "--index", index, reference], ["embed", "-m", "kmer", reference],
                    ["prepare", reference]):
        result = run(*command, "-o", tmp_path / "nope" / "out")
        assert result.exit_code == 2, (command, result.stderr)
        assert error_line(result) == f"clibd: error: {tmp_path}/nope/out: the folder {tmp_path}/nope does not exist; " \
                                     "create it or give another path"
        assert not (tmp_path / "nope").exists()
    summary = run("classify", "--index", index, reference, "--summary", tmp_path / "nope" / "summary.tsv")
    assert summary.exit_code == 2 and "nope does not exist" in error_line(summary)


@pytest.mark.parametrize(("stop", "code", "said"), [(signal.SIGTERM, 143, "terminated"),
                                                    (signal.SIGHUP, 129, "hung up")])
def test_sigterm_leaves_nothing_half_written(tmp_path, stop, code, said):
    """kill/timeout/Slurm send SIGTERM, a closed terminal or SSH session SIGHUP: the run unwinds as
    for Ctrl-C, exit 143 (129), no temporary file and no lock left beside the output (SIGHUP was:
    killed outright, the half-written temporary and the lock left)."""
    from fixtures.samples import BOLD_CSV

    out = tmp_path / "bold.h5"
    proc = subprocess.Popen([sys.executable, "-m", "clibd_cli", "prepare", str(BOLD_CSV), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("bold.h5.tmp*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "prepare ended before it could be terminated"
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"clibd: {said} (nothing half-written is left)" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_input_under_another_name_is_refused(tmp_path, monkeypatch, reference):
    """A hard link to an input, or the file standard input reads (`- -o FILE < FILE`), is that input."""
    query = write_fasta(tmp_path / "q.fa", specimens(n_species=1, per_species=1, unnamed=0), sintax=False)
    before = query.read_text()
    linked = tmp_path / "linked.fa"
    os.link(query, linked)
    with pytest.raises(UsageError, match="is the input .*q.fa; writing it would destroy"):
        output_path(linked, inputs=(query,))
    with open(query) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        with pytest.raises(UsageError, match="is the file standard input reads"):
            output_path(query, inputs=("-",))
        assert output_path(tmp_path / "other.tsv", inputs=("-",)) == tmp_path.resolve() / "other.tsv"
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    with open(query) as stdin:  # a real process, its standard input the file it is told to write
        proc = subprocess.run([sys.executable, "-m", "clibd_cli", "classify", "--index", str(index), "-",
                               "-o", str(query)], stdin=stdin, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "is the file standard input reads" in proc.stderr, proc.stderr
    assert query.read_text() == before


def test_an_output_inside_the_index_or_model_it_reads_is_refused(tmp_path, reference):
    """classify -o INDEX/records.tsv replaced a file of the index it had just read (the next run
    failed its checksum); a new file there would be lost when the index is rebuilt."""
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    files = {p.name: p.read_bytes() for p in index.iterdir()}
    for name in ("records.tsv", "predictions.tsv"):
        result = run("classify", "--index", index, reference, "-o", index / name)
        assert result.exit_code == 2 and "an index or model folder this command reads" in error_line(result)
    summary = run("classify", "--index", index, reference, "--summary", index / "summary.tsv")
    assert summary.exit_code == 2 and "inside" in error_line(summary)
    assert {p.name: p.read_bytes() for p in index.iterdir()} == files


@pytest.mark.skipif(os.geteuid() == 0 and not os.path.exists("/usr/bin/setpriv"),
                    reason="root writes anything; needs setpriv to drop that")
def test_a_read_only_output_or_folder_is_refused_before_any_work(tmp_path, reference):
    """Replacing by rename would go through a read-only file (the folder is writable); a folder the
    user cannot write failed only after the work (an index build: after embedding everything)."""
    keep = tmp_path / "keep.tsv"
    keep.write_text("mine")
    keep.chmod(0o444)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    index.chmod(0o555)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
    clibd = [*drop, sys.executable, "-m", "clibd_cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        for command, message in ((["classify", "--index", index, reference, "-o", keep], "is read-only"),
                                 (["embed", "-m", "kmer", reference, "-o", locked / "e.h5"], "cannot write in"),
                                 (["index", "-m", "kmer", "-k", "3", reference, "-o", locked / "new" / "ix"],
                                  "cannot write in"),
                                 (["index", "-m", "kmer", "-k", "3", reference, "-o", index], "is read-only")):
            proc = subprocess.run([*clibd, *map(str, command)], capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == 2, (command, proc.stderr)
            assert proc.stderr.strip().splitlines()[-1].startswith("clibd: error: ") and message in proc.stderr
    finally:
        locked.chmod(0o755)
        index.chmod(0o755)
    assert keep.read_text() == "mine" and list(locked.iterdir()) == []


def test_embed_waits_for_another_writer_of_its_output(tmp_path, reference):
    """Two embeds of one -o shared OUTPUT.shards/: the second emptied the first's chunks as stale,
    both failed (or one took the other's chunks). Now the second waits for the lock."""
    from clibd_cli.io.outputs import writer_lock

    out = tmp_path / "e.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with writer_lock(out):
        proc = subprocess.Popen([sys.executable, "-m", "clibd_cli", "embed", "-m", "kmer", str(reference), "-o", str(out)],
                                env=env, stderr=subprocess.PIPE, text=True)
        assert "another clibd is writing it; waiting" in proc.stderr.readline()
        time.sleep(0.5)
        assert proc.poll() is None and not out.exists() and not (tmp_path / "e.h5.shards").exists()
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["e.h5"]


def test_a_folder_given_for_an_output_file_is_one_clibd_error_line(tmp_path, reference):
    """click's own check printed its usage text and 'Error: Invalid value for '-o'...'; now the
    -o rules say it, as for every other output refused."""
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    folder = tmp_path / "results"
    folder.mkdir()
    for command in (["classify", "--index", index, reference, "-o", folder],
                    ["classify", "--index", index, reference, "--summary", folder],
                    ["embed", "-m", "kmer", reference, "-o", folder], ["prepare", reference, "-o", folder]):
        result = run(*command)
        assert result.exit_code == 2, (command, result.stderr)
        assert error_line(result) == f"clibd: error: {folder}: is a folder, not a file; clibd will not replace it; " \
                                     "give another path"
    assert list(folder.iterdir()) == []


def test_classify_o_refuses_its_counts_table(tmp_path, reference):
    """--counts was left out of -o's inputs: `--counts table.tsv -o table.tsv` replaced the table."""
    index = tmp_path / "index"
    assert _index(reference, index).exit_code == 0
    table = tmp_path / "table.tsv"
    table.write_text("#OTU ID\tS1\nq0\t3\n")
    result = run("classify", "--index", index, reference, "--summary", tmp_path / "s.tsv", "--counts", table,
                 "-o", table)
    assert result.exit_code == 2 and "is the input" in error_line(result)
    assert table.read_text() == "#OTU ID\tS1\nq0\t3\n"


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_an_output_on_a_file_system_without_locks_is_written_unguarded(tmp_path, reference, monkeypatch, code):
    """flock fails on some shared file systems (NFS mounted nolock: ENOLCK; Lustre without its
    flock option: ENOSYS): the writer lock stopped embed, index, evaluate and train there with
    an error; now they say the output is not guarded against a second writer and go on."""
    import fcntl

    def no_locks(handle, operation):
        raise OSError(code, os.strerror(code))

    out = tmp_path / "out"
    out.mkdir()
    _killed_while_writing(out / "e.h5", "file")  # or a live clibd's: with no lock, nothing tells
    left = os.listdir(out)
    monkeypatch.setattr(fcntl, "flock", no_locks)
    result = run("embed", "-m", "kmer", reference, "-o", out / "e.h5")
    assert result.exit_code == 0, result.stderr
    assert "e.h5: cannot lock it (this file system has no locks)" in result.stderr
    assert sorted(os.listdir(out)) == sorted(["e.h5", *left])


def test_a_folder_that_refuses_new_files_is_named_with_the_output(tmp_path, reference, monkeypatch):
    """A folder where no file can be made (a read-only mount, /proc, a FUSE folder that only takes
    existing names): the error was the hidden lock file's ('.e.h5.lock: No such file or
    directory'); it names the output and its folder."""
    from clibd_cli.io import outputs

    def refused(lock_file, target, wait):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(lock_file))

    monkeypatch.setattr(outputs, "_lock", refused)
    result = run("embed", "-m", "kmer", reference, "-o", tmp_path / "e.h5")
    assert result.exit_code == 1
    assert error_line(result) == (f"clibd: error: {tmp_path / 'e.h5'}: cannot write in {tmp_path} "
                                  "(Read-only file system); give another path")


def test_a_writer_that_waited_on_a_lock_file_its_holder_removed_takes_the_new_one(tmp_path, monkeypatch):
    """The holder removes its lock file on release; a waiter that then wakes holds a lock on a file
    no longer there, which no later writer sees. It takes the new one, so a third writer is still
    kept out while it writes."""
    import fcntl

    from clibd_cli.io import outputs
    from models.errors import ClibdError

    out = tmp_path / "calls.tsv"
    real, woken = fcntl.flock, []

    def flock(handle, operation):
        if not woken and operation & fcntl.LOCK_NB:
            raise BlockingIOError  # another clibd holds it ...
        if not woken:  # ... and, while this one waits, releases it and removes the lock file
            woken.append(handle)
            (tmp_path / ".calls.tsv.lock").unlink()
        return real(handle, operation)

    monkeypatch.setattr(outputs.fcntl, "flock", flock)
    with outputs.writer_lock(out):
        monkeypatch.setattr(outputs.fcntl, "flock", real)
        with pytest.raises(ClibdError, match="another clibd is writing it"), outputs.writer_lock(out, wait=False):
            pass
    assert woken and not (tmp_path / ".calls.tsv.lock").exists()


def test_a_gzipped_text_output_is_the_same_file_each_run_whatever_the_case_of_its_name(tmp_path, monkeypatch):
    """``-o calls.TSV.GZ`` is compressed as ``calls.tsv.gz`` is, and the bytes carry neither a time
    stamp nor a name (they carried the random name of the temporary written first, which
    ``gunzip -N`` restored): one table written twice, a second apart, is the same file."""
    import gzip

    from clibd_cli.io.outputs import text_output

    written = set()
    for name, now in (("calls.tsv.gz", 1e9), ("calls.tsv.gz", 1e9 + 1), ("calls.TSV.GZ", 1e9 + 2)):
        monkeypatch.setattr(gzip.time, "time", lambda now=now: now)
        with text_output(tmp_path / name) as handle:
            handle.write("id\tgenus\nq1\tAedes\n")
        data = (tmp_path / name).read_bytes()
        assert gzip.decompress(data) == b"id\tgenus\nq1\tAedes\n"
        written.add(data)
    assert len(written) == 1


_KILLED = """
import os, signal, sys
from pathlib import Path
from models.files import atomic_path
with atomic_path(Path(sys.argv[1]), directory=sys.argv[2] == "folder") as temp:
    (temp / "index.bin" if sys.argv[2] == "folder" else temp).write_bytes(bytes(1000))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_while_writing(path, kind: str) -> None:
    """What a clibd killed while writing ``path`` (SIGKILL, the out-of-memory killer) leaves: its temporary."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(path), kind], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL


def test_the_next_writer_of_an_output_removes_what_a_killed_one_left(tmp_path, reference):
    """A SIGKILL or out-of-memory kill during a save left .IDX.tmp* folders and out.h5.tmp* files
    beside the output (GBs for a large index) that nothing ever removed."""
    index, embeddings, table = tmp_path / "index", tmp_path / "e.h5", tmp_path / "calls.tsv"
    for path, kind in ((index, "folder"), (index, "folder"), (embeddings, "file"), (table, "file")):
        _killed_while_writing(path, kind)
    (tmp_path / ".other.tmpk3j9x0ab").mkdir()  # another output's: not theirs to remove
    assert len([p for p in tmp_path.iterdir() if ".tmp" in p.name]) == 5
    assert _index(reference, index).exit_code == 0
    assert run("-q", "embed", "-m", "kmer", reference, "-o", embeddings).exit_code == 0
    assert run("-q", "classify", "--index", index, reference, "-o", table).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmpk3j9x0ab", "calls.tsv", "e.h5", "index"]


def test_only_temporaries_no_live_clibd_is_writing_are_removed(tmp_path):
    """The writer of an output holds its lock (`.NAME.lock`); the one that takes it removes that
    output's temporaries, and in a folder output those of the files whose own lock is free."""
    from clibd_cli.io.outputs import writer_lock
    from models.errors import ClibdError
    from models.files import atomic_path

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _killed_while_writing(run_dir / "last", "folder")  # a train killed while saving last/
    _killed_while_writing(run_dir / "args.json", "file")
    (run_dir / "..best.tmpk3j9x0ab.tmp0a1b2c3d").mkdir()  # made for best/'s own temporary (older clibd)
    kept = [".last.old0a1b2c3d", "notes.tmp"]  # a previous last/ moved aside; a user's file
    (run_dir / kept[0]).mkdir()
    (run_dir / kept[1]).write_text("")
    beside = [".run.old0a1b2c3d", ".run.tmpk3j9x0ab"]  # a previous RUN; a file's temporary, made for .run
    (tmp_path / beside[0]).mkdir()
    (tmp_path / beside[1]).write_text("")
    _killed_while_writing(run_dir, "folder")
    with writer_lock(run_dir / "calls.tsv"), atomic_path(run_dir / "calls.tsv") as live:  # classify -o RUN/calls.tsv
        with pytest.raises(ClibdError, match="another clibd is writing it"), writer_lock(run_dir / "calls.tsv",
                                                                                          wait=False):
            pass
        with writer_lock(run_dir):  # train --resume --out RUN
            assert sorted(p.name for p in run_dir.iterdir()) == sorted([*kept, live.name, ".calls.tsv.lock"])
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*beside, ".run.lock", "run"])
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([*kept, "calls.tsv"])


def test_an_invalid_record_fills_every_column_of_the_tsv():
    """Scripts cut by position: an invalid row has exactly as many cells as the header."""
    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.io.predictions import COLUMNS, tsv_row

    assert len(tsv_row(Result(Query("q1", problem="too short")))) == len(COLUMNS)


def test_json_lines_write_ids_in_any_script_as_the_tsv_does():
    """``grep Müller out.jsonl`` finds the record: JSON lines are UTF-8 text, not ``\\u`` escapes."""
    import io

    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.io.predictions import PredictionWriter

    for fmt in ("tsv", "jsonl"):
        out = io.StringIO()
        PredictionWriter(out, fmt).write([Result(Query("蚊子_Müller", problem="too short"))])
        assert "蚊子_Müller" in out.getvalue(), fmt


def test_a_text_output_that_fails_half_way_leaves_the_earlier_file(tmp_path):
    """``text_output`` (classify -o, --summary) writes atomically: a run that fails half way leaves
    the earlier output whole and no partial one."""
    from clibd_cli.io.outputs import text_output

    path = tmp_path / "out.tsv"
    path.write_text("earlier\n")
    with pytest.raises(RuntimeError), text_output(path) as handle:
        handle.write("half\n")
        handle.flush()
        assert path.read_text() == "earlier\n"
        raise RuntimeError("killed")
    assert path.read_text() == "earlier\n" and os.listdir(tmp_path) == ["out.tsv"]


def test_a_tab_or_line_break_inside_a_cell_never_splits_a_tsv_row():
    """A photo path or id holding a tab, a newline or a carriage return (a CRLF file's id) stays
    in its cell: each is a space, so every row has the header's cells, on one line."""
    from clibd_cli.io.predictions import tsv_line

    assert tsv_line(["a\tb", "c\nd", "e\rf", 3]) == "a b\tc d\te f\t3\n"


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "neighbours", "qiime2", "sintax", "blast6"])
def test_each_batch_of_results_is_flushed_for_a_reader_of_the_pipe(fmt):
    """``classify | next-tool``: every written batch is flushed at once, not when a buffer fills."""
    import io

    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.io.pipeline_formats import PIPELINE_FORMATS, PipelineWriter
    from clibd_cli.io.predictions import PredictionWriter

    class Pipe(io.StringIO):
        flushed = ""

        def flush(self) -> None:
            self.flushed = self.getvalue()

    pipe = Pipe()
    writer = PipelineWriter(pipe, fmt) if fmt in PIPELINE_FORMATS else PredictionWriter(pipe, fmt)
    writer.write([Result(Query("q1", problem="too short"))])
    assert pipe.flushed == pipe.getvalue() and ("q1" in pipe.flushed) == (fmt != "blast6")
