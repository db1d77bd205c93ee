"""Clock-period schedules: how the g modules of a CW-RNN are clocked.

A schedule is named by a short spec string, the same in suite files, on the command
line and in result tables:

    exponential      1, 2, 4, 8, ...          (base 2: the paper)
    exponential:3    1, 3, 9, 27, ...
    linear           1, 2, 3, ..., g
    fibonacci        1, 2, 3, 5, 8, ...
    dense            1, 1, 1, ...             (the clock switched off, the CW-RNN's connectivity
                                               kept: a block-triangular RNN)
    random:SEED      1 and g - 1 distinct periods drawn log-uniformly up to 2^(g-1), sorted
    1,4,16,64        an explicit list (fixes g)

and options after `@`, each at most once, that make a variant of it one label:

    @wiring=paper|full|reversed   who reads whom (models/clockwork_rules.py `reads`)
    @start=S                      the clock's t at the first step: 0 (the default, every
                                  module fires at the first step) or 1 (module i first
                                  fires at the T_i-th step); the model's offset is -S
    @g=G                          G modules (instead of the profile's match.cw_modules)

e.g. `exponential@wiring=full`, `exponential@start=1`, `random:3@g=6`. The whole string is
the schedule recorded in a run's config (`model.schedule`), so every variant has its own
run id, and a schedule without options is recorded as it always was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.errors import UserInputError

WIRINGS = ("paper", "full", "reversed")
OPTIONS = ("wiring", "start", "g")


@dataclass(frozen=True)
class Schedule:
    """A schedule spec taken apart: the periods' rule and its options."""

    base: str  # "exponential", "exponential:3", "random:7", "1,2,4", ...
    wiring: str = "paper"
    start: int | None = None  # None: not given (the profile's match.offset holds)
    modules: int | None = None  # None: the profile's match.cw_modules

    @property
    def offset(self) -> int | None:
        """The model's offset (models/clockwork_rules.py firing_schedule: fires iff (t - offset) mod T = 0,
        t 0-based), or None where the spec says nothing about the start."""
        return None if self.start is None else -self.start


def _integer(text: str) -> int | None:
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    return int(text) if body.isdigit() else None


def parse_schedule(spec: str) -> Schedule:
    """`spec` taken apart into its periods' rule and its `@` options; a bad option is one error
    naming it and the fix."""
    base, *options = spec.strip().split("@")
    values: dict = {}
    seen: set[str] = set()
    for option in options:
        name, eq, value = option.partition("=")
        name, value = name.strip(), value.strip()
        if name == "offset":
            raise UserInputError(f"option '@{option}' in schedule '{spec}': the start of the clock is spelled "
                                 "@start=S (S = the clock's t at the first step: @start=1 counts t from 1, "
                                 "i.e. offset -1)")
        if name not in OPTIONS or not eq:
            raise UserInputError(f"unknown option '@{option}' in schedule '{spec}': write @wiring=paper|full|reversed, "
                                 "@start=S or @g=G (e.g. cwrnn/exponential@wiring=full)")
        if name in seen:
            raise UserInputError(f"option @{name} given twice in schedule '{spec}': give it once")
        seen.add(name)
        if name == "wiring":
            if value not in WIRINGS:
                raise UserInputError(f"bad wiring '{value}' in schedule '{spec}': choose @wiring={'|'.join(WIRINGS)}")
            values["wiring"] = value
        elif name == "start":
            if _integer(value) is None:
                raise UserInputError(f"bad start '{value}' in schedule '{spec}': write an integer, e.g. @start=1 "
                                     "(t counted from 1)")
            values["start"] = _integer(value)
        else:
            if not value.isdigit() or int(value) < 1:
                raise UserInputError(f"bad number of modules '@g={value}' in schedule '{spec}': g is an integer "
                                     ">= 1, e.g. @g=6")
            values["modules"] = int(value)
    return Schedule(base.strip(), **values)


def exponential(g: int, base: int = 2) -> list[int]:
    return [base**i for i in range(g)]


def linear(g: int) -> list[int]:
    return list(range(1, g + 1))


def fibonacci(g: int) -> list[int]:
    periods = [1, 2]
    while len(periods) < g:
        periods.append(periods[-1] + periods[-2])
    return periods[:g]


def dense(g: int) -> list[int]:
    return [1] * g


def random_periods(g: int, seed: int) -> list[int]:
    """Period 1, then g - 1 distinct integers drawn log-uniformly in [1, 2^(g-1)] (the longest
    period of the exponential schedule with g modules) by numpy's default_rng(seed), rounded to
    the nearest integer; draws that round to 1 or to a period already drawn are drawn again.
    Sorted ascending.

    The first period is 1, as in every other schedule: a module sees the input only at the
    steps it fires, so without a module of period 1 the network would skip inputs altogether,
    and the comparison would no longer be of the slower clocks only. Distinct, because two
    modules with one period are one time scale split in two, and under the paper's wiring they
    do not read each other: a tie would change the wiring as well as the clock.
    There are 2^(g-1) - 1 >= g - 1 integers in [2, 2^(g-1)], so the draw always ends.
    """
    import numpy as np  # numpy, not torch: budget matching runs without torch

    longest = 2 ** (g - 1)
    rng = np.random.default_rng(seed)
    periods = {1}
    while len(periods) < g:
        period = int(math.floor(math.exp(rng.uniform(0.0, math.log(longest))) + 0.5))
        periods.add(min(max(period, 1), longest))
    return sorted(periods)


SCHEDULES = {
    "exponential": exponential,
    "linear": linear,
    "fibonacci": fibonacci,
    "dense": dense,
}


def is_explicit(spec: str) -> bool:
    base = parse_schedule(spec).base
    return base.replace(",", "").replace(" ", "").isdigit()


def validate_periods(periods) -> list[int]:
    periods = list(periods)
    if not periods:
        raise UserInputError("periods are empty: a CW-RNN needs at least one module (g >= 1)")
    for p in periods:
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise UserInputError(
                f"bad clock period {p!r} in {periods}: periods must be positive integers"
            )
    return periods


def periods_for(spec: str, g: int | None) -> list[int]:
    """The periods a schedule spec gives for g modules (g is ignored for explicit lists; a
    spec's own @g replaces it)."""
    full = spec.strip()
    parsed = parse_schedule(full)
    spec = parsed.base
    if is_explicit(spec):
        try:
            periods = [int(p) for p in spec.split(",")]
        except ValueError:
            raise UserInputError(
                f"bad period list '{spec}': write positive integers separated by commas, e.g. 1,2,4,8"
            ) from None
        if parsed.modules is not None and parsed.modules != len(periods):
            raise UserInputError(f"schedule '{full}' lists {len(periods)} periods but says @g={parsed.modules}: "
                                 "an explicit list fixes g, leave @g out")
        return validate_periods(periods)
    if parsed.modules is not None:
        g = parsed.modules
    name, _, arg = spec.partition(":")
    if name == "random":
        if not arg.isdigit():
            raise UserInputError(f"schedule '{full}' needs a seed: write random:SEED with SEED an integer >= 0, "
                                 "e.g. random:0")
        if g is None or isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise UserInputError(f"bad number of modules g={g!r} for schedule '{full}': g must be an integer >= 1")
        return random_periods(g, int(arg))
    if name not in SCHEDULES:
        raise UserInputError(
            f"unknown schedule '{full}': choose one of {', '.join(SCHEDULES)}, random:SEED "
            "or an explicit list like 1,2,4,8, with options @wiring=, @start=, @g= (see `cwbench list`)"
        )
    if g is None or isinstance(g, bool) or not isinstance(g, int) or g < 1:
        raise UserInputError(f"bad number of modules g={g!r} for schedule '{spec}': g must be an integer >= 1")
    if name == "exponential" and arg:
        if not arg.isdigit() or int(arg) < 2:
            raise UserInputError(f"bad exponential base in '{spec}': the base must be an integer >= 2")
        return exponential(g, int(arg))
    if arg:
        raise UserInputError(f"schedule '{name}' takes no argument (got '{spec}')")
    return SCHEDULES[name](g)


def connection_order_for(spec: str, periods: list[int]) -> list[int]:
    """The order that defines who reads whom (module i reads j iff order_j > order_i).

    For every schedule it is the periods themselves, except "dense": there all periods
    are 1, and the modules are connected as the exponential schedule's would be, so the
    control differs from a CW-RNN in its clock only.
    """
    if parse_schedule(spec).base == "dense":
        return list(range(1, len(periods) + 1))
    return list(periods)


def wiring_of(spec: str) -> str:
    """Who reads whom under a schedule spec: its @wiring, else the paper's."""
    return parse_schedule(spec).wiring if spec else "paper"
