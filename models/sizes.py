"""The sizes budget matching tries, per kind of architecture (an entry's `sizes` in
models/architectures.py): each generator yields ModelSpecs in increasing parameter count,
so the matcher (bench/suite/budget.py) can stop at the first one over the budget. No torch.

Library-style RNNs vary their hidden size. A CW-RNN varies its module size k at a fixed
number of modules g (`cw_match="module_size"`; sizes differ by at most one unit, the
first modules taking the remainder), or g at a fixed k (`cw_match="modules"`); explicit
period lists fix g.
"""

from __future__ import annotations

from models.errors import UserInputError
from models.schedules import connection_order_for, is_explicit, parse_schedule, periods_for
from models.spec import ModelSpec

MAX_SIZE = 4096  # search bound for hidden sizes, module sizes and module counts
MAX_MODULES = 64  # search bound for g at a fixed k


def hidden_sizes(arch: str, schedule: str, **_):
    for h in range(1, MAX_SIZE + 1):
        yield ModelSpec(arch, h)


def _order(schedule: str, periods: list[int]) -> tuple[int, ...]:
    order = connection_order_for(schedule, periods)
    return () if order == list(periods) else tuple(order)


def clockwork_sizes(arch: str, schedule: str, *, cw_match: str, cw_modules: int, cw_module_size: int, offset: int):
    if cw_match not in ("module_size", "modules"):
        raise UserInputError(f"bad cw_match '{cw_match}': use 'module_size' (fixed g) or 'modules' (fixed k)")
    parsed = parse_schedule(schedule)
    if parsed.offset is not None:  # the row's own @start
        if offset not in (0, parsed.offset):
            raise UserInputError(f"schedule '{schedule}' says @start={parsed.start} (offset {parsed.offset}) but the "
                                 f"profile's match.offset is {offset}: give the start in one place")
        offset = parsed.offset
    if parsed.modules is not None and cw_match == "modules":
        raise UserInputError(f"schedule '{schedule}' fixes g with @g, but cw_match 'modules' varies g: use "
                             "cw_match 'module_size' or leave @g out")
    if cw_match == "modules" and not is_explicit(schedule):
        for g in range(1, MAX_MODULES + 1):
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
