"""`harness <command> [key=value ...]` — the one entry point.

    harness run [-m] [overrides]     one run, or a sweep with -m (Hydra multirun)
    harness run --from runs/<id>/config.yaml   rerun one run exactly
    harness plan [-m] [overrides]    what `run` would do: one row per run, nothing trained
    harness plan --from runs/<id>/config.yaml  what `run --from` would do
    harness tasks [sweep=NAME] [eval=SUITE]   tasks, variants, chance level and size
    harness eval root=DIR eval=SUITE score saved checkpoints of finished runs (backfill)
    harness status root=DIR          a table of a sweep's runs
    harness cancel root=DIR          cancel a sweep's SLURM jobs
    harness analyze root=DIR | source=gadre2024 path=DIR out=DIR
    harness plot out=DIR             redraw every figure from stored tables
    harness predict root=DIR target.params=N target.tokens=D | source=olmo_ladder target=13B-5T
    harness items root=DIR task=T a=RUN[@STEP] b=RUN[@STEP]   items that moved most (log_samples)

Overrides use Hydra's syntax (`model=cpu-50k train.lr=0.002`, with -m: `model=cpu-50k,cpu-100k`).
`harness <command> --help` shows a command's options and an example.
Bad input exits non-zero with one line naming the key and value.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from harness.cli_checks import (
    CONF_DIR,
    as_dict,
    check_group_overrides,
    check_override_keys,
    check_resolved_paths,
    compose,
    die,
    guard,
    hydra_argv,
    replace_mix,
    take_config_dirs,
)

_FAILED: list[str] = []


def cmd_run(args: list[str]) -> None:
    import hydra
    from omegaconf import DictConfig

    from harness.config import run_spec
    from harness.slurm_check import arg_value, check_cluster_launcher
    from harness.slurm_check import preflight as slurm_preflight
    from harness.tracking import make_tracker

    if "--from" in args:
        from harness.preemption import stop_sweep_on_signal
        from harness.rerun import rerun

        _quiet_transformers()
        guard(lambda: stop_sweep_on_signal(lambda: rerun(args)))  # a stop: 143/130, one line
        return
    args, wait = _no_wait(args)
    check_group_overrides(args)
    guard(lambda: check_cluster_launcher(args))
    check_override_keys("config", args)
    check_resolved_paths("config", args)
    if not any(a in ("--cfg", "-c", "--info", "-i") for a in args):  # those only print config
        guard(lambda: slurm_preflight(args))
    if arg_value(args, "hydra/launcher") == "slurm":
        _register_slurm_launcher(wait)
    _quiet_transformers()
    _FAILED.clear()  # main() may be called more than once in a process (tests, notebooks)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def job(cfg: DictConfig) -> str:
        from hydra.core.hydra_config import HydraConfig

        from common.errors import HarnessError
        from harness.backfill_hint import hint_missing_tasks
        from harness.coverage import warn_uncovered
        from harness.preemption import stop_sweep_on_signal
        from harness.rerun import launch
        from harness.sweep_analysis import check as check_analysis
        from harness.sweep_analysis import store as store_analysis

        try:
            _export_slurm_ranks()
            spec = run_spec(cfg)
            warn_uncovered(spec)
            out_root = Path(cfg.out_root)
            node = cfg.get("analysis")
            settings = as_dict(node) if node else {}
            check_analysis(settings)  # a bad preset key fails before any run starts
            hint_missing_tasks(spec, out_root)
            tracker = make_tracker(as_dict(cfg.logger), out_root)
            overrides = list(HydraConfig.get().overrides.task)
            outcome = stop_sweep_on_signal(lambda: launch(spec, out_root, tracker, overrides))
            store_analysis(out_root, spec.sweep, settings)  # beside the runs it analyses
        except HarnessError as err:
            die(str(err))
        if outcome.status == "failed":
            _FAILED.append(f"{outcome.run_id}: {outcome.failure}")
        return outcome.status

    sys.argv = ["harness run", *hydra_argv(args)]
    try:
        job()
    except ValueError as err:  # Hydra's flag conflicts (-m with --cfg): one line, not a traceback
        if "can be specified" not in str(err):
            raise
        die(f"flags: {err}")
    if _FAILED:
        print(f"{len(_FAILED)} run(s) failed:\n  " + "\n  ".join(_FAILED), file=sys.stderr)
        raise SystemExit(1)


def _no_wait(args: list[str]) -> tuple[list[str], bool]:
    """`--no-wait`: a SLURM sweep returns once its array job is submitted (then `harness
    status` / `harness cancel` follow it); only meaningful with -m and the slurm launcher."""
    from harness.slurm_check import arg_value

    if "--no-wait" not in args:
        return args, True
    if (
        "-m" not in args
        and "--multirun" not in args
        or arg_value(args, "hydra/launcher") != "slurm"
    ):
        die(
            "--no-wait: only with a SLURM sweep (harness run -m --no-wait hydra/launcher=slurm ...)"
        )
    return [a for a in args if a != "--no-wait"], False


def _register_slurm_launcher(wait: bool) -> None:
    """`hydra/launcher=slurm` names harness's launcher (hydra_plugins/harness_slurm): Hydra
    instantiates launchers only from the hydra_plugins namespace, and only those it registered.
    An install made before that folder existed does not map it: the checkout supplies it."""
    import importlib.util

    from harness.cli_checks import ROOT

    if importlib.util.find_spec("hydra_plugins.harness_slurm") is None:
        sys.path.append(str(ROOT))
        # the array's tasks unpickle Hydra's plugin registry, this class in it: sbatch passes
        # them this environment, so they find the module where this process does
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p
        )
    from hydra.core.plugins import Plugins

    from hydra_plugins import harness_slurm

    harness_slurm.WAIT = wait
    Plugins.instance().register(harness_slurm.PendingSlurmLauncher)


def cmd_plan(args: list[str]) -> None:
    from harness.plan import plan_command

    if "--from" in args:  # what `harness run --from` would do with the same arguments
        from harness.rerun import plan_rerun

        guard(lambda: plan_rerun(args))
        return
    plan_command(args)


def _export_slurm_ranks() -> None:
    """Several SLURM tasks for one run (launcher tasks_per_node > 1, started by srun): give
    torch.distributed the RANK/WORLD_SIZE/MASTER_* that torchrun would have set."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "WORLD_SIZE" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def cmd_analyze(args: list[str]) -> None:
    check_group_overrides(args)
    # source=a,b,c names several testbeds (one analysis each), not a Hydra sweep: quote it
    args = [
        f"source='{a.split('=', 1)[1]}'"
        if a.startswith("source=") and "," in a and not a.split("=", 1)[1].startswith(("'", '"'))
        else a
        for a in args
    ]
    cfg = compose("analyze", args)

    def go() -> None:

        from analysis.config import AnalysisConfig
        from analysis.pipeline import analyze

        settings = as_dict(cfg.analysis)
        if cfg.source == "harness" and cfg.root:
            from harness.sweep_analysis import load, merged

            # the sweep preset's analysis settings, stored at run time; the command line wins
            settings = merged(settings, load(Path(cfg.root)), args)
        acfg = AnalysisConfig.from_dict(settings)
        if cfg.source == "harness":
            from analysis import testbeds

            if not cfg.root:
                die("root: required with source=harness (the sweep's output directory)")
            table = testbeds.get("harness").load(cfg.root)
            if any(a.startswith("analysis.reference_val_set=") for a in args):
                from analysis.pipeline import check_named_reference

                check_named_reference(acfg, table)  # before anything is written
            out = Path(cfg.out or cfg.root)
        else:
            from analysis.pipeline import run_sources

            # shipped testbeds (comma-separated: each under <out>/<name>/ plus summary.md);
            # the shipped copy unless path= overrides it (one source only)
            names = [n.strip() for n in str(cfg.source).split(",") if n.strip()]
            if "harness" in names:
                die("source: harness cannot be combined with testbeds")
            if cfg.path and len(names) > 1:
                die(f"path: one folder cannot override {len(names)} sources")
            out = Path(cfg.out or f"outputs/{names[0] if len(names) == 1 else 'testbeds'}")
            run_sources(names, acfg, out, cfg.path or None, bool(cfg.overwrite))
            print(f"wrote {out / ('report.md' if len(names) == 1 else 'summary.md')}")
            _publish(cfg, out, ",".join(names))
            return
        analyze(table, out, acfg, overwrite=bool(cfg.overwrite))
        print(f"wrote {out / 'report.md'}")
        sweeps = sorted(set(table["sweep"].dropna())) if "sweep" in table else []
        _publish(cfg, out, ",".join(sweeps) or out.name)

    _guard_analysis(go)


def _publish(cfg, out: Path, name: str) -> None:
    """With logger=wandb, the analysis just written goes to W&B as an artifact."""
    from harness.tracking import publish_analysis

    folder = publish_analysis(as_dict(cfg.logger), out, name)
    if folder is not None:
        print(f"W&B: analysis artifact logged by run {folder.name}")


def cmd_plot(args: list[str]) -> None:
    cfg = compose("analyze", args)

    def go() -> None:

        from analysis.pipeline import plot
        from analysis.schemas import TABLES_READ

        out = cfg.out or cfg.root
        if not out:
            die("out: required (an analysis output directory)")
        # only the plot options named on the command line override the saved analysis's
        named = {
            a.partition("=")[0].split(".")[2]
            for a in args
            if a.startswith("analysis.plot.") and "=" in a
        }
        given = as_dict(cfg.analysis.plot)
        files = plot(Path(out), {k: v for k, v in given.items() if k in named})
        tables = Path(out) / "tables"
        print(f"read {', '.join(t for t in TABLES_READ if (tables / t).exists())} from {tables}")
        for path in files:
            print(path)

    _guard_analysis(go)


def cmd_predict(args: list[str]) -> None:
    from harness.predict_command import predict

    _guard_analysis(lambda: predict(args))


def _guard_analysis(fn: Callable[[], None]) -> None:
    from analysis.errors import AnalysisError, one_line_warnings

    try:
        with one_line_warnings():  # `warning: <message>`, not Python's file:line + source
            guard(fn)
    except AnalysisError as err:
        die(str(err))


def cmd_items(args: list[str]) -> None:
    from harness.items_command import items

    _guard_analysis(lambda: items(args))


def cmd_eval(args: list[str]) -> None:
    from harness.backfill import backfill

    check_group_overrides(args)
    cfg = compose("config", args)
    _quiet_transformers()
    guard(lambda: backfill(cfg))


def cmd_tasks(args: list[str]) -> None:
    """`harness tasks [eval=SUITE] [lm_eval=true] [filter=TEXT]`."""
    from harness.config import run_spec
    from harness.tasks_view import list_tasks

    opts = {k: v for k, _, v in (a.partition("=") for a in args) if k in ("lm_eval", "filter")}
    if opts.get("lm_eval", "false") not in ("true", "false"):
        die(f"lm_eval: must be true or false, got '{opts['lm_eval']}'")
    rest = [a for a in args if a.partition("=")[0] not in ("lm_eval", "filter")]
    check_group_overrides(rest)
    cfg = compose("config", rest)

    def go() -> None:
        table = list_tasks(run_spec(cfg), opts.get("lm_eval") == "true", opts.get("filter", ""))
        if not table:
            die(f"filter: no task matches '{opts.get('filter', '')}'", code=1)
        print(table)

    guard(go)


def cmd_status(args: list[str]) -> None:
    from harness.status import print_status

    cfg = compose("status", args)
    guard(lambda: print_status(cfg))


def cmd_cancel(args: list[str]) -> None:
    from harness.status import cancel

    cfg = compose("status", args)
    guard(lambda: cancel(cfg))


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "run": cmd_run,
    "plan": cmd_plan,
    "tasks": cmd_tasks,
    "eval": cmd_eval,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "analyze": cmd_analyze,
    "plot": cmd_plot,
    "predict": cmd_predict,
    "items": cmd_items,
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    cmd = argv.pop(0)
    if cmd not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(cmd, list(COMMANDS), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        die(f"command: unknown command '{cmd}' (known: {', '.join(COMMANDS)}){hint}")
    if "-h" in argv or "--help" in argv:
        from harness.cli_help import command_help

        print(command_help(cmd))
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    argv = replace_mix(take_config_dirs(argv))  # a study's own conf folder, for every command
    try:
        COMMANDS[cmd](argv)
    except KeyboardInterrupt:
        # one line, not a traceback; a run's own handler has already saved what it could
        print(
            f"\ninterrupted: harness {cmd} stopped by Ctrl-C (relaunch the same command to resume)",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


def _quiet_transformers() -> None:
    """No per-save "Writing model shards" bars. Only the commands that load models pay for
    importing transformers; status, analyze and plot stay quick."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


if __name__ == "__main__":
    main()
