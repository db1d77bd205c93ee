"""Budget matching: the size of each architecture whose effective parameter count
(recurrent layer + linear readout) is closest to a budget.

Library RNNs vary their hidden size. A CW-RNN varies its module size k at a fixed
number of modules g (`cw_match="module_size"`; sizes differ by at most one unit, the
first modules taking the remainder), or g at a fixed k
(`cw_match="modules"`); explicit period lists fix g. A budget no size meets within
the tolerance is an error, never a silent substitution.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import UserInputError
from models.names import parse_arch
from models.registry import ModelSpec, closed_form_count
from models.schedules import connection_order_for, is_explicit, periods_for

MAX_SIZE = 4096  # search bound for hidden sizes, module sizes and module counts


@dataclass(frozen=True)
class Match:
    spec: ModelSpec
    params: int
    budget: int

    @property
    def deviation(self) -> float:
        return (self.params - self.budget) / self.budget


def _order(schedule: str, periods: list[int]) -> tuple[int, ...]:
    order = connection_order_for(schedule, periods)
    return () if order == list(periods) else tuple(order)


def candidates(label: str, cw_match: str, cw_modules: int, cw_module_size: int, offset: int):
    arch, schedule = parse_arch(label)
    if arch != "cwrnn":
        for h in range(1, MAX_SIZE + 1):
            yield ModelSpec(arch, h)
        return
    if cw_match not in ("module_size", "modules"):
        raise UserInputError(f"bad cw_match '{cw_match}': use 'module_size' (fixed g) or 'modules' (fixed k)")
    if cw_match == "modules" and not is_explicit(schedule):
        for g in range(1, 65):
            periods = periods_for(schedule, g)
            yield ModelSpec(arch, g * cw_module_size, schedule, tuple(periods), (cw_module_size,) * g, offset,
                            _order(schedule, periods))
        return
    periods = periods_for(schedule, cw_modules)
    g = len(periods)
    for n in range(g, MAX_SIZE + 1):
        # as even as possible; the first (fastest, for the built-in schedules) modules take
        # the remainder, so budgets are met to within one unit instead of one module width
        k, extra = divmod(n, g)
        sizes = tuple(k + 1 if i < extra else k for i in range(g))
        yield ModelSpec(arch, n, schedule, tuple(periods), sizes, offset, _order(schedule, periods))


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
        shape = (f"module sizes {list(best.spec.module_sizes)}" if best.spec.arch == "cwrnn"
                 else f"hidden={best.spec.hidden_size}")
        raise UserInputError(
            f"budget {budget} is impossible for {label} within {tolerance:.0%}: the closest is "
            f"{best.params} parameters ({shape}); choose another budget (--budgets) or raise the tolerance "
            f"(--tolerance, now {tolerance:g})"
        )
    return best
