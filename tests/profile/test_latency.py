"""Time to first token: statistics, interleaving, device checks, and a whole CPU run on tiny presets."""

from __future__ import annotations

import json

import pytest
import torch

from stf_bench import devices
from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.profile import latency
from stf_bench.profile.prompts import vqav2_requests


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summarize_per_batch_and_per_sample() -> None:
    values = [float(v) for v in range(1, 11)]
    assert latency.summarize(values) == {"mean": 5.5, "median": 5.5, "p90": 9.0}
    assert latency.summarize(values, divisor=2) == {"mean": 2.75, "median": 2.75, "p90": 4.5}
    assert latency.summarize([7.0])["p90"] == 7.0


def test_cuda_without_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(StfBenchError, match="sees no CUDA GPU.*--device cpu"):
        devices.resolve_device("cuda")
    assert devices.resolve_device(None).type == "cpu"


def test_runs_are_interleaved_abba(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[tuple[str, bool]] = []
    monkeypatch.setattr(latency, "_measure_once", lambda s, d, c, record: order.append((s, record)))
    latency.measure(["A", "B"], torch.device("cpu"), warmup=1, iters=3)
    assert [s for s, _ in order] == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert [r for _, r in order] == [False, False] + [True] * 6
    with pytest.raises(StfBenchError, match="--iters"):
        latency.measure(["A"], torch.device("cpu"), warmup=0, iters=0)


def test_requests_are_vqav2_sample_rows_in_the_vicuna_template() -> None:
    requests, source = vqav2_requests(25)
    assert len(requests) == 25 and source.startswith("vqav2_val (samples data): first 20 rows") and "repeated" in source
    first = requests[0]
    assert first.prompt == ("A chat between a curious user and an artificial intelligence assistant. The assistant "
                            "gives helpful, detailed, and polite answers to the user's questions. USER: <image>\n"
                            f"{first.question}\nAnswer the question using a single word or phrase. ASSISTANT:")
    assert requests[20].question == first.question and requests[1].image.tobytes() != first.image.tobytes()


def test_cpu_run_with_baseline_gives_a_table9_report(capsys: pytest.CaptureFixture, tmp_path) -> None:
    db = tmp_path / "results.sqlite"
    code, out, _ = run_cli(capsys, "latency", "--model", "stf-tiny", "--baseline", "llava-tiny", "--batch-size", "2",
                           "--warmup", "0", "--iters", "2", "--device", "cpu", "--format", "json",
                           "--peak-tflops", "2.0", "--db", str(db))
    assert code == 0
    report = json.loads(out)
    assert list(report["models"]) == ["llava-tiny", "stf-tiny"] and report["baseline"] == "llava-tiny"
    base, model = report["models"].values()
    assert report["speedup"] == pytest.approx(base["ttft_per_sample_ms"]["mean"] / model["ttft_per_sample_ms"]["mean"])
    assert (base["visual_tokens"], model["visual_tokens"]) == (576, 144)
    for figures in (base, model):
        assert len(figures["timings_ms"]["ttft_batch"]) == 2
        assert figures["ttft_per_sample_ms"]["mean"] == pytest.approx(figures["ttft_batch_ms"]["mean"] / 2)
        assert figures["preprocess_batch_ms"]["mean"] > 0
        assert figures["prefill_tflops_per_batch"] == pytest.approx(sum(figures["prefill_tflops_components"].values()))
        rate = figures["prefill_tflops_per_batch"] / (figures["ttft_batch_ms"]["mean"] / 1e3)
        assert figures["achieved_tflops_per_s"] == pytest.approx(rate)
        assert figures["peak_fraction"] == pytest.approx(rate / 2.0)
        assert figures["memory"]["peak_bytes"] > 0
    assert base["prefill_tflops_per_batch"] > model["prefill_tflops_per_batch"]
    assert isinstance(report["device"], str) and report["device_details"]["type"] == "cpu"
    assert report["device_details"]["peak_source"] == "--peak-tflops"
    assert report["dtype"] == "float32" and report["batch_size"] == 2 and report["interleaved"]
    assert report["prompts_source"].startswith("vqav2_val (samples data)") and report["versions"]["torch"] == torch.__version__
    from stf_bench.store.db import open_store

    with open_store(db) as store:
        rows = store.latency()
    assert sorted(row["model"] for row in rows) == ["llava-tiny", "stf-tiny"]
    assert {row["device"] for row in rows} == {report["device"]} and rows[0]["payload"]["speedup"] == report["speedup"]


def test_table_output_names_device_and_speedup(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "latency", "--model", "stf-tiny", "--baseline", "stf-tiny", "--batch-size", "2",
                           "--warmup", "0", "--iters", "1", "--device", "cpu", "--no-store", "--format", "md")
    assert code == 0
    assert "|  | stf-tiny (baseline) | stf-tiny | speedup |" in out
    assert "TTFT per sample, mean (ms)" in out and "device: " in out and "prompts: vqav2_val" in out
    # a tiny model's FLOPs in a unit that fits (never 0.000 TFLOPs); the tokenizer's size called a vocabulary
    (flops,) = [line for line in out.splitlines() if line.startswith("| prefill FLOPs per batch")]
    assert "0.000" not in flops and "FLOPs" in flops.split("|")[2]
    assert "text tokens counted by" in out and "vocabulary of" in out


@pytest.mark.parametrize("argv,message", [
    (["--model", "no-such-model"], "unknown model preset 'no-such-model'"),
    (["--model", "stf-tiny", "--device", "cuda"], "no CUDA GPU"),
    (["--model", "stf-tiny", "--batch-size", "0"], "--batch-size"),
    (["--model", "stf-tiny", "--model-args", "k=5"], "k=5 does not divide"),
])
def test_bad_input_fails_without_a_table(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                         argv: list[str], message: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli(capsys, "latency", *argv, "--iters", "1", "--warmup", "0", "--no-store")
    assert code == 2 and out == "" and message in err


def test_out_of_memory_is_a_clear_error(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(model, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(latency, "first_token", oom)
    code, out, err = run_cli(capsys, "latency", "--model", "stf-tiny", "--batch-size", "2", "--iters", "1",
                             "--warmup", "0", "--device", "cpu", "--no-store")
    assert code == 2 and out == "" and "does not fit" in err and "--batch-size" in err


def test_missing_weights_suggest_random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise StfBenchError("visresearch/LLaVA-STF is not in the local hub cache")

    monkeypatch.setattr(latency, "load_model", offline)
    with pytest.raises(StfBenchError, match="or pass --random-weights"):
        latency.load_subject("stf-7b", {}, [], torch.device("cpu"), None, random_weights=False)
    with pytest.raises(StfBenchError) as info:
        latency.load_subject("not-a-preset", {}, [], torch.device("cpu"), None, random_weights=False)
    assert "--random-weights" not in str(info.value)


def test_a_per_image_count_is_reported_per_image_with_its_mean(capsys: pytest.CaptureFixture) -> None:
    """MustDrop's count differs per image: the report gives each image's count and their mean, and no prefill FLOPs
    (they are counted on `meta`, where the count cannot be decided) rather than the bound's."""
    assert main(["latency", "--model", "llava-tiny", "--method", "mustdrop", "--batch-size", "2", "--warmup", "0",
                 "--iters", "1", "--device", "cpu", "--no-store", "--format", "json"]) == 0
    figures = next(iter(json.loads(capsys.readouterr().out)["models"].values()))
    counts = figures["visual_tokens_per_image"]
    assert len(counts) == 2 and all(0 < n <= 576 for n in counts)
    assert figures["visual_tokens"] == figures["mean_visual_tokens"] == sum(counts) / 2
    assert figures["prefill_tflops_per_batch"] is None and figures["achieved_tflops_per_s"] is None
