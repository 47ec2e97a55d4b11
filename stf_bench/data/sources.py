"""Where each benchmark's rows come from: the embedded samples, the HF hub, or local snapshots (`--data-dir`).

All three end the same way: a list of local parquet files per benchmark (plus those of its images config), which the task
configs load with `dataset_path: parquet`. A data dir holds one folder per dataset, exactly as
`hf download --repo-type dataset <repo> --local-dir DIR/<Folder>` writes it (see docs/protocols.md); the files of
a config's split are found from the dataset card's `configs:` block when it has one, else from the standard
`<config>/<split>-*.parquet` / `data/<split>-*.parquet` names. Nothing here retries: a missing dataset is a
StfBenchError naming it and the exact command that fetches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from stf_bench.accuracy import BENCHMARKS
from stf_bench.errors import StfBenchError

DATA_MODES = ("samples", "hub")

@dataclass
class DataFiles:
    """The local parquet files of one benchmark's evaluation split (and of its images config, if any)."""

    split: str
    files: list[str]
    image_files: list[str] = field(default_factory=list)

    def data_files(self) -> dict[str, list[str]]:
        """The `data_files` argument of `datasets.load_dataset("parquet", ...)`."""
        return {self.split: list(self.files)}


def _patterns(config: str | None, split: str) -> list[str]:
    """Where a config's split lives in a hub snapshot when its dataset card does not say."""
    if config:
        return [f"{config}/{split}-*.parquet", f"{config}/{split}/*.parquet", f"{config}/{split}.parquet",
                f"data/{config}/{split}-*.parquet"]
    return [f"data/{split}-*.parquet", f"data/{split}/*.parquet", f"data/{split}.parquet", f"{split}-*.parquet",
            f"default/{split}-*.parquet"]


def _card_patterns(folder: Path, config: str | None, split: str) -> list[str]:
    """The `configs:` data_files patterns of the dataset card (README.md front matter) for config/split."""
    readme = folder / "README.md"
    if not readme.is_file():
        return []
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return []
    end = text.find("\n---", 3)
    if end == -1:
        return []
    import yaml

    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError:
        return []
    wanted = config or "default"
    for entry in meta.get("configs") or []:
        if not isinstance(entry, dict) or entry.get("config_name", "default") != wanted:
            continue
        files = entry.get("data_files") or []
        files = [files] if isinstance(files, str) else files
        out = []
        for item in files:
            if isinstance(item, dict) and item.get("split") == split:
                paths = item.get("path")
                out.extend([paths] if isinstance(paths, str) else list(paths or []))
        return out
    return []


def fetch_command(benchmark: str, dest: str = "DIR") -> str:
    """The exact `hf download` command that fetches what `benchmark` needs into `dest/<Folder>`."""
    src = BENCHMARKS[benchmark].source
    includes = " ".join(f'--include "{c or "data"}/{src.split}*"' for c in src.configs())
    return (f"hf download --repo-type dataset {src.repo} {includes} --include README.md "
            f"--local-dir {dest}/{src.folder}")


def _check_parquet(path: Path, benchmark: str) -> None:
    """Fail clearly on a file that is not parquet (e.g. a git-lfs pointer left by a clone without LFS)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PAR1":
        raise StfBenchError(f"{benchmark}: {path} is not a parquet file (a git-lfs pointer or a partial download?); "
                            f"fetch it again with: {fetch_command(benchmark)}")


def _check_columns(path: Path, benchmark: str, needed: tuple[str, ...], how_to_fetch: str) -> None:
    """Refuse a parquet file that lacks a column the benchmark's tasks read (a renamed or dropped column)."""
    import pyarrow.parquet as pq

    have = pq.read_schema(path).names
    missing = [c for c in needed if c not in have]
    if missing:
        raise StfBenchError(f"{benchmark}: {path} has no column {missing[0]!r} (its columns: {', '.join(have)}); "
                            f"the {benchmark} task reads {', '.join(needed)}: rename the column back, or fetch the "
                            f"dataset again with: {how_to_fetch}")


def local_files(benchmark: str, root: Path) -> DataFiles:
    """Resolve a benchmark's split files inside a data dir laid out as docs/protocols.md says."""
    src = BENCHMARKS[benchmark].source
    folder = Path(root) / src.folder
    if not folder.is_dir():
        raise StfBenchError(f"{benchmark}: dataset folder {folder} does not exist; fetch {src.repo} with:\n  "
                            f"{fetch_command(benchmark, str(root))}")
    return _folder_files(benchmark, folder, fetch_command(benchmark, str(root)))


def _folder_files(benchmark: str, folder: Path, how_to_fetch: str) -> DataFiles:
    """The split files (and image-config files) inside one dataset folder (a data-dir entry or a hub snapshot)."""
    src = BENCHMARKS[benchmark].source
    found: list[list[str]] = []
    bench = BENCHMARKS[benchmark]
    # the columns the task files of either protocol read: a dataset folder without one of them is refused before
    # any work, not with a KeyError after the whole run (a benchmark that declares none is not checked)
    for config, columns in zip(src.configs(), (bench.columns, bench.image_columns)):
        patterns = _card_patterns(folder, config, src.split) or _patterns(config, src.split)
        files = sorted({str(p) for pat in patterns for p in folder.glob(pat) if p.is_file()})
        if not files:
            what = f"config {config!r}, " if config else ""
            raise StfBenchError(f"{benchmark}: no parquet files for {what}split {src.split!r} in {folder} "
                                f"(looked for {', '.join(patterns)}); fetch them with:\n  {how_to_fetch}")
        for f in files:
            _check_parquet(Path(f), benchmark)
            _check_columns(Path(f), benchmark, columns, how_to_fetch)
        found.append(files)
    return DataFiles(src.split, found[0], found[1] if len(found) > 1 else [])


def hub_files(benchmark: str) -> DataFiles:
    """Download (or find in the HF cache) the files a benchmark needs; offline or unreachable -> StfBenchError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    src = BENCHMARKS[benchmark].source
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    try:  # the dataset card first: its configs say which files hold the split
        card = Path(snapshot_download(src.repo, repo_type="dataset", allow_patterns=["README.md"], etag_timeout=10))
        allow = [p for c in src.configs() for p in (_card_patterns(card, c, src.split) or _patterns(c, src.split))]
        folder = snapshot_download(src.repo, repo_type="dataset", allow_patterns=allow + ["README.md"],
                                   etag_timeout=10)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache" if offline else \
            f"the hub could not be reached ({str(exc).splitlines()[0][:160]})"
        raise StfBenchError(f"{benchmark}: dataset {src.repo} is unavailable: {why}. Fetch it where there is "
                            f"network with:\n  {fetch_command(benchmark)}\nthen run with --data-dir DIR") from exc
    return _folder_files(benchmark, Path(folder), fetch_command(benchmark))


def locate(benchmarks: list[str], data: str = "samples", data_dir: Path | str | None = None) -> dict[str, DataFiles]:
    """Local files for each benchmark from the chosen source (data_dir, when given, wins over `data`)."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise StfBenchError(f"--data-dir {root} is not a directory; create it and fetch the datasets into it "
                                f"(see docs/protocols.md), e.g.:\n  {fetch_command(benchmarks[0], str(root))}")
        return _every(benchmarks, lambda b: local_files(b, root))
    if data == "samples":
        from stf_bench.data.samples import ensure_samples

        root = ensure_samples()
        return _every(benchmarks, lambda b: local_files(b, root))
    if data == "hub":
        return _every(benchmarks, hub_files)
    raise StfBenchError(f"unknown data source {data!r}; use one of {', '.join(DATA_MODES)} or --data-dir DIR")


def _every(benchmarks: list[str], find) -> dict[str, DataFiles]:
    """`find(b)` for every benchmark; the errors of all that are missing in one StfBenchError, not the first's."""
    found, errors = {}, []
    for bench in benchmarks:
        try:
            found[bench] = find(bench)
        except StfBenchError as exc:
            errors.append(str(exc))
    if len(errors) == 1:
        raise StfBenchError(errors[0])
    if errors:
        raise StfBenchError(f"{len(errors)} of {len(benchmarks)} datasets are missing:\n" + "\n".join(errors))
    return found
