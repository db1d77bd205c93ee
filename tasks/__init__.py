"""Task adapters by name (a plain dict: add a task by adding an entry).

A task is a folder (``tasks/<task>/``: its adapter, its data module and whatever reads its
data), one entry here and one suite file (``bench/suites/<task>.yaml``). Shared by every
task, at this level: the contract (`tasks.base.Task`) and the errors (`tasks.errors`).

Each entry names the module and class; `task_class` imports it when a task is used. The
task modules themselves import no torch, Lightning, librosa, soundfile...: those come in
the methods that need them (each task's data module, ``tasks/<task>/data.py``, is imported
by its `datamodule()`), so a bad task parameter is said before seconds of imports, and a
run of the copy task never waits for the audio and TIMIT stacks.
"""

import importlib

TASKS: dict[str, str] = {
    "copy": "tasks.copy:CopyTask",
    "audio": "tasks.audio:AudioGeneration",
    "timit": "tasks.timit:TimitWords",
    "synthwords": "tasks.timit:SynthWords",  # an offline stand-in corpus in the TIMIT layout: never called TIMIT
}


def task_class(name: str):
    """The `tasks.base.Task` subclass of a task name (a key of TASKS)."""
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["TASKS", "task_class"]
