"""Test setup: 8 fake CPU devices so that the real sharding code runs.

The session's processes (the tests' own and every CLI or trainer they start, which inherit this
environment) share one JAX persistent compilation cache, so that a program compiled once is not
compiled again in each subprocess: the zero-shot CLI tests, which start the scorer 40 times on the
same model, take 40% less time. A cache the caller set (JAX_COMPILATION_CACHE_DIR) is used as is.

Under pytest-xdist each worker process uses its own subfolder of that cache. The controller loads
this file before it starts the workers, which inherit its environment: without the subfolder both
workers (and their subprocesses) would write one folder, and JAX writes an entry in place
(Path.write_bytes, no lock unless a cache size limit is set), so a worker could read another's
half-written entry of the same program (a warning on stderr and a recompile) or leave an entry
mixed from two writes."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="slmjax-test-jaxcache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["SLMJAX_TEST_JAXCACHE"] = _cache  # made here, not by the caller
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
elif os.environ.get("PYTEST_XDIST_WORKER") and (
        os.environ["JAX_COMPILATION_CACHE_DIR"] == os.environ.get("SLMJAX_TEST_JAXCACHE")):
    # A worker: the controller's cache folder (removed by the controller at its exit).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        os.environ["SLMJAX_TEST_JAXCACHE"], os.environ["PYTEST_XDIST_WORKER"])
