"""Typed settings of the analysis (mirrored by conf/analysis/default.yaml).

Plain dataclasses (no Hydra here): `AnalysisConfig.from_dict` takes the YAML/CLI dict,
rejects unknown keys with a one-line error naming the key, and fills the rest from the
defaults, which equal conf/analysis/default.yaml (a test checks this).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.errors import AnalysisError
from analysis.report.style import DPI
from common.fields import field_kwargs


@dataclass
class ClassifyConfig:
    """Thresholds of the trend rules (the rules and features: analysis.trends.classify).

    The defaults are the thresholds calibrated on the paper's 24 public labels
    (analysis.trends.calibrate; the report prints their cross-validated agreement).
    """

    min_models: int = 6  # fewer final models -> "insufficient", not classified
    max_bins: int = 8  # models are grouped into <= this many equal-count loss bins ...
    min_per_bin: int = 4  # ... with at least this many models per bin
    snr_pred: float = 3.0  # noise-corrected range / scatter: predictable at or above
    snr_min: float = 0.0  # below: trendless (no larger than noise alone would give; fixed)
    dir_frac: float = 0.5  # |end - start| / range: inverse or rising beyond, else flat
    nm_frac: float = 0.5  # nonmonotonic: both a rise and a drop of this share of the range
    snr_nm: float = 1.6  # ... on a curve at least this far above its scatter
    plateau_frac: float = 0.1  # breakthrough: last-quarter gain <= this share of the steepest


@dataclass
class CalibrationConfig:
    """Agreement of the rules with published labels (analysis.trends.calibrate), in the report."""

    labels: str | None = "auto"  # TSV task -> category; auto: the testbed's shipped labels
    prior_predictable: float = 0.3913  # published share predictable (18 of 46 tasks) ...
    prior_tolerance: int = 2  # ... which the tuned rules must meet within this many tasks


@dataclass
class FitConfig:
    """Fitting settings shared by the loss and downstream laws."""

    gamma_max: float = 20.0  # bounds of the exponential law, as in the paper
    gamma_steps: int = 81  # grid over gamma (closed-form eps, k at each point)
    ln_k_max: float = 20.0
    huber_delta: float = 1e-3  # Huber delta on log residuals (Hoffmann et al.)
    refine: bool = True  # local least-squares refinement of the point estimate


@dataclass
class BootstrapConfig:
    """Resampling of models (with replacement) for intervals and category stability."""

    n_resamples: int = 1000
    loss_law_resamples: int = 200  # loss-law bootstraps refit a nonlinear law: fewer
    ci: float = 0.9  # central interval reported everywhere
    seed: int = 0


@dataclass
class FlipConfig:
    """Flip detection between settings."""

    loss_grid_points: int = 25  # losses compared within the corpora's overlapping range
    alpha: float = 0.05  # false-discovery level: a flip counts when its BH q-value is below
    min_gap: float = 0.01  # a ranking change must move the gap at least this much (accuracy)
    # a trend shape (rise, plateau, drop) needs at least three distinct sizes: two sizes fit
    # any straight line, whatever the task does between and beyond them
    min_sizes: int = 3
    null_splits: int = 4  # random halves of the same runs that measure the null flip rate

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise AnalysisError(f"analysis.flips.alpha: must be in (0, 1), got {self.alpha!r}")
        if not isinstance(self.min_sizes, int) or self.min_sizes < 2:
            raise AnalysisError(
                f"analysis.flips.min_sizes: must be an integer >= 2, got {self.min_sizes!r}"
            )
        if not isinstance(self.null_splits, int) or self.null_splits < 0:
            raise AnalysisError(
                f"analysis.flips.null_splits: must be an integer >= 0, got {self.null_splits!r}"
            )


@dataclass
class TwoStepConfig:
    """Two-step ladder backtest (Bhagia et al. 2024) on a testbed with the target runs."""

    train_sizes: list[str] = field(default_factory=lambda: ["190M", "370M", "760M", "1B"])
    train_multipliers: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    targets: list[str] = field(default_factory=lambda: ["7B-4T", "13B-5T"])
    step2_min_frac: float = 0.1  # step 2 skips each run's first 10% of checkpoints (paper)
    last_n: int = 5  # the final value = mean of a run's last n checkpoints (moving average)
    loss_val_set: str = "c4_en"  # the C4-loss variant's intermediate feature
    variance_run: str = "1B-10xC"  # variance analysis: spread over this run's last ...
    variance_last_n: int = 10  # ... checkpoints


@dataclass
class ExtrapolateConfig:
    """Backtests: which runs train the laws and which are predicted."""

    val_set: str = "c4_val"  # loss the laws use (falls back to the first val set present)
    testbed_train_max_params: float = 0.5e9  # Gadre testbed: fit on runs up to 0.411B ...
    testbed_train_multipliers: list[float] = field(default_factory=lambda: [1.0])
    testbed_extra_train: list[str] = field(default_factory=lambda: ["d=96_l=8_h=4@16.0"])
    testbed_error_extra: list[str] = field(default_factory=lambda: ["open_lm_1b@1.0"])
    average_tasks: list[str] = field(
        default_factory=lambda: [
            "bigbench_operators",
            "pubmed_qa_labeled",
            "hellaswag_zeroshot",
            "boolq",
            "arc_easy",
            "coqa",
            "bigbench_dyck_languages",
            "lambada_openai",
            "bigbench_novel_concepts",
            "winograd",
            "bigbench_cs_algorithms",
            "commonsense_qa",
            "bigbench_qa_wikidata",
            "hellaswag",
            "copa",
            "squad",
            "piqa",
        ]
    )
    two_step: TwoStepConfig = field(default_factory=TwoStepConfig)


PLOT_FORMATS = ("png", "pdf", "svg")


@dataclass
class PlotConfig:
    """Figures."""

    grid_val_sets: list[str] = field(default_factory=lambda: ["c4_val", "paloma_code"])
    max_flip_figures: int = 6
    flip_tasks: list[str] = field(default_factory=lambda: ["hellaswag", "coqa"])  # drawn first
    dpi: int = DPI  # analysis.report.style.DPI
    formats: list[str] = field(default_factory=lambda: ["png"])  # any of png, pdf, svg

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in PLOT_FORMATS]
        if bad or not self.formats:
            raise AnalysisError(
                f"analysis.plot.formats: unknown format '{bad[0] if bad else ''}' "
                f"(known: {', '.join(PLOT_FORMATS)})"
            )
        if not isinstance(self.dpi, int) or self.dpi <= 0:
            raise AnalysisError(f"analysis.plot.dpi: must be a positive integer, got {self.dpi!r}")


@dataclass
class AnalysisConfig:
    """Everything `analysis.pipeline.analyze` needs besides the table."""

    accuracy_metric: str = "acc"  # task metric classified and fitted
    task_loss_metrics: list[str] = field(default_factory=lambda: ["bpb", "logprob"])
    reference_val_set: str = "c4_val"  # x-axis of the headline tables and task grid
    x_axes: list[str] = field(default_factory=list)  # extra x-axes: compute, params
    points: str = "final"  # final checkpoints, or "all" checkpoints (bootstrap over runs)
    checkpoint_min_frac: float = 0.1  # points=all: skip checkpoints before this token share
    min_corpus_models: int = 0  # a corpus with fewer final models has no group of its own
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    flips: FlipConfig = field(default_factory=FlipConfig)
    extrapolate: ExtrapolateConfig = field(default_factory=ExtrapolateConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AnalysisConfig:
        """Build from a (possibly partial) nested dict; unknown keys raise AnalysisError."""
        return _from_dict(cls, d or {}, "analysis")

    @classmethod
    def from_yaml(cls, path: Path) -> AnalysisConfig:
        """Read a YAML file such as conf/analysis/default.yaml."""
        import yaml

        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    kwargs: dict[str, Any] = {}
    for key, value in field_kwargs(cls, d, where, AnalysisError).items():
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _from_dict(type(default), value or {}, f"{where}.{key}")
        elif isinstance(default, list):
            kwargs[key] = list(value)
        elif isinstance(default, bool):
            kwargs[key] = bool(value)
        elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
            raise AnalysisError(f"config key '{where}.{key}' must be a number, got {value!r}")
        else:
            kwargs[key] = type(default)(value) if isinstance(default, float) else value
    return cls(**kwargs)
