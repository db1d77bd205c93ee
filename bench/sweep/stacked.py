"""Train a group of runs as one stacked computation (`cwbench run ... --stack`): runs that
differ only in their seed and their task data (e.g. the seeds x targets of one architecture
and budget) have their parameters stacked along a leading member dimension
(models/stacked.py) and step together, each member with its own init, data, gradient-norm
clipping, optimizer state, validation, best weights and test, so that each comes out as
its run alone would, to float rounding. The result of each member is what `train_one`
(bench/sweep/training.py) returns for that run; nothing here knows about stores.

Which runs can stack (`why_not_stacked`): step-based training at batch 1 without a stopping
rule, on an architecture with a stacked forward, of a task in STACKED_TASKS (audio). Others
train one run at a time.

A member whose training loss becomes NaN or infinite is recorded diverged at that step and
stops updating (its gradients and optimizer state are zeroed); the others go on. A stacked
computation is deterministic given its group (the members, in order): `cwbench verify`
re-trains a stacked record's group stacked. Stacked and one-at-a-time runs of the same
config agree to float rounding, not bitwise.
"""

from __future__ import annotations

import hashlib
import json
import math

import torch

from bench.store.records import RunConfig
from bench.suite.suites import train_setting
from models.counting import count_parameters
from models.lightning import OPTIMIZERS
from models.stacked import STACKED_ARCHS, StackedModels

BACKEND = "stacked"  # the record's `backend`: the implementation that ran the recurrence
# tasks whose runs stack: their loss and metrics run under torch.func.vmap and their data loaders
# draw nothing from the global random state (tested); a task is added here with such a test
STACKED_TASKS = ("audio",)


def why_not_stacked(config: RunConfig) -> str:
    """Why this run cannot train in a stacked group ("" where it can)."""
    train = config.train
    if config.task not in STACKED_TASKS:
        return f"task {config.task} does not stack (stacked: {', '.join(STACKED_TASKS)})"
    if config.model["arch"] not in STACKED_ARCHS:
        return f"{config.model['arch']} has no stacked implementation (stacked: {', '.join(STACKED_ARCHS)})"
    if config.plugin:
        return "a plugin's architecture"
    if train["epochs"]:
        return "it trains by epochs (stacking needs step-based training)"
    if train["batch_size"] != 1:
        return f"batch size {train['batch_size']} (stacking is for batch-1 runs)"
    if train["patience"]:
        return "early stopping (patience) on the training error"
    return ""


def group_key(config: RunConfig) -> str:
    """Runs with the same key differ only in seed and task data: they can train as one group."""
    d = config.to_dict()
    d.pop("seed")
    d["task_params"] = sorted(d["task_params"])  # which parameters, not their values
    return json.dumps(d, sort_keys=True)


def group_id(run_ids: list[str]) -> str:
    """A group's name: a hash of its members' run ids, in order."""
    return hashlib.sha256(" ".join(run_ids).encode()).hexdigest()[:16]


def batches_of(loader):
    """A loader's batches. A single-process map-style loader that does not batch (the audio
    task's): its items through its collate_fn, what its iterator gives, without the iterator's
    per-batch bookkeeping (a quarter of a small group's step, times the members)."""
    from torch.utils.data import IterableDataset

    if loader.batch_size is None and loader.num_workers == 0 and not isinstance(loader.dataset, IterableDataset):
        return (loader.collate_fn(loader.dataset[i]) for i in loader.sampler)
    return iter(loader)


def stack_batches(batches: list[dict]) -> dict:
    return {key: torch.stack([b[key] for b in batches]) for key in batches[0]}


def member_metrics(task, y_hat: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
    """The task's metrics of every member: name -> (N,)."""
    return torch.func.vmap(task.metrics)(y_hat, batch)


def evaluate(stack: StackedModels, task, loaders: list, prefix: str, artifacts: bool = False):
    """Every member on its own evaluation batches: metrics averaged over batches weighted by
    their size (as Lightning's epoch-level log), and the task's artifacts."""
    totals: dict[str, torch.Tensor] = {}
    weight = 0
    collected: list[dict] = [{} for _ in loaders]
    stack.training = False  # as Lightning's model.eval() for validation and test
    with torch.no_grad():
        for batches in zip(*loaders):
            batch = stack_batches(list(batches))
            y_hat = stack(batch["x"])
            size = len(batches[0]["x"])
            for key, value in member_metrics(task, y_hat, batch).items():
                totals[f"{prefix}/{key}"] = totals.get(f"{prefix}/{key}", 0) + value.double() * size
            weight += size
            if artifacts:
                for k, b in enumerate(batches):
                    for key, values in task.artifacts(y_hat[k], b).items():
                        collected[k].setdefault(key, []).extend(values)
    stack.training = True
    metrics = [{key: float(value[k] / weight) for key, value in totals.items()} for k in range(len(loaders))]
    return metrics, collected


def zero_members(tensors, members: torch.Tensor) -> None:
    for t in tensors:
        if t is not None and t.dim() > 0:
            t.index_fill_(0, members, 0.0)


def train_stacked(configs: list[RunConfig], tasks: list, device: str = "cpu", evaluate_on: str = "test",
                  diverge_at: dict[int, int] | None = None) -> list[dict]:
    """Train the group `configs` (with their task objects) as one computation; returns one
    result per member, as `train_one` would for that run alone.

    `diverge_at` {member index: step} makes a member's training loss NaN at that step (tests:
    one group cannot give one member a rate that diverges)."""
    from pytorch_lightning import seed_everything

    from bench.sweep.training import build_model

    if device != "cpu":
        raise ValueError("stacked training runs on the CPU")
    first = configs[0]
    train = first.train
    models = []
    for config, task in zip(configs, tasks):
        seed_everything(config.seed, workers=True, verbose=False)
        model = build_model(config, task)  # its own forward is never called: any backend
        effective = count_parameters(model)
        if effective != config.params:
            raise AssertionError(f"closed-form count {config.params} != built count {effective} for {config.arch}")
        models.append(model)
    stack = StackedModels(models)
    size = len(configs)
    optim = models[0].optim
    optimizer = OPTIMIZERS[optim.optimizer](stack.trainable(), optim)
    trainable = [p for p in stack.trainable() if p.requires_grad]
    del models  # the stack holds the numbers now
    datas = []
    for config, task in zip(configs, tasks):
        data = task.datamodule(train["batch_size"], config.seed, train["steps"])
        data.prepare_data()
        data.setup("fit")
        datas.append(data)
    primary, higher = tasks[0].primary_metric, tasks[0].higher_is_better
    select = train_setting(train, "select") == "best_val"
    sign = -1.0 if higher else 1.0
    best_value: list[float | None] = [None] * size
    best_step = [0] * size
    best_state = {name: p.detach().clone() for name, p in stack.params.items()} if select else {}
    has_best = [False] * size
    curves: list[list[dict]] = [[] for _ in range(size)]
    status = ["ok"] * size
    reason = [""] * size
    stopped_at = [train["steps"]] * size
    alive = torch.ones(size, dtype=torch.bool)
    reduction = train["loss_reduction"]
    loss_of = torch.func.vmap(lambda y_hat, batch: tasks[0].loss(y_hat, batch, reduction))
    clip = optim.clip
    val_every = train["val_every"]
    diverge_at = diverge_at or {}
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # as Lightning's Trainer(deterministic=True) in train_one
    try:
        iterators = [batches_of(d.train_dataloader()) for d in datas]
        step = 0
        while step < train["steps"] and bool(alive.any()):
            batches = [next(it) for it in iterators]
            batch = stack_batches(batches)
            y_hat = stack(batch["x"])
            losses = loss_of(y_hat, batch)
            if diverge_at:
                losses = losses + torch.tensor([math.nan if diverge_at.get(k) == step else 0.0 for k in range(size)],
                                               dtype=losses.dtype)
            bad = alive & ~torch.isfinite(losses.detach())
            if bool(bad.any()):
                dead = bad.nonzero().flatten()
                for k in dead.tolist():
                    status[k], stopped_at[k] = "diverged", step
                    reason[k] = f"training loss became {losses[k].item()} at step {step}"
                alive &= ~bad
                for state in optimizer.state.values():
                    zero_members(state.values(), dead)
            optimizer.zero_grad()
            if not bool(alive.any()):
                break
            torch.where(alive, losses, 0.0).sum().backward()
            if clip:
                # reshape, not flatten(1): a scalar parameter (the Phased LSTM's r_on) stacks to (N,)
                norms = torch.stack([p.grad.reshape(size, -1).norm(dim=1) for p in trainable])
                total = norms.norm(dim=0)
                coef = torch.clamp(clip / (total + 1e-6), max=1.0)  # torch.nn.utils.clip_grad_norm_'s rule
                for p in trainable:
                    p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)).to(p.grad.dtype))
            if not bool(alive.all()):
                gone = (~alive).nonzero().flatten()
                zero_members([p.grad for p in trainable], gone)
            optimizer.step()
            step += 1
            last_loss = losses.detach()
            if step % val_every == 0:  # as Lightning with val_check_interval: none at the end
                metrics, _ = evaluate(stack, tasks[0], [d.val_dataloader() for d in datas], "val")
                for k in alive.nonzero().flatten().tolist():
                    curves[k].append({"step": step, "train/loss": float(last_loss[k]), **metrics[k]})
                    value = metrics[k].get(f"val/{primary}")
                    if select and value is not None and math.isfinite(value) and (
                            best_value[k] is None or sign * value < sign * best_value[k]):
                        best_value[k], best_step[k], has_best[k] = value, step, True
                        with torch.no_grad():
                            for name, p in stack.params.items():
                                best_state[name][k] = p[k]
        if select:  # each member tested at its best validation (where it had one)
            with torch.no_grad():
                chosen = torch.tensor(has_best)
                for name, p in stack.params.items():
                    p.copy_(torch.where(chosen.view(-1, *[1] * (p.dim() - 1)), best_state[name], p))
        final_data = []
        for d in datas:
            d.setup("test" if evaluate_on == "test" else "validate")
            final_data.append(d.test_dataloader() if evaluate_on == "test" else d.val_dataloader())
        metrics, artifacts = evaluate(stack, tasks[0], final_data, evaluate_on, artifacts=evaluate_on == "test")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    results = []
    for k, (config, task) in enumerate(zip(configs, tasks)):
        result = {"status": status[k], "reason": reason[k], "metrics": {}, "artifacts": {}}
        if status[k] == "ok":
            prefix = f"{evaluate_on}/"
            values = {key.removeprefix(prefix): v for key, v in metrics[k].items()}
            if not all(math.isfinite(v) for v in values.values()):
                result.update(status="diverged", reason=f"non-finite {evaluate_on} metrics {values}")
            elif task.primary_metric not in values:
                result.update(status="failed", reason=f"the {evaluate_on} data gave no {task.primary_metric}")
            result.update(metrics=values, artifacts=artifacts[k] if evaluate_on == "test" else {})
        result["learned"] = task.learned(result["metrics"]) if result["status"] == "ok" else False
        result["curve"] = curves[k]
        result["steps_trained"] = stopped_at[k]
        result["stopped"] = "steps"
        if select:
            result["selected_step"] = best_step[k] if has_best[k] else stopped_at[k]
        result["effective_params"] = config.params
        result["backend"] = BACKEND
        results.append(result)
    return results
