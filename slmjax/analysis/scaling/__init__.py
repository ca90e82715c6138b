"""Scaling-law fits with uncertainty: run tables, Approaches 1-3, compute-optimal allocation,
data-constrained terms, downstream accuracy vs compute, bootstrap, held-out checks, plots, report."""

from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.fit import FitOptions, analyse
from slmjax.analysis.scaling.laws import PAPER_GAMMA, PAPER_LAWS, allocation, chinchilla, d_opt, n_opt
from slmjax.analysis.scaling.sweep import read_runs, read_sweep
from slmjax.analysis.scaling.table import RunTable, read_csv

__all__ = ["FitInputError", "FitOptions", "analyse", "PAPER_GAMMA", "PAPER_LAWS", "allocation",
           "chinchilla", "d_opt", "n_opt", "read_runs", "read_sweep", "RunTable", "read_csv"]
