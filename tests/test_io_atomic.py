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


def test_directories(tmp_path):
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


def test_a_folder_that_cannot_be_swapped_in_leaves_the_previous_one(tmp_path, monkeypatch):
    """The old folder is moved aside before the new one is renamed in; if that rename fails
    (a full disk, a file system quirk), the old folder is put back."""
    target = tmp_path / "index"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    rename = os.replace

    def failing(source, destination):
        if os.path.basename(source).startswith(".index.tmp"):
            raise OSError(28, "No space left on device")
        rename(source, destination)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        with atomic_path(target, directory=True) as temp:
            (temp / "manifest.json").write_text("new")
    assert (target / "manifest.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["index"]


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
