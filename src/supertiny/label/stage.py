"""Stage 1, ``supertiny label TASK.yaml``: the teacher pipeline labels the task's inputs.

For every unlabeled input (after de-duplication) the teacher's function-call pipeline runs
up to ``quality.samples`` times (the first greedy, the rest at ``quality.temperature``,
stopping early once the vote is decided); the majority canonical call wins if its agreement
reaches ``quality.min_agreement`` and, when enabled, an LLM judge grades it high enough.
Where the task dry-runs its final calls (``helpers.dry_run``), a sample counts only once the
environment accepts its calls; an input whose every sample it rejected is rejected with the
reason kind ``dry_run`` (``rejection_reasons`` in the report).

Writes into ``<run>/label/``:
  labeled.jsonl      accepted records (``label`` = the voted call; ``meta`` = votes, trace, cost)
  rejected.jsonl     rejected inputs with the reason (bad lines, duplicates, disagreement, ...)
  preferences.jsonl  DPO pairs: chosen = the voted call, rejected = a disagreeing/invalid sample
  teacher_test.jsonl the teacher, run the same way, on the held-out gold test set
  label_report.json  accept rate, agreement histogram, tokens, cost, latency, teacher accuracy

Every record is on disk as soon as it is decided; responses are cached on disk, so a re-run
of the same command resumes where it stopped and costs nothing for work already done.
A larger ``limit`` (or another of ``VOLATILE_KEYS``) resumes too; other changed settings
are refused (``--restart`` sets the old records aside).
When ``teacher.url`` is not set, the bundled teacher GGUF is served on 127.0.0.1 for the run;
if that server dies, the stage stops at once with ``ServerDied`` (how it ended, its log tail)
instead of retrying a dead port, and the records decided so far stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertiny.core.errors import SupertinyError
from supertiny.core.progress import bar, console
from supertiny.core.runs import RecordLog, Run
from supertiny.core.task import Task
from supertiny.label import quality
from supertiny.label.client import TeacherClient, TeacherError
from supertiny.label.config import LabelConfig
from supertiny.label.endpoint import endpoint, make_client
from supertiny.label.inputs import select_inputs
from supertiny.label.prototype import run_pipeline
from supertiny.label.summary import label_report

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Too many transport failures: the endpoint is not usable."""


class LabelStopped(SupertinyError, RuntimeError):
    """The label stage stopped early; every record decided so far is on disk."""


class Labeler:
    """Runs the pipeline + quality control for one input and writes the outcome."""

    def __init__(
        self,
        task: Task,
        conf: LabelConfig,
        client: TeacherClient,
        judge_client: TeacherClient | None,
    ):
        self.task, self.conf, self.client, self.judge_client = task, conf, client, judge_client
        self.failures: list[str] = []

    async def samples(self, record: dict[str, Any]) -> list[quality.Sample]:
        q = self.conf.quality
        tools = self.task.tools_for(record)
        drawn: list[quality.Sample] = []
        for index in range(q.samples):
            result = await run_pipeline(
                self.client,
                self.task,
                record["messages"],
                temperature=0.0 if index == 0 else q.temperature,
                seed=self.conf.seed + 1000 * index,
                sample=index,
                max_tokens=self.conf.teacher.max_tokens,
                top_logprobs=self.conf.top_logprobs or None,
            )
            drawn.append(quality.check_sample(result, tools, self.task.spec.allow_plain_answer))
            if q.early_stop and quality.decided(drawn, q.samples, q.min_agreement):
                break
        return drawn

    async def decide(
        self, record: dict[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, str] | None, list[dict]]:
        """Label one input: (record with label + meta, (reason kind, reason) or None, DPO pairs)."""
        drawn = await self.samples(record)
        outcome = quality.vote(drawn)
        meta = dict(record.get("meta") or {})
        meta.update(
            teacher=self.conf.teacher.model,
            samples=outcome.samples,
            votes=outcome.votes,
            agreement=round(outcome.agreement, 4),
            vote_counts=outcome.counts,
            cost_usd=sum(s.result.cost_usd for s in drawn),
            latency_s=round(sum(s.result.latency_s for s in drawn), 3),
            prompt_tokens=sum(s.result.prompt_tokens for s in drawn),
            completion_tokens=sum(s.result.completion_tokens for s in drawn),
            requests=sum(s.result.requests for s in drawn),
            cached_requests=sum(s.result.cached for s in drawn),
            problems=[s.problem for s in drawn if s.problem],
        )
        out = {**record, "meta": meta}
        if outcome.winner is None:
            out["meta"]["trace"] = drawn[0].result.trace
            return out, _no_winner_reason(drawn, meta["problems"]), []
        winner = outcome.winner
        label = {
            "tool_calls": [c.to_dict() for c in winner.calls],
            "content": winner.result.content,
        }
        out["label"] = label
        meta["trace"] = winner.result.trace
        if winner.result.logprobs is not None:
            meta["logprobs"] = winner.result.logprobs
        pairs = quality.preference_pairs(record["id"], winner, drawn)
        if outcome.agreement < self.conf.quality.min_agreement:
            return (
                out,
                (
                    "disagreement",
                    f"agreement {outcome.agreement:.2f} < {self.conf.quality.min_agreement}",
                ),
                pairs,
            )
        if self.judge_client is not None:
            j = self.conf.quality.judge
            score, reason, cost = await quality.judge(
                self.judge_client,
                j.rubric,
                self.task.tools_for(record),
                record["messages"],
                label,
                winner.result.trace,
            )
            meta["judge"], meta["judge_reason"] = score, reason
            meta["cost_usd"] += cost
            if score is not None and score < j.min_score:
                return out, ("judge", f"judge score {score:.2f} < {j.min_score}: {reason}"), pairs
        return out, None, pairs

    async def guarded(self, record: dict[str, Any]):
        try:
            return await self.decide(record)
        except TeacherError as exc:
            self.failures.append(f"{record['id']}: {exc}")
            if len(self.failures) >= self.conf.max_failures or getattr(exc, "status", None) in (
                401,
                403,
                404,
            ):
                raise _Stop(str(exc)) from exc
            log.warning("input %s failed, will be retried on the next run: %s", record["id"], exc)
            return None


def _no_winner_reason(drawn: list[quality.Sample], problems: list[str]) -> tuple[str, str]:
    """Why an input without a valid sample is rejected: ``dry_run`` when the environment
    rejected every sample's calls (``helpers.dry_run``), else ``invalid``."""
    text = "; ".join(problems)[:500]
    if all(s.result.error_kind == "dry_run" for s in drawn):
        return "dry_run", "the environment rejected every sample: " + text
    return "invalid", "no valid sample: " + text


async def _run_all(
    records: list[dict[str, Any]], labeler: Labeler, concurrency: int, on_done, description: str
) -> None:
    """Decide every record with at most ``concurrency`` inputs in flight; write as each ends.

    Each input's outcome is written by the task that decided it, so an input finished is on
    disk even when another one's failure (``_Stop``, ``ServerDied``, an interrupt) cancels the
    rest at once, retries and all."""
    if not records:
        return
    gate = asyncio.Semaphore(concurrency)

    with bar(len(records), description) as advance:

        async def one(record):
            async with gate:
                outcome = await labeler.guarded(record)
            on_done(record, outcome, advance)

        pending = [asyncio.ensure_future(one(r)) for r in records]
        try:
            for future in asyncio.as_completed(pending):
                await future  # the first failure ends the loop
        finally:
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _task_fingerprint(task: Task) -> str:
    return hashlib.sha256(task.path.read_bytes()).hexdigest()[:16]


VOLATILE_KEYS = (
    "limit",
    "test_limit",
    "max_failures",
    "teacher.concurrency",
    "teacher.timeout_s",
    "teacher.max_retries",
    "teacher.n_threads",
)
"""Settings that do not change a record (how many inputs, how fast): a run resumes with its
records when only these changed, e.g. a larger ``limit`` labels just the new inputs."""


def stage_settings(task: Task, conf: LabelConfig) -> dict[str, Any]:
    """What the manifest records as this stage's settings (the task file's hash included)."""
    return {
        "task": str(task.path),
        "task_sha": _task_fingerprint(task),
        **conf.model_dump(mode="json"),
    }


def run(
    task: Task, conf: LabelConfig, run_dir: str | Path, restart: bool = False
) -> dict[str, str]:
    """Label the task's data into ``run_dir/label``; returns the artifact paths (relative)."""
    with Run(run_dir) as the_run:  # the stage's lock lets go however the stage ends
        return _run(the_run, task, conf, restart)


def _run(the_run: Run, task: Task, conf: LabelConfig, restart: bool) -> dict[str, str]:
    out = the_run.begin(
        "label", stage_settings(task, conf), restart=restart, volatile=VOLATILE_KEYS
    )
    names = ("labeled", "rejected", "preferences", "teacher_test")
    logs = {name: RecordLog(out / f"{name}.jsonl") for name in names}
    try:
        inputs, test = select_inputs(task, conf, logs)
        todo = [
            r for r in inputs if r["id"] not in logs["labeled"] and r["id"] not in logs["rejected"]
        ]
        test_todo = [r for r in test if r["id"] not in logs["teacher_test"]]
        console.print(
            f"[bold]label[/] {task.name}: {len(inputs)} inputs ({len(inputs) - len(todo)} done), "
            f"{len(test)} gold test inputs ({len(test) - len(test_todo)} done) -> {out}"
        )
        if todo or test_todo:
            asyncio.run(_label(task, conf, out, todo, test_todo, logs))
    finally:
        for handle in logs.values():
            handle.close()
    report = label_report(out, task)
    artifacts = {name: f"label/{name}.jsonl" for name in names}
    artifacts["report"] = "label/label_report.json"
    incomplete = report["failed_inputs"] > 0
    the_run.finish(
        "label",
        artifacts,
        status="incomplete" if incomplete else "finished",
        summary={
            k: report[k]
            for k in ("accepted", "rejected", "accept_rate", "teacher_test_exact")
            if k in report
        },
    )
    return artifacts


def run_teacher(
    task: Task,
    conf: LabelConfig,
    records: list[dict[str, Any]],
    folder: Path,
    on_outcome: Callable[[dict[str, Any], Any, Callable[..., None]], None],
) -> float:
    """The label stage's pipeline and quality control on ``records``, outside the stage: the
    teacher endpoint as the stage starts it (server log and response cache in ``folder``), no
    judge; ``on_outcome(record, outcome, advance)`` as each input ends (``outcome`` as
    ``Labeler.decide`` returns it, None after a transport failure). Returns the seconds taken.

    The eval stage measures the teacher this way (``teacher_rerun: true``)."""

    async def go() -> float:
        with endpoint(conf.teacher, folder / "teacher_server.log") as (url, model, check):
            client = make_client(conf.teacher, url, model, folder / "cache.sqlite", check)
            labeler = Labeler(task, conf, client, None)
            started = time.perf_counter()
            try:
                await _run_all(
                    records, labeler, conf.teacher.concurrency, on_outcome, "teacher pipeline"
                )
            finally:
                await client.aclose()
            return time.perf_counter() - started

    return asyncio.run(go())


async def _label(
    task: Task,
    conf: LabelConfig,
    out: Path,
    todo: list[dict],
    test_todo: list[dict],
    logs: dict[str, RecordLog],
) -> None:
    with contextlib.ExitStack() as stack:
        teacher = stack.enter_context(endpoint(conf.teacher, out / "teacher_server.log"))
        base_url, model, check = teacher
        client = make_client(conf.teacher, base_url, model, out / "cache.sqlite", check)
        judge_client = None
        if conf.quality.judge.enabled:
            j = conf.quality.judge.endpoint
            if j is None:
                judge_client = client
            else:
                judge_url, judge_model, judge_check = stack.enter_context(
                    endpoint(j, out / "judge_server.log")
                )
                judge_client = make_client(
                    j, judge_url, judge_model, out / "judge_cache.sqlite", judge_check
                )
        labeler = Labeler(task, conf, client, judge_client)
        counts = {"accepted": 0, "rejected": 0}

        def on_label(record, outcome, advance):
            if outcome is not None:
                labelled, reason, pairs = outcome
                for pair in pairs:
                    if pair["id"] not in logs["preferences"]:
                        logs["preferences"].append(
                            {**pair, "messages": record["messages"], "tools": record.get("tools")}
                        )
                if reason is None:
                    logs["labeled"].append(labelled)
                    counts["accepted"] += 1
                else:
                    logs["rejected"].append(
                        {**labelled, "reason_kind": reason[0], "reason": reason[1]}
                    )
                    counts["rejected"] += 1
            advance(1, **counts, failed=len(labeler.failures))

        def on_test(record, outcome, advance):
            if outcome is not None:
                labelled, reason, _ = outcome
                prediction = labelled.get("label") or {"tool_calls": [], "content": None}
                score = task.evaluate(prediction, record["gold"], record.get("tools"))
                logs["teacher_test"].append(
                    {
                        **labelled,
                        "label": prediction,
                        "rejected_reason": reason and reason[1],
                        "score": score.to_dict(),
                    }
                )
            advance(1)

        try:
            await _run_all(todo, labeler, conf.teacher.concurrency, on_label, "labelling")
            await _run_all(
                test_todo, labeler, conf.teacher.concurrency, on_test, "teacher on gold test"
            )
        except _Stop as exc:
            raise LabelStopped(
                f"stopped after {len(labeler.failures)} failed inputs; the endpoint looks unusable: {exc}. "
                f"Every record decided so far is kept in {out}; re-run the same command to continue."
            ) from None
        finally:
            await client.aclose()
            if judge_client is not None and judge_client is not client:
                await judge_client.aclose()
        _write_failures(out, labeler.failures)


def _write_failures(out: Path, failures: list[str]) -> None:
    path = out / "failures.txt"
    if failures:
        path.write_text("\n".join(failures) + "\n", encoding="utf-8")
        console.print(
            f"[yellow]{len(failures)} inputs failed on transport errors (see {path}); "
            "re-run the same command to retry them"
        )
    else:
        path.unlink(missing_ok=True)
