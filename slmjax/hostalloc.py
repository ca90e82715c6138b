"""A host memory allocator that keeps XLA's per-step buffers mapped.

XLA on the CPU allocates each executable's temporaries (GBs for a training step) with malloc at
every call. glibc serves such sizes with a fresh mmap and returns them with munmap, so every step
page-faults its whole working set in again: measured at s20m, batch 4 x 2050, 0.8-2.5M page faults
and a third of the CPU time in the kernel. tcmalloc (with its release rate at 0) keeps freed pages
and hands them back to the next step; without it, glibc's transparent-huge-page tunable makes each
fault cover 2 MB instead of 4 KB.

The allocator must be in place before the process starts, so `use_fast_allocator()` re-executes
the current command (same pid, arguments and descriptors) with LD_PRELOAD or GLIBC_TUNABLES set.
Console scripts call it first thing. SLMJAX_ALLOCATOR chooses: auto (default: tcmalloc if installed,
else glibc huge pages), tcmalloc, thp, or system (leave the process alone).
"""

from __future__ import annotations

import ctypes.util
import os
import sys

ENV = "SLMJAX_ALLOCATOR"
_DONE = "SLMJAX_ALLOCATOR_ACTIVE"  # set in the re-executed process: never re-exec twice
CHOICES = ("auto", "tcmalloc", "thp", "system")
_THP_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def find_tcmalloc() -> str | None:
    """Name of an installed tcmalloc shared library (Debian: libtcmalloc-minimal4), or None."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        lib = ctypes.util.find_library(name)
        if lib:
            return lib
    return None


def _thp_usable() -> bool:
    """True when transparent huge pages can be requested with madvise (mode 'always' or 'madvise')."""
    try:
        with open(_THP_SETTING) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def allocator_env(environ: dict, choice: str, tcmalloc: str | None, thp_usable: bool) -> tuple[str, dict]:
    """(allocator used, environment variables to set) for `choice`; no variables: nothing to do."""
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "system":
        return "system", {}
    if choice in ("auto", "tcmalloc") and tcmalloc:
        if "tcmalloc" in environ.get("LD_PRELOAD", ""):
            return "tcmalloc", {}
        preload = " ".join(p for p in (tcmalloc, environ.get("LD_PRELOAD", "")) if p)
        # tcmalloc reports every allocation over 1 GB on stderr by default: XLA makes one per step.
        # Its default release rate hands freed pages back to the kernel now and then, and the next
        # step faults the whole temp block in again (s20m: 750K faults, 9.8 -> 13.9 s, in 1 to 4 of
        # every 8 steps in our runs); 0 keeps them. A user's own setting wins.
        env = {"LD_PRELOAD": preload, "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 50)}
        if "TCMALLOC_RELEASE_RATE" not in environ:
            env["TCMALLOC_RELEASE_RATE"] = "0"
        return "tcmalloc", env
    if choice == "tcmalloc":
        raise ValueError(f"{ENV}=tcmalloc but no tcmalloc library is installed "
                         "(Debian: apt-get install libtcmalloc-minimal4)")
    if not thp_usable:
        return "system", {}
    tunables = environ.get("GLIBC_TUNABLES", "")
    if _THP_TUNABLE in tunables.split(":"):
        return "thp", {}
    return "thp", {"GLIBC_TUNABLES": ":".join(t for t in (tunables, _THP_TUNABLE) if t)}


def active_allocator() -> str:
    """The allocator this process runs with: tcmalloc, thp or system."""
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return "tcmalloc"
    if _THP_TUNABLE in os.environ.get("GLIBC_TUNABLES", "").split(":") and _thp_usable():
        return "thp"
    return "system"


def use_fast_allocator() -> None:
    """Re-execute this process with the allocator SLMJAX_ALLOCATOR asks for (Linux only).

    Call before anything heavy is imported: the process image is replaced. A bad SLMJAX_ALLOCATOR
    value stops with one line.
    """
    if not sys.platform.startswith("linux") or os.environ.get(_DONE):
        return
    choice = os.environ.get(ENV, "auto")
    tcmalloc = find_tcmalloc() if choice in ("auto", "tcmalloc") else None  # find_library runs ldconfig
    try:
        _, changes = allocator_env(os.environ, choice, tcmalloc, _thp_usable())
    except ValueError as e:
        sys.exit(f"slmjax: {e}")
    if not changes or not getattr(sys, "orig_argv", None):
        return
    env = {**os.environ, **changes, _DONE: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
