"""Task adapters by name (a plain dict: add a task by adding an entry)."""

from tasks.audio import AudioGeneration
from tasks.base import Task
from tasks.copy import CopyTask
from tasks.timit import SynthWords, TimitWords

TASKS: dict[str, type[Task]] = {
    "copy": CopyTask,
    "audio": AudioGeneration,
    "timit": TimitWords,
    "synthwords": SynthWords,  # an offline stand-in corpus in the TIMIT layout: never called TIMIT
}

__all__ = ["TASKS", "Task"]
