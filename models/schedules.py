"""Clock-period schedules: how the g modules of a CW-RNN are clocked.

A schedule is named by a short spec string, the same in suite files, on the command
line and in result tables:

    exponential      1, 2, 4, 8, ...          (base 2: the paper)
    exponential:3    1, 3, 9, 27, ...
    linear           1, 2, 3, ..., g
    fibonacci        1, 2, 3, 5, 8, ...
    dense            1, 1, 1, ...             (the clock switched off, the CW-RNN's connectivity
                                               kept: a block-triangular RNN)
    1,4,16,64        an explicit list (fixes g)
"""

from __future__ import annotations

from models.errors import UserInputError


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


SCHEDULES = {
    "exponential": exponential,
    "linear": linear,
    "fibonacci": fibonacci,
    "dense": dense,
}


def is_explicit(spec: str) -> bool:
    return spec.replace(",", "").replace(" ", "").isdigit()


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
    """The periods a schedule spec gives for g modules (g is ignored for explicit lists)."""
    spec = spec.strip()
    if is_explicit(spec):
        try:
            periods = [int(p) for p in spec.split(",")]
        except ValueError:
            raise UserInputError(
                f"bad period list '{spec}': write positive integers separated by commas, e.g. 1,2,4,8"
            ) from None
        return validate_periods(periods)
    name, _, arg = spec.partition(":")
    if name not in SCHEDULES:
        raise UserInputError(
            f"unknown schedule '{spec}': choose one of {', '.join(SCHEDULES)} "
            "or an explicit list like 1,2,4,8 (see `cwbench list`)"
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
    if spec.strip() == "dense":
        return list(range(1, len(periods) + 1))
    return list(periods)
