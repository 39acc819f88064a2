"""How every figure of the analysis looks, in one place: resolution, the smallest font, how
far a fitted curve may be drawn beyond the data it was fitted on, and the values it may take.

A law is only evidence over the range it was fitted on: drawn 30x past its points a compute
law reaches losses no model could have (above the uniform loss) and the eye reads the
extrapolation as data. So curves are drawn over the fitted x-range plus `FIT_MARGIN` of its
width on each side (measured on the axis scale the law lives on: log for compute), and
values outside what the quantity can be (an accuracy outside [0, 1], a negative loss, a loss
above the panel's measured range) are left undrawn rather than clipped to a flat line.
"""

from __future__ import annotations

import numpy as np

DPI = 200  # saved resolution of every figure (analysis.plot.dpi defaults to it)
MIN_FONT = 8  # no text smaller than this, in points
FIT_MARGIN = 0.10  # a fitted curve extends this share of its fitted x-range on each side
MARGIN_TEXT = f"drawn over the fitted range ± {FIT_MARGIN:.0%} of its width"

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": MIN_FONT,
    "ytick.labelsize": MIN_FONT,
    "legend.fontsize": MIN_FONT,
    "figure.titlesize": 10,
    "savefig.dpi": DPI,
}


def use() -> None:
    """Apply `RC` to matplotlib (the figure modules call it once, on import)."""
    import matplotlib

    # rcParams' stub types its keys as a Literal of every known name; RC's are among them
    matplotlib.rcParams.update(RC)  # type: ignore[arg-type]


def fit_grid(x_min: float, x_max: float, log: bool, n: int = 100) -> np.ndarray:
    """`n` x values over [x_min, x_max] widened by FIT_MARGIN of its width on each side,
    evenly spaced on the law's scale (log10 when `log`). A single point gets a margin of
    FIT_MARGIN decades (log) or FIT_MARGIN of its magnitude (linear)."""
    lo, hi = sorted((float(x_min), float(x_max)))
    if log:
        if lo <= 0:
            raise ValueError(f"fit_grid: log scale needs positive x, got {lo!r}")
        a, b = np.log10(lo), np.log10(hi)
        pad = FIT_MARGIN * (b - a) if b > a else FIT_MARGIN
        return np.logspace(a - pad, b + pad, n)
    pad = FIT_MARGIN * (hi - lo) if hi > lo else FIT_MARGIN * max(abs(lo), 1e-12)
    return np.linspace(lo - pad, hi + pad, n)


def within(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`y` as floats with every value outside [lo, hi] (or not finite) replaced by NaN, so
    matplotlib leaves it undrawn."""
    y = np.asarray(y, float).copy()
    y[~np.isfinite(y) | (y < lo) | (y > hi)] = np.nan
    return y


def accuracy(y: np.ndarray) -> np.ndarray:
    """An accuracy curve limited to [0, 1]."""
    return within(y, 0.0, 1.0)
