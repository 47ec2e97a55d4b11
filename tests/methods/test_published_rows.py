"""The training-free methods' published rows compare like with like (docs/methods.md, "Published rows"):
Table 4's VisionZip row is VisionZip's 128-token (108 + 20) result and the counterpart of exactly that setting;
Table 2's PruMerge+ (LoRA-finetuned) and FastV (untraceable) rows are nobody's reproduction target: a training-free
run of the named setting sits beside them, labelled, with no difference or verdict. baselines/ says where each of
these facts comes from."""

from __future__ import annotations

import pytest

from stf_bench.methods.options import method_model_args
from stf_bench.published import load_published
from stf_bench.report.attributes import matches, run_attributes
from stf_bench.report.formats import footnotes, source_text, to_markdown
from stf_bench.report.tables import MATCH, Cell, Reproduced, build_table

PUB = load_published()
BENCH = PUB.benchmarks


def _attrs(method: str, args: str) -> dict:
    return run_attributes("llava-1.5-7b", method_model_args(method, args))  # what `--method M --method-args A` records


def _run(method: str, args: str, values: dict[str, float]) -> Reproduced:
    label = f"llava-1.5-7b + {method}({args}) [llava]"
    return Reproduced(label, label, "llava-1.5-7b", _attrs(method, args), "llava", {c: Cell(v) for c, v in values.items()})


def test_visionzip_is_compared_at_its_128_token_setting_only():
    rows = {r.method: r for r in PUB.tables["4"].rows}
    assert matches(_attrs("visionzip", "dominant=108,contextual=20"), rows["VisionZip"].match)
    assert [r.method for r in rows.values() if r.match and matches(_attrs("visionzip", "dominant=108,contextual=20"),
                                                                  r.match)] == ["VisionZip"]
    for other in ("dominant=122,contextual=22", ""):  # the old 144-token choice; the 64-token default
        assert not matches(_attrs("visionzip", other), rows["VisionZip"].match)
    assert not matches(run_attributes("llava-1.5-7b", {}), rows["VisionZip"].match)


def test_the_two_pope_cells_printed_from_another_method_are_footnoted_and_not_judged():
    rows = {r.method: r for r in PUB.tables["4"].rows}
    zip_note, sparse_note = rows["VisionZip"].cell_notes["POPE"], rows["SparseVLM"].cell_notes["POPE"]
    assert rows["VisionZip"].cells["POPE"] == 80.5 and "SparseVLM" in zip_note and "83.2" in zip_note
    assert "dvlab-research/VisionZip @ 3151f6d" in zip_note
    assert rows["SparseVLM"].cells["POPE"] == 62.0 and "80.5" in sparse_note and "Gumpest/SparseVLMs @ 91fb6d9" in sparse_note
    table = build_table(PUB.tables["4"], [_run("visionzip", "dominant=108,contextual=20",
                                               {"GQA": 57.6, "POPE": 83.2})], BENCH)
    (run,) = [r for r in table.rows if r.source == "reproduced"]
    assert run.compared_to == "VisionZip" and run.cells["GQA"].verdict == MATCH
    assert run.cells["POPE"].delta is None and run.cells["POPE"].verdict.startswith("not comparable")
    marks, lines = footnotes(table)
    assert [line for line in lines if "VisionZip, POPE" in line] and [line for line in lines if "SparseVLM, POPE" in line]
    md = to_markdown([table])
    assert "| 80.5 [2] |" in md and "| 62.0 [4] |" in md and "128-token" in md


@pytest.mark.parametrize("row,method,args,cite", [
    ("PruMerge+", "prumerge+", "tokens=144", "42Shawn/LLaVA-PruMerge @ 097c04116a58465e4bcb58cec44a94018a68ff1a"),
    ("FastV", "fastv", "k=2,r=0.75", "training-free"),
])
def test_table2_training_free_runs_sit_beside_the_row_unjudged(row, method, args, cite):
    spec = PUB.tables["2"]
    published = spec.row(row)
    assert not published.match  # nothing is judged as this row's reproduction
    assert matches(_attrs(method, args), published.beside) and cite in published.note
    run = _run(method, args, {b: 60.0 for b in BENCH})
    table = build_table(spec, [run], BENCH)
    names = [r.method for r in table.rows]
    (mine,) = [r for r in table.rows if r.source == "reproduced"]
    assert names.index(mine.method) == names.index(row) + 1  # right after the published row
    assert mine.compared_to is None and mine.beside == row
    assert all(c.delta is None and c.verdict is None for c in mine.cells.values())
    assert source_text(mine) == "reproduced, different setting" and "different setting" in mine.note
    md = to_markdown([table])
    assert f"Δ vs {row}" not in md and "reproduced, different setting" in md

