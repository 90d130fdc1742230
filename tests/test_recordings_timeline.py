"""The player's pure timeline module (web/js/recording-timeline.js), run in Node.

Lanes from parts, the segment at a moment (gaps, late starts, overlaps), the
chat's schedule, and the watched stretches the page reports (seeks are not
watching). Skipped where Node is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

MODULE = Path(__file__).resolve().parent.parent / "web" / "js" / "recording-timeline.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js (`apt-get install nodejs`)")


def run(tmp_path: Path, body: str) -> Any:
    """Runs ``body`` (which sets ``out``) with the module imported as ``m``; returns ``out``."""
    script = tmp_path / "script.mjs"
    script.write_text(
        f"const m = await import({json.dumps(MODULE.as_uri())});\n"
        f"let out;\n{body}\nconsole.log(JSON.stringify(out));\n",
        encoding="utf-8",
    )
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PARTS = [
    # The teacher's camera, republished after a gap at 100-120 s.
    {"id": "c1", "source": "camera", "participant_id": "t", "teacher": True,
     "start_offset_s": 0, "duration_s": 100, "url": "/m/c1"},
    {"id": "c2", "source": "camera", "participant_id": "t", "teacher": True,
     "start_offset_s": 120, "duration_s": 80, "url": "/m/c2"},
    # A student's camera (floor given): not on the stage while the teacher's is there.
    {"id": "c3", "source": "camera", "participant_id": "s", "teacher": False,
     "start_offset_s": 10, "duration_s": 20, "url": "/m/c3"},
    {"id": "s1", "source": "screen", "participant_id": "t", "teacher": True,
     "start_offset_s": 30, "duration_s": None, "url": "/m/s1"},
    {"id": "a2", "source": "microphone", "participant_id": "s", "teacher": False,
     "start_offset_s": 10, "duration_s": 20, "url": "/m/a2"},
    {"id": "a1", "source": "microphone", "participant_id": "t", "teacher": True,
     "start_offset_s": 0, "duration_s": 200, "url": "/m/a1"},
    # Still being written: no URL, so not played.
    {"id": "x", "source": "screen", "participant_id": "t", "teacher": True,
     "start_offset_s": 150, "duration_s": None, "url": None},
]  # fmt: skip


def test_lanes_and_segments(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        f"""
        const lanes = m.buildLanes({{parts: {json.dumps(PARTS)}}});
        const at = (lane, t) => (lane.at(t) || {{partId: null}}).partId;
        out = {{
          camera: [0, 99.9, 100, 119, 120, 199, 200].map((t) => at(lanes.camera, t)),
          screen: [29, 30, 500].map((t) => at(lanes.screen, t)),
          audio: lanes.audio.map((lane) => [lane.key, lane.segments.map((s) => s.partId)]),
          length: m.timelineLength({{duration_s: null}}, lanes),
          declared: m.timelineLength({{duration_s: 321.5}}, lanes),
        }};
        """,
    )
    assert out["camera"] == ["c1", "c1", None, None, "c2", "c2", None]
    assert out["screen"] == [None, "s1", "s1"]  # an open-ended part runs to the end
    assert out["audio"] == [["microphone:t", ["a1"]], ["microphone:s", ["a2"]]]
    assert (out["length"], out["declared"]) == (200, 321.5)


def test_without_a_teachers_camera_anyones_is_shown(tmp_path: Path) -> None:
    parts = [p for p in PARTS if p["id"] == "c3"]
    out = run(
        tmp_path,
        f"const lanes = m.buildLanes({{parts: {json.dumps(parts)}}});"
        "out = [lanes.camera.at(15).partId, lanes.screen, lanes.audio.length];",
    )
    assert out == ["c3", None, 0]


def test_clock_and_chat_schedule(tmp_path: Path) -> None:
    messages = [
        {"id": 3, "at": "2026-11-24T09:00:30Z"},
        {"id": 1, "at": "2026-11-24T08:59:00Z"},  # before the recording: shown from 0
        {"id": 2, "at": "2026-11-24T09:00:05.500Z"},
    ]
    out = run(
        tmp_path,
        f"""
        const schedule = m.chatSchedule({json.dumps(messages)}, "2026-11-24T09:00:00.000000Z");
        out = {{
          order: schedule.map((x) => [x.message.id, x.at]),
          due: [0, 5, 5.5, 29.9, 30, 1e9].map((t) => m.dueCount(schedule, t)),
          clocks: [0, 59.9, 61, 3600, 3725, -3, null].map(m.formatClock),
        }};
        """,
    )
    assert out["order"] == [[1, 0], [2, 5.5], [3, 30]]
    assert out["due"] == [1, 1, 2, 2, 3, 3]
    assert out["clocks"] == ["0:00", "0:59", "1:01", "1:00:00", "1:02:05", "0:00", "0:00"]


def test_watched_stretches_skip_seeks_and_survive_a_failed_send(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        """
        const w = new m.WatchTracker();
        // Plays 0 → 10 s at 1x, observed every 200 ms.
        for (let i = 0; i <= 50; i++) w.observe(i * 0.2, i * 200, 1);
        // A seek to 60 s: the skipped part is not watched.
        w.observe(60, 10200, 1);
        for (let i = 1; i <= 10; i++) w.observe(60 + i * 0.4, 10200 + i * 200, 2);  // at 2x
        const first = w.take();  // the open stretch is reported up to now and goes on
        w.observe(64.4, 12400, 2);
        w.close();  // paused
        w.observe(64.4, 20000, 1);  // playing again after a pause: a new stretch
        w.observe(65, 20600, 1);
        const second = w.take();
        w.restore(second);  // the POST failed: sent again next time
        const third = w.take();
        out = {first, second, third, empty: new m.WatchTracker().take(),
               merged: m.mergeIntervals([[5, 6], [0, 2], [1.5, 3], [7, 7], [3, 4.00049]])};
        """,
    )
    assert out["first"] == [[0, 10], [60, 64]]
    assert out["second"] == [[64, 65]]
    assert out["third"] == [[64, 65]]
    assert out["empty"] == []
    assert out["merged"] == [[0, 4], [5, 6]]
