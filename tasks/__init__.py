"""Task adapters by name (a plain dict: add a task by adding an entry)."""

from tasks.audio import AudioGeneration
from tasks.base import Task
from tasks.copy import CopyTask

TASKS: dict[str, type[Task]] = {
    "copy": CopyTask,
    "audio": AudioGeneration,
}

__all__ = ["TASKS", "Task"]
