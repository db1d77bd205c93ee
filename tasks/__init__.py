"""Task adapters by name (a plain dict: add a task by adding an entry).

Each entry names the module and class; `task_class` imports it when a task is used. The
task modules themselves import no torch, Lightning, librosa, soundfile...: those come in
the methods that need them (the data modules live in `tasks.data`), so a bad task
parameter is said before seconds of imports, and a run of the copy task never waits for
the audio and TIMIT stacks.
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
