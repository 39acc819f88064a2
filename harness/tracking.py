"""Experiment tracking mirrors (W&B). Records on disk stay the source of truth: analysis
never reads W&B, and a tracker failure never fails a run.

One W&B run per harness run, id = run_id with resume allowed, so a requeued job appends to
the same W&B run. With no API key configured the tracker runs offline — never a login prompt.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common.record import CheckpointEntry, RunRecord
from train.specs import RunSpec


class Tracker:
    """The no-op tracker; subclasses mirror a run somewhere."""

    def start(self, run_id: str, spec: RunSpec, record: RunRecord) -> None: ...

    def log_step(self, row: dict[str, Any]) -> None: ...

    def log_checkpoint(self, entry: CheckpointEntry) -> None: ...

    def finish(self, record: RunRecord | None, preempted: bool = False) -> None: ...


def null_tracker() -> Tracker:
    return Tracker()


def flat_config(spec: RunSpec, record: RunRecord) -> dict[str, Any]:
    """Top-level keys W&B users filter on, then the rest of the config flattened with '/'."""
    flat: dict[str, Any] = {
        "size": spec.model.name,
        "mix": spec.mix.name,
        "seed": spec.seed,
        "sweep": spec.sweep,
        "val_sets": [v.name for v in spec.validation],
        "n_params": record.model.n_params,
        "train_tokens": record.data.train_tokens,
    }

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        else:
            flat[prefix] = obj

    walk("", {k: v for k, v in record.config.items() if k != "sources"})
    return flat


def api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class WandbTracker(Tracker):
    def __init__(
        self,
        project: str,
        entity: str | None = None,
        mode: str = "auto",
        directory: str | None = None,
        init_timeout: float = 20.0,
    ):
        self.project, self.entity, self.directory = project, entity, directory
        self.init_timeout = init_timeout
        self.mode = ("online" if api_key_configured() else "offline") if mode == "auto" else mode
        self.run: Any = None  # the wandb Run once started (wandb is imported lazily)

    def start(self, run_id: str, spec: RunSpec, record: RunRecord) -> None:
        self.run = self.init_run(
            id=run_id,
            resume="allow",
            group=spec.sweep,
            job_type="train",
            name=f"{spec.model.name}-{spec.mix.name}-s{spec.seed}",
            config=flat_config(spec, record),
        )

    def init_run(self, **fields: Any) -> Any:
        """A W&B run in this tracker's mode with `fields` (id, group, job_type, name, config):
        online when asked and reachable, else offline; None when even offline fails."""
        import wandb

        if (
            os.environ.get("WANDB_MODE") == ""
        ):  # `export WANDB_MODE=` makes wandb reject its settings
            del os.environ["WANDB_MODE"]

        kwargs: dict[str, Any] = dict(
            project=self.project,
            entity=self.entity,
            dir=self.directory,
            settings=wandb.Settings(init_timeout=self.init_timeout, silent=True, console="off"),
            **fields,
        )
        if self.directory:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
        if self.mode == "online" and not _reachable(
            os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        ):
            print(
                "warning: W&B server unreachable; logging offline (sync later with `wandb sync`)",
                file=sys.stderr,
            )
            self.mode = "offline"
        if self.mode != "offline":
            try:
                # the config's mode string; wandb's Literal names the values it accepts
                return wandb.init(mode=self.mode, **kwargs)  # type: ignore[arg-type]
            except Exception as err:  # bad key, server error: keep the run, log offline
                print(
                    f"warning: wandb {self.mode} init failed ({_first_line(err)}); logging offline",
                    file=sys.stderr,
                )
            wandb.teardown()  # drop the failed online session, which still holds the run id
        try:
            run = wandb.init(mode="offline", **kwargs)
        except Exception as err:
            print(
                f"warning: wandb offline init failed too ({_first_line(err)}); "
                f"not tracking this run",
                file=sys.stderr,
            )
            return None
        _offline_hint(Path(run.dir).parent)
        return run

    def log_step(self, row: dict[str, Any]) -> None:
        if self.run:
            self.run.log(
                {
                    "train/loss": row["loss"],
                    "train/lr": row["lr"],
                    "train/tokens_per_second": row["tokens_per_second"],
                    "train/grad_norm": row["grad_norm"],
                    "tokens": row["tokens"],
                },
                step=row["step"],
            )

    def log_checkpoint(self, entry: CheckpointEntry) -> None:
        if not self.run:
            return
        data: dict[str, Any] = {f"val/{k}": v for k, v in entry.val_loss.items()}
        for task, metrics in entry.tasks.items():
            for m, v in metrics.items():
                data[f"task/{task}/{m}"] = v
        data["tokens"] = entry.tokens
        data["flops"] = entry.flops
        self.run.log(data, step=entry.step)

    def finish(self, record: RunRecord | None, preempted: bool = False) -> None:
        """End the W&B run with the record's summary; idempotent (a run that already ended,
        or never started, is left alone). `preempted`: exit code 1 (stopped or crashed)."""
        if not self.run:
            return
        if record is None:  # the record is unreadable: end the run without a summary
            self.run.finish(exit_code=1)
            self.run = None
            return
        summary: dict[str, Any] = {
            "status": record.status,
            "n_params": record.model.n_params,
            "n_params_nonembedding": record.model.n_params_nonembedding,
        }
        compute = vars(record.compute) if record.compute else {}
        summary.update({f"compute/{k}": v for k, v in compute.items() if v is not None})
        last = record.final
        if last is not None:
            summary.update({f"final/val/{k}": v for k, v in last.val_loss.items()})
            for task, metrics in last.tasks.items():
                summary.update({f"final/task/{task}/{m}": v for m, v in metrics.items()})
        self.run.summary.update(summary)
        self.run.finish(exit_code=1 if preempted else 0)
        self.run = None


_HINTED_OFFLINE: set[Path] = set()


def _offline_hint(run_dir: Path) -> None:
    """Say once per W&B folder where offline runs go and how to upload them: an offline run
    is otherwise silent, and its files easy to lose among the checkpoints."""
    folder = run_dir.parent
    if folder in _HINTED_OFFLINE:
        return
    _HINTED_OFFLINE.add(folder)
    print(
        f"W&B offline: runs are saved under {folder} (this one: {run_dir.name}); upload "
        f"them with: wandb sync {folder}/offline-run-*",
        file=sys.stderr,
    )


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Can a TCP connection to the W&B server be opened quickly? (No network: fail fast.)"""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def make_tracker(cfg: dict[str, Any], out_root: Path) -> Tracker:
    kind = cfg.get("kind", "none")
    if kind == "none":
        return null_tracker()
    if kind == "wandb":
        return WandbTracker(
            project=cfg.get("project", "scaling-harness"),
            entity=cfg.get("entity"),
            mode=cfg.get("mode", "auto"),
            directory=cfg.get("dir") or str(out_root),
            init_timeout=float(cfg.get("init_timeout", 20)),
        )
    from common.errors import ConfigError

    raise ConfigError(f"logger.kind: unknown logger '{kind}' (known: none, wandb)")


# -- `harness analyze logger=wandb`: the analysis itself as a W&B artifact -------------


def artifact_name(text: str) -> str:
    """A W&B artifact name from a sweep or folder name (letters, digits, - _ . only)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-.")
    return f"analysis-{safe or 'sweep'}"


def publish_analysis(cfg: dict[str, Any], out: Path, name: str) -> Path | None:
    """Upload what `harness analyze` wrote under `out` (report, figures, tables) as one
    artifact of a W&B run of job_type `analysis`, grouped with the sweep's runs. Offline (no
    key, or WANDB_MODE=offline) it goes into the offline run's folder for `wandb sync`.
    Returns the W&B run folder; a W&B failure is a warning, never the analysis's failure."""
    if cfg.get("kind", "none") == "none":
        return None
    tracker = make_tracker(cfg, out)
    if not isinstance(tracker, WandbTracker):
        return None
    try:
        import wandb

        from analysis.output.folder import ENTRIES, SUMMARY_ENTRIES

        run = tracker.init_run(
            id=None, group=name, job_type="analysis", name=artifact_name(name), config={}
        )
        if run is None:
            return None
        artifact = wandb.Artifact(artifact_name(name), type="analysis")
        for part in (*ENTRIES, *SUMMARY_ENTRIES):  # what the analysis owns under `out`
            path = out / part
            if path.is_file():
                artifact.add_file(str(path), name=part)
            elif path.is_dir():
                artifact.add_dir(str(path), name=part)
        run.log_artifact(artifact)
        folder = Path(run.dir).parent
        run.finish()
        return folder
    except Exception as err:  # noqa: BLE001 - the mirror never fails the analysis
        print(
            f"warning: could not upload the analysis to W&B ({_first_line(err)})", file=sys.stderr
        )
        return None
