"""The TFLOPs column of the paper's Tables 2, 3, 5 and 6: computed for every row we can build, published beside.

Which model a published row stands for comes from its `match` attributes in baselines/tables.yaml (projector,
llm, and the projector's own arguments as the method registry declares them: k, e, mbtf_blocks, ...), or, for a row no run is judged against (PruMerge+, FastV), its `beside` setting; the
published value from baselines/published.csv. Nothing here is a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from stf_bench.errors import StfBenchError
from stf_bench.methods.options import METHOD_ARG_PREFIX
from stf_bench.methods.registry import get_projector
from stf_bench.models import load_model
from stf_bench.models.presets import list_presets, preset_config
from stf_bench.profile.flops import FlopsReport, paper_report
from stf_bench.published import load_published


@dataclass
class TableRow:
    """One published row: its printed TFLOPs and, when buildable, our `paper`-convention count."""

    method: str
    published: float | None
    preset: str | None
    overrides: dict
    report: FlopsReport | None


def model_label(preset: str, overrides: dict) -> str:
    """`stf-7b`, `stf-7b (k=4,e=8)` or `llava-1.5-7b + fastv(k=2, r=0.75)`."""
    from stf_bench.methods.options import method_suffix, split_method_args

    rest, _, _ = split_method_args(overrides)
    return (f"{preset} ({','.join(f'{k}={v}' for k, v in rest.items())})" if rest else preset) + method_suffix(overrides)


def preset_for(match: dict) -> tuple[str, dict] | None:
    """The full-size preset (and overrides) a published row's match attributes describe; None if none does."""
    if not match or isinstance(match.get("projector"), list) or isinstance(match.get("llm"), list):
        return None
    for preset in list_presets():
        if not preset.tiny and preset.projector == match.get("projector") and preset.llm == match.get("llm"):
            defaults = preset_config(preset.name)
            # the match attributes that are the projector's arguments become model overrides (with the method's)
            fields = {p.name: p.config_field for p in get_projector(preset.projector).params if p.config_field}
            overrides = {k: match[k] for k, field in fields.items()
                         if k in match and getattr(defaults, field) != match[k]}
            overrides.update({k: v for k, v in match.items() if k == "method" or k.startswith(METHOD_ARG_PREFIX)})
            return preset.name, overrides
    return None


def flops_table(table_id: str) -> tuple[str, list[TableRow]]:
    """(title, rows) of one paper table's TFLOPs column; rows we cannot build keep only the published value."""
    published = load_published()
    spec = published.tables.get(str(table_id))
    with_flops = [t for t, s in published.tables.items() if "TFLOPs" in s.columns]
    if spec is None or "TFLOPs" not in spec.columns:
        raise StfBenchError(f"table {table_id} has no TFLOPs column; choose one of {', '.join(with_flops)}")
    rows = []
    for row in spec.rows:
        target = preset_for(row.match or row.beside)  # a row judged on no run still names the setting beside it
        report = None
        if target is not None:
            model, _ = load_model(target[0], random_weights=True, device="meta", **target[1])
            report = paper_report(model, model_label(*target))
        rows.append(TableRow(row.method, row.cells.get("TFLOPs"), target[0] if target else None,
                             target[1] if target else {}, report))
    return f"Table {spec.id}: {spec.title}", rows
