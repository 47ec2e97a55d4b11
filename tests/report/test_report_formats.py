"""`stf-bench report`: every table in every format from a store holding tiny-model runs; escaping; marks; plots."""

from __future__ import annotations

import csv
import html
import io
import json

import pytest
from lmms_run import results_file

from stf_bench.cli import main
from stf_bench.published import load_published
from stf_bench.report.formats import EXTENSIONS, FORMATS, PLOT_TITLES, render, to_latex
from stf_bench.report.tables import build_tables

TABLES = ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "zoo", "benchmarks"]
EVIL = "<script>alert('x')</script> & $k_2$"


def test_report_all_tables_all_formats(filled_store, db_path, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["report", "--table", "all", "--format", "all", "--db", str(db_path), "--output-dir", str(out),
                 "--bootstrap-iters", "200"]) == 0
    assert f"{len(TABLES)} table(s)" in capsys.readouterr().out
    for fmt in FORMATS:
        for tid in TABLES:
            assert (out / f"table_{tid}.{EXTENSIONS[fmt]}").stat().st_size > 0
        assert (out / f"report.{EXTENSIONS[fmt]}").stat().st_size > 0
    for stem in ("accuracy_vs_tflops", "deltas_to_llava", "latency_vs_tokens"):
        assert (out / "plots" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / "plots" / f"{stem}.svg").read_bytes()[:400]

    table2 = json.loads((out / "table_2.json").read_text())
    assert table2["table"] == "2" and {"method", "source", "cells"} <= set(table2["rows"][0])
    assert {r["source"] for r in table2["rows"]} == {"published", "reproduced"}
    fastv = next(r for r in table2["rows"] if r["method"] == "FastV")
    assert fastv["cells"]["SQA"] is None and fastv["dashes"] == ["SQA"]
    tiny = next(r for r in table2["rows"] if r["method"].startswith("stf-tiny"))
    assert tiny["cells"]["GQA"] is None and tiny["cells"]["SQA"] == pytest.approx(79.1666, abs=1e-3)
    assert tiny["ci"]["SQA"][0] < tiny["cells"]["SQA"] < tiny["ci"]["SQA"][1] and tiny["cells"]["Avg."] is None
    assert len(json.loads((out / "report.json").read_text())["tables"]) == len(TABLES)
    t10 = json.loads((out / "table_10.json").read_text())
    assert t10["rows"] == [] and t10["columns"][-1] == "Avg."

    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    stc = [r for r in rows if r["table"] == "2" and r["method"] == "STC (ours)" and r["column"] == "VisWiz"]
    assert stc[0]["value"] == "51.1" and "Table 2" in stc[0]["cell_source"]
    md = (out / "table_2.md").read_text()
    assert "| FastV [2] | published | 1.9 | 60.3 | - |" in md  # the paper's dash; [2]: its note
    assert "| — |" in md  # a missing reproduced cell
    assert "Δ vs STC (ours) | difference | -0.024 (match)" in md.replace("+", "")


def test_latex_marks_best_and_second_best_per_column():
    pub = load_published()
    tex = to_latex(build_tables(pub, None, ["2"]))
    lora = next(line for line in tex.splitlines() if line.startswith("LLaVA-1.5 (lora)"))
    assert r"\textbf{63.0}" in lora and r"\textbf{86.8}" not in lora  # GQA best: lora; POPE best: YOPO
    yopo = next(line for line in tex.splitlines() if line.startswith("YOPO"))
    assert r"\textbf{86.8}" in yopo and r"\underline{86.4}" in lora
    stc = next(line for line in tex.splitlines() if line.startswith("STC"))
    assert r"\textbf{51.1}" in stc and r"\textbf{66.3}" in stc  # Avg. tie with LLaVolta: both bold
    assert r"\textbf{1.9}" not in tex and r"\textbf{7.6}" not in tex  # TFLOPs is not ranked
    assert r"VQA$^{\mathrm{T}}$" in tex


def test_strings_from_models_and_files_are_escaped(db_path, lmms_out, tmp_path):
    from stf_bench.store.db import open_store

    with open_store(db_path) as store:
        store.record_lmms_eval(results_file(lmms_out, "oracle-b"), model=EVIL)
        tables = build_tables(load_published(), store, ["2", "8"], iters=50)
    html = render(tables, "html")
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; $k_2$" in html
    tex = render(tables, "latex")
    assert r"\textless{}script\textgreater{}alert('x')\textless{}/script\textgreater{} \& \$k\_2\$" in tex
    assert "<script>" in render(tables, "json")  # JSON keeps the exact name (consumers escape for their medium)


def test_report_without_a_store_shows_published_numbers(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "--table", "8", "--format", "md", "--db", str(tmp_path / "none.sqlite"),
                 "--output-dir", str(out), "--no-plots"]) == 0
    assert "no results store" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()
    assert "| STF-7B (ours, k=2, E=1) | published | 301 | 18.1 |" in (out / "table_8.md").read_text()


def test_a_full_disk_writes_no_table_and_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    """The tables were written one by one and never fsynced: a full disk at the last one left the first ones
    behind. Now all of them or none, and one error line naming the folder."""
    import errno
    import os

    real = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".report.md."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "o"
    assert main(["report", "--db", str(tmp_path / "none.sqlite"), "--output-dir", str(out), "--table", "2,8",
                 "--format", "md", "--no-plots"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [f"stf-bench report: error: no space left on {out} (writing report.md); no tables were written: "
                      f"free some space or pass another --output-dir, then run the same command again"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, message", [(["--table", "1"], "unknown table '1'"),
                                           (["--format", "pdf"], "unknown format 'pdf'"),
                                           (["--bootstrap-iters", "0"], "must be at least 1")])
def test_report_bad_options(tmp_path, capsys, args, message):
    assert main(["report", "--db", str(tmp_path / "x.sqlite"), "--output-dir", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("attributes", [{"data": "samples", "preset": "stf-7b"},
                                        {"data": "hub", "preset": "stf-tiny", "llm": "vicuna-tiny"},
                                        {"data": "hub", "preset": "stf-7b", "partial": True}])
def test_sample_data_tiny_presets_and_partial_runs_are_never_ranked(attributes):
    from stf_bench.report.formats import ranks
    from stf_bench.report.tables import Cell, Row, Table

    real = Row("stf-7b [llava]", "reproduced", {"GQA": Cell(50.0)}, attributes={"data": "hub", "preset": "stf-7b"})
    other = Row("llava-1.5-7b [llava]", "reproduced", {"GQA": Cell(40.0)},
                attributes={"data": "hub", "preset": "llava-1.5-7b"})
    odd = Row("odd", "reproduced", {"GQA": Cell(45.0)}, attributes=attributes)  # would be second if ranked
    marks = ranks(Table("zoo", "zoo", ["GQA"], [real, other, odd]))
    assert marks == {(0, "GQA"): "best", (1, "GQA"): "second"}


def test_html_superscripts_one_line_cis_and_a_provenance_footer(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite"), "--output-dir", str(tmp_path / "o"),
                 "--table", "2", "--format", "html", "--no-plots"]) == 0
    capsys.readouterr()
    page = (tmp_path / "o" / "table_2.html").read_text()
    assert "<th>VQA<sup>T</sup></th>" in page and "VQA^T" not in page
    assert ".ci{color:#666;font-size:85%;white-space:nowrap}" in page
    footer = page[page.index("<footer"):]
    assert "stf-bench 0." in footer and "commit " in footer and "date 20" in footer and "store none" in footer


def test_html_pages_embed_their_plots_and_need_no_other_file(tmp_path, capsys):
    import base64
    import re

    assert main(["report", "--db", str(tmp_path / "none.sqlite"), "--output-dir", str(tmp_path / "o"),
                 "--table", "2,9", "--format", "html"]) == 0
    capsys.readouterr()
    expected = {"report.html": {"accuracy_vs_tflops", "deltas_to_llava", "latency_vs_tokens"},
                "table_2.html": {"accuracy_vs_tflops", "deltas_to_llava"}, "table_9.html": {"latency_vs_tokens"}}
    for name, plots in expected.items():
        page = (tmp_path / "o" / name).read_text()
        images = re.findall(r'<img alt="([^"]+)" src="data:image/svg\+xml;base64,([^"]+)">', page)
        stem = {html.escape(title): stem for stem, title in PLOT_TITLES.items()}
        assert {stem[alt] for alt, _ in images} == plots, name
        for alt, data in images:  # the plot itself, not a link to plots/*.svg
            assert base64.b64decode(data) == (tmp_path / "o" / "plots" / f"{stem[alt]}.svg").read_bytes()
        assert "plots/" not in page
        # captioned with the plots' titles, never their raw ids
        captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
        assert sorted(captions) == sorted(html.escape(PLOT_TITLES[p]) for p in plots), name
        assert not any("_" in c for c in captions)


def test_latex_shows_the_cis_docs_report_md_promises():
    from stf_bench.report.formats import to_latex
    from stf_bench.report.tables import Cell, Row, Table

    row = Row("stf-7b [llava]", "reproduced", {"GQA": Cell(61.234, ci=(60.1, 62.3))})
    tex = to_latex([Table("2", "t", ["GQA"], [row])])
    line = next(x for x in tex.splitlines() if x.startswith("stf-7b"))
    assert r"61.23 {\scriptsize [60.10, 62.30]}" in line, line
