"""The load-test harness itself, run for real at a tiny size: it must measure what it claims.

Both benchmarks start real processes on 127.0.0.1 (an SFU or `sabaq serve`, a synthetic
teacher, student processes) and write JSON; these tests check the figures are there and
plausible (every student got a first keyframe, delays were sampled, nothing was lost), not
how fast anything is: timings belong to the benchmarks, not to tests.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


def run_module(module: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bench_sfu_measures_delay_first_frames_and_seminar(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "sfu.json"
    done = run_module(
        "loadtests.bench_sfu",
        "--n",
        "4",
        "--no-relay",
        "--no-floor",
        "--no-janus",  # tests/test_janus_bench.py runs Janus through the same harness
        "--seminar",
        "2,2",
        "--window",
        "2",
        "--warmup",
        "1",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["failures"] == []
    lecture, seminar = document["results"]
    assert (lecture["n"], lecture["publishers"]) == (4, 1)
    assert (seminar["n"], seminar["publishers"]) == (2, 2)
    for row in (lecture, seminar):
        assert row["all_receiving"] and row["loss_pct"] == 0.0
        assert row["first_frames"] == row["n"] and row["first_frame_p50_ms"] > 0
        # every student times ~30 frames/s from each publisher over the 2 s window
        expected = row["n"] * row["publishers"] * 30 * 2
        assert row["delay_samples"] >= 0.5 * expected
        assert 0 < row["delay_p50_ms"] <= row["delay_p99_ms"] <= row["delay_max_ms"]
        assert row["us_per_packet"] > 0
    # students receiving two publishers get twice the packets of a lecture's student
    assert seminar["student_pps"] > 1.6 * lecture["student_pps"]
    assert "delay p99 ms" in document["table"] and "1st frame p50 ms" in document["table"]


def test_bench_join_times_first_keyframes_through_the_protocol(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "join.json"
    done = run_module(
        "loadtests.bench_join",
        "--n",
        "4",
        "--window",
        "2",
        "--steady",
        "2",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert row["joined"] == 4 and row["saw_video"] == 4 and row["errors"] == 0
    assert 0 < row["welcome_p50_ms"] <= row["first_frame_p50_ms"]
    assert row["delay_samples"] > 0
    # the synthetic teacher answered the SFU's keyframe requests with early keyframes
    assert row["teacher"]["keyframe_requests"] >= 1
    assert row["teacher"]["keyframes_forced"] >= 1
