"""Where the data shipped with stf-bench lies: the lmms-eval task files (`tasks/`) and the published numbers
(`baselines/`). In a source checkout they are the repo's top-level folders; a built wheel carries them inside the
package as `stf_bench/tasks` and `stf_bench/baselines` (pyproject's package-dir mapping)."""

from __future__ import annotations

from pathlib import Path

SHIPPED = ("tasks", "baselines")


def shipped_dir(name: str) -> Path:
    """The folder `name` ('tasks' or 'baselines'): inside the installed package if there, else the checkout's
    (the package's path when neither exists: the callers' own checks say what is missing)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped folder {name!r}; one of {', '.join(SHIPPED)}")
    package = Path(__file__).resolve().parent
    checkout = package.parent / name
    return checkout if not (package / name).is_dir() and checkout.is_dir() else package / name
