"""The one exception type the CLI turns into a clear message and a non-zero exit, and the checks that raise it
before any work starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class StfBenchError(ValueError):
    """A user-facing error: the message names the bad thing and how to fix it."""


def writable_dir(path: str | os.PathLike, flag: str = "--output-dir") -> Path:
    """Create `path` if needed and prove it writable (a probe file); else a StfBenchError naming `flag`."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".stf-bench-probe-"):
            pass
    except OSError as exc:
        raise StfBenchError(f"{flag} {folder} is not writable ({exc.strerror or exc}); pass a folder you can write "
                            f"to") from None
    return folder
