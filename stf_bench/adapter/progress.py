"""One progress bar per run: the adapter's own (`RunBar`), with every other tqdm bar silenced while a run goes on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm


class RunBar(tqdm):
    """The run's one progress bar: `progress_bars` silences every other tqdm bar while a run goes on."""

    run_bar = True


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """One progress bar per run: while the block runs, every tqdm bar is disabled (lmms-eval's per-task build and
    postprocessing bars, datasets') except the adapter's own (a class with `run_bar = True`), and with `enabled`
    False (`--no-progress`) that one too. They all derive from tqdm.std.tqdm, so its constructor is the one place."""
    import tqdm.std

    original = tqdm.std.tqdm.__init__

    def quiet_init(self, *args: Any, **kwargs: Any) -> None:
        if not (enabled and getattr(type(self), "run_bar", False)):
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = quiet_init
    try:
        yield
    finally:
        tqdm.std.tqdm.__init__ = original
