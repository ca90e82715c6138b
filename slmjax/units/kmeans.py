"""k-means in JAX: k-means++ init, Lloyd or mini-batch updates, deterministic by seed.

Fitting shards the points over every device (``data`` mesh axis): each device assigns its points and
sums them per cluster, and one ``psum`` combines the sums. Encoding assigns with NumPy (utterances have
varying lengths, so a jitted assignment would recompile for each).
"""

from __future__ import annotations

import functools
import hashlib
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from slmjax import fileio
from slmjax.units.errors import UnitsError


def _sq_dists(x, c):
    """Squared distances; the dot at full float32 (accelerators default to TF32 or bf16, and the
    expansion cancels: a centroid's distance is small against the norms)."""
    xc = jnp.matmul(x, c.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(x * x, 1, keepdims=True) - 2.0 * xc + jnp.sum(c * c, 1)[None, :]


@partial(jax.jit, static_argnums=(2,))
def _kmeans_pp(x, key, k):
    """Greedy k-means++ seeding (as scikit-learn): first centre uniform; then 2 + log(k) candidates
    drawn with probability ~ D^2, keeping the one that lowers the potential most."""
    n = x.shape[0]
    n_local = 2 + int(np.log(k))
    key, sub = jax.random.split(key)
    first = x[jax.random.randint(sub, (), 0, n)]
    cents = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, 1)

    def body(i, carry):
        cents, d2, key = carry
        key, sub = jax.random.split(key)
        idx = jax.random.categorical(sub, jnp.log(jnp.maximum(d2, 1e-30)), shape=(n_local,))
        cand = x[idx]
        new_d2 = jnp.minimum(d2[None, :], jnp.maximum(_sq_dists(cand, x), 0.0))  # [n_local, n]
        best = jnp.argmin(new_d2.sum(1))
        return cents.at[i].set(cand[best]), new_d2[best], key

    cents, _, _ = jax.lax.fori_loop(1, k, body, (cents, d2, key))
    return cents


def _local_stats(x, w, c):
    d = _sq_dists(x, c)
    a = jnp.argmin(d, 1)
    dmin = jnp.maximum(jnp.take_along_axis(d, a[:, None], 1)[:, 0], 0.0)
    sums = jax.ops.segment_sum(x * w[:, None], a, num_segments=c.shape[0])
    counts = jax.ops.segment_sum(w, a, num_segments=c.shape[0])
    return sums, counts, jnp.sum(w * dmin)


@functools.lru_cache(maxsize=4)
def _make_stats_fn(mesh):
    def f(x, w, c):
        s, n, inertia = _local_stats(x, w, c)
        return jax.lax.psum(s, "data"), jax.lax.psum(n, "data"), jax.lax.psum(inertia, "data")

    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P("data"), P("data"), P()), out_specs=(P(), P(), P())))


def check_kmeans_args(k: int, iters: int, method: str, batch_size: int) -> None:
    """One UnitsError naming the first k-means setting out of range (callers check before reading audio)."""
    for flag, value in (("k", k), ("kmeans_iters", iters), ("kmeans_batch", batch_size)):
        if value < 1:
            raise UnitsError(f"--{flag} must be >= 1, got {value}")
    if method not in ("lloyd", "minibatch"):
        raise UnitsError(f"--kmeans_method must be lloyd or minibatch, got {method!r}")


def fit_kmeans(
    x: np.ndarray,
    k: int,
    seed: int = 0,
    iters: int = 50,
    method: str = "lloyd",
    batch_size: int = 10000,
    init_points: int = 200_000,
    tol: float = 1e-6,
    progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """Centroids float32 [k, dim] and a header dict (inertia per point, iterations, ...)."""
    check_kmeans_args(k, iters, method, batch_size)
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[0] < k:
        raise UnitsError(f"k-means needs at least k={k} feature frames, got {x.shape[0] if x.ndim == 2 else x.shape}")
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    init_idx = np.sort(rng.choice(x.shape[0], size=min(init_points, x.shape[0]), replace=False))
    cents = _kmeans_pp(jnp.asarray(x[init_idx]), key, k)

    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("data",), devices=devices)
    stats = _make_stats_fn(mesh)
    shard = NamedSharding(mesh, P("data"))

    def put(points):
        pad = (-points.shape[0]) % len(devices)
        w = np.concatenate([np.ones(points.shape[0], np.float32), np.zeros(pad, np.float32)])
        points = np.concatenate([points, np.zeros((pad, points.shape[1]), np.float32)])
        return jax.device_put(points, shard), jax.device_put(w, shard)

    from tqdm import tqdm

    bar = tqdm(range(iters), desc=f"k-means {method} k={k}", disable=not progress, leave=False)
    history = []
    if method == "lloyd":
        xs, ws = put(x)
        prev = np.inf
        for it in bar:
            sums, counts, inertia = stats(xs, ws, cents)
            # an empty cluster keeps its centre (deterministic; k-means++ seeding makes this rare)
            cents = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1e-12)[:, None], cents)
            inertia = float(inertia) / x.shape[0]
            history.append(inertia)
            bar.set_postfix(inertia=f"{inertia:.4g}")
            if prev - inertia <= tol * abs(inertia):
                break
            prev = inertia
    else:
        totals = jnp.zeros((k,), jnp.float32)
        for it in bar:
            idx = rng.choice(x.shape[0], size=min(batch_size, x.shape[0]), replace=False)
            xs, ws = put(x[idx])
            sums, counts, _ = stats(xs, ws, cents)
            totals = totals + counts
            lr = jnp.where(counts > 0, counts / jnp.maximum(totals, 1e-12), 0.0)[:, None]
            cents = cents + lr * (sums / jnp.maximum(counts, 1e-12)[:, None] - cents)
    cents = np.asarray(cents, np.float32)
    final = inertia_of(x, cents)
    header = {"k": k, "dim": int(x.shape[1]), "seed": seed, "method": method, "iterations": it + 1,
              "n_points": int(x.shape[0]), "inertia_per_point": final, "history": history}
    return cents, header


def assign(x: np.ndarray, cents: np.ndarray, cents_sq: np.ndarray | None = None) -> np.ndarray:
    """Nearest centroid (squared Euclidean) per row, int32."""
    if cents_sq is None:
        cents_sq = np.sum(cents * cents, 1)
    return np.argmin(cents_sq[None, :] - 2.0 * (x @ cents.T), axis=1).astype(np.int32)


def inertia_of(x: np.ndarray, cents: np.ndarray) -> float:
    """Mean squared distance to the nearest centroid (float64)."""
    x64, c64 = np.asarray(x, np.float64), np.asarray(cents, np.float64)
    total = 0.0
    for s in range(0, x64.shape[0], 65536):
        xb = x64[s : s + 65536]
        d = np.sum(xb * xb, 1)[:, None] - 2 * xb @ c64.T + np.sum(c64 * c64, 1)[None]
        total += float(np.maximum(d.min(1), 0).sum())
    return total / max(x64.shape[0], 1)


def centroids_sha256(cents: np.ndarray) -> str:
    """Hash of the float32 little-endian centroid bytes (the tokenizer identity)."""
    return hashlib.sha256(np.ascontiguousarray(cents, "<f4").tobytes()).hexdigest()


def save_centroids(path_npy: str, cents: np.ndarray, header: dict) -> None:
    """``centroids.npy`` plus ``centroids.json`` header, each written to a temp name then renamed."""
    cents = np.ascontiguousarray(cents, np.float32)
    with fileio.atomic_path(path_npy) as tmp:
        np.save(tmp, cents)
    hdr = dict(header, k=int(cents.shape[0]), dim=int(cents.shape[1]), sha256=centroids_sha256(cents))
    jpath = os.path.splitext(path_npy)[0] + ".json"
    fileio.atomic_write_json(jpath, hdr, indent=1)


def import_sklearn(path: str) -> np.ndarray:
    """Centroids from a joblib/pickle sklearn (MiniBatch)KMeans, e.g. TWIST's km500 file."""
    try:
        import joblib
    except ImportError:
        raise UnitsError("importing an sklearn k-means file needs scikit-learn and joblib installed") from None
    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001
        raise UnitsError(f"cannot load k-means file {path}: {exc}") from None
    cents = getattr(model, "cluster_centers_", None)
    if cents is None:
        raise UnitsError(f"{path} holds a {type(model).__name__}, not a fitted sklearn KMeans")
    return np.asarray(cents, np.float32)
