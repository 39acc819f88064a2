"""`harness <command> --help`: each subcommand's options and an example. Kept apart from
cli.py so the dispatcher stays short; the texts are what a user reads, so they say what a
key does and show a command that works on the embedded demo."""

from __future__ import annotations

HELP: dict[str, str] = {
    "run": """\
harness run [-m] [--from runs/<id>/config.yaml] [key=value ...]

Train one run, or a sweep with -m (comma-separated values: model=cpu-50k,cpu-100k).
A complete run is skipped, a partial one resumes from its newest complete checkpoint.

Config groups: model= data= validation= train= eval= tokenizer= logger= sweep= hydra/launcher=
Common keys:
  seed=N                 the seed (part of the run id)
  out_root=DIR           where runs/<run_id>/ go (default outputs/<sweep_name>)
  train.tokens=N         train on exactly N tokens; replaces the default train.tokens_per_param
  train.tokens_per_param=R   N = R x parameters (when train.tokens is not given)
  eval.tasks=[a,b@3shot] tasks and setup variants scored at each checkpoint (`harness tasks`)
  --from runs/<id>/config.yaml   rerun exactly the run that config describes (no other keys)
  --config-dir DIR       a study's own conf folder: its options join every group (also
                         hydra.searchpath=[file://DIR]; README "Your own study")
  'data.weights={a: 0.7, b: 0.3}'   replace the mix with exactly these weights
  --no-wait              with -m hydra/launcher=slurm: return once the array job (the runs not
                         yet complete) is submitted; follow with harness status / cancel

Examples:
  harness run model=cpu-50k data=toy train.tokens=100000
  harness run -m model=cpu-50k,cpu-100k data=toy,toy_code
  harness run --from outputs/default/runs/<id>/config.yaml
See what would run first: harness plan <same overrides>.""",
    "plan": """\
harness plan [-m] [key=value ...]      (the same overrides as `harness run`)
harness plan --from runs/<id>/config.yaml [out_root=DIR]   (what `run --from` would do)

Check what `run` checks before training (task names, include paths, shapes, local data) and
print, without training, one row per run: run id, size, parameters (total and
non-embedding), tokens, FLOPs, GPU-hours (at a stated assumed throughput), steps, checkpoints
to evaluate, and whether `run` would train, resume or skip it; then per run the mix weights,
per source the tokens available and the epochs implied (a warning above 4). With
hydra/launcher=slurm it also prints the sbatch parameters of the array job (the runs not yet
complete), even on a machine without SLURM; remote datasets are never loaded.

Examples:
  harness plan -m sweep=demo
  harness plan -m hydra/launcher=slurm +cluster=example_gpu sweep=gpu_ladder""",
    "eval": """\
harness eval root=DIR [eval=SUITE] ['eval.tasks=[...]']

Score saved checkpoints of a sweep's runs on tasks they lack (backfill); models are not
retrained and the run ids do not change.

Example:
  harness eval root=outputs/demo eval=toy 'eval.tasks=[toy_grammar@prefix]'""",
    "status": """\
harness status root=DIR

A table of a sweep's runs: run id, size, mix, seed, state, step, tokens, validation loss,
SLURM job.
Exits non-zero when DIR does not exist or holds no runs.

Example:
  harness status root=outputs/demo""",
    "cancel": """\
harness cancel root=DIR

scancel the live SLURM jobs recorded by a sweep's runs.

Example:
  harness cancel root=outputs/demo""",
    "analyze": """\
harness analyze root=DIR [out=DIR] [overwrite=true] [analysis.KEY=VALUE ...]
harness analyze source=gadre2024[,olmo_ladder,pythia,obsscaling] [path=DIR] [out=DIR]

Fit the laws, classify each task's trend, detect flips, backtest extrapolation and write
report.md, figures/ and tables/. Thresholds and fit settings: conf/analysis/default.yaml,
under the sweep's own settings where its preset stored some (DIR/analysis_defaults.json);
analysis.KEY on the command line wins.
  analysis.plot.dpi=N           figure resolution
  analysis.plot.formats=[png,pdf,svg]   figure file formats
  overwrite=true                replace a report in out made with other settings (else refused)

Examples:
  harness analyze root=outputs/demo
  harness analyze source=gadre2024 analysis.plot.formats=[png,pdf]""",
    "plot": """\
harness plot out=DIR [analysis.plot.dpi=N] [analysis.plot.formats=[png,pdf,svg]]

Redraw every figure from the tables an earlier `harness analyze` wrote under DIR (no
refitting); says which tables it read.

Example:
  harness plot out=outputs/demo analysis.plot.dpi=200 'analysis.plot.formats=[png,pdf]'""",
    "tasks": """\
harness tasks [eval=SUITE] [sweep=NAME] [lm_eval=true] [filter=TEXT] [key=value ...]

List downstream tasks with their setup variants, chance level and size: the project's toy
tasks, the tasks of a suite (eval=core), and with lm_eval=true every task lm-eval knows
(`lm_eval --tasks list`). Toy tasks are counted in the world the overrides configure (the
default's unless sweep=demo or sources.toyworld.* say otherwise), named in the first line.
Variants are written task@setup: @3shot (any @<N>shot), and for the toy tasks @letters and
@prefix.

Examples:
  harness tasks sweep=demo
  harness tasks lm_eval=true filter=arc""",
    "predict": """\
harness predict root=DIR target.params=N target.tokens=D [out=DIR] [tasks=a,b] [corpus=C]
harness predict source=olmo_ladder target=13B-5T [path=DIR] [out=DIR] [tasks=a,b]

Predict a larger model's accuracy on each task from the runs: every method (two-step,
two-step through the validation loss, single step, Gadre exp law, log-accuracy power law in
compute, naive, ensemble) with its calibrated 80% interval, the default method's backtest
error on these runs, and the task's trend category; a warning where the task is not
classified predictable or the target lies further than any backtest reached.
Writes <out>/predict/predictions.csv and one figure per task.

Examples:
  harness predict root=outputs/demo target.params=1.4e9 target.tokens=2.8e10
  harness predict source=olmo_ladder target=13B-5T out=/tmp/olmo""",
    "items": """\
harness items root=DIR task=TASK a=RUN[@STEP] b=RUN[@STEP] [top=N] [metric=acc]

The items of TASK that moved most between A and B: correctness (the metric, per item)
first, then the log-likelihood of the correct answer, with the end of each prompt. Reads
the per-item scores kept by runs launched with eval.log_samples=true
(runs/<id>/samples/step_<N>.parquet). RUN: a run id (or a unique prefix), a model size
when one run has it, or SIZE/MIX; STEP: a step, first or final (default).

Examples:
  harness items root=outputs/demo task=toy_facts a=cpu-40k/toy b=cpu-400k/toy
  harness items root=outputs/demo task=toy_facts a=<run_id>@first b=<run_id>@final top=20""",
}


def command_help(cmd: str) -> str:
    return HELP[cmd]
