"""Mirror runs to Weights & Biases. Only imported with --wandb; WANDB_MODE is honoured
(offline with no account: `wandb sync` uploads later). The results store stays the record.

Each attempt at a run is a W&B run of its own (id: the run id and a random suffix), so a
rerun of a config never overwrites the earlier one; its twins are found together by the
run id, which is in the config and a tag. The W&B config holds what the record will hold
that is known before training (the resolved config, recurrence backend, git commit,
package versions, device, ...); the summary gets what is known only at the end.

wandb's own console output is silenced and stdout is left alone (`silent`, `console="off"`):
the runner's progress line of a run must stay one line.
"""

from __future__ import annotations

import os
import secrets

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


def known_before_training(config: dict, run_id: str, task, device: str, cw_backend: str = "auto",
                          command: str = "", evaluate: str = "test", dirty: bool = False) -> dict:
    """The run record's fields that are known before training, as the runner will record them."""
    from bench import provenance
    from bench.runner import build_model, recurrence_backend

    try:  # the implementation that will run the recurrence: built as train_one builds it
        backend = recurrence_backend(build_model(config, task, cw_backend).rnn, task, device,
                                     config["train"]["batch_size"])
    except Exception:  # train_one will fail the same way and record it
        backend = cw_backend
    known = {**config, "run_id": run_id, "backend": backend, "device": provenance.device_name(device),
             "git_commit": provenance.git_commit(), "versions": provenance.versions(), "command": command,
             "evaluated_on": evaluate, "sources": task.sources(), "baselines": task.baselines(),
             "primary_metric": task.primary_metric, "higher_is_better": task.higher_is_better}
    if dirty:
        known["dirty"] = True
    return known


def make_logger(config: dict, run_id: str, varying: list[str], *, task, device: str, cw_backend: str = "auto",
                command: str = "", evaluate: str = "test", dirty: bool = False):
    """One W&B run for one attempt at a run; grouped by task, profile and the task setting
    (the params that vary in the sweep), with the architecture as job type."""
    from pytorch_lightning.loggers import WandbLogger

    setting = "-".join(f"{k}{config['task_params'][k]}" for k in sorted(varying) if k != "target")
    save_dir = os.environ.get("WANDB_DIR") or "."
    run = _init(
        group=f"{config['task']}-{config['profile']}" + (f"-{setting}" if setting else ""),
        job_type=config["arch"],
        name=f"{config['arch']}-b{config['budget']}-s{config['seed']}-{run_id[:6]}",
        id=wandb_id(run_id),
        tags=[config["task"], config["arch"], f"budget={config['budget']}", f"profile={config['profile']}",
              f"run_id={run_id}"],
        config=known_before_training(config, run_id, task, device, cw_backend, command, evaluate, dirty),
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


def log_leaderboard(task: str, table, profile: str) -> None:
    """The leaderboard as a wandb Table, in a run of its own."""
    import wandb

    run = _init(group=f"{task}-{profile}", job_type="leaderboard", name=f"leaderboard-{task}-{profile}")
    run.log({"leaderboard": wandb.Table(dataframe=table.astype(str))})
    run.finish()
