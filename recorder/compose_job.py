"""``python -m recorder.compose_job JOB.json``: run one compose job at the lowest priority.

Started by :func:`recorder.compose.run_job_process`. Exit status 0 when the MP4 is ready,
1 when the job failed; either way ``progress.json`` in the job's work_dir says so
(``{"status": "failed", "reason": ...}`` on failure), which is what the web page reads.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from recorder.compose import ComposeError, ComposeJob, _lower_priority, _write_progress, compose

__all__ = ["main"]

log = logging.getLogger("recorder.compose_job")


def main(argv: list[str] | None = None) -> int:
    """Run the job described by the JSON file named in ``argv``; return the exit status."""
    # Before anything else, so that no thread (decoder or encoder) starts at normal priority.
    _lower_priority()
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if len(args) != 1:
        print("usage: python -m recorder.compose_job JOB.json", file=sys.stderr)
        return 2
    job_file = Path(args[0])
    # A server shutting down sends SIGTERM: say so in progress.json (through compose's own
    # failure path) instead of leaving "running" behind; the next run resumes the chunks.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        job = ComposeJob.from_json(job_file.read_text(encoding="utf-8"))
    except (OSError, ComposeError) as exc:
        # No job, so no work_dir of its own: run_job_process puts job.json in it.
        log.error("compose job %s unreadable: %s", job_file, exc)
        if job_file.parent.is_dir():
            _write_progress(job_file.parent, "failed", 0.0, reason=str(exc))
        return 1
    try:
        compose(job)  # writes progress.json, including "failed" with the reason
    except (Exception, SystemExit) as exc:
        log.error(
            "compose job %s failed: %s", job_file, exc, exc_info=not isinstance(exc, ComposeError)
        )
        return 1
    log.info("compose job %s ready: %s", job_file, job.output)
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise SystemExit(f"interrupted by {signal.Signals(signum).name}")


if __name__ == "__main__":
    sys.exit(main())
