"""The lmms-eval adapter: the model class lmms-eval runs (`lmms_model.StfBenchLmms`, `--model stf_bench`) and what
it is made of: stop rules, the visual-token cache, the resumable answer cache, the model identity and run API, the
run's progress bar, and its registration with lmms-eval (`registration.py`, the `lmms_eval.models` entry point).
Nothing here knows which benchmarks exist or where their rows come from."""
