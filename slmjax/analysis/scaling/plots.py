"""PNG figures of an analysis (matplotlib, Agg backend). Each function writes one file and returns
its name; ``write_all`` writes every figure that the data supports."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slmjax import fileio  # noqa: E402
from slmjax.analysis.scaling import laws  # noqa: E402


def _save(fig, out, name):
    with fileio.atomic_path(os.path.join(out, name)) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return name


def _band(ax, x, lo, hi, **kw):
    """A bootstrap band whose limits may be infinite (D*(C) with replicates at A = 0) or, on a log
    axis, 0 or below: the axis limits come from what is drawn and the band's finite part, and the
    band is clipped to them. Call it after the axis scale is set and the other curves are drawn."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    log = ax.get_yscale() == "log"
    fin = np.concatenate([v[np.isfinite(v) & ((v > 0) if log else True)] for v in (lo, hi)])
    y0, y1 = ax.get_ylim()
    if fin.size:
        y0, y1 = min(y0, fin.min()), max(y1, fin.max())
    ax.fill_between(x, np.clip(lo, y0, y1), np.clip(hi, y0, y1), **kw)   # NaN stays a gap
    ax.set_ylim(y0, y1)


def _size_colors(N):
    sizes = np.unique(np.round(np.log10(N), 3))
    cmap = plt.get_cmap("viridis")
    return sizes, {s: cmap(i / max(1, len(sizes) - 1)) for i, s in enumerate(sizes)}


def loss_vs_compute(p, out):
    """Loss vs compute per model size, the envelope and its power law, and the fitted L*(C) (Figure 1)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    N, C, L = p["N"], p["C"], p["L"]
    sizes, col = _size_colors(N)
    few = len(sizes) <= 8
    for s in sizes:
        i = np.nonzero(np.round(np.log10(N), 3) == s)[0]
        i = i[np.argsort(C[i])]
        ax.plot(C[i], L[i], "o-", color=col[s], ms=4, lw=1, label=f"N = {10 ** s:.3g}" if few else None)
    if not few:
        sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(sizes[0], sizes[-1]))
        fig.colorbar(sm, ax=ax, label="log10 N")
    a1 = p.get("approach1")
    if a1:
        f = np.array(a1["envelope"])
        ax.plot(C[f], L[f], "s", mfc="none", mec="k", ms=8, label="envelope")
        cc = np.geomspace(C.min(), C.max() * 10, 50)
        ax.plot(cc, np.exp(a1["log_k"]) * cc ** (-a1["gamma"]), "k--", lw=1,
                label=f"Approach 1: L ~ C^-{a1['gamma']:.3f}")
    b, cg = p["bands"]["L_opt"], p["C_grid"]
    # L*(C) is the law's optimum at C = 6ND; the runs and Approach 1 are at the --flops compute.
    conv = p.get("flops", "6N")
    ax.plot(cg, b["value"], "r-", lw=1.5, label="Approach 3: L*(C)" + ("" if conv == "6N" else ", C = 6ND"))
    ax.set(xscale="log", yscale="log", xlabel=f"compute C = {conv.replace('_', ' ')} x D (FLOPs)",
           ylabel="test loss", title="Loss vs compute")
    _band(ax, cg, b["lo"], b["hi"], color="r", alpha=0.2)
    ax.legend(fontsize=7)
    return _save(fig, out, "loss_vs_compute.png")


def isoflop_curves(p, out):
    a2 = p.get("approach2")
    if not a2 or not a2.get("profiles"):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cmap = plt.get_cmap("plasma")
    profs = a2["profiles"]
    for k, pr in enumerate(profs):
        c = cmap(k / max(1, len(profs) - 1))
        if a2["grouped"]:
            i = np.asarray(pr["runs"], int)
            ax.plot(p["N"][i], p["L"][i], "o", color=c, ms=4)
        p2, p1, p0 = pr["coef"]
        xs = np.linspace(-1.5, 1.5, 60) + pr["x_center"]
        ax.plot(np.exp(xs), p0 + p1 * (xs - pr["x_center"]) + p2 * (xs - pr["x_center"]) ** 2, "-", color=c,
                lw=1, label=f"C = {pr['C']:.2g}")
        if pr["inside"]:
            ax.plot(pr["N_opt"], pr["L_min"], "k*", ms=8)
    ax.set(xscale="log", xlabel="parameters N", ylabel="test loss",
           title="IsoFLOP profiles" + ("" if a2["grouped"] else " (interpolated per size)"))
    lo, hi = np.quantile(p["L"], [0.0, 0.9])
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, out, "isoflop.png")


def allocation(p, out):
    """N*(C) and D*(C) with bootstrap bands, Approach 2 minima and the paper's speech law."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    cg = p["C_grid"]
    sp = laws.PAPER_LAWS["speech"]
    for ax, key, name in ((axes[0], "N_opt", "N*(C)"), (axes[1], "D_opt", "D*(C)")):
        b = p["bands"][key]
        ax.plot(cg, b["value"], "r-", label="Approach 3 (VP)")
        f = laws.n_opt if key == "N_opt" else laws.d_opt
        ax.plot(cg, f(cg, sp["A"], sp["B"], sp["alpha"], sp["beta"]), "b:", label="paper, speech (Table 5)")
        a2 = p.get("approach2")
        if a2:
            pr = [q for q in a2["profiles"] if q["inside"]]
            if pr:
                cc = np.array([q["C"] for q in pr])
                nn = np.array([q["N_opt"] for q in pr])
                ax.plot(cc, nn if key == "N_opt" else cc / (6 * nn), "k*", label="Approach 2 minima")
        obs = p["N"] if key == "N_opt" else p["D"]
        ax.axhspan(obs.min(), obs.max(), color="grey", alpha=0.1, label="sampled range")
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=name, title=name)
        _band(ax, cg, b["lo"], b["hi"], color="r", alpha=0.2, label=f"{100 * p['level']:.4g}% bootstrap band")
        ax.legend(fontsize=7)
    return _save(fig, out, "allocation.png")


def _task_title(task, point):
    return task if point is not None else f"{task} (at chance: not fitted)"


def downstream_vs_loss(p, out):
    ds = p.get("downstream") or {}
    if not ds:
        return None
    fig, axes = plt.subplots(1, len(ds), figsize=(4.2 * len(ds), 3.8), squeeze=False)
    L = p["L_all"]
    for ax, (task, d) in zip(axes[0], ds.items()):
        ok = np.isfinite(d["acc"])
        ax.plot(L[ok], 100 * d["acc"][ok], "o", ms=4, alpha=0.7, label="runs")
        x = np.linspace(L[ok].min(), L[ok].max(), 100)
        pt = d["point"]
        if pt is not None:
            ax.plot(x, 100 * (pt["c0"] + pt["c1"] * x), "k-", lw=1, label="linear")
        if pt is not None and np.isfinite(pt["sig_c"]):
            from slmjax.analysis.scaling.downstream import sigmoid
            # A ceiling the runs do not constrain (fit.json sig_c_identified false) is drawn as such.
            shown = d.get("ceiling_identified") is not False
            ax.plot(x, 100 * sigmoid(x, pt["sig_c"], pt["sig_k"], pt["sig_L0"]), "r--" if shown else "r:",
                    lw=1, label="sigmoid" if shown else "sigmoid (ceiling not identified)")
        ax.axhline(50, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="test loss", ylabel="accuracy (%)", title=_task_title(task, pt))
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    return _save(fig, out, "downstream_vs_loss.png")


def downstream_vs_compute(p, out, ref_gamma):
    ds = p.get("downstream") or {}
    if not ds:
        return None
    fig, axes = plt.subplots(1, len(ds), figsize=(4.2 * len(ds), 3.8), squeeze=False)
    C = p["C_all"]
    for ax, (task, d) in zip(axes[0], ds.items()):
        ok = np.isfinite(d["acc"])
        ax.plot(C[ok], 100 * d["acc"][ok], "o", ms=4, alpha=0.5, label="runs")
        f = d["front"]
        if len(f):
            ax.plot(C[f], 100 * d["acc"][f], "ks", mfc="none", ms=7, label="envelope")
        pt = d["point"]
        if pt is not None and np.isfinite(pt["gamma"]):
            cc = np.geomspace(C[ok].min(), C[ok].max() * 10, 50)
            ax.plot(cc, 100 * np.exp(pt["log_q0"]) * cc ** pt["gamma"], "r-", lw=1.2,
                    label=f"ours: gamma = {pt['gamma']:.3f}")
            for label, g in ref_gamma.items():
                if task in g:
                    c0 = C[f][0]
                    q0 = np.exp(pt["log_q0"]) * c0 ** pt["gamma"]
                    ax.plot(cc, 100 * q0 * (cc / c0) ** g[task], "--", lw=1, label=f"{label}: gamma = {g[task]}")
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="accuracy (%)",
               title=_task_title(task, pt))
        # below-chance runs (a length bias, say) are drawn too, not cut off at the axis
        ax.set_ylim(min(45.0, 100 * float(d["acc"][ok].min()) - 2), 100)
        ax.axhline(50, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=6)
    return _save(fig, out, "downstream_vs_compute.png")


def residuals(p, out):
    N, D, C, L = p["N"], p["D"], p["C6"], p["L"]
    r = 100 * (L - laws.chinchilla(N, D, *p["vp_params"])) / L
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
    for ax, (x, name) in zip(axes, ((N, "N"), (D, "D"), (C, "C = 6ND"))):
        ax.plot(x, r, "o", ms=4)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel=name)
    axes[0].set_ylabel("residual (% of loss)")
    fig.suptitle("Approach 3 (VP) residuals")
    return _save(fig, out, "residuals.png")


def bootstrap_scatter(p, out):
    b = p["vp_boot"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    axes[0].plot(b[:, 3], b[:, 4], ".", ms=2, alpha=0.5)
    axes[0].plot(*p["vp_params"][3:5], "r*", ms=12, label="VP fit")
    axes[0].plot(*p["hub_params"][3:5], "kx", ms=9, label="Huber fit")
    axes[0].set(xlabel="alpha", ylabel="beta", title="bootstrap replicates")
    axes[0].legend(fontsize=7)
    a = b[:, 4] / (b[:, 3] + b[:, 4])
    axes[1].hist(a[np.isfinite(a)], bins=40, color="grey")
    axes[1].axvline(p["vp_params"][4] / (p["vp_params"][3] + p["vp_params"][4]), color="r")
    axes[1].set(xlabel="a = beta / (alpha + beta)", title="compute-optimal exponent a")
    return _save(fig, out, "bootstrap.png")


def write_all(p, out, ref_gamma):
    """Write every figure the data supports; returns {figure: file name}. A figure it does not
    support is removed, so none is left in ``out`` from an earlier analysis."""
    os.makedirs(out, exist_ok=True)
    made = {"loss_vs_compute": loss_vs_compute(p, out), "isoflop": isoflop_curves(p, out),
            "allocation": allocation(p, out), "downstream_vs_loss": downstream_vs_loss(p, out),
            "downstream_vs_compute": downstream_vs_compute(p, out, ref_gamma),
            "residuals": residuals(p, out), "bootstrap": bootstrap_scatter(p, out)}
    for name, file in made.items():
        stale = os.path.join(out, f"{name}.png")
        if not file and os.path.exists(stale):
            os.remove(stale)
    return {k: v for k, v in made.items() if v}
