"""JAX k-means against float64 NumPy Lloyd and scikit-learn's objective; determinism by seed."""

import jax
import numpy as np
import pytest

from slmjax.units.errors import UnitsError
from slmjax.units.kmeans import _kmeans_pp, assign, fit_kmeans, import_sklearn, inertia_of


def _blobs(n=3000, k=8, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(0, 1, size=(n, d))).astype(np.float32)


def _numpy_lloyd(x, cents, iters):
    x, c = x.astype(np.float64), cents.astype(np.float64)
    for _ in range(iters):
        a = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), 1)
        c = np.stack([x[a == j].mean(0) if np.any(a == j) else c[j] for j in range(len(c))])
    return c


def test_lloyd_matches_float64_numpy_from_same_init():
    assert len(jax.devices()) == 8  # assignment runs sharded over the fake devices
    x = _blobs(n=3001)  # not a multiple of 8: padding points carry weight 0
    init = np.asarray(_kmeans_pp(jax.numpy.asarray(x), jax.random.key(3), 8))
    cents, hdr = fit_kmeans(x, 8, seed=3, iters=10, tol=0.0, init_points=len(x))
    ref = _numpy_lloyd(x, init, 10)
    np.testing.assert_allclose(cents, ref, atol=1e-3)
    assert hdr["iterations"] <= 10 and abs(hdr["inertia_per_point"] - inertia_of(x, ref)) < 1e-3


def test_objective_close_to_sklearn_and_deterministic():
    sklearn = pytest.importorskip("sklearn.cluster")
    x = _blobs(n=4000, k=12, d=6, seed=1)
    ours, _ = fit_kmeans(x, 12, seed=0, init_points=len(x))
    init = np.asarray(_kmeans_pp(jax.numpy.asarray(x), jax.random.key(0), 12))
    same_init = sklearn.KMeans(12, init=init, n_init=1, tol=0, algorithm="lloyd").fit(x.astype(np.float64))
    assert abs(inertia_of(x, ours) - same_init.inertia_ / len(x)) <= 1e-4 * same_init.inertia_ / len(x)
    sk = sklearn.KMeans(12, n_init=10, random_state=0).fit(x.astype(np.float64))
    best = min(inertia_of(x, fit_kmeans(x, 12, seed=s)[0]) for s in range(4))  # k-means++ restarts, as sklearn's n_init
    assert best <= 1.001 * sk.inertia_ / len(x)
    again, _ = fit_kmeans(x, 12, seed=0)
    other, _ = fit_kmeans(x, 12, seed=1)
    assert np.array_equal(ours, again)
    assert not np.array_equal(ours, other)
    mb, _ = fit_kmeans(x, 12, seed=0, method="minibatch", iters=200, batch_size=512)
    assert np.array_equal(mb, fit_kmeans(x, 12, seed=0, method="minibatch", iters=200, batch_size=512)[0])
    assert inertia_of(x, mb) <= 1.05 * inertia_of(x, ours)  # same seeding, noisier updates


def test_assign_is_nearest_centroid():
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(500, 7)).astype(np.float32), rng.normal(size=(20, 7)).astype(np.float32)
    ref = np.argmin(((x[:, None].astype(np.float64) - c[None]) ** 2).sum(-1), 1)
    assert np.array_equal(assign(x, c), ref)


def test_too_few_points_is_one_clear_error():
    with pytest.raises(UnitsError, match="at least k=10"):
        fit_kmeans(np.zeros((5, 3), np.float32), 10)


def test_import_sklearn_file(tmp_path):
    sklearn = pytest.importorskip("sklearn.cluster")
    joblib = pytest.importorskip("joblib")
    x = _blobs(n=500)
    km = sklearn.MiniBatchKMeans(8, random_state=0, n_init=3).fit(x)
    joblib.dump(km, tmp_path / "km8.bin")
    np.testing.assert_array_equal(import_sklearn(str(tmp_path / "km8.bin")), km.cluster_centers_.astype(np.float32))
    joblib.dump({"not": "kmeans"}, tmp_path / "bad.bin")
    with pytest.raises(UnitsError, match="not a fitted sklearn KMeans"):
        import_sklearn(str(tmp_path / "bad.bin"))


def test_tokenizer_from_imported_kmeans_file(tmp_path):
    sklearn = pytest.importorskip("sklearn.cluster")
    joblib = pytest.importorskip("joblib")
    from slmjax.units.features import MfccFeatures
    from slmjax.units.fit import fit_tokenizer

    km = sklearn.KMeans(6, n_init=1, random_state=0).fit(np.random.default_rng(0).normal(size=(200, 39)))
    joblib.dump(km, tmp_path / "km6.bin")
    tok = fit_tokenizer(MfccFeatures(), [], str(tmp_path / "tok"), k=0, kmeans_file=str(tmp_path / "km6.bin"), progress=False)
    assert (tok.k, tok.eos_id, tok.pad_id, tok.vocab_size) == (6, 6, 7, 8)
    np.testing.assert_array_equal(tok.centroids, km.cluster_centers_.astype(np.float32))
    km3 = sklearn.KMeans(2, n_init=1, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 3)))
    joblib.dump(km3, tmp_path / "km3.bin")
    with pytest.raises(UnitsError, match="centroids of dim 3, features of dim 39"):
        fit_tokenizer(MfccFeatures(), [], str(tmp_path / "tok2"), k=0, kmeans_file=str(tmp_path / "km3.bin"), progress=False)
