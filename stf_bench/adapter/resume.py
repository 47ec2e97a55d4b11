"""Append-only answer cache that makes runs resumable: every finished request survives a kill, even SIGKILL.

One JSONL file per process (`answers.rank{R}.jsonl`) in a folder; each line is `{"key", "answer", ...}` where the
key hashes everything that determines the answer (model identity and arguments, request type, task, doc_id,
context, generation arguments, prompt template). Lines are flushed and fsynced per batch; a torn last line (the
process died mid-write) is ignored on reload. All files of the folder are read, so a resumed run may use any
number of processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from loguru import logger


def _canonical(value: Any) -> Any:
    """A JSON-able, order-independent stand-in for a request argument (callables by qualified name)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


def request_key(model_id: str, request_type: str, task: str, split: str | None, doc_id: int, *parts: Any) -> str:
    """SHA-256 over everything that determines one answer; `parts` are context, gen kwargs, template, ..."""
    payload = json.dumps(
        [model_id, request_type, task, split, int(doc_id), *(_canonical(p) for p in parts)],
        ensure_ascii=False, sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnswerCache:
    """Answers of finished requests, loaded from every `*.jsonl` under `folder`, appended to this rank's file."""

    def __init__(self, folder: str | Path, rank: int = 0):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from stf_bench.errors import StfBenchError

            raise StfBenchError(f"cannot create the resume folder {self.folder} ({exc.strerror or exc}); pass an "
                                f"--output-dir you can write to") from None
        self.path = self.folder / f"answers.rank{rank}.jsonl"
        self._answers: dict[str, Any] = {}
        self.torn_lines = 0
        for file in sorted(self.folder.glob("*.jsonl")):
            self._load(file)
        self._repair_tail()
        self.hits = 0

    def _load(self, file: Path) -> None:
        """Read one file; a line that does not parse (a torn write) is counted and skipped."""
        torn = 0
        with file.open("rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                    self._answers[row["key"]] = row["answer"]
                except (ValueError, KeyError, TypeError):
                    torn += 1
        if torn:
            self.torn_lines += torn
            logger.warning(f"answer cache {file}: ignored {torn} torn line(s) from an interrupted run")

    def _repair_tail(self) -> None:
        """End our own file with a newline so that a torn last line is never glued to the next record."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
            if last != b"\n":
                with self.path.open("ab") as fh:
                    fh.write(b"\n")

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def get(self, key: str) -> Any:
        """The cached answer for `key` (counted as a hit), or None."""
        if key in self._answers:
            self.hits += 1
            return self._answers[key]
        return None

    def put_many(self, rows: list[tuple[str, Any, dict]]) -> None:
        """Append `(key, answer, info)` rows and make them durable (flush + fsync) before returning."""
        if not rows:
            return
        lines = []
        for key, answer, info in rows:
            self._answers[key] = answer
            lines.append(json.dumps({"key": key, "answer": answer, **info}, ensure_ascii=False) + "\n")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
