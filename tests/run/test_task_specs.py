"""Task selection and resolution: names, data sources, both protocols loading through lmms-eval, headline units."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from stf_bench import accuracy as benchmarks
from stf_bench.accuracy import gqa
from stf_bench.data import samples, sources
from stf_bench.errors import StfBenchError
from stf_bench.run import task_specs

ROWS = {"gqa": 24, "scienceqa_img": 20, "textvqa_val": 20, "pope": 36, "mmbench_en_dev": 36, "mmbench_cn_dev": 36,
        "vqav2_val": 20, "vizwiz_vqa_val": 20, "ocrbench": 20, "chartqa": 20}


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STF_BENCH_CACHE", str(root))
        return samples.ensure_samples()


@pytest.fixture
def cache_env(sample_root, monkeypatch):
    monkeypatch.setenv("STF_BENCH_CACHE", str(sample_root.parent))
    return sample_root


# ---------------------------------------------------------------- names


def test_expand_tasks():
    assert task_specs.expand_tasks("all") == list(benchmarks.names())
    assert task_specs.expand_tasks("paper8") == ["gqa", "scienceqa_img", "textvqa_val", "pope", "mmbench_en_dev",
                                            "mmbench_cn_dev", "vqav2_val", "vizwiz_vqa_val"]
    assert task_specs.expand_tasks(" pope,gqa,pope ") == ["pope", "gqa"]
    assert task_specs.expand_tasks("paper8,ocrbench,chartqa") == list(benchmarks.names())


@pytest.mark.parametrize("spec", ["mme", "gqa,textvqa", "", ","])
def test_unknown_task_names_the_valid_ones(spec):
    with pytest.raises(StfBenchError) as err:
        task_specs.expand_tasks(spec)
    assert "paper8" in str(err.value) and "vizwiz_vqa_val" in str(err.value)
    if spec.startswith(("mme", "gqa,")):
        assert repr(spec.split(",")[-1]) in str(err.value)


def test_bad_protocol_and_task_in_resolve(cache_env):
    with pytest.raises(StfBenchError, match="protocol 'vlmeval'.*llava, lmms-eval"):
        task_specs.resolve(["gqa"], "vlmeval")
    with pytest.raises(StfBenchError, match="unknown task 'mme'"):
        task_specs.resolve(["mme"], "llava")


def test_judge_needs_a_key(cache_env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(StfBenchError, match="OPENAI_API_KEY"):
        task_specs.resolve(["mmbench_en_dev"], "llava", judge=True)


# ---------------------------------------------------------------- sources agree with lmms-eval's own YAMLs


@pytest.mark.parametrize("bench", benchmarks.names())
def test_sources_match_lmms_eval_and_our_yamls(bench):
    import lmms_eval.tasks
    from lmms_eval.utils import load_yaml_config

    builtin = Path(lmms_eval.tasks.__file__).parent / benchmarks.BENCHMARKS[bench].lmms_dir / f"{bench}.yaml"
    theirs = load_yaml_config(str(builtin), mode="simple")
    ours = load_yaml_config(str(task_specs.TASKS_DIR / f"stf_{bench}.yaml"), mode="simple")
    src = benchmarks.BENCHMARKS[bench].source
    for cfg in (theirs, ours):
        assert (cfg["dataset_path"], cfg.get("dataset_name"), cfg["test_split"]) == (src.repo, src.config, src.split)
    assert ours["task"] == f"stf_{bench}" and ours["tag"] == "stf_llava"


# ---------------------------------------------------------------- both protocols load through lmms-eval


@pytest.mark.parametrize("protocol", task_specs.PROTOCOLS)
def test_all_ten_tasks_load_and_every_doc_works(cache_env, protocol):
    from lmms_eval.tasks import get_task_dict

    start = time.perf_counter()
    setup = task_specs.resolve(list(benchmarks.names()), protocol)
    task_dict = get_task_dict(copy.deepcopy(setup.task_specs), setup.task_manager)
    assert sorted(task_dict) == sorted(setup.lmms_names.values())
    for bench, name in setup.lmms_names.items():
        task = task_dict[name]
        assert task.config.dataset_path == "parquet"
        docs = task.eval_docs
        assert len(docs) == ROWS[bench]
        for doc in docs:
            visuals = task.config.doc_to_visual(doc)
            assert len(visuals) == 1 and isinstance(visuals[0], Image.Image) and visuals[0].mode == "RGB"
            text, answer = task.doc_to_text(doc), task.doc_to_target(doc)
            assert isinstance(text, str) and text.strip() and "<image>" not in text
            assert answer not in (None, "", [])
    assert time.perf_counter() - start < 60


def test_llava_prompts_carry_the_papers_suffixes(cache_env):
    from lmms_eval.tasks import get_task_dict

    setup = task_specs.resolve(["textvqa_val", "mmbench_cn_dev", "vizwiz_vqa_val", "gqa"], "llava")
    task_dict = get_task_dict(setup.task_specs, setup.task_manager)
    text = {n: task_dict[n].doc_to_text(task_dict[n].eval_docs[0]) for n in task_dict}
    assert "\nReference OCR token: " in text["stf_textvqa_val"]
    assert text["stf_mmbench_cn_dev"].endswith("\n请直接回答选项字母。")
    assert "respond with 'Unanswerable'" in text["stf_vizwiz_vqa_val"]
    assert text["stf_gqa"].endswith("\nAnswer the question using a single word or phrase.")
    gen = task_dict["stf_gqa"].config.generation_kwargs  # LLaVA's model_vqa_loader: 128 tokens, end of sequence
    assert gen["do_sample"] is False and gen["temperature"] == 0 and gen["until"] == []
    assert gen["max_new_tokens"] == 128
    assert task_dict["stf_mmbench_cn_dev"].config.generation_kwargs["max_new_tokens"] == 1024  # model_vqa_mmbench


def test_lmms_eval_protocol_keeps_lmms_evals_functions(cache_env):
    """Untouched task definitions: the prompt and per-row functions are lmms-eval's own."""
    from lmms_eval.tasks import get_task_dict

    setup = task_specs.resolve(list(benchmarks.names()), "lmms-eval")
    task_dict = get_task_dict(setup.task_specs, setup.task_manager)
    for name, task in task_dict.items():
        for fn in ("doc_to_text", "doc_to_visual", "process_results"):
            f = getattr(task.config, fn)
            if f is None:  # gqa: lmms-eval's registered exact_match metric instead of a process_results
                assert name == "gqa" and fn == "process_results"
                continue
            assert "lmms_eval/tasks/" in f.__code__.co_filename, (name, fn)
    agg = {n: {m["metric"]: m["aggregation"] for m in task_dict[n].config.metric_list} for n in task_dict}
    mmb, ocr = agg["mmbench_en_dev"]["gpt_eval_score"], agg["ocrbench"]["ocrbench_accuracy"]
    assert mmb.__module__ == "stf_bench.accuracy.mmbench" and mmb.__qualname__.startswith("lmms_static_for")  # no judge
    assert (ocr.__module__, ocr.__name__) == ("stf_bench.accuracy.ocrbench", "lmms_aggregate")  # reset global total
    assert agg["pope"]["pope_f1_score"].__module__ == "utils"  # lmms-eval's pope utils, loaded by path


# ---------------------------------------------------------------- --data-dir and the hub


def test_data_dir_layout_and_dataset_card_configs(sample_root, tmp_path):
    shutil.copytree(sample_root / "POPE", tmp_path / "POPE")
    files = sources.locate(["pope"], data_dir=tmp_path)["pope"]
    assert files.split == "test" and files.files[0].endswith("POPE/data/test-00000-of-00001.parquet")
    # a snapshot whose card says where the split is (non-standard file name) is followed
    (tmp_path / "POPE" / "data" / "test-00000-of-00001.parquet").rename(tmp_path / "POPE" / "pope_test.parquet")
    (tmp_path / "POPE" / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: pope_test.parquet\n---\n")
    assert sources.locate(["pope"], data_dir=tmp_path)["pope"].files[0].endswith("pope_test.parquet")


def test_missing_dataset_names_it_and_the_fetch_command(tmp_path):
    with pytest.raises(StfBenchError) as err:
        task_specs.resolve(["gqa"], "llava", data_dir=tmp_path)
    msg = str(err.value)
    assert "lmms-lab-encoder/GQA" in msg
    assert "hf download --repo-type dataset lmms-lab-encoder/GQA" in msg and f"--local-dir {tmp_path}/GQA" in msg
    assert '--include "testdev_balanced_images/testdev*"' in msg
    with pytest.raises(StfBenchError, match="is not a directory"):
        task_specs.resolve(["gqa"], "llava", data_dir=tmp_path / "nope")


def test_git_lfs_pointer_is_reported(sample_root, tmp_path):
    shutil.copytree(sample_root / "ChartQA", tmp_path / "ChartQA")
    (tmp_path / "ChartQA" / "data" / "test-00000-of-00001.parquet").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(StfBenchError, match="not a parquet file"):
        sources.locate(["chartqa"], data_dir=tmp_path)


def test_hub_offline_fails_fast_with_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(StfBenchError) as err:
        task_specs.resolve(["vqav2_val"], "lmms-eval", data="hub")
    assert time.perf_counter() - start < 10
    assert "lmms-lab-encoder/VQAv2" in str(err.value) and "hf download --repo-type dataset" in str(err.value)


def test_hub_downloads_only_the_split_the_card_names(sample_root, tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    shutil.copytree(sample_root / "MMBench", snapshot)
    (snapshot / "README.md").write_text("---\nconfigs:\n- config_name: cn\n  data_files:\n  - split: dev\n"
                                        "    path: cn/dev-*\n---\n")
    calls = []

    def fake_snapshot_download(repo_id, repo_type, allow_patterns, etag_timeout):
        calls.append((repo_id, repo_type, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    files = sources.locate(["mmbench_cn_dev"], data="hub")["mmbench_cn_dev"]
    assert calls[0] == ("lmms-lab-encoder/MMBench", "dataset", ["README.md"])
    assert calls[1][2] == ["cn/dev-*", "README.md"]  # only the cn dev files, as the card says
    assert files.files == [str(snapshot / "cn" / "dev-00000-of-00001.parquet")]


def test_gqa_join_checks_the_image_table(sample_root, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sources.locate(["gqa"], data_dir=sample_root)["gqa"]
    questions = datasets.load_dataset("parquet", data_files=files.data_files(), split="testdev")
    joined = gqa.join_images(questions, files.image_files)
    assert isinstance(joined[0]["image"], Image.Image) and joined[0]["question"] == questions[0]["question"]
    images = pq.read_table(files.image_files)
    broken = tmp_path / "images.parquet"  # first image corrupt, last one missing
    cells = images.column("image").to_pylist()
    cells[0] = {"bytes": b"not an image", "path": None}
    pq.write_table(pa.table({"id": images.column("id").to_pylist()[:-1], "image": cells[:-1]}), broken)
    with pytest.raises(StfBenchError, match="refer to images missing"):
        gqa.join_images(questions, [str(broken)])
    keep = images.column("id").to_pylist()[:-1]
    subset = questions.filter(lambda d: d["imageId"] in keep)
    joined = gqa.join_images(subset, [str(broken)])
    first_id = images.column("id")[0].as_py()
    row = next(r for r in joined if r["imageId"] == first_id)
    assert row["image"] is None  # the adapter reports and skips the row; the others still load


def test_unknown_data_source():
    with pytest.raises(StfBenchError, match="unknown data source 'web'"):
        sources.locate(["gqa"], data="web")


# ---------------------------------------------------------------- headline units


def _results(task: str, metrics: dict, n: int = 20) -> dict:
    return {"results": {task: {f"{k},none": v for k, v in metrics.items()}},
            "n-samples": {task: {"original": n, "effective": n}}}


def test_headline_units():
    out = task_specs.paper_scores(_results("stf_pope", {"pope_f1_avg": 0.8567, "pope_accuracy": 0.9}), {"pope": "stf_pope"})
    assert out == {"pope": {"f1": pytest.approx(85.67), "accuracy": pytest.approx(90.0)}}
    assert list(out["pope"])[0] == "f1"  # the headline metric comes first
    mmb = task_specs.paper_scores(_results("mmbench_en_dev", {"gpt_eval_score": 64.3}), {"mmbench_en_dev": "mmbench_en_dev"})
    assert mmb["mmbench_en_dev"]["circular_accuracy"] == pytest.approx(64.3)  # lmms-eval already x100
    ocr = task_specs.paper_scores(_results("stf_ocrbench", {"ocrbench_points": 297.0}), {"ocrbench": "stf_ocrbench"})
    assert ocr["ocrbench"]["points"] == pytest.approx(297.0)
    # lmms-eval's OCRBench value is total/1000: 15 right of 20 rows -> 0.015 -> 750 points out of 1000
    ocr = task_specs.paper_scores(_results("ocrbench", {"ocrbench_accuracy": 0.015}, n=20), {"ocrbench": "ocrbench"})
    assert ocr["ocrbench"]["points"] == pytest.approx(750.0)
    full = task_specs.paper_scores(_results("ocrbench", {"ocrbench_accuracy": 0.297}, n=1000), {"ocrbench": "ocrbench"})
    assert full["ocrbench"]["points"] == pytest.approx(297.0)


def test_headline_refuses_to_invent_a_score():
    with pytest.raises(StfBenchError, match="no results for task 'stf_gqa'"):
        task_specs.paper_scores({"results": {}}, {"gqa": "stf_gqa"})
    with pytest.raises(StfBenchError, match="headline metric 'exact_match'"):
        task_specs.paper_scores(_results("stf_gqa", {"other": 1.0}), {"gqa": "stf_gqa"})
    chart = task_specs.paper_scores(_results("stf_chartqa", {"relaxed_overall": 0.5, "relaxed_human_split": 0.5}),
                           {"chartqa": "stf_chartqa"})
    assert chart == {"chartqa": {"relaxed_accuracy": 50.0, "relaxed_human": 50.0}}  # absent split: left out


def _string_index_mmbench(sample_root: Path, data_dir: Path) -> None:
    """MMBench en dev as one hub card version types it: `index` a string column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(sample_root / "MMBench", data_dir / "MMBench")
    path = data_dir / "MMBench" / "en" / "dev-00000-of-00001.parquet"
    table = pq.read_table(path)
    column = table.schema.get_field_index("index")
    table = table.set_column(column, pa.field("index", pa.string()), pa.array(
        [str(v) for v in table.column("index").to_pylist()], pa.string()))
    pq.write_table(table, path)
    assert pq.read_schema(path).field("index").type == pa.string()


def test_mmbench_string_index_is_cast_where_the_data_is_loaded(sample_root, tmp_path):
    from datasets import load_dataset

    _string_index_mmbench(sample_root, tmp_path)
    spec = task_specs.resolve(["mmbench_en_dev"], "llava", data_dir=tmp_path).task_specs[0]
    dataset = load_dataset("parquet", data_files=spec["dataset_kwargs"]["data_files"], split="dev")
    cast = spec["process_docs"](dataset)
    assert cast.features["index"].dtype == "int64"
    assert sorted(cast["index"]) == sorted(int(i) for i in dataset["index"])


@pytest.mark.parametrize("protocol", ["llava", "lmms-eval"])
def test_mmbench_with_string_index_runs_under_both_protocols(sample_root, tmp_path, protocol, capsys):
    import json

    from stf_bench.cli import main

    _string_index_mmbench(sample_root, tmp_path / "data")
    # lmms-eval's own MMBench task lets a random tiny model write up to 1024 tokens a row: two rows are enough
    limit = ["--limit", "2"] if protocol == "lmms-eval" else []
    code = main(["run", "--tasks", "mmbench_en_dev", "--data-dir", str(tmp_path / "data"), "--protocol", protocol,
                 "--device", "cpu", "--no-store", "--no-progress", "--format", "json",
                 "--output-dir", str(tmp_path / "out"), *limit])
    assert code == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["mmbench_en_dev"]["circular_accuracy"] <= 100.0
