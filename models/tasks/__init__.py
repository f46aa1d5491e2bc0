"""Seeded task generators: ``make_task(name, **options)`` and ``TASK_SPECS``.

``TASK_SPECS[name]`` is a JSON-ready dict with the task's ``description``, ``loss``,
``options`` (each ``{"name", "type", "default", "min", "max", "help"}``) and named
``presets`` of option values, so a form can be built and checked without a second copy of
the limits.
"""

from models.tasks.base import OptionSpec, Task
from models.tasks.nth_farthest import NthFarthestTask
from models.tasks.tracking import TrackingTask
from models.tasks.tracking_grid import TrackingGridTask

TASK_CLASSES: dict[str, type[Task]] = {
    cls.name: cls for cls in (TrackingGridTask, TrackingTask, NthFarthestTask)
}

TASK_SPECS: dict[str, dict] = {name: cls.spec() for name, cls in TASK_CLASSES.items()}


def make_task(name: str, /, **options) -> Task:
    """Build the task called ``name`` with ``options`` checked against ``TASK_SPECS``.

    Raises:
        ValueError: for an unknown task name, or an option that is unknown, of the wrong
            type or out of range; the message names the option, the rule and the value.
    """
    if name not in TASK_CLASSES:
        expected = ", ".join(sorted(TASK_CLASSES))
        raise ValueError(f"unknown task {name!r}: expected one of {expected}")
    return TASK_CLASSES[name](**options)


__all__ = [
    "TASK_SPECS",
    "NthFarthestTask",
    "OptionSpec",
    "Task",
    "TrackingGridTask",
    "TrackingTask",
    "make_task",
]
