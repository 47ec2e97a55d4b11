"""Run orchestration: which lmms-eval tasks a run runs and on what (`task_specs.py`), one evaluation written in
lmms-eval's layout (`runner.py`), and the commands `stf-bench run` (`cli.py`), `stf-bench score` (`score_cli.py`)
and `stf-bench lmms-tasks` (`lmms_tasks.py`, its command `lmms_tasks_cli.py`)."""
