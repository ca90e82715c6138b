"""The host allocator choice and the re-execution that puts it in place."""

import os
import subprocess
import sys

import pytest

from slmjax import hostalloc
from slmjax.hostalloc import allocator_env

TC = "libtcmalloc_minimal.so.4"


def test_choices():
    assert allocator_env({}, "system", TC, True) == ("system", {})
    name, env = allocator_env({"LD_PRELOAD": "libfoo.so"}, "auto", TC, True)
    assert name == "tcmalloc" and env["LD_PRELOAD"] == f"{TC} libfoo.so"
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) > 1 << 40
    assert env["TCMALLOC_RELEASE_RATE"] == "0"
    _, env = allocator_env({"TCMALLOC_RELEASE_RATE": "2"}, "tcmalloc", TC, True)
    assert "TCMALLOC_RELEASE_RATE" not in env  # the user's own rate stays
    assert allocator_env({"LD_PRELOAD": f"/x/{TC}"}, "auto", TC, True) == ("tcmalloc", {})
    # No tcmalloc: glibc's huge-page tunable, appended to the user's own tunables.
    assert allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "auto", None, True) == (
        "thp", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"})
    assert allocator_env({}, "thp", TC, True) == ("thp", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    assert allocator_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, "thp", None, True) == ("thp", {})
    assert allocator_env({}, "auto", None, False) == ("system", {})  # THP disabled in the kernel


def test_bad_choices_name_the_problem():
    with pytest.raises(ValueError, match="SLMJAX_ALLOCATOR='jemalloc': expected one of auto"):
        allocator_env({}, "jemalloc", TC, True)
    with pytest.raises(ValueError, match="apt-get install libtcmalloc-minimal4"):
        allocator_env({}, "tcmalloc", None, True)


_SCRIPT = """
import ctypes, os, resource, sys
print("start", os.getpid(), flush=True)
from slmjax import hostalloc
hostalloc.use_fast_allocator()
# Twelve rounds of allocating, touching and freeing 256 + 85 + 36 MB (a step's temporaries): glibc
# maps them afresh each round (page faults every round); tcmalloc keeps the pages for the next
# round unless its release rate hands them back to the kernel.
libc = ctypes.CDLL(None)  # the process's malloc: tcmalloc's when preloaded
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
sizes = [1 << 28, (1 << 28) // 3, (1 << 28) // 7]
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(n) for n in sizes]
    for p, n in zip(blocks, sizes):
        ctypes.memset(p, 1, n)
    for p in blocks:
        libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print("done", os.getpid(), hostalloc.active_allocator(), *faults, flush=True)
"""


def _faults(stdout):
    """Page faults per round, from the script's last line."""
    return [int(x) for x in stdout.splitlines()[-1].split()[3:]]


def _run(choice, **extra):
    drop = ("LD_PRELOAD", "SLMJAX_ALLOCATOR_ACTIVE", "TCMALLOC_RELEASE_RATE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(SLMJAX_ALLOCATOR=choice, **extra)
    return subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_reexec_keeps_pid_and_tcmalloc_stops_the_page_faults():
    if hostalloc.find_tcmalloc() is None:
        pytest.skip("tcmalloc not installed (make apt installs it)")
    system, tc = _run("system"), _run("tcmalloc")
    assert system.returncode == 0 and tc.returncode == 0, system.stderr + tc.stderr
    s_lines, t_lines = system.stdout.splitlines(), tc.stdout.splitlines()
    # Re-executed once: the script's first line runs twice with one pid, the last line once.
    assert [ln.split()[0] for ln in t_lines] == ["start", "start", "done"]
    assert len({ln.split()[1] for ln in t_lines}) == 1
    assert [ln.split()[0] for ln in s_lines] == ["start", "done"]  # system: no re-execution
    assert s_lines[-1].split()[2] == "system"
    assert t_lines[-1].split()[2] == "tcmalloc"
    pages = (1 << 28) // 4096
    s_faults, t_faults = _faults(system.stdout), _faults(tc.stdout)
    assert len(s_faults) == len(t_faults) == 12
    assert all(f > pages for f in s_faults)  # glibc: every round faults its blocks in again
    assert t_faults[0] > pages and t_faults[1:] == [0] * 11  # tcmalloc: the first round only


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_tcmalloc_release_rate_zero_keeps_the_pages():
    """tcmalloc's default release rate (1) hands a freed block back to the kernel now and then, and
    the next round faults it in again; hostalloc sets 0 unless the user set a rate themselves."""
    if hostalloc.find_tcmalloc() is None:
        pytest.skip("tcmalloc not installed (make apt installs it)")
    ours, default = _run("tcmalloc"), _run("tcmalloc", TCMALLOC_RELEASE_RATE="1")
    assert ours.returncode == 0 and default.returncode == 0, ours.stderr + default.stderr
    ours_faults, default_faults = _faults(ours.stdout), _faults(default.stdout)
    assert ours_faults[1:] == [0] * 11
    assert max(default_faults[1:]) >= (1 << 28) // 4096  # a whole 256 MB block faulted in again


def test_bad_setting_is_one_line():
    result = _run("jemalloc")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("slmjax: SLMJAX_ALLOCATOR='jemalloc'")


@pytest.mark.parametrize("module", ["slmjax.train.cli", "slmjax.analysis.zeroshot.cli",
                                    "slmjax.units.cli"])
def test_xla_heavy_commands_choose_the_allocator_first(module):
    """slmjax-train, slmjax-eval and slmjax-units (HuBERT features: 7.6x real time with glibc's
    malloc, 18.4x with tcmalloc on our 2-core machine) re-execute with the allocator before any
    work: a bad SLMJAX_ALLOCATOR stops them with its one line."""
    env = {**os.environ, "SLMJAX_ALLOCATOR": "jemalloc"}
    env.pop("SLMJAX_ALLOCATOR_ACTIVE", None)
    result = subprocess.run([sys.executable, "-m", module, "--help"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("slmjax: SLMJAX_ALLOCATOR='jemalloc'")
