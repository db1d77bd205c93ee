"""Mirror runs to Weights & Biases. Only imported with --wandb; WANDB_MODE is honoured
(offline with no account: `wandb sync` uploads later). The results store stays the record.
"""

from __future__ import annotations

import os

PROJECT = os.environ.get("WANDB_PROJECT", "clockwork-bench")


def make_logger(config: dict, run_id: str, varying: list[str]):
    """One W&B run; grouped by task, profile and the task setting (the params that vary in
    the sweep), with the architecture as job type."""
    from pytorch_lightning.loggers import WandbLogger

    setting = "-".join(f"{k}{config['task_params'][k]}" for k in sorted(varying) if k != "target")
    return WandbLogger(
        project=PROJECT,
        group=f"{config['task']}-{config['profile']}" + (f"-{setting}" if setting else ""),
        job_type=config["arch"],
        name=f"{config['arch']}-b{config['budget']}-s{config['seed']}-{run_id[:6]}",
        id=run_id,
        tags=[config["task"], config["arch"], f"budget={config['budget']}", f"profile={config['profile']}"],
        config={**config, "run_id": run_id},
        save_dir=os.environ.get("WANDB_DIR") or ".",  # WandbLogger would otherwise override WANDB_DIR
        reinit=True,
    )


def finish(logger, record: dict) -> None:
    """Final metrics, status and effective size into the run summary, then close it."""
    run = logger.experiment
    run.summary.update({f"final/{k}": v for k, v in record["metrics"].items()})
    run.summary.update({"status": record["status"], "reason": record["reason"],
                        "effective_params": record["effective_params"], "wall_time_s": record["wall_time_s"]})
    run.finish()


def log_leaderboard(task: str, table, profile: str) -> None:
    """The leaderboard as a wandb Table, in a run of its own."""
    import wandb

    run = wandb.init(project=PROJECT, group=f"{task}-{profile}", job_type="leaderboard",
                     name=f"leaderboard-{task}-{profile}", reinit=True)
    run.log({"leaderboard": wandb.Table(dataframe=table.astype(str))})
    run.finish()
