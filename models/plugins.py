"""Architectures from outside the repository: plugins.

A plugin is a Python module that names its architectures in a module-level dict
`ARCHITECTURES = {"name": Class}`, where `Class(input_size, hidden_size, **options)` is an
`nn.Module` whose `forward(x, h0=None)` maps x (batch, time, input) to (outputs (batch, time,
hidden), h_last (1, batch, hidden)), like `torch.nn.RNN(batch_first=True)`; options keep their
defaults (register a `functools.partial` under another name for a variant). It comes either
as an installed package declaring an entry point in the group `clockwork_bench.architectures`
(value "package.module:attr", naming the module or its ARCHITECTURES dict), or as a file given
with `cwbench ... --include path/to/cell.py`.

Loading one checks each of its architectures with the conformance checks of every built-in
one (models/conformance.py: shapes, causality, a gradient to every parameter, and its count on
the meta device), refuses it with one line naming what failed, and adds it to the table of
models/architectures.py: builder `models.plugins:build`, no closed-form count (budgets are
matched by counting builds on torch's meta device), one implementation ("torch").

A run of a plugin architecture has the plugin's name in its config (`plugin`), and its record
says where the code came from and its sha256 (`external`: rows made with code this repository
has not verified). Sweeps run in spawned worker processes: a Job carries `sources()`, and the
worker loads them again (`ensure`) before it builds anything.

Importing this module does not import torch: `cwbench list` with no plugin stays light.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import types
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from models import architectures, names
from models.errors import UserInputError

GROUP = "clockwork_bench.architectures"
IMPLEMENTATION = "torch"  # a plugin's one implementation: its own module
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # an architecture name: no "/" (that is a schedule)
CHECK_HIDDEN = 5  # the sizes the conformance checks build a plugin at
CHECK_INPUTS = 4


@dataclass(frozen=True)
class Source:
    """Where a plugin's code is: what a worker process needs to load it again (picklable)."""

    kind: str  # "file" or "entry point"
    where: str  # the file's path as given, or the entry point's value "package.module:attr"
    name: str  # the plugin's name: the file's stem, or the entry point's name
    package: str = ""  # entry point: its distribution, "NAME VERSION"
    path: str = ""  # file: its absolute path (a worker may start elsewhere), where `where` is as given

    @property
    def location(self) -> str:
        return self.path or self.where

    @property
    def described(self) -> str:
        return f"file {self.where}" if self.kind == "file" else f"entry point {self.package}".rstrip()


@dataclass
class Plugin:
    source: Source
    code: Path  # the file whose sha256 identifies the plugin's code (the file, or the entry point's module)
    sha256: str
    classes: dict  # architecture name -> constructor (input_size, hidden_size) -> nn.Module


LOADED: dict[str, Plugin] = {}  # plugin name -> the plugin, in the order loaded
OWNER: dict[str, str] = {}  # architecture name -> the name of the plugin that defines it


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def entry_point_sources() -> list[Source]:
    """The plugins installed packages declare (importlib.metadata: any *.dist-info on sys.path)."""
    found = []
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        package = f"{dist.name} {dist.version}" if dist is not None else ""
        found.append(Source("entry point", ep.value, ep.name, package))
    return found


def file_source(path) -> Source:
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise UserInputError(f"--include {path}: no such Python file (give the path of a .py file whose "
                             "ARCHITECTURES dict names its architectures)")
    return Source("file", str(path), path.stem, path=str(path.resolve()))


def load_all(includes=(), check: bool = True) -> list[str]:
    """Load every installed plugin and each file of `includes`; returns the names of the
    architectures they add. Each is checked first (unless `check` is False: a worker loading
    what its driver checked), and refused with a UserInputError of one line."""
    added = []
    for source in [*entry_point_sources(), *(file_source(path) for path in includes or ())]:
        added += load(source, check)
    return added


def ensure(sources) -> None:
    """In a worker process: load what the driver had loaded, if not loaded here yet."""
    for source in sources:
        if source.name not in LOADED or LOADED[source.name].source != source:
            load(source, check=False)


def sources() -> tuple[Source, ...]:
    """The loaded plugins, as a Job carries them to its worker process."""
    return tuple(plugin.source for plugin in LOADED.values())


def load(source: Source, check: bool = True) -> list[str]:
    """Import one plugin, check each of its architectures and add them to the table."""
    where = f"plugin {source.name} ({source.described})"
    loaded = LOADED.get(source.name)
    if loaded is not None and loaded.source.location != source.location:
        raise UserInputError(f"two plugins are named {source.name}: {loaded.source.described} and "
                             f"{source.described}; rename one (its file, or its entry point)")
    classes, code = _import(source, where)
    for arch, constructor in classes.items():
        if not isinstance(arch, str) or not NAME.fullmatch(arch):
            raise UserInputError(f"{where}: architecture name {arch!r} is not a name (letters, digits, _ . -; "
                                 "no '/'): rename it in its ARCHITECTURES dict")
        if OWNER.get(arch, source.name) != source.name or (arch in architectures.ARCHITECTURES
                                                           and arch not in OWNER):
            owner = f"plugin {OWNER[arch]}" if arch in OWNER else "a built-in architecture"
            raise UserInputError(f"{where}: architecture '{arch}' is already {owner}: rename it in its "
                                 "ARCHITECTURES dict")
        if not callable(constructor):
            raise UserInputError(f"{where}: ARCHITECTURES['{arch}'] is {type(constructor).__name__}, not a class "
                                 "Class(input_size, hidden_size) of an nn.Module")
    if check:
        for arch, constructor in classes.items():
            conform(arch, constructor, where)
    if loaded is not None:  # the same plugin again (a test, a verify of its own command): its code now
        for arch in loaded.classes:
            _unregister(arch)
    LOADED[source.name] = Plugin(source, code, sha256(code), dict(classes))
    for arch, constructor in classes.items():
        OWNER[arch] = source.name
        doc = (getattr(constructor, "__doc__", None) or "").strip().splitlines()
        description = f"{doc[0] if doc else getattr(constructor, '__name__', arch)} (external: {source.described})"
        architectures.ARCHITECTURES[arch] = architectures.Architecture(
            description, (IMPLEMENTATION,), "models.plugins:build", count="")
        names.ARCHITECTURES[arch] = description
        names.IMPLEMENTATIONS[arch] = (IMPLEMENTATION,)
    return list(classes)


def _unregister(arch: str) -> None:
    for table in (architectures.ARCHITECTURES, names.ARCHITECTURES, names.IMPLEMENTATIONS, OWNER):
        table.pop(arch, None)


def _import(source: Source, where: str) -> tuple[dict, Path]:
    """The plugin's ARCHITECTURES dict and the file that holds its code."""
    try:
        if source.kind == "file":
            path = Path(source.location)
            module_name = f"cwbench_plugin_{source.name}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # dataclasses, pickling and typing look classes up here
            spec.loader.exec_module(module)
            found, code = module, path
        else:
            module_name, _, attr = source.where.partition(":")
            found = importlib.import_module(module_name.strip())
            code = Path(found.__file__)
            for part in filter(None, attr.strip().split(".")):
                found = getattr(found, part)
            if isinstance(found, types.ModuleType):
                code = Path(found.__file__)
    except Exception as err:  # the plugin's own code failed: say so in one line
        raise UserInputError(f"{where}: importing it raised {type(err).__name__}: {first_line(err)} (fix the plugin, "
                             "or leave it out)") from None
    classes = getattr(found, "ARCHITECTURES", None) if isinstance(found, types.ModuleType) else found
    if not isinstance(classes, dict) or not classes:
        raise UserInputError(f"{where}: no ARCHITECTURES dict naming its architectures (add "
                             "ARCHITECTURES = {\"name\": Class} to the module)")
    return classes, code


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else "(no message)"


def construct(constructor, input_size: int, hidden_size: int):
    """A plugin's module, with the `hidden_size` attribute the readout reads."""
    from torch import nn

    module = constructor(input_size, hidden_size)
    if not isinstance(module, nn.Module):
        raise TypeError(f"it built a {type(module).__name__}, not an nn.Module")
    if getattr(module, "hidden_size", hidden_size) != hidden_size:
        raise TypeError(f"its hidden_size attribute is {module.hidden_size}, asked for {hidden_size}")
    module.hidden_size = hidden_size
    return module


def build(spec, input_size: int, backend: str = "auto"):
    """The table's builder for every plugin architecture (its one implementation is itself)."""
    plugin = LOADED[OWNER[spec.arch]]
    return construct(plugin.classes[spec.arch], input_size, spec.hidden_size)


def conform(arch: str, constructor, where: str) -> None:
    """The conformance checks of every built-in architecture (models/conformance.py), in float64,
    and its parameter count on the meta device equal to the built module's."""
    import torch

    from models.conformance import ConformanceError, check_module
    from models.counting import count_parameters

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what the built-in ones are tested in
    try:
        check_module(lambda inputs: construct(constructor, inputs, CHECK_HIDDEN), CHECK_HIDDEN, CHECK_INPUTS)
        with torch.device("meta"):
            on_meta = count_parameters(construct(constructor, CHECK_INPUTS, CHECK_HIDDEN))
        built = count_parameters(construct(constructor, CHECK_INPUTS, CHECK_HIDDEN))
    except ConformanceError as err:
        raise UserInputError(f"{where}: architecture '{arch}' refused: {err}") from None
    except Exception as err:
        raise UserInputError(f"{where}: architecture '{arch}' refused: building or running it at input size "
                             f"{CHECK_INPUTS}, hidden size {CHECK_HIDDEN} raised {type(err).__name__}: "
                             f"{first_line(err)} (it must work like torch.nn.RNN(batch_first=True), on torch's "
                             "meta device too)") from None
    finally:
        torch.set_default_dtype(dtype)
    if on_meta != built:
        raise UserInputError(f"{where}: architecture '{arch}' refused: built on torch's meta device it has "
                             f"{on_meta} trainable parameters, on the CPU {built} (budgets are matched on the meta "
                             "device)")


def config_fields(arch: str) -> dict:
    """What a run's config says of a plugin architecture (nothing for a built-in one, whose
    configs, and so run ids, stay as they were): the plugin's name."""
    return {"plugin": OWNER[arch]} if arch in OWNER else {}


def provenance(arch: str) -> dict:
    """What a record of a plugin architecture says of its code: `external`, with the plugin's
    name, where it came from and the sha256 of its file (or its entry point's module)."""
    if arch not in OWNER:
        return {}
    plugin = LOADED[OWNER[arch]]
    return {"external": {"plugin": plugin.source.name, "source": plugin.source.described, "sha256": plugin.sha256}}


def current_sha256(name: str) -> str | None:
    """The sha256 of a loaded plugin's code as it is now on disk (None: not loaded, or gone)."""
    plugin = LOADED.get(name)
    try:
        return sha256(plugin.code) if plugin is not None else None
    except OSError:
        return None
