"""Atomic outputs: complete or absent, never half-written, no temporaries left behind."""

import os

import pytest

from models.errors import ClibdError
from models.files import atomic_open, atomic_path


def test_file_appears_only_on_success_and_replaces_old(tmp_path):
    target = tmp_path / "out.h5"
    target.write_text("old")
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path and temp != target
        temp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.h5"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "out.tsv"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_open(target) as handle:
            handle.write("half")
            raise error
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.tsv"]


@pytest.mark.parametrize("exchange", [True, False])  # renameat2 (Linux), or two renames elsewhere
def test_directories(tmp_path, monkeypatch, exchange):
    import models.files

    if not exchange:
        monkeypatch.setattr(models.files, "_RENAMEAT2", None)
    target = tmp_path / "index"
    with atomic_path(target, directory=True) as temp:
        (temp / "manifest.json").write_text("{}")
    assert (target / "manifest.json").exists()
    with atomic_path(target, directory=True) as temp:
        (temp / "records.tsv").write_text("id\n")
    assert sorted(os.listdir(target)) == ["records.tsv"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target, directory=True) as temp:
            (temp / "half").write_text("")
            raise KeyboardInterrupt
    assert sorted(os.listdir(target)) == ["records.tsv"]
    assert os.listdir(tmp_path) == ["index"]


@pytest.mark.parametrize("exchange", [True, False])
def test_a_folder_replacing_a_symlink_or_a_file_leaves_no_temporary(tmp_path, monkeypatch, exchange):
    """Exchanged with a symlink or a file, the previous version sat at the temporary name, and
    rmtree cannot remove either: ``.ref.tmpXXXX`` was left beside the output."""
    import models.files

    if not exchange:
        monkeypatch.setattr(models.files, "_RENAMEAT2", None)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "file").write_text("old")
    for name in ("link", "file"):
        with atomic_path(tmp_path / name, directory=True) as temp:
            (temp / "manifest.json").write_text("{}")
        assert (tmp_path / name).is_dir() and not (tmp_path / name).is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["file", "link", "real"]


def test_a_folder_that_cannot_be_swapped_in_leaves_the_previous_one(tmp_path, monkeypatch):
    """Where the two cannot be exchanged in one step (no renameat2), the old folder is moved aside
    before the new one is renamed in; if that rename fails (a full disk, a file system quirk), the
    old folder is put back."""
    import models.files

    monkeypatch.setattr(models.files, "_RENAMEAT2", None)
    target = tmp_path / "index"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    rename = os.replace

    def failing(source, destination):
        if os.path.basename(source).startswith(".index.tmp"):
            raise OSError(28, "No space left on device")
        rename(source, destination)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(ClibdError, match="No space"):
        with atomic_path(target, directory=True) as temp:
            (temp / "manifest.json").write_text("new")
    assert (target / "manifest.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["index"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an fsynced file through /proc")
def test_a_folders_files_are_on_disk_before_it_replaces_the_previous_one(tmp_path, monkeypatch):
    """Only the folder entry was fsynced: after a power cut the new index could hold empty files,
    the previous one already gone."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_path(tmp_path / "index", directory=True) as temp:
        (temp / "manifest.json").write_text("{}")
        (temp / "part").mkdir()
        (temp / "part" / "index.bin").write_bytes(b"x")
    assert {"manifest.json", "index.bin"} <= set(synced)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ClibdError, match="the folder .*nope does not exist"):
        with atomic_path(tmp_path / "nope" / "out.h5"):
            pass


def test_an_unwritable_folder_is_named_with_the_users_path(tmp_path, monkeypatch):
    """The temporary file is clibd's business: the error names the output the user gave."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ClibdError, match=r"out\.tsv: cannot write in .* \(Permission denied\)$"):
        with atomic_open(tmp_path / "out.tsv") as handle:
            handle.write("x")


_LIMIT = 64 << 10  # bytes: far less than the HDF5 files below


def _clibd_with_a_file_size_limit(cwd, *args):
    """``clibd ARGS`` in a process that may not write a file over _LIMIT bytes (``ulimit -f``, as a
    full disk: the write fails with EFBIG; Python ignores the SIGXFSZ)."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (_LIMIT, _LIMIT))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "clibd_cli", "-q", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, preexec_fn=limit, timeout=300)


@pytest.mark.parametrize("command", [["prepare"], ["embed", "-m", "kmer", "--batch-size", "1"]])  # 8 per chunk file
def test_a_full_disk_is_an_error_naming_the_output_not_a_crash(tmp_path, command):
    """HDF5 crashed (segmentation fault, exit 139) a few writes after the first failed one, leaving
    its temporary file; now: exit 1, one line naming the output, no temporary."""
    import random

    rng = random.Random(0)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">r{i}\n{''.join(rng.choice('ACGT') for _ in range(650))}\n" for i in range(400)))
    result = _clibd_with_a_file_size_limit(tmp_path, *command, fasta, "-o", "out.h5")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"clibd: error: {tmp_path}/out.h5: cannot write (File too "
                                                      "large); free some space or give another path")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("out.h5") and p.name != "out.h5.shards"]


def test_a_full_disk_names_the_output_of_any_atomic_write(tmp_path):
    """classify -o said only 'clibd: error: No space left on device'."""
    target = tmp_path / "out.tsv"
    target.write_text("old")
    with pytest.raises(ClibdError, match=r"out\.tsv: cannot write \(No space left on device\); free some space"):
        with atomic_path(target):
            raise OSError(28, "No space left on device")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.tsv"]
    with pytest.raises(FileNotFoundError):  # an input that is not there stays what it is
        with atomic_path(target):
            open(tmp_path / "missing.fa")


def test_a_full_disk_under_standard_output_is_named(tmp_path):
    """`clibd classify ... > calls.tsv` on a full disk said only 'clibd: error: File too large'."""
    import random
    import resource
    import subprocess
    import sys

    rng = random.Random(1)
    records = [(f"r{i}", "".join(rng.choice("ACGT") for _ in range(650))) for i in range(400)]
    (tmp_path / "ref.fa").write_text("".join(f">{i};tax=o:O{n % 3},f:F{n % 5},g:G{n % 9},s:G{n % 9}_s{n % 20};\n{s}\n"
                                             for n, (i, s) in enumerate(records[:40])))
    (tmp_path / "q.fa").write_text("".join(f">{i}\n{s}\n" for i, s in records))
    clibd = [sys.executable, "-m", "clibd_cli", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    built = subprocess.run([*clibd, "index", "-m", "kmer", "ref.fa", "-o", "idx"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    with open(tmp_path / "calls.tsv", "w") as stdout:
        result = subprocess.run([*clibd, "classify", "--index", "idx", "q.fa"], cwd=tmp_path, stdout=stdout,
                                stderr=subprocess.PIPE, text=True, timeout=300, env=env,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 10, 8 << 10)))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("clibd: error: standard output: cannot write (File too large); "
                                                      "free some space or give another path"), result.stderr


def test_hdf5s_file_keeps_a_failed_write_and_reads_it_back_whole(tmp_path):
    """On a disk that fills half way through a write, the write still reports all its bytes
    written (a caller honouring a short write would write the rest again) and the file reads back
    as written, so HDF5 goes on with a consistent file until the kept error is raised."""
    import errno
    import io

    from clibd_cli.io.hdf5_files import _KeptErrors

    class EightBytesFree(io.FileIO):
        def write(self, data) -> int:
            if self.tell() >= 8:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(bytes(data)[:8 - self.tell()])

    class Kept(_KeptErrors, EightBytesFree):
        pass

    with Kept(tmp_path / "out.h5", "w+") as handle:
        assert handle.write(b"header") == 6 and handle.write(memoryview(b"block")) == 5
        assert handle.error is not None and handle.error.errno == errno.ENOSPC
        handle.seek(0)
        assert handle.read(11) == b"headerblock"
    assert (tmp_path / "out.h5").read_bytes() == b"headerbl"


def test_standard_output_is_flushed_before_its_block_ends(monkeypatch):
    """What a writer left in standard output's buffer is written while clibd can still name a full
    disk; flushed at exit, the failure was Python's 'Exception ignored' and exit status 120."""
    import errno
    import io
    import sys

    from clibd_cli.io.outputs import text_output

    class Full(io.StringIO):
        def flush(self) -> None:
            if self.getvalue():
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(ClibdError, match=r"^standard output: cannot write \(No space left on device\)"):
        with text_output("-") as handle:
            handle.write("q1\tassigned\n")
