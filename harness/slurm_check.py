"""Preflight for `hydra/launcher=slurm`: fail in one line before anything is submitted when
no controller answers or the partition does not exist (instead of a submitit traceback, or
a sweep waiting on jobs that can never start)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from common.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def arg_value(args: list[str], key: str) -> str | None:
    """The value of the first `key=value` (or `+key=value`) among `args`; None without one."""
    for a in args:
        k, _, v = a.lstrip("+").partition("=")
        if k == key:
            return v
    return None


def requested_partition(args: list[str]) -> str | None:
    """The partition a launch will ask for: command line, else the preset, else the default."""
    explicit = arg_value(args, "hydra.launcher.partition")
    if explicit is not None:
        return None if explicit in ("null", "") else explicit
    preset = arg_value(args, "cluster")
    sources = [ROOT / "slurm" / "cluster" / f"{preset}.yaml"] if preset else []
    sources.append(ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml")
    for path in sources:
        if path.exists():
            cfg = yaml.safe_load(path.read_text()) or {}
            if "partition" in cfg:
                return cfg["partition"]
    return None


def check_cluster_launcher(args: list[str]) -> None:
    """`+cluster=NAME` sets fields of the SLURM launcher: without `hydra/launcher=slurm` Hydra
    fails on a ConfigKeyError whose first line says nothing; say what is missing instead."""
    preset = arg_value(args, "cluster")
    if preset is not None and arg_value(args, "hydra/launcher") != "slurm":
        raise ConfigError(
            f"cluster: the preset '{preset}' configures the SLURM launcher; "
            f"add hydra/launcher=slurm (harness run -m hydra/launcher=slurm +cluster={preset} ...)"
        )


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"no answer within {timeout:.0f} s")


def preflight(args: list[str]) -> None:
    """Raise ConfigError when a SLURM launch named in `args` cannot work."""
    if arg_value(args, "hydra/launcher") != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise ConfigError(
            "hydra/launcher=slurm: SLURM client tools (sbatch, sinfo) are not installed here"
        )
    ping = _run(["scontrol", "ping"], timeout=20)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        first = (ping.stdout or ping.stderr).strip().splitlines()
        raise ConfigError(
            "hydra/launcher=slurm: no SLURM controller answers "
            f"(scontrol ping: {first[0] if first else 'no output'})"
        )
    listed = _run(["sinfo", "-h", "-o", "%P"], timeout=20).stdout.split()
    partitions = [p.rstrip("*") for p in listed]
    partition = requested_partition(args)
    if partition is None:
        if not any(p.endswith("*") for p in listed):
            raise ConfigError(
                "hydra.launcher.partition: not set and the cluster has no default partition "
                f"(partitions: {', '.join(partitions)})"
            )
    elif partition not in partitions:
        raise ConfigError(
            f"hydra.launcher.partition: unknown partition '{partition}' "
            f"(known: {', '.join(partitions)})"
        )
