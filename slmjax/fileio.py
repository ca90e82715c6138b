"""Atomic file writes: write to a unique temporary name in the target's folder, then rename.

A reader sees either the old file or the new one, never a half-written one, and a failed write
leaves no temporary file behind. The data is synced to disk before the rename, so this holds after
a power loss too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
import time
from typing import Iterator

from slmjax.errortext import describe


def _tmp_name(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(base)[1]
    # The original extension stays last so that writers which look at it (np.save, savefig) keep it.
    return os.path.join(d, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp{ext}")


# What _tmp_name makes: ".<base>.<pid>.<8 hex>.tmp<ext>".
_TMP_RE = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(?P<ext>\.[^.]*)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: a live process of another user
        return True
    try:  # a killed writer not yet reaped (a zombie) answers os.kill too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files that a killed atomic write (SIGKILL, power loss) left in ``folder``;
    returns their paths. A temporary file whose writer process still runs on this host is kept."""
    folder = os.fspath(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TMP_RE.match(name)
        if m is None or _pid_alive(int(m.group("pid"))):
            continue
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            _remove(path)
            removed.append(path)
    return removed


def _remove(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(tmp)


def _sync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path`` with its data on disk first and the folder entry after, so a
    power loss leaves the old file or the whole new one (not an empty one under the new name)."""
    _sync_file(tmp)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some file systems (and Windows) cannot sync a folder
        _sync_file(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error remove it.

    For writers that take a path (np.save, safetensors, savefig). The temporary name ends with the
    same extension as ``path``.
    """
    path = os.fspath(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        _publish(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = os.fspath(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        _publish(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj, **json_kwargs) -> None:
    """``json.dumps(obj, **json_kwargs)`` written to ``path`` atomically (no trailing newline added).

    The object is serialised before anything is written, so an unserialisable object leaves
    ``path`` untouched.
    """
    atomic_write_text(path, json.dumps(obj, **json_kwargs))


def url_problem(path: str, what: str) -> str | None:
    """One line when ``path`` is a URL (gs://, s3://, ...): runs, checkpoints and unit datasets are
    read and written through the filesystem, so a bucket must be mounted. None for a plain path."""
    if "://" not in str(path):
        return None
    return (f"{what}={path} is a URL, not a path: slmjax reads and writes through the filesystem; "
            "mount the bucket (launch/tpu_setup.sh mounts gs://BUCKET at /mnt/gcs on every TPU "
            "worker, with gcsfuse) and give the mounted path")


def cache_dir(name: str) -> str:
    """``$SLMJAX_CACHE/name`` (default ``$XDG_CACHE_HOME/slmjax`` or ``~/.cache/slmjax``): where
    results that are slow to compute and safe to recompute are kept between runs."""
    root = os.environ.get("SLMJAX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "slmjax")
    return os.path.join(root, name)


def dir_write_problem(path: str | os.PathLike) -> str | None:
    """Make the folder ``path`` (and its parents) and write a file in it: None when that works,
    else one line saying why not. A real write, not ``os.access``: that says yes to root where
    root cannot write (a root-squashed NFS share) and knows nothing of a name too long."""
    path = os.fspath(path)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return f"{path} cannot be written ({describe(e)})"
    return None


class NotAJSONObject(TypeError):
    """A JSON file that holds another JSON value (``kind``: its Python type name) than an object."""

    def __init__(self, value):
        self.kind = type(value).__name__
        super().__init__(f"a JSON {self.kind}, not an object")


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``. OSError when it cannot be read, json's ValueError when it is not
    valid JSON (or not UTF-8), NotAJSONObject when it holds another JSON value."""
    with open(path, "rb") as f:
        obj = json.load(f)
    if not isinstance(obj, dict):
        raise NotAJSONObject(obj)
    return obj


def undecodable_at(e: UnicodeDecodeError) -> tuple[int, int]:
    """(1-based line, byte value) of the byte where a UTF-8 decode of a file's bytes failed."""
    return e.object.count(b"\n", 0, e.start) + 1, e.object[e.start]


class LockHeld(Exception):
    """The lock file is held by another process (``pid``: what it wrote there, '?' if nothing)."""

    def __init__(self, pid: str):
        self.pid = pid
        super().__init__(f"held by pid {pid}")


class LockWaitStopped(LockHeld):
    """The wait for a held lock was ended by the caller's ``stop()``, not by its time limit."""


class PidLock:
    """An exclusive flock on ``path`` holding the owner's pid; the kernel releases it when the
    process dies. Held by another process: wait up to ``wait_s`` seconds (``on_wait(pid)`` once),
    then LockHeld; LockWaitStopped as soon as ``stop()`` is true while waiting. A file system
    without flock raises its OSError, or gives no lock when ``required`` is False."""

    def __init__(self, path: str, wait_s: float = 0.0, on_wait=None, required: bool = True,
                 stop=None):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline, told = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                other = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
                if stop is not None and stop():
                    self.release()
                    raise LockWaitStopped(other) from None
                if time.monotonic() >= deadline:
                    self.release()
                    raise LockHeld(other) from None
                if on_wait is not None and not told:
                    on_wait(other)
                    told = True
                time.sleep(0.2)
            except OSError:
                self.release()
                if required:
                    raise
                return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
