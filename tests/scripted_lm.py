"""A deterministic lmms-eval model for tests: it answers from each request's own doc, no weights involved."""

from __future__ import annotations

from collections.abc import Callable

from lmms_eval.api.model import lmms


class ScriptedLM(lmms):
    """Answers every request with answer(benchmark, doc), looking the doc up by the request's task and split."""

    def __init__(self, answer: Callable[[str, dict], str] | None = None) -> None:
        super().__init__()
        self.answer = answer

    def respond(self, task: str, doc_id: int, doc: dict) -> str:
        """The answer to one request; subclasses that need the task or doc id override this."""
        return self.answer(task.removeprefix("stf_"), doc)

    def generate_until(self, requests) -> list[str]:
        out = []
        for request in requests:
            _ctx, _gen, _visual, doc_id, task, split = request.args
            out.append(self.respond(task, doc_id, self.task_dict[task][split][doc_id]))
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError

    def generate_until_multi_round(self, requests):
        raise NotImplementedError
