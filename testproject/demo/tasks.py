"""The demo job: a Celery task that publishes its progress to the job's topic."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task

from broadcast_app import send_event
from testproject.celery import app

from .authorizer import job_topic

logger = logging.getLogger(__name__)


@app.task(bind=True)
def run_job(self: Task, job_id: str, steps: int, step_seconds: float) -> None:
    """Work through ``steps`` steps, sending one JSON event per step to ``jobs:<job_id>``.

    Each is ``{"job", "step", "steps", "percent", "message"}``: ``progress`` events for
    step 0 (who runs the job) and steps 1..steps, then a ``done`` event. Delivery is
    at-most-once: the page subscribes before it starts the job.
    """
    topic = job_topic(job_id)

    def report(step: int, message: str, *, event: str = "progress") -> None:
        data = {
            "job": job_id,
            "step": step,
            "steps": steps,
            "percent": step * 100 // steps,
            "message": message,
        }
        send_event(topic, data, event=event)

    if self.request.is_eager:
        report(0, "Started in a thread of the web process (Celery eager mode).")
    else:
        report(0, f"Started on worker {self.request.hostname}.")
    for step in range(1, steps + 1):
        time.sleep(step_seconds)  # The real work would go here.
        report(step, f"Step {step} of {steps} done.")
    report(steps, "Job finished.", event="done")


def enqueue_job(job_id: str, steps: int, step_seconds: float) -> None:
    """Send the job to a worker, or start it in a thread of this process in eager mode.

    An eager task runs inside ``delay()``; run there, it would hold the request that
    starts it until the job ends, and the page would see its events only afterwards.
    """
    args: dict[str, Any] = {"job_id": job_id, "steps": steps, "step_seconds": step_seconds}
    if not run_job.app.conf.task_always_eager:
        run_job.delay(**args)
        return
    # Daemon: a stopping server does not wait for jobs; their streams end with it.
    threading.Thread(
        target=_run_eagerly, kwargs=args, name=f"demo-job-{job_id}", daemon=True
    ).start()


def _run_eagerly(**args: Any) -> None:
    result = run_job.delay(**args)
    if result.failed():
        logger.error("Demo job %s failed.", args["job_id"], exc_info=result.result)
