"""Budget matching: the size of each architecture whose effective parameter count
(recurrent layer + linear readout) is closest to a budget.

What sizes are tried is the architecture's (its entry's `sizes` in models/architectures.py,
e.g. hidden sizes, or a CW-RNN's module size at a fixed number of modules: models/sizes.py);
the counts are its closed form, tried in increasing size until one is over the budget. An
architecture without a closed form (a plugin) is counted by building candidates on torch's meta
device; as counts grow with the size, the sizes are searched (`closest`: doubling, then
bisection) rather than each built. A budget no size meets within the tolerance is an error,
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
                 offset: int = 0, learn_h0: bool = False) -> Match:
    """The size of `label` whose count (recurrent layer, readout and, with `learn_h0`, its
    learnable initial state) is closest to `budget`."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserInputError(f"bad budget {budget!r}: budgets are positive integers (parameters)")
    specs = candidates(label, cw_match, cw_modules, cw_module_size, offset)
    if not ARCHITECTURES[parse_arch(label)[0]].count:  # each count is a build (on the meta device): search
        best = closest(specs, lambda spec: closed_form_count(spec, input_size, output_size, learn_h0), budget)
    else:
        best = None
        for spec in specs:
            params = closed_form_count(spec, input_size, output_size, learn_h0)
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


def closest(specs, count, budget: int) -> Match:
    """The first of `specs` (an iterator, in increasing count) whose count is closest to the
    budget, with O(log n) counts: indices 0, 1, 3, 7, ... until one is over the budget, then
    bisection between it and the last one not over. The same answer as trying each in turn."""
    seen: list = []
    counts: dict[int, int] = {}

    def at(k: int):
        """(spec, count) of candidate k, or None past the last."""
        while len(seen) <= k:
            spec = next(specs, None)
            if spec is None:
                return None
            seen.append(spec)
        if k not in counts:
            counts[k] = count(seen[k])
        return seen[k], counts[k]

    below, over = -1, 0  # the last index known not over the budget; an index over it (or past the end)
    while (found := at(over)) is not None and found[1] <= budget:
        below, over = over, 2 * over + 1
    if at(over) is None:
        over = len(seen)
    while over - below > 1:
        middle = (below + over) // 2
        below, over = (middle, over) if at(middle)[1] <= budget else (below, middle)
    tried = [at(k) for k in (below, over) if 0 <= k < len(seen)]
    spec, params = min(tried, key=lambda found: abs(found[1] - budget))  # min keeps the first of a tie
    return Match(spec, params, budget)
