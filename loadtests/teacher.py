"""The benchmark's publisher: an aiortc peer connection sending pre-encoded VP8 and Opus.

    python -m loadtests.teacher --server http://127.0.0.1:PORT [--video-bitrate BPS]

Publishes looping `EncodedTrack`s of a VP8 clip (30 fps) and an Opus clip through the
control API, so aiortc only packetizes and encrypts (no encoding). Like a browser's encoder
it answers the SFU's PLI/FIR with a keyframe at once (the clip's next one), and every video
frame carries its send time (`media.STAMP`) for the students' end-to-end delay. Prints
``{"published": true, ...}`` once connected, then answers ``stats`` on stdin with what it
sent; exits on ``quit``, end of stdin, SIGTERM or its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from loadtests import common
from loadtests.media import EncodedTrack, cached_clip

PARTICIPANT = "teacher"


def clips(video_bitrate: int, fps: int, seconds: float) -> tuple[Any, Any]:
    """The (cached) VP8 and Opus clips the teacher sends."""
    video = cached_clip("vp8", bitrate=video_bitrate, fps=fps, seconds=seconds)
    audio = cached_clip("opus", seconds=seconds)
    return video, audio


def answer_keyframe_requests(sender: Any, track: EncodedTrack) -> None:
    """Route the sender's PLI/FIR handling to the track: aiortc's own only flags its encoder,
    which a pre-encoded track does not have."""
    sender._send_keyframe = track.request_keyframe


async def publish(args: argparse.Namespace) -> None:
    common.loopback_policy()
    logging.getLogger("aioice.ice").setLevel(logging.INFO)  # "Consent to send expired"
    video_clip, audio_clip = clips(args.video_bitrate, args.fps, args.clip_seconds)
    video = EncodedTrack(video_clip, stamp=not args.no_stamp)
    audio = EncodedTrack(audio_clip)
    pc = common.peer_connection()
    answer_keyframe_requests(pc.addTrack(video), video)
    pc.addTrack(audio)

    @pc.on("connectionstatechange")  # type: ignore[misc]
    def on_state() -> None:
        print(f"teacher: connection {pc.connectionState}", file=sys.stderr, flush=True)

    try:
        await pc.setLocalDescription(await pc.createOffer())
        granted = common.enlarge_pc_buffers(pc)
        sources = {
            t.mid: "camera" if t.kind == "video" else "microphone" for t in pc.getTransceivers()
        }
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            url = args.server.rstrip("/")
            async with http.post(
                f"{url}/join", json={"participant": args.participant, "publisher": True}
            ) as r:
                r.raise_for_status()
            async with http.post(
                f"{url}/publish",
                json={
                    "participant": args.participant,
                    "sdp": pc.localDescription.sdp,
                    "sources": sources,
                },
            ) as r:
                if r.status != 200:
                    raise RuntimeError(f"publish failed: {r.status} {await r.text()}")
                answer = (await r.json())["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(20):
            while pc.connectionState != "connected":
                await asyncio.sleep(0.05)
        common.send({"published": True, "rcvbuf": granted})

        senders = {t.kind: t.sender for t in pc.getTransceivers()}

        def sent(kind: str) -> int:
            return int(getattr(senders[kind], "_RTCRtpSender__packet_count", 0))

        async def handle(command: str) -> dict[str, Any] | None:
            if command != "stats":
                return {"error": f"unknown command {command!r}"}
            return {
                "video_frames": video.frames_sent,
                "keyframes": video.keyframes_sent,
                "keyframes_forced": video.keyframes_forced,
                "keyframe_requests": video.keyframe_requests,
                "audio_frames": audio.frames_sent,
                "video_packets": sent("video"),
                "audio_packets": sent("audio"),
                "state": pc.connectionState,
                "cpu_s": common.cpu_seconds(os.getpid()),
            }

        await common.serve_commands(handle)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                await pc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", required=True, help="control API base URL (127.0.0.1)")
    parser.add_argument("--video-bitrate", type=int, default=1_000_000)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--participant", default=PARTICIPANT, help="publisher id")
    parser.add_argument(
        "--no-stamp", action="store_true", help="send the clip's frames without a send time"
    )
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args()
    common.run_child(lambda: publish(args), args.deadline)


if __name__ == "__main__":
    main()
