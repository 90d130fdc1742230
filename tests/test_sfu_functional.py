"""The SFU with real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
import gc
import itertools
import weakref

import pytest
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from loadtests.media import EncodedTrack, cached_clip
from sfu import (
    ConnectionStateChanged,
    IcePolicy,
    NegotiationError,
    NotAllowed,
    QualitySample,
    Sfu,
    Source,
    SpeakingChanged,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)
from sfu import participant as participant_module
from sfu.codecs import is_keyframe
from sfu.rtcp import Bye, Nack, Pli, SenderReport, parse_rtcp
from sfu.rtp import parse_rtp
from tests.peers import Captured, EventLog, Publisher, Subscriber, peer_connection, wait_until


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
            arrived = student.packets_for(track_id)
            assert arrived, f"{student.participant.id} received nothing for {track_id}"
            # In sequence order, across the 16-bit wrap (each subscriber's numbering
            # starts at random, so a wrap inside the test happens now and then).
            first = arrived[0].seq
            got = sorted(arrived, key=lambda p: (p.seq - first) & 0xFFFF)
            payloads = [p.payload for p in got]
            start = sent.index(payloads[0])
            assert payloads == sent[start : start + len(payloads)]
    for s in students:
        await s.close()
    await publisher.close()


async def _lesson(sfu: Sfu, log: EventLog, students: int = 1, **subscriber: object) -> tuple:
    room = sfu.room("lesson")
    teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
    publisher = Publisher(teacher)
    # aiortc cannot make pre-encoded video honour a PLI; 1 s keyframes bound the wait.
    publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
    publisher.add(Source.MICROPHONE)
    subs = [Subscriber(await room.join(f"s{i}"), log, **subscriber) for i in range(students)]
    await publisher.publish()
    video = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == "video")
    audio = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == "audio")
    return room, teacher, publisher, subs, video, audio


async def _close_all(*peers: object) -> None:
    for peer in peers:
        await peer.close()  # type: ignore[attr-defined]


async def test_late_joiner_gets_keyframe_request_and_starts_on_keyframe(
    sfu: Sfu, log: EventLog
) -> None:
    room, _, publisher, subs, video, _ = await _lesson(sfu, log)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 30)
    camera = publisher.ssrc_of(Source.CAMERA)
    plis_before = sum(
        1 for p in publisher.rtcp_received if isinstance(p, Pli) and p.media_ssrc == camera
    )
    late = Subscriber(await room.join("late"), log)
    await log.wait_for(
        lambda e: (
            isinstance(e, ConnectionStateChanged)
            and e.participant_id == "late"
            and e.state == "connected"
        )
    )
    # The request reaches the publisher at once, not at the next report interval.
    await wait_until(
        lambda: (
            sum(1 for p in publisher.rtcp_received if isinstance(p, Pli) and p.media_ssrc == camera)
            > plis_before
        ),
        timeout=0.6,
    )
    await wait_until(lambda: len(late.packets_for(video.track_id)) > 0, timeout=5)
    # The first to arrive (the lowest sequence number unless the numbering wrapped).
    first = late.packets_for(video.track_id)[0]
    assert is_keyframe("video/VP8", first.payload)
    await _close_all(late, *subs, publisher)


async def test_subscriber_nacks_are_answered_from_the_cache_with_rtx(
    sfu: Sfu, log: EventLog
) -> None:
    dropped: set[tuple[int, int]] = set()

    def lose(packet: Captured) -> bool:
        # Lose every 15th video packet once on the way to the subscriber.
        key = (packet.ssrc, packet.seq)
        if packet.payload_type == 97 and packet.seq % 15 == 0 and key not in dropped:
            dropped.add(key)
            return True
        return False

    _, _, publisher, subs, video, _ = await _lesson(sfu, log, drop=lose)
    track = sfu.room("lesson").track(video.track_id)
    await wait_until(lambda: len(dropped) >= 5 and track.counters.retransmitted >= 5, timeout=10)
    repaired = {int.from_bytes(p.payload[:2], "big") for p in subs[0].rtx_for(video.track_id)}
    lost = {seq for ssrc, seq in dropped}
    assert lost & repaired, (
        f"no dropped packet was retransmitted: lost={sorted(lost)} rtx={sorted(repaired)}"
    )
    nacks = [p for p in subs[0].rtcp_received if isinstance(p, Nack)]
    assert not nacks  # the tap sees what the SFU sends; NACKs go the other way
    assert sfu.counters.nacks_received > 0
    await _close_all(*subs, publisher)


async def test_upstream_loss_is_nacked_and_repaired_for_students(sfu: Sfu, log: EventLog) -> None:
    _, _, publisher, subs, video, _ = await _lesson(sfu, log)
    camera = publisher.ssrc_of(Source.CAMERA)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 30)
    # Drop some of the publisher's video packets before they leave it.
    dtls = publisher.pc.getTransceivers()[0].sender.transport
    original = dtls.transport._send
    lost: list[int] = []

    async def lossy_send(data: bytes) -> None:
        if (
            data[0] >> 6 == 2
            and data[1] & 0x7F == 97
            and len(lost) < 5
            and int.from_bytes(data[2:4], "big") % 10 == 0
        ):
            lost.append(int.from_bytes(data[2:4], "big"))
            return
        await original(data)

    dtls.transport._send = lossy_send
    await wait_until(lambda: len(lost) >= 5, timeout=10)
    await wait_until(
        lambda: any(
            isinstance(p, Nack) and p.media_ssrc == camera for p in publisher.rtcp_received
        ),
        5,
    )
    await asyncio.sleep(1.0)
    sent = {p.seq: p.payload for p in publisher.sent[camera]}
    got = {p.payload for p in subs[0].packets_for(video.track_id)}
    repaired = [seq for seq in lost if sent.get(seq) in got]
    assert repaired, f"none of {lost} reached the student"
    await _close_all(*subs, publisher)


async def test_revoking_a_source_stops_forwarding_at_once(sfu: Sfu, log: EventLog) -> None:
    _, teacher, publisher, subs, video, audio = await _lesson(sfu, log)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 30)
    revoked = teacher.set_allowed_sources(frozenset({Source.MICROPHONE}))
    assert revoked == [video.track_id]
    event = await log.wait_for(
        lambda e: isinstance(e, TrackUnpublished) and e.track_id == video.track_id
    )
    assert event.reason == "revoked"
    track = sfu.room("lesson").tracks.get(video.track_id)
    assert track is None  # unpublished synchronously: nothing is forwarded any more
    await asyncio.sleep(0.2)  # packets already on the loopback socket still arrive
    count = len(subs[0].packets_for(video.track_id))
    audio_count = len(subs[0].packets_for(audio.track_id))
    await asyncio.sleep(1.0)
    assert len(subs[0].packets_for(video.track_id)) == count
    assert len(subs[0].packets_for(audio.track_id)) > audio_count + 20
    with pytest.raises(NotAllowed):
        await publisher.publish()
    await _close_all(*subs, publisher)


async def test_publisher_leaving_ends_the_track_at_every_subscriber(
    sfu: Sfu, log: EventLog
) -> None:
    room, _, publisher, subs, video, audio = await _lesson(sfu, log, students=2)
    await wait_until(lambda: all(len(s.packets_for(video.track_id)) > 10 for s in subs))
    await wait_until(lambda: all(len(s.remote_tracks) == 2 for s in subs))
    await room.leave("teacher")
    for track_id in (video.track_id, audio.track_id):
        event = await log.wait_for(
            lambda e, t=track_id: isinstance(e, TrackUnpublished) and e.track_id == t
        )
        assert event.reason == "left"
    for sub in subs:
        await wait_until(lambda s=sub: len(s.offers) >= 2)
        last = sub.offers[-1].sdp
        assert last.count("a=inactive") == 2
        await wait_until(lambda s=sub: any(isinstance(p, Bye) for p in s.rtcp_received))
        for remote in sub.remote_tracks:
            with pytest.raises(MediaStreamError):
                async with asyncio.timeout(5):
                    while True:
                        await remote.recv()
    await _close_all(*subs, publisher)


async def test_a_student_leaving_leaks_no_task_or_connection(sfu: Sfu, log: EventLog) -> None:
    tasks_before = len(asyncio.all_tasks())
    room, teacher, publisher, subs, video, _ = await _lesson(sfu, log)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 10)
    student = room.participant("s0")
    pcs = [weakref.ref(student.subscriber_pc), weakref.ref(teacher.publisher_pc)]
    await subs[0].close()
    await room.leave("s0")
    assert not room.track(video.track_id).downtracks
    await publisher.close()
    await room.leave("teacher")
    assert "lesson" not in sfu.rooms
    subs.clear()
    del student, teacher, publisher
    await asyncio.sleep(0.5)
    gc.collect()
    assert [ref() for ref in pcs] == [None, None]
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_bad_offers_are_refused_and_leave_no_connection(sfu: Sfu, log: EventLog) -> None:
    room = sfu.room("lesson")
    student = await room.join("student", set())
    tasks_before = len(asyncio.all_tasks())
    with pytest.raises(NegotiationError, match="no audio or video"):
        await student.publish("v=0\r\nthis is not sdp\r\n", {})
    pc = peer_connection()
    pc.addTrack(EncodedTrack(cached_clip("vp8")))
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    with pytest.raises(NotAllowed, match="may not publish camera"):
        await student.publish(offer, {"0": Source.CAMERA})
    with pytest.raises(NegotiationError, match="no source is declared"):
        await student.publish(offer, {})
    with pytest.raises(NegotiationError, match="must be audio"):
        await student.publish(offer, {"0": Source.MICROPHONE})
    teacher = await room.join("teacher", {Source.CAMERA})
    vp9_only = offer.replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000")
    with pytest.raises(NegotiationError, match="none of the codecs"):
        await teacher.publish(vp9_only, {"0": Source.CAMERA})
    no_fingerprint = "\r\n".join(
        line for line in offer.split("\r\n") if not line.startswith("a=fingerprint")
    )
    with pytest.raises(NegotiationError, match="fingerprint"):
        await teacher.publish(no_fingerprint, {"0": Source.CAMERA})
    assert student.publisher_pc is None and teacher.publisher_pc is None
    await pc.close()
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= tasks_before
    with pytest.raises(NegotiationError, match="no subscriber offer"):
        await student.set_subscriber_answer("v=0\r\n")


async def test_speaking_is_detected_from_audio_levels(sfu: Sfu, log: EventLog) -> None:
    room = sfu.room("lesson")
    teacher = await room.join("teacher", {Source.MICROPHONE})
    publisher = Publisher(teacher)
    mic = publisher.add(Source.MICROPHONE)
    sender = publisher.pc.getTransceivers()[0].sender
    next_frame = sender._next_encoded_frame

    async def with_level(codec: object) -> object:
        # aiortc computes levels only for frames it encodes; these are pre-encoded.
        frame = await next_frame(codec)
        if frame is not None:
            frame.audio_level = -20 if mic.loud_at(frame.timestamp / 48000) else -127
        return frame

    sender._next_encoded_frame = with_level
    await publisher.publish()
    started = await log.wait_for(lambda e: isinstance(e, SpeakingChanged) and e.speaking, 5)
    stopped = await log.wait_for(lambda e: isinstance(e, SpeakingChanged) and not e.speaking, 5)
    assert started.participant_id == stopped.participant_id == "teacher"
    await publisher.close()


async def test_an_in_process_consumer_gets_the_packets_students_get(
    sfu: Sfu, log: EventLog
) -> None:
    room, _, publisher, subs, video, _ = await _lesson(sfu, log)

    class Consumer:
        def __init__(self) -> None:
            self.rtp: list[bytes] = []
            self.rtcp: list[bytes] = []
            self.ended: str | None = None

        def on_rtp(self, packet: bytes) -> None:
            self.rtp.append(packet)

        def on_rtcp(self, packet: bytes) -> None:
            self.rtcp.append(packet)

        def on_ended(self, reason: str) -> None:
            self.ended = reason

    consumer = Consumer()
    subscription = room.add_consumer(video.track_id, consumer)
    await wait_until(lambda: len(consumer.rtp) > 60 and consumer.rtcp, timeout=10)
    headers = [parse_rtp(p) for p in consumer.rtp]
    assert {h.ssrc for h in headers} == {subscription.ssrc}
    seqs = [h.sequence_number for h in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    sent = [p.payload for p in publisher.sent[publisher.ssrc_of(Source.CAMERA)]]
    got = [p[h.payload_start : h.payload_end] for p, h in zip(consumer.rtp, headers, strict=True)]
    assert is_keyframe("video/VP8", got[0])
    start = sent.index(got[0])
    assert got == sent[start : start + len(got)]
    assert isinstance(parse_rtcp(consumer.rtcp[0])[0], SenderReport)
    await publisher.close()
    await room.leave("teacher")
    assert consumer.ended == "left"
    await _close_all(*subs)


async def test_h264_is_forwarded_and_decodes(sfu: Sfu, log: EventLog) -> None:
    room = sfu.room("lesson")
    teacher = await room.join("teacher", {Source.CAMERA})
    publisher = Publisher(teacher)
    publisher.add(Source.CAMERA, codec="h264")
    publisher.pc.getTransceivers()[0].setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    )
    student = Subscriber(await room.join("student"), log)
    await publisher.publish()
    event = await log.wait_for(lambda e: isinstance(e, TrackPublished))
    assert event.codec == "H264"
    await wait_until(lambda: student.remote_tracks, 10)
    async with asyncio.timeout(10):
        frame = await student.remote_tracks[0].recv()
    assert frame.width == 640
    await _close_all(student, publisher)


async def test_quality_samples_report_round_trip_and_bitrate(sfu: Sfu, log: EventLog) -> None:
    _, _, publisher, subs, _, _ = await _lesson(sfu, log)
    sample = await log.wait_for(
        lambda e: (
            isinstance(e, QualitySample)
            and e.participant_id == "s0"
            and e.round_trip_ms is not None
        ),
        timeout=10,
    )
    assert sample.downstream_bitrate_bps > 100_000
    assert 0 <= sample.round_trip_ms < 1000
    teacher_sample = await log.wait_for(
        lambda e: (
            isinstance(e, QualitySample)
            and e.participant_id == "teacher"
            and e.upstream_bitrate_bps > 0
        )
    )
    assert teacher_sample.upstream_loss is not None
    await _close_all(*subs, publisher)


async def test_mute_pauses_and_resumes_without_a_sequence_gap(sfu: Sfu, log: EventLog) -> None:
    _, teacher, publisher, subs, video, _ = await _lesson(sfu, log)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 30)
    teacher.set_muted(Source.CAMERA, True)
    muted = await log.wait_for(lambda e: isinstance(e, TrackMuted) and e.muted)
    assert muted.track_id == video.track_id
    await asyncio.sleep(0.2)
    count = len(subs[0].packets_for(video.track_id))
    await asyncio.sleep(0.8)
    assert len(subs[0].packets_for(video.track_id)) == count
    teacher.set_muted(Source.CAMERA, False)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > count + 30, timeout=5)
    packets = subs[0].packets_for(video.track_id)
    before, after = packets[count - 1], packets[count]
    # The subscriber sees one continuous stream: next sequence number, later timestamp.
    assert (after.seq - before.seq) & 0xFFFF == 1
    assert 0 < (after.timestamp - before.timestamp) & 0xFFFFFFFF < 90000 * 5
    assert is_keyframe("video/VP8", after.payload)
    await _close_all(*subs, publisher)


async def test_unsubscribe_then_subscribe_reuses_the_m_line(sfu: Sfu, log: EventLog) -> None:
    room, _, publisher, subs, video, _ = await _lesson(sfu, log)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 10)
    ssrc = subs[0].packets_for(video.track_id)[-1].ssrc

    def reported() -> list[int]:
        return [
            p.packet_count
            for p in subs[0].rtcp_received
            if isinstance(p, SenderReport) and p.ssrc == ssrc
        ]

    await wait_until(lambda: len(reported()) > 0, timeout=5)  # one SR before the pause
    student = room.participant("s0")
    student.unsubscribe(video.track_id)
    await wait_until(lambda: len(subs[0].offers) >= 2)
    assert "a=inactive" in subs[0].offers[-1].sdp
    student.subscribe(room.track(video.track_id))
    await wait_until(lambda: len(subs[0].offers) >= 3)
    offer = subs[0].offers[-1]
    assert offer.sdp.count("m=video") == 1  # the inactive m-line was reused, not a new one
    count = len(subs[0].packets_for(video.track_id))
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > count + 10, timeout=5)
    assert subs[0].packets_for(video.track_id)[-1].ssrc == ssrc
    before = len(reported())
    await wait_until(lambda: len(reported()) > before, timeout=5)
    counts = reported()
    # Same SSRC on the reused m-line: its sender reports keep counting (RFC 3550 6.4.1).
    assert counts == sorted(counts)
    assert counts[-1] >= count
    await _close_all(*subs, publisher)


async def test_the_same_identity_joining_again_replaces_the_old_session(
    sfu: Sfu, log: EventLog
) -> None:
    room, _, publisher, subs, video, _ = await _lesson(sfu, log)
    await wait_until(lambda: len(subs[0].packets_for(video.track_id)) > 10)
    old = room.participant("s0")
    await subs[0].close()
    again = Subscriber(await room.join("s0"), log)
    assert old.closed and room.participant("s0") is again.participant
    await wait_until(lambda: len(again.packets_for(video.track_id)) > 10, timeout=10)
    assert [d.sink for d in room.track(video.track_id).downtracks] == [
        again.participant.subscriber_transport
    ]
    await _close_all(again, publisher)


async def test_trickled_candidates_outside_the_allowed_networks_are_ignored(
    sfu: Sfu, log: EventLog
) -> None:
    _, teacher, publisher, subs, _, _ = await _lesson(sfu, log)
    added: list[str] = []

    async def record(candidate: object) -> None:
        added.append(candidate.ip)  # type: ignore[attr-defined]

    teacher.publisher_pc.addIceCandidate = record
    foreign = "candidate:1 1 udp 2122260223 192.0.2.77 50000 typ host"
    await teacher.add_ice_candidate("publish", foreign, "0")
    local = "candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host"
    await teacher.add_ice_candidate("publish", local, "0")
    assert added == ["127.0.0.1"]
    with pytest.raises(NegotiationError, match="malformed ICE candidate"):
        await teacher.add_ice_candidate("publish", "candidate:garbage", "0")
    await _close_all(*subs, publisher)


async def test_a_subscription_made_during_an_offer_goes_into_the_next_one(
    sfu: Sfu, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = sfu.room("lesson")
    teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
    publisher = Publisher(teacher)
    publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
    publisher.add(Source.MICROPHONE)
    await publisher.publish()
    video = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == "video")
    audio = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == "audio")
    student = await room.join("student", auto_subscribe=False)
    sub = Subscriber(student, log)
    original = participant_module.create_peer_connection

    def with_interruption(policy: IcePolicy) -> object:
        pc = original(policy)
        create_offer = pc.createOffer

        async def create() -> object:
            student.subscribe(room.track(audio.track_id))  # arrives while the offer is made
            return await create_offer()

        pc.createOffer = create
        return pc

    monkeypatch.setattr(participant_module, "create_peer_connection", with_interruption)
    student.subscribe(room.track(video.track_id))
    await wait_until(
        lambda: (
            len(sub.packets_for(video.track_id)) > 10 and len(sub.packets_for(audio.track_id)) > 10
        )
    )
    assert len(sub.offers) == 2
    await _close_all(sub, publisher)
