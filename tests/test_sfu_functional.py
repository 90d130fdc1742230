"""The SFU with real aiortc peers over loopback."""

from __future__ import annotations

import asyncio

from sfu import Sfu, Source, TrackPublished
from tests.peers import EventLog, Publisher, Subscriber, wait_until


async def test_payloads_arrive_unchanged_at_three_subscribers(sfu: Sfu, log: EventLog) -> None:
    room = sfu.room("lecture")
    teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
    publisher = Publisher(teacher)
    publisher.add(Source.CAMERA)
    publisher.add(Source.MICROPHONE)
    students = [Subscriber(await room.join(f"s{i}"), log) for i in range(3)]
    await publisher.publish()
    video = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == "video")
    audio = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == "audio")
    await wait_until(lambda: all(len(s.packets_for(video.track_id)) > 60 for s in students), 15)
    await asyncio.sleep(0.5)
    sent_video = [p.payload for p in publisher.sent[publisher.ssrc_of(Source.CAMERA)]]
    sent_audio = [p.payload for p in publisher.sent[publisher.ssrc_of(Source.MICROPHONE)]]
    for student in students:
        for track_id, sent in ((video.track_id, sent_video), (audio.track_id, sent_audio)):
            got = sorted(student.packets_for(track_id), key=lambda p: p.seq)
            assert got, f"{student.participant.id} received nothing for {track_id}"
            payloads = [p.payload for p in got]
            start = sent.index(payloads[0])
            assert payloads == sent[start : start + len(payloads)]
    for s in students:
        await s.close()
    await publisher.close()
