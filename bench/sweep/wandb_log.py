"""Mirror runs to Weights & Biases. Only imported with --wandb; WANDB_MODE is honoured
(offline with no account: `wandb sync` uploads later). The results store stays the record.

Each attempt at a run is a W&B run of its own (id: the run id and a random suffix), so a
rerun of a config never overwrites the earlier one; its twins are found together by the
run id, which is in the config and a tag. The W&B config holds what the record will hold
that is known before training (the resolved config, the implementation of the recurrence,
git commit, package versions, device, ...); the summary gets what is known only at the end.

wandb's own console output is silenced and stdout is left alone (`silent`, `console="off"`):
the runner's progress line of a run must stay one line.

`cwbench leaderboard --wandb` logs a task's leaderboard to a W&B run of its own (job type
`leaderboard`), so that the dashboard holding the runs holds their tables too.
"""

from __future__ import annotations

import os
import secrets

from bench.store.records import RunConfig

PROJECT = os.environ.get("WANDB_PROJECT", "clockwork-bench")
#: record fields known only once the run is over, copied into the W&B summary
FINAL = ("status", "reason", "learned", "stopped", "steps_trained", "epochs_trained", "effective_params",
         "backend", "wall_time_s")


def _settings():
    import wandb

    return wandb.Settings(silent=True, console="off")


def _init(**kwargs):
    """wandb.init with the current API: no `anonymous`, `reinit` by name (a run left open
    by a crash is finished first), no console chatter."""
    import wandb

    return wandb.init(project=PROJECT, reinit="finish_previous", settings=_settings(), **kwargs)


def wandb_id(run_id: str) -> str:
    """A fresh W&B run id for one attempt at the run `run_id`: never reused by a rerun."""
    return f"{run_id}-{secrets.token_hex(4)}"


def known_before_training(config: RunConfig, run_id: str, task, device: str, backend: str, sweep: dict) -> dict:
    """The run record's fields that are known before training, as the runner will record
    them: the config, the implementation that runs it, and the sweep's provenance."""
    from bench.sweep import provenance

    return {**config.to_dict(), "run_id": run_id, "backend": backend, "device": provenance.device_name(device), **sweep,
            "sources": task.sources(), "baselines": task.baselines(), "primary_metric": task.primary_metric,
            "higher_is_better": task.higher_is_better}


def make_logger(config: RunConfig, run_id: str, varying: list[str], *, task, device: str, backend: str, sweep: dict):
    """One W&B run for one attempt at a run; grouped by task, profile and the task setting
    (the params that vary in the sweep), with the architecture as job type."""
    from pytorch_lightning.loggers import WandbLogger

    setting = "-".join(f"{k}{config.task_params[k]}" for k in sorted(varying) if k != "target")
    save_dir = os.environ.get("WANDB_DIR") or "."
    run = _init(
        group=f"{config.task}-{config.profile}" + (f"-{setting}" if setting else ""),
        job_type=config.arch,
        name=f"{config.arch}-b{config.budget}-s{config.seed}-{run_id[:6]}",
        id=wandb_id(run_id),
        tags=[config.task, config.arch, f"budget={config.budget}", f"profile={config.profile}", f"run_id={run_id}"],
        config=known_before_training(config, run_id, task, device, backend, sweep),
        dir=save_dir,
    )
    # as WandbLogger does for a run it starts itself: metrics stepped by the trainer's step
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return WandbLogger(experiment=run, save_dir=save_dir, project=PROJECT)


def finish(logger, record: dict) -> None:
    """Final metrics and what only the end of the run knows into the summary, then close it."""
    run = logger.experiment
    run.summary.update({f"final/{k}": v for k, v in record["metrics"].items()})
    run.summary.update({k: record[k] for k in FINAL if k in record})
    run.finish()


def _cells(table):
    """A table W&B can type: columns of mixed values (numbers beside "—") as text; numbers and
    true/false stay typed, so the dashboard sorts and filters them."""
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object:
            table[column] = table[column].astype(str)
    return table.reset_index(drop=True)


def log_leaderboard(task: str, tables: dict, figures: dict, per_target: dict | None = None,
                    config: dict | None = None) -> str:
    """A task's leaderboard in one W&B run of job type `leaderboard` (group: the task), beside
    the runs it tabulates: per profile its table (`<profile>/leaderboard`, a wandb.Table), its
    per-target table where there is one, and its figures (`<profile>/<figure>`). Returns the
    W&B run's id."""
    import wandb

    run = _init(group=task, job_type="leaderboard", name=f"leaderboard-{task}", tags=[task, "leaderboard"],
                config=config or {})
    logged = {}
    for profile, table in tables.items():
        logged[f"{profile}/leaderboard"] = wandb.Table(dataframe=_cells(table))
        if per_target and profile in per_target:
            logged[f"{profile}/per_target"] = wandb.Table(dataframe=_cells(per_target[profile]))
        for path in figures.get(profile, []):
            logged[f"{profile}/{path.stem.removesuffix('_' + profile)}"] = wandb.Image(str(path))
    run.log(logged)
    run_id = run.id
    run.finish()
    return run_id
