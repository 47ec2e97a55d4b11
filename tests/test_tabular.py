"""The shared table layout (tabulate): one LaTeX escape, Markdown cells escaped, LaTeX cells kept as marked up."""

from __future__ import annotations

import pytest

from stf_bench.tabular import LEFT, RIGHT, latex_escape, latex_tabular, markdown_table, text_table

SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
            "<": r"\textless{}", ">": r"\textgreater{}"}


@pytest.mark.parametrize("char, escaped", SPECIALS.items())
def test_latex_escape_escapes_every_special_character(char, escaped):
    assert latex_escape(f"a{char}b") == f"a{escaped}b"


def test_latex_escape_escapes_each_character_once():
    text = "".join(SPECIALS)
    assert latex_escape(text) == "".join(SPECIALS.values())  # the backslash of `\&` is not escaped again
    assert latex_escape("stf-7b (k=2, E=1)") == "stf-7b (k=2, E=1)"


def test_markdown_cells_are_escaped_and_not_padded():
    table = markdown_table(["Method", "GQA"], [["a|b\nc", "61.9"], ["", "-"]], [LEFT, RIGHT])
    assert table.splitlines() == ["| Method | GQA |", "|---|---:|", "| a\\|b c | 61.9 |", "|  | - |"]


def test_latex_cells_are_kept_and_rows_start_their_lines():
    tex = latex_tabular(["Method", "GQA"], [[r"\quad $\Delta$", r"\textbf{63.0}"]], [LEFT, RIGHT], booktabs=True)
    lines = tex.splitlines()
    assert lines[:2] == [r"\begin{tabular}{lr}", r"\toprule"] and lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert lines[4].startswith(r"\quad $\Delta$ & ") and lines[4].endswith(r"\textbf{63.0} \\")
    assert latex_tabular(["a"], [], None).splitlines()[:2] == [r"\begin{tabular}{l}", r"\hline"]


def test_text_table_aligns_columns():
    lines = text_table(["name", "n"], [["stf-tiny", "3"], ["x", "144"]], [LEFT, RIGHT]).splitlines()
    assert [line.split() for line in lines] == [["name", "n"], ["--------", "---"], ["stf-tiny", "3"], ["x", "144"]]
    assert len({len(line) for line in lines}) == 1  # right-aligned last column: every line as wide
    with pytest.raises(ValueError, match="align"):
        text_table(["a", "b"], [], [LEFT])
