"""Task adapters by name (a plain dict: add a task by adding an entry)."""

from tasks.base import Task
from tasks.copy import CopyTask

TASKS: dict[str, type[Task]] = {
    "copy": CopyTask,
}

__all__ = ["TASKS", "Task"]
