"""Writing files whole or not at all: one writer for a run's results and samples, a trained checkpoint's
provenance, the report's tables and the GPU benchmark's step records.

Each file goes to a temp file beside it, is flushed and fsynced, and only once every file of the call is written
are they renamed into place, in the order given, and their folders fsynced (so the renames survive a crash). A
process killed mid-write leaves the previous versions, or nothing, never half a file; a failed write removes every
temp file. A full disk, a quota or an unwritable folder is one line (`StfBenchError`) naming the folder, the file,
what was not written (the `subject`) and the flag that chose the folder.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from stf_bench.errors import StfBenchError


def write_error(exc: OSError, path: Path, folder: Path, subject: str = "files", flag: str = "--output-dir"
                ) -> StfBenchError:
    """One line for a failed write: 'no space left on FOLDER' for a full disk or quota, else the OS's reason;
    both say that no `subject` were written and which `flag` chose `folder`."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StfBenchError(f"no space left on {folder} (writing {path.name}); no {subject} were written: free "
                             f"some space or pass another {flag}, then run the same command again")
    return StfBenchError(f"could not write {path} ({exc.strerror or exc}); no {subject} were written: check that "
                         f"{flag} {folder} is writable")


def write_files_atomically(files: list[tuple[Path, Iterable[str]]], folder: Path, *, subject: str = "files",
                           flag: str = "--output-dir") -> None:
    """Write each (path, text chunks), UTF-8, so that a path exists only complete, and the last one (a run's
    results JSON) only once every file is (see the module's docstring). `folder` and `flag` name where the files go
    in the error (`subject`: what the files are, plural, as in "no results were written"). An OSError becomes a
    StfBenchError; any other failure (a text UTF-8 cannot encode, an interrupt) is raised as it is. Either way every
    temp file is removed and nothing that looks like a result is left behind."""
    temps: list[tuple[Path, Path]] = []
    current = Path(files[0][0]) if files else Path(folder)
    try:
        for path, chunks in files:
            current = path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temps.append((tmp, path))
            with open(tmp, "w", encoding="utf-8") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in temps:
            current = path
            os.replace(tmp, path)
        for parent in {path.parent for _, path in temps}:  # the renames themselves survive a crash
            dir_fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(exc, current, Path(folder), subject, flag) from None
        raise


def write_text_atomically(path: Path, text: str, *, subject: str = "files", flag: str = "--output-dir") -> Path:
    """Write one `text` to `path` whole or not at all (`write_files_atomically`, `folder` = its parent). Returns
    `path`."""
    path = Path(path)
    write_files_atomically([(path, [text])], path.parent, subject=subject, flag=flag)
    return path
