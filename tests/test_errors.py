"""Ordinary mistakes get exit 2, one clear line on stderr, and nothing result-like written (issue items 6-10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stf_bench import devices
from stf_bench.cli import main
from stf_bench.errors import StfBenchError


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("stf-bench ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- item 6: devices and memory

@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:1"])
def test_every_cuda_index_spelling_is_accepted_syntax(name):
    assert devices.check_device_name(name) == name


@pytest.mark.parametrize("command", ["run", "latency"])
@pytest.mark.parametrize("device, message", [("tpu", "cpu or cuda[:N]"), ("cuda", "sees no CUDA GPU"),
                                             ("cuda:0", "sees no CUDA GPU")])
def test_bad_or_absent_device_is_refused_before_work(command, device, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out_dir = tmp_path / "results"
    extra = ["--output-dir", str(out_dir)] if command == "run" else ["--iters", "1", "--warmup", "0"]
    code, out, err = _cli(capsys, command, "--model", "stf-tiny", "--device", device, "--no-store", *extra)
    assert code == 2 and out == ""
    assert message in _one_error_line(err)
    assert not out_dir.exists()


def test_cuda_index_beyond_the_visible_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(StfBenchError, match="sees 2 GPU"):
        devices.resolve_device("cuda:2")


def test_latency_checks_memory_before_loading(capsys, monkeypatch):
    from stf_bench.profile import latency

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded although it cannot fit")

    monkeypatch.setattr(devices, "available_memory", lambda device: 1000)
    monkeypatch.setattr(latency, "load_model", never)
    code, out, err = _cli(capsys, "latency", "--model", "stf-tiny", "--device", "cpu", "--iters", "1",
                          "--warmup", "0", "--no-store")
    assert code == 2 and out == "" and "for its weights" in _one_error_line(err)


# ---------------------------------------------------------------- item 7: truncated weights, read-only folders

@pytest.fixture(scope="module")
def truncated_checkpoint(tmp_path_factory):
    """stf-tiny saved with save_pretrained, its model.safetensors cut to half (an interrupted download)."""
    from stf_bench import load_model

    folder = tmp_path_factory.mktemp("truncated")
    model, processor = load_model("stf-tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


@pytest.mark.parametrize("command", ["run", "flops", "latency"])
def test_truncated_safetensors_is_one_clear_line(command, truncated_checkpoint, capsys, tmp_path):
    extra = {"run": ["--output-dir", str(tmp_path / "results"), "--tasks", "pope", "--device", "cpu"],
             "flops": [], "latency": ["--iters", "1", "--warmup", "0", "--device", "cpu"]}[command]
    code, out, err = _cli(capsys, command, "--model", str(truncated_checkpoint), "--no-store", *extra)
    assert code == 2 and out == ""
    assert "not a complete safetensors file" in _one_error_line(err)
    assert not list((tmp_path / "results").glob("*/*_results.json"))


@pytest.fixture
def read_only_dir(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        yield folder
    else:  # running as a user who can write anywhere (root): a read-only folder cannot be made
        probe.unlink()
        yield None
    folder.chmod(0o700)


@pytest.mark.parametrize("command", ["run", "report"])
def test_read_only_output_dir_is_one_clear_line(command, read_only_dir, capsys, tmp_path, monkeypatch):
    from stf_bench import errors

    target = read_only_dir
    if target is None:  # root: make the probe fail the way a read-only folder does
        target = tmp_path / "ro"

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(errors.tempfile, "NamedTemporaryFile", refuse)
    extra = ["--tasks", "pope", "--limit", "1", "--device", "cpu", "--no-store"] if command == "run" else \
        ["--db", str(tmp_path / "db.sqlite"), "--no-plots"]
    code, out, err = _cli(capsys, command, "--output-dir", str(target), *extra)
    assert code == 2 and out == ""
    assert "--output-dir" in _one_error_line(err) and "not writable" in err


# ---------------------------------------------------------------- item 8: paths are paths

@pytest.mark.parametrize("name", ["./ckpts/mymodel", "../ckpts/mymodel", "/nowhere/mymodel", "~/no-such-ckpt"])
def test_a_path_that_does_not_exist_is_called_a_path(name):
    from stf_bench import load_model

    with pytest.raises(StfBenchError, match="checkpoint directory .* does not exist"):
        load_model(name)


def test_hub_ids_and_presets_are_not_paths(monkeypatch):
    from stf_bench import load_model
    from stf_bench.models import loading

    asked = []
    monkeypatch.setattr(loading, "fetch", lambda spec: asked.append(spec) or (_ for _ in ()).throw(
        StfBenchError("offline")))
    with pytest.raises(StfBenchError, match="offline"):
        load_model("someone/some-model")
    assert asked == ["someone/some-model"]
    with pytest.raises(StfBenchError, match="unknown model preset 'stf-99b'"):
        load_model("stf-99b")


# ---------------------------------------------------------------- item 9: the store is checked before work

@pytest.mark.parametrize("command", ["run", "flops", "latency"])
def test_bad_db_is_refused_before_any_work(command, capsys, tmp_path, monkeypatch):
    bad = tmp_path / "not-a-store.sqlite"
    bad.write_text("this is not SQLite")
    loaded = []
    import stf_bench.models.loading as loading

    real = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loaded.append(a) or real(*a, **k))
    extra = {"run": ["--output-dir", str(tmp_path / "results"), "--tasks", "pope", "--device", "cpu"],
             "flops": [], "latency": ["--iters", "1", "--warmup", "0", "--device", "cpu"]}[command]
    code, out, err = _cli(capsys, command, "--model", "stf-tiny", "--db", str(bad), *extra)
    assert code == 2 and out == "" and "not an SQLite file" in _one_error_line(err)
    assert not (tmp_path / "results").exists() and not loaded


def test_a_store_failing_after_the_work_prints_the_result_first(capsys, tmp_path, monkeypatch):
    from stf_bench.store import db

    def broken(self, payload, **kwargs):
        raise StfBenchError("disk full")

    monkeypatch.setattr(db.Store, "record_flops", broken)
    code, out, err = _cli(capsys, "flops", "--model", "stf-tiny", "--db", str(tmp_path / "ok.sqlite"),
                          "--format", "json")
    assert code == 2 and "printed above was not recorded" in err
    assert "tflops" in out.lower()  # the result was printed, as the message says


# ---------------------------------------------------------------- item 10: arguments before slow work

def test_impossible_model_args_are_named_before_a_download(monkeypatch):
    from stf_bench import load_model
    from stf_bench.models import loading

    monkeypatch.setattr(loading, "fetch", lambda spec: pytest.fail(f"fetched {spec} before checking k"))
    with pytest.raises(StfBenchError, match="k=5"):
        load_model("stf-7b", k=5)


def test_every_missing_dataset_is_listed(monkeypatch):
    from stf_bench.data import sources

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StfBenchError) as info:
        sources.locate(["gqa", "pope", "chartqa"], data="hub")
    message = str(info.value)
    assert "3 of 3 datasets are missing" in message
    for repo in ("lmms-lab-encoder/GQA", "lmms-lab-encoder/POPE", "lmms-lab-encoder/ChartQA"):
        assert repo in message


HEAVY = ("torch", "transformers", "lmms_eval", "pyarrow")


@pytest.mark.parametrize("command", [["run", "--tasks", "pope"], ["flops"], ["latency"]])
def test_an_unknown_model_fails_before_any_heavy_import(command, tmp_path):
    """The refusal comes before torch, transformers, lmms-eval or the data load (6-9 s on this CPU before):
    a fresh interpreter reports which of them the refusal imported."""
    import os
    import subprocess
    import sys

    code = ("import sys; from stf_bench.cli import main; rc = main(sys.argv[1:]); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none', rc)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "STF_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code, command[0], "--model", "no-such-model", *command[1:],
                           "--output-dir" if command[0] == "run" else "--no-store", *(
                               [str(tmp_path / "r"), "--no-store"] if command[0] == "run" else [])],
                          capture_output=True, text=True, env=env, timeout=300)
    assert "unknown model preset 'no-such-model'" in proc.stderr
    assert proc.stdout.split() == ["none", "2"], proc.stdout  # imported: none of HEAVY; exit 2
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()  # no sample data, no output


# ---------------------------------------------------------------- issue 24 item 6: faults and bad input

def test_report_on_a_corrupt_store_creates_nothing(capsys, tmp_path):
    """Today the output folder was created before the store was found corrupt."""
    bad = tmp_path / "corrupt.sqlite"
    bad.write_text("garbage " * 100)
    code, out, err = _cli(capsys, "report", "--db", str(bad), "--output-dir", str(tmp_path / "reports"))
    assert code == 2 and out == "" and "not an SQLite file" in _one_error_line(err)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("command", ["run", "flops", "report"])
def test_a_db_path_too_long_for_the_file_system_is_one_line(command, capsys, tmp_path):
    """A raw `OSError: [Errno 36] File name too long` traceback today."""
    db = tmp_path / ("a" * 300) / "store.sqlite"
    extra = {"run": ["--tasks", "pope", "--output-dir", str(tmp_path / "out")], "flops": [],
             "report": ["--output-dir", str(tmp_path / "reports")]}[command]
    code, out, err = _cli(capsys, command, "--db", str(db), *extra)
    line = _one_error_line(err)
    assert code == 2 and out == "" and "File name too long" in line and "shorter --db" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "reports").exists()


def test_a_full_disk_anywhere_is_one_line_not_a_traceback(capsys, monkeypatch, tmp_path):
    """With 0 bytes free a run died with a raw OSError traceback (ENOSPC outside the results writer)."""
    import errno

    from stf_bench.models import cli as models_cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "file"))

    monkeypatch.setattr(models_cli, "run", full)
    code, out, err = _cli(capsys, "models")
    assert code == 2 and out == "" and f"no space left on {tmp_path / 'cache'}" in _one_error_line(err)


BEFORE_WORK = {  # argv -> what the one line names; each was found after 11-16 s of heavy imports before
    "bad model-args key": (["run", "--model-args", "kk=2"], "unknown model argument 'kk'"),
    "impossible k": (["run", "--model-args", "k=5"], "k=5 does not divide"),
    "impossible e": (["flops", "--model", "stf-7b", "--model-args", "e=3"], "e=3 does not divide"),
    "bad method argument": (["run", "--method", "fastv", "--method-args", "zz=1"], "has no argument 'zz'"),
    "fastv k beyond the LLM": (["run", "--model", "llava-tiny", "--method", "fastv", "--method-args", "k=2"],
                               "valid: k in 1..1"),
    "another projector's argument": (["latency", "--model", "llava-tiny", "--model-args", "k=3"],
                                     "does not apply to llava-tiny"),
}


@pytest.mark.parametrize("case", list(BEFORE_WORK))
def test_model_and_method_arguments_are_checked_before_any_heavy_import(case, tmp_path):
    """The checks the README calls "before any work" run on the declarations alone: a fresh interpreter reports
    that the refusal imported none of torch, transformers, lmms-eval or pyarrow, and wrote nothing."""
    import os
    import subprocess
    import sys

    argv, message = BEFORE_WORK[case]
    extra = ["--output-dir", str(tmp_path / "r")] if argv[0] == "run" else []
    code = ("import sys; from stf_bench.cli import main; rc = main(sys.argv[1:]); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none', rc)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "STF_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code, *argv, *extra, "--no-store"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout.split() == ["none", "2"], proc.stdout
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()


def test_the_run_options_the_cli_lets_through_are_the_adapters():
    """`run --model-args` may also carry the lmms-eval adapter's own options; the early check knows them by name."""
    import inspect

    from stf_bench.adapter.lmms_model import StfBenchLmms
    from stf_bench.cli import COMMAND_MODEL_OPTIONS

    own = set(inspect.signature(StfBenchLmms.__init__).parameters) - {"self", "overrides"}
    flags = {"preset", "pretrained", "device", "dtype", "batch_size"}  # set by `run`'s own flags
    assert set(COMMAND_MODEL_OPTIONS["run"]) == own - flags
