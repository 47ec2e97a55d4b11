"""Functions the stf_llava task YAMLs name (`!function utils.X`): re-exported from the stf_bench package.

lmms-eval imports this file by path for every YAML it loads, so it holds no logic and no state of its own.
"""

from lmms_eval.tasks.gqa.utils import gqa_process_docs  # noqa: F401  (hub use without stf-bench's resolve)

from stf_bench.eval.llava_protocol import (  # noqa: F401
    chartqa_doc_to_text,
    chartqa_process_results,
    doc_to_visual,
    gqa_doc_to_text,
    gqa_process_results,
    mmbench_cn_doc_to_text,
    mmbench_en_doc_to_text,
    mmbench_process_results,
    ocrbench_doc_to_target,
    ocrbench_doc_to_text,
    ocrbench_process_results,
    pope_doc_to_text,
    pope_process_results,
    sqa_doc_to_target,
    sqa_doc_to_text,
    sqa_process_results,
    textvqa_doc_to_target,
    textvqa_doc_to_text,
    textvqa_process_results,
    vizwiz_doc_to_target,
    vizwiz_doc_to_text,
    vizwiz_process_results,
    vqav2_doc_to_target,
    vqav2_doc_to_text,
    vqav2_process_results,
)
from stf_bench.eval.scoring import (  # noqa: F401
    mmbench_circular,
    ocrbench_points,
    pope_accuracy,
    pope_f1,
    pope_f1_average,
)
