"""Effective parameter counts: measured on a built module, and in closed form.

The effective count is what the optimiser can usefully move: every trainable entry
except the structural zeros of a CW-RNN's masked recurrent blocks. Library modules
(nn.RNN/LSTM/GRU) are counted as built, two bias vectors per gate included, because
both are trained. Each architecture's closed form is its entry's `count` in
models/architectures.py; an architecture without one (a plugin: models/plugins.py) is counted
by building it on torch's meta device, which allocates no memory and runs no initialisation
arithmetic (`meta_count`).
"""

from __future__ import annotations

import ast
import functools
import operator
from typing import TYPE_CHECKING

from models.architectures import ARCHITECTURES, IGNORED, load
from models.clockwork_rules import reads
from models.spec import ModelSpec

if TYPE_CHECKING:  # this module is imported without torch (budget matching counts in closed form)
    from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Effective trainable parameters of any module tree (structural zeros excluded)."""
    total = sum(p.numel() for p in module.parameters() if p.requires_grad)
    zeros = sum(m.structural_zeros() for m in module.modules() if hasattr(m, "structural_zeros"))
    return total - zeros


def recurrent_count(spec: ModelSpec, input_size: int) -> int:
    """The recurrent layer of `spec` in closed form (its entry's formula, or its code), or
    counted on the meta device where its entry gives none."""
    count = ARCHITECTURES[spec.arch].count
    if not count:
        return meta_count(spec, input_size)
    if ":" in count:
        return load(count)(spec, input_size)
    return formula(count)(h=spec.hidden_size, i=input_size)


@functools.lru_cache(maxsize=4096)  # budget matching asks for the same candidates again for each budget
def meta_count(spec: ModelSpec, input_size: int) -> int:
    """The effective trainable parameters of `spec`'s layer built on torch's meta device (no
    memory, no values). With no counted inputs (a zero-input task) it is built with one input
    and its input weights frozen, as training does (`freeze_input_weights`)."""
    import torch

    with torch.device("meta"):
        module = load(ARCHITECTURES[spec.arch].build)(spec, max(input_size, 1), "auto")
        if input_size == 0:
            freeze_input_weights(module)
    return count_parameters(module)


def freeze_input_weights(rnn: nn.Module) -> None:
    """For a task whose input is all zeros: the input weights can do nothing, so they are
    fixed at zero and left out of the trainable (and counted) parameters."""
    from torch import nn

    for name, p in rnn.named_parameters():
        if name.startswith("weight_ih"):
            p.requires_grad_(False)
            nn.init.zeros_(p)


def library_rnn_count(arch: str, input_size: int, hidden_size: int) -> int:
    """An architecture sized by its hidden size alone (rnn, lstm, gru, ...) at `hidden_size`."""
    return recurrent_count(ModelSpec(arch, hidden_size), input_size)


def clockwork_count(input_size: int, module_sizes, order, wiring: str = "paper") -> int:
    """sum_i k_i (I + 1 + sum_{j readable by i} k_j), j readable as models/clockwork_rules.py `reads`
    says for the wiring (the paper's: j == i or order_j > order_i; the order is the periods unless a
    schedule decouples connectivity from the clock)."""
    total = 0
    for i, k_i in enumerate(module_sizes):
        readable = sum(k_j for j, k_j in enumerate(module_sizes) if reads(order, i, j, wiring))
        total += k_i * (input_size + 1 + readable)
    return total


def clockwork_spec_count(spec: ModelSpec, input_size: int) -> int:
    return clockwork_count(input_size, spec.module_sizes, spec.connection_order, spec.wiring)


def initial_state_count(spec: ModelSpec) -> int:
    """A learnable initial state (`--train learn_h0=true`): n per part of the state its
    architecture's forward reads (models/architectures.py, `state`)."""
    return spec.hidden_size * sum(part != IGNORED for part in ARCHITECTURES[spec.arch].state)


def readout_count(hidden_size: int, output_size: int) -> int:
    return hidden_size * output_size + output_size


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
              ast.Pow: operator.pow}


@functools.cache
def formula(text: str):
    """A closed form such as "4 * (h * i + h * h + 2 * h)" as a function of h and i: integers,
    + - * // ** and parentheses only (parsed, never eval'd)."""

    def value(node, names):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left, names), value(node.right, names))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        raise ValueError(f"parameter count '{text}': {ast.unparse(node)} is not an integer, h, i or + - * // **")

    tree = ast.parse(text, mode="eval").body
    value(tree, {"h": 1, "i": 1})  # a malformed formula fails here, when it is first read
    return lambda **names: value(tree, names)
