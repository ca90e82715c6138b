import json
import os

import numpy as np
import pytest

from slmjax import fileio


def _listing(d):
    return sorted(os.listdir(d))


def test_round_trips(tmp_path):
    fileio.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01\xff")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\xff"
    fileio.atomic_write_text(str(tmp_path / "a.txt"), "h\u00e9llo\r\nworld\n")
    assert (tmp_path / "a.txt").read_bytes() == "h\u00e9llo\r\nworld\n".encode("utf-8")
    obj = {"b": [1, 2.5, None], "a": "x"}
    fileio.atomic_write_json(tmp_path / "a.json", obj, indent=1, sort_keys=True)
    raw = (tmp_path / "a.json").read_text()
    assert raw == json.dumps(obj, indent=1, sort_keys=True)
    assert json.loads(raw) == obj
    assert _listing(tmp_path) == ["a.bin", "a.json", "a.txt"]


def test_overwrite(tmp_path):
    p = tmp_path / "f.json"
    fileio.atomic_write_json(p, {"v": 1})
    fileio.atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 2}
    fileio.atomic_write_text(p, "short")
    assert p.read_text() == "short"
    assert _listing(tmp_path) == ["f.json"]


def test_failed_json_keeps_old_file(tmp_path):
    p = tmp_path / "f.json"
    fileio.atomic_write_json(p, {"v": 1}, indent=1)
    with pytest.raises(TypeError):
        fileio.atomic_write_json(p, {"v": object()}, indent=1)
    assert json.loads(p.read_text()) == {"v": 1}
    assert _listing(tmp_path) == ["f.json"]


def test_failed_path_writer_keeps_old_file(tmp_path):
    p = tmp_path / "x.npy"
    with fileio.atomic_path(p) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".npy")
        np.save(tmp, np.arange(3))
    assert np.load(p).tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert np.load(p).tolist() == [0, 1, 2]
    assert _listing(tmp_path) == ["x.npy"]


def test_failed_write_midway_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    fileio.atomic_write_text(p, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError):
        fileio.atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert _listing(tmp_path) == ["f.txt"]


def test_temp_names_are_unique(tmp_path):
    names = {fileio._tmp_name(str(tmp_path / "f.txt")) for _ in range(100)}
    assert len(names) == 100


def _record_syncs(monkeypatch):
    """Log of ('fsync', path) and ('replace', dst) events in call order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.parametrize("how", ["bytes", "path"])
def test_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch, how):
    # Without an fsync before the rename, a power loss can leave the new name pointing at an empty
    # file on file systems that do not order data before metadata (XFS, ext4 for new names).
    events = _record_syncs(monkeypatch)
    target = str(tmp_path / "run.json")
    if how == "bytes":
        fileio.atomic_write_bytes(target, b"{}")
    else:
        with fileio.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"{}")
    kinds = [k for k, _ in events]
    assert "replace" in kinds
    first_replace = kinds.index("replace")
    synced_before = [p for k, p in events[:first_replace] if k == "fsync"]
    assert any(os.path.basename(p).startswith(".run.json.") for p in synced_before), events
    # The folder entry too, after the rename.
    assert ("fsync", str(tmp_path)) in events[first_replace:], events


def test_dir_write_problem_makes_the_folder_or_says_why_not(tmp_path):
    """One real write probe for every "can the output folder be written" check: a folder under a
    file, or a name the file system refuses, is one line; a writable one is made."""
    assert fileio.dir_write_problem(tmp_path / "a" / "b") is None
    assert (tmp_path / "a" / "b").is_dir() and _listing(tmp_path / "a" / "b") == []
    (tmp_path / "taken").write_text("x")
    for under in ("taken", "taken/sub"):
        problem = fileio.dir_write_problem(tmp_path / under)
        assert problem == f"{tmp_path / 'taken'} is not a directory"
    long = tmp_path / ("x" * 300)
    assert fileio.dir_write_problem(long).startswith(
        f"{long} cannot be written (OSError: [Errno 36] File name too long")
