"""The append-only answer cache: durable per batch, tolerant of a torn last line, shared across ranks."""

import json

from stf_bench.adapter.resume import AnswerCache, request_key


def test_round_trip_across_instances(tmp_path):
    cache = AnswerCache(tmp_path)
    cache.put_many([("k1", "yes", {"task": "pope", "doc_id": 0}), ("k2", [-1.5, True], {})])
    again = AnswerCache(tmp_path)
    assert len(again) == 2 and again.get("k1") == "yes" and again.get("k2") == [-1.5, True]
    assert again.hits == 2 and again.get("missing") is None and again.hits == 2


def test_torn_last_line_is_ignored_and_not_glued_to_the_next_record(tmp_path):
    cache = AnswerCache(tmp_path)
    cache.put_many([("k1", "a", {})])
    with cache.path.open("a") as fh:  # what SIGKILL mid-write leaves behind
        fh.write('{"key": "k2", "answ')
    resumed = AnswerCache(tmp_path)
    assert resumed.torn_lines == 1 and "k1" in resumed and "k2" not in resumed
    resumed.put_many([("k3", "c", {})])
    final = AnswerCache(tmp_path)
    assert final.get("k3") == "c" and final.get("k1") == "a" and final.torn_lines == 1


def test_every_rank_file_is_read(tmp_path):
    AnswerCache(tmp_path, rank=0).put_many([("a", "0", {})])
    AnswerCache(tmp_path, rank=1).put_many([("b", "1", {})])
    merged = AnswerCache(tmp_path, rank=0)
    assert merged.get("a") == "0" and merged.get("b") == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.rank0.jsonl", "answers.rank1.jsonl"]


def test_lines_are_json_with_the_info(tmp_path):
    AnswerCache(tmp_path).put_many([("k", "ans", {"task": "gqa", "doc_id": 3})])
    row = json.loads((tmp_path / "answers.rank0.jsonl").read_text().splitlines()[0])
    assert row == {"key": "k", "answer": "ans", "task": "gqa", "doc_id": 3}


def test_key_depends_on_every_part():
    base = ("model-a", "generate_until", "gqa", "test", 3, "ctx", {"until": ["\n"], "max_new_tokens": 8})
    key = request_key(*base)
    assert key == request_key(*base)
    for i, changed in enumerate(["model-b", "loglikelihood", "pope", "val", 4, "ctx2",
                                 {"until": ["\n"], "max_new_tokens": 9}]):
        variant = list(base)
        variant[i] = changed
        assert request_key(*variant) != key, f"part {i} does not change the key"


def test_key_ignores_dict_order_and_names_callables():
    def target(doc):
        return doc

    assert request_key("m", "t", "x", None, 0, {"a": 1, "b": 2}) == request_key("m", "t", "x", None, 0, {"b": 2, "a": 1})
    assert request_key("m", "t", "x", None, 0, target) == request_key("m", "t", "x", None, 0, target)
