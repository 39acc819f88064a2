"""Which fits are not results: a parameter pinned at its bound (the optimiser wanted to go
further, so the reported value is an artefact of the box) or R² ≤ 0 (the law explains no
more than the mean). Such fits are flagged in fits.csv and extrapolation.csv, and the report
shows `n/a` with the flag instead of their numbers — never a successful backtest.

A flag is a short reason (`gamma at bound 20; R² ≤ 0`), "" for a sound fit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import pandas as pd

from analysis.config import FitConfig


def exp_bounds(fcfg: FitConfig) -> dict[str, tuple[float, float]]:
    """The box of the exp law `err = eps - k exp(-gamma L)` (analysis.laws.downstream)."""
    return {"eps": (0.0, 1.0), "ln_k": (0.0, fcfg.ln_k_max), "gamma": (0.0, fcfg.gamma_max)}


def _at(value: float, bound: float) -> bool:
    return abs(value - bound) <= 1e-6 * max(1.0, abs(bound))


def fit_flag(law: str, params: Mapping[str, float], r2: float, fcfg: FitConfig) -> str:
    """The reason a fit is not to be trusted, or "" (see module doc)."""
    reasons = []
    if law == "exp":
        for name, (lo, hi) in exp_bounds(fcfg).items():
            v = params.get(name)
            if v is None or not math.isfinite(v):
                continue
            for b in (lo, hi):
                if _at(v, b):
                    reasons.append(f"{name} at bound {b:g}")
    if r2 is not None and math.isfinite(r2) and r2 <= 0:
        reasons.append("R² ≤ 0")
    return "; ".join(reasons)


def _params(text: object) -> dict[str, float]:
    try:
        out = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}


def flag_fits(fits: pd.DataFrame, fcfg: FitConfig) -> pd.Series:
    """fits.csv's `flag` column: downstream and error laws checked against their bounds,
    every law against R² ≤ 0; a law not fitted at all says so."""

    def one(r) -> str:
        if "fitted" in r and r["fitted"] is False:
            return "not fitted"
        r2 = float(r["r2"]) if pd.notna(r["r2"]) else math.nan
        return fit_flag(str(r["law"]), _params(r["params"]), r2, fcfg)

    if fits.empty:
        return pd.Series([], dtype="string", index=fits.index)
    return fits.apply(one, axis=1).astype("string")
