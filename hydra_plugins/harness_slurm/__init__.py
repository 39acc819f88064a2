"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, submitting only the runs of
a sweep that are not complete, saying the array job's id as soon as it is submitted, and able
to return at once (`harness run -m --no-wait ...`) instead of waiting for the sweep to end.

It lives in the `hydra_plugins` namespace because Hydra instantiates launchers from there only;
`harness run` registers it (harness/cli.py). The array's tasks run the plugin's own
`SlurmLauncher`, so a compute node needs nothing beyond what the stock launcher needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict, read_write

WAIT = True  # `harness run --no-wait` sets False: return once the array job is submitted


def _done(overrides: Sequence[str], value: str) -> JobReturn:
    """A job that needs no result from the cluster (complete already, or not waited for)."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


def _varying(job_overrides: Sequence[Sequence[str]]) -> set[str]:
    """The overrides that tell the sweep's jobs apart (those not common to every job)."""
    common = set.intersection(*(set(filter_overrides(o)) for o in job_overrides))
    return {a for o in job_overrides for a in filter_overrides(o) if a not in common}


class PendingSlurmLauncher(SlurmLauncher):
    def pending(self, job_overrides: Sequence[Sequence[str]]) -> list[Sequence[str]]:
        """The jobs whose run is not complete: each job's config composed as its task will
        compose it, its run id looked up under its out_root. A job whose config the harness
        rejects, or whose id needs data not reachable from here, stays in (it says why)."""
        from common.errors import HarnessError
        from harness.config import run_spec
        from harness.identity import run_id
        from harness.store import is_complete, run_dir

        assert self.hydra_context is not None and self.config is not None
        out = []
        for overrides in job_overrides:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]  # as run_job hands the task its config: without Hydra's node
            try:
                complete = is_complete(run_dir(Path(cfg.out_root), run_id(run_spec(cfg))))
            except HarnessError:
                complete = False
            if not complete:
                out.append(overrides)
        return out

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        todo = self.pending(job_overrides)
        skipped = [_done(o, "skipped") for o in job_overrides if o not in todo]
        if not todo:
            print(f"nothing to submit: all {len(job_overrides)} run(s) are complete", flush=True)
            return skipped
        # as the plugin's BaseSubmititLauncher.launch builds its executor (its launch waits for
        # every result and never says the job id, hence this copy of its first half)
        params = self.params
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            **(
                {"slurm_max_num_timeout": params["max_num_timeout"]}
                if "max_num_timeout" in params
                else {}
            ),
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in base else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in ("submitit_folder", "max_num_timeout")
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = [
            (
                list(o),
                "hydra.sweep.dir",
                initial_job_idx + i,
                f"job_id_for_{i}",
                Singleton.get_state(),
            )
            for i, o in enumerate(todo)
        ]
        jobs = executor.map_array(self._stock(), *zip(*job_params, strict=True))
        array = str(jobs[0].job_id).split("_")[0]
        out_root = self.config.get("out_root")
        print(
            f"submitted array job {array}: {len(todo)} task(s)"
            + (f", {len(skipped)} complete run(s) not submitted" if skipped else "")
            + f"; follow: harness status root={out_root}; stop: harness cancel root={out_root}",
            flush=True,
        )
        varying = _varying(job_overrides)
        for i, o in enumerate(todo):
            print(f"  {array}_{i}: {' '.join(a for a in o if a in varying)}", flush=True)
        if not WAIT:
            return skipped + [_done(o, "submitted") for o in todo]
        return skipped + [j.results()[0] for j in jobs]

    def _stock(self) -> SlurmLauncher:
        """The plugin's own launcher with this one's settings: what each task unpickles."""
        stock = SlurmLauncher(**self.params)
        stock.config, stock.hydra_context = self.config, self.hydra_context
        stock.task_function = self.task_function
        return stock
