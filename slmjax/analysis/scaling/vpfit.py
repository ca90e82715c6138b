"""Approach 3 by variable projection, vectorised over the (alpha, beta) grid and bootstrap replicates.

For fixed (alpha, beta) the surface E + A x + B y (x = N^-alpha, y = D^-beta) is linear in (E, A, B), so
the sum of squared residuals is minimised exactly by non-negative least squares. With three unknowns,
NNLS is solved exactly by enumerating the 8 supports: the optimum is the feasible support solution with
the smallest residual. All of it runs on weighted sufficient statistics, so a bootstrap replicate is a
row of run weights (resample counts) and every replicate and grid cell is solved in one batch of NumPy.
Then each replicate's best cell is refined by successive zoomed grids around it, and the point fit is
polished with Nelder-Mead on the projected 2-D objective. Zooms and polish stay inside the grid's
exponent range, so a point fit and its replicates search one region (an exponent the data leave
free ends on the grid's edge, where the diagnostics flag it, not at alpha = 40 with A = 1e150).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize

ALPHA_GRID = (0.01, 1.5, 150)   # point fit: dense grid lo, hi, points (same for beta)
BOOT_GRID = (0.01, 1.5, 50)     # bootstrap replicates: coarser grid, one more zoom level
SUBSETS = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


@dataclasses.dataclass
class VPResult:
    params: np.ndarray        # (R, 5): E, A, B, alpha, beta (A, B in original units)
    sse: np.ndarray           # (R,) weighted sum of squared residuals
    grid_index: np.ndarray    # (R, 2) best coarse-grid cell
    grid: tuple               # (alphas, betas)
    sse_grid: np.ndarray | None = None   # (na, nb) for the first replicate (point fit diagnostics)


def _stats(X, Y, W, L):
    """Weighted sufficient statistics. X: (R|1, ka, n), Y: (R|1, kb, n), W: (R, n), L: (n,)."""
    WX = X * W[:, None, :]
    WY = Y * W[:, None, :]
    s = {
        "S0": W.sum(1)[:, None, None],
        "Sx": WX.sum(2)[:, :, None], "Sy": WY.sum(2)[:, None, :],
        "Sxx": (WX * X).sum(2)[:, :, None], "Syy": (WY * Y).sum(2)[:, None, :],
        "Sxy": np.matmul(WX, np.swapaxes(Y, 1, 2)),
        "SL": (W @ L)[:, None, None], "SLL": (W @ (L * L))[:, None, None],
        "SxL": (WX @ L)[:, :, None], "SyL": (WY @ L)[:, None, :],
    }
    return s


def _nnls3(s):
    """Exact 3-variable NNLS per cell from sufficient statistics: (sse, coef[..., 3])."""
    G = [[s["S0"], s["Sx"], s["Sy"]], [s["Sx"], s["Sxx"], s["Sxy"]], [s["Sy"], s["Sxy"], s["Syy"]]]
    r = [s["SL"], s["SxL"], s["SyL"]]
    shape = np.broadcast_shapes(s["Sxy"].shape, s["S0"].shape)
    best = np.broadcast_to(s["SLL"], shape).copy()          # empty support: all zero
    coef = np.zeros(shape + (3,))
    for sub in SUBSETS:
        k = len(sub)
        g = [[G[i][j] for j in sub] for i in sub]
        rr = [r[i] for i in sub]
        if k == 1:
            det = g[0][0]
            c = [rr[0] / np.where(det > 0, det, np.inf)]
        elif k == 2:
            det = g[0][0] * g[1][1] - g[0][1] * g[1][0]
            dd = np.where(np.abs(det) > 0, det, np.inf)
            c = [(rr[0] * g[1][1] - g[0][1] * rr[1]) / dd, (g[0][0] * rr[1] - g[1][0] * rr[0]) / dd]
        else:
            cof = [[g[(i + 1) % 3][(j + 1) % 3] * g[(i + 2) % 3][(j + 2) % 3]
                    - g[(i + 1) % 3][(j + 2) % 3] * g[(i + 2) % 3][(j + 1) % 3] for j in range(3)]
                   for i in range(3)]
            det = g[0][0] * cof[0][0] + g[0][1] * cof[0][1] + g[0][2] * cof[0][2]
            dd = np.where(np.abs(det) > 0, det, np.inf)
            c = [(cof[0][i] * rr[0] + cof[1][i] * rr[1] + cof[2][i] * rr[2]) / dd for i in range(3)]
        feas = np.ones(shape, bool)
        for ci in c:
            feas &= ci >= 0
        # SSE at the support optimum: SLL - c . r (normal equations hold on the support)
        sse = s["SLL"] - sum(ci * ri for ci, ri in zip(c, rr))
        sse = np.where(feas & np.isfinite(sse), sse, np.inf)
        better = sse < best
        best = np.where(better, sse, best)
        for ci, idx in zip(c, sub):
            coef[..., idx] = np.where(better, ci, coef[..., idx])
        others = [i for i in range(3) if i not in sub]
        for idx in others:
            coef[..., idx] = np.where(better, 0.0, coef[..., idx])
    return np.maximum(best, 0.0), coef


def _powers(logx, exps):
    """exp(-e * logx) for exps (R|1, k) -> (R|1, k, n)."""
    return np.exp(-exps[..., None] * logx[None, None, :])


def vp_fit(logN, logD, L, weights=None, grid=ALPHA_GRID, zooms=5, zoom_points=7, polish=True,
           chunk=40, keep_grid=False):
    """Fit E, A, B, alpha, beta for each row of ``weights`` (default: one replicate, all ones)."""
    logN, logD, L = map(np.asarray, (logN, logD, L))
    n = len(L)
    W = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, float))
    cN, cD = logN.mean(), logD.mean()
    xn, xd = logN - cN, logD - cD
    alphas = np.linspace(*grid[:2], int(grid[2]))
    betas = alphas.copy()
    X0, Y0 = _powers(xn, alphas[None]), _powers(xd, betas[None])
    step = alphas[1] - alphas[0]
    out_p, out_s, out_g = [], [], []
    sse_grid = None
    for lo in range(0, W.shape[0], chunk):
        w = W[lo:lo + chunk]
        R = w.shape[0]
        sse, _ = _nnls3(_stats(X0, Y0, w, L))
        if lo == 0 and keep_grid:
            sse_grid = sse[0].copy()
        flat = sse.reshape(R, -1).argmin(1)
        ia, ib = np.unravel_index(flat, sse.shape[1:])
        a, b = alphas[ia], betas[ib]
        h = step
        for _ in range(zooms):
            off = np.linspace(-h, h, zoom_points)
            ag = np.clip(a[:, None] + off[None], grid[0], grid[1])
            bg = np.clip(b[:, None] + off[None], grid[0], grid[1])
            s, _ = _nnls3(_stats(_powers(xn, ag), _powers(xd, bg), w, L))
            k = s.reshape(R, -1).argmin(1)
            ja, jb = np.unravel_index(k, s.shape[1:])
            a, b = ag[np.arange(R), ja], bg[np.arange(R), jb]
            h = 2 * h / (zoom_points - 1)
        s, c = _nnls3(_stats(_powers(xn, a[:, None]), _powers(xd, b[:, None]), w, L))
        E, A, B = c[:, 0, 0, 0], c[:, 0, 0, 1], c[:, 0, 0, 2]
        out_p.append(np.stack([E, A * np.exp(a * cN), B * np.exp(b * cD), a, b], 1))
        out_s.append(s[:, 0, 0])
        out_g.append(np.stack([ia, ib], 1))
    res = VPResult(np.concatenate(out_p), np.concatenate(out_s), np.concatenate(out_g),
                   (alphas, betas), sse_grid)
    if polish and W.shape[0] == 1:
        res = _polish(res, logN, logD, L, W[0], grid[:2])
    return res


def projected(ab, logN, logD, L, w):
    """(sse, E, A, B) at one (alpha, beta): the variable-projection objective."""
    cN, cD = logN.mean(), logD.mean()
    s, c = _nnls3(_stats(_powers(logN - cN, np.array([[ab[0]]])), _powers(logD - cD, np.array([[ab[1]]])),
                         w[None], L))
    E, A, B = c[0, 0, 0]
    return float(s[0, 0, 0]), E, A * np.exp(ab[0] * cN), B * np.exp(ab[1] * cD)


def _polish(res, logN, logD, L, w, bounds):
    x0 = res.params[0, 3:5]
    lo, hi = bounds
    f = lambda ab: projected(ab, logN, logD, L, w)[0] if np.all((ab >= lo) & (ab <= hi)) else np.inf
    opt = optimize.minimize(f, x0, method="Nelder-Mead",
                            options=dict(xatol=1e-7, fatol=1e-14 * max(res.sse[0], 1e-300), maxiter=2000))
    if opt.fun < res.sse[0]:
        sse, E, A, B = projected(opt.x, logN, logD, L, w)
        res.params[0] = [E, A, B, opt.x[0], opt.x[1]]
        res.sse[0] = sse
    return res


def grid_local_minima(sse_grid, alphas, betas, rel=0.01):
    """Local minima of the coarse grid within ``rel`` of the best: [(alpha, beta, sse)], best first."""
    g = sse_grid
    pad = np.pad(g, 1, constant_values=np.inf)
    is_min = np.ones_like(g, bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_min &= g <= pad[1 + di:1 + di + g.shape[0], 1 + dj:1 + dj + g.shape[1]]
    best = g.min()
    idx = np.argwhere(is_min & (g <= best * (1 + rel) + 1e-300))
    out = sorted(((alphas[i], betas[j], g[i, j]) for i, j in idx), key=lambda t: t[2])
    return out
