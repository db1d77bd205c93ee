"""Budget matching: the size of each architecture whose effective parameter count
(recurrent layer + linear readout) is closest to a budget.

What sizes are tried is the architecture's (its entry's `sizes` in models/architectures.py,
e.g. hidden sizes, or a CW-RNN's module size at a fixed number of modules: models/sizes.py);
the counts are its closed form. A budget no size meets within the tolerance is an error,
never a silent substitution.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.architectures import ARCHITECTURES, load
from models.errors import UserInputError
from models.names import parse_arch
from models.registry import ModelSpec, closed_form_count


@dataclass(frozen=True)
class Match:
    spec: ModelSpec
    params: int
    budget: int

    @property
    def deviation(self) -> float:
        return (self.params - self.budget) / self.budget


def candidates(label: str, cw_match: str, cw_modules: int, cw_module_size: int, offset: int):
    """The specs of `label` that matching tries, in increasing parameter count."""
    arch, schedule = parse_arch(label)
    return load(ARCHITECTURES[arch].sizes)(arch, schedule, cw_match=cw_match, cw_modules=cw_modules,
                                           cw_module_size=cw_module_size, offset=offset)


def match_budget(label: str, budget: int, input_size: int, output_size: int, *, tolerance: float = 0.1,
                 cw_match: str = "module_size", cw_modules: int = 8, cw_module_size: int = 1,
                 offset: int = 0) -> Match:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserInputError(f"bad budget {budget!r}: budgets are positive integers (parameters)")
    best = None
    for spec in candidates(label, cw_match, cw_modules, cw_module_size, offset):
        params = closed_form_count(spec, input_size, output_size)
        if best is None or abs(params - budget) < abs(best.params - budget):
            best = Match(spec, params, budget)
        if params > budget:  # counts grow with size: nothing further can be closer
            break
    if abs(best.deviation) > tolerance:
        shape = (f"module sizes {list(best.spec.module_sizes)}" if best.spec.module_sizes
                 else f"hidden={best.spec.hidden_size}")
        raise UserInputError(
            f"budget {budget} is impossible for {label} within {tolerance:.0%}: the closest is "
            f"{best.params} parameters ({shape}); choose another budget (--budgets) or raise the tolerance "
            f"(--tolerance, now {tolerance:g})"
        )
    return best
