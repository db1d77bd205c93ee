"""`ModelSpec`: the resolved size of one architecture, as budget matching produces it and
`models.registry.build_rnn` builds it. Plain data, no torch: its `to_dict()` is part of
every run's config (and so of its run id), so its fields and their order stay as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # a key of models.architectures.ARCHITECTURES
    hidden_size: int  # total hidden units n
    schedule: str = ""  # CW-RNN only: the schedule spec the periods came from, with its @options
    periods: tuple[int, ...] = field(default_factory=tuple)
    module_sizes: tuple[int, ...] = field(default_factory=tuple)
    offset: int = 0
    order: tuple[int, ...] = field(default_factory=tuple)  # connection order; empty = the periods

    @property
    def connection_order(self) -> tuple[int, ...]:
        return self.order or self.periods

    @property
    def wiring(self) -> str:
        """CW-RNN only: who reads whom (models/clockwork_rules.py), from the schedule's @wiring
        (the paper's without one). Not a field: the schedule string records it, so the config of
        every run made before wirings existed is what it was."""
        from models.schedules import wiring_of

        return wiring_of(self.schedule)

    @property
    def label(self) -> str:
        """The name in tables: 'lstm', 'cwrnn/exponential', ..."""
        return f"{self.arch}/{self.schedule}" if self.schedule else self.arch

    def to_dict(self) -> dict:
        d = asdict(self)
        d["periods"], d["module_sizes"], d["order"] = list(self.periods), list(self.module_sizes), list(self.order)
        return d
