"""Sabaq's recorder: a subscriber like any student that muxes forwarded packets to disk.

Packets are never decoded or re-encoded: `depacketize` rebuilds frames from
RTP payloads, `track` times them, `writer` muxes them with PyAV into one
WebM (VP8, Opus) or Matroska (H.264) file per track part with a JSON-lines
manifest, and `finalize` repairs what a killed recorder left behind.
"""

from .depacketize import DepacketizeError, Frame, FrameAssembler
from .finalize import finalize_orphans
from .manifest import MANIFEST_NAME, Manifest, read_manifest
from .recording import SUPPORTED_CODECS, LessonRecorder
from .track import TrackRecorder
from .writer import RecordingWriter, TrackInfo

__all__ = [
    "MANIFEST_NAME",
    "SUPPORTED_CODECS",
    "DepacketizeError",
    "Frame",
    "FrameAssembler",
    "LessonRecorder",
    "Manifest",
    "RecordingWriter",
    "TrackInfo",
    "TrackRecorder",
    "finalize_orphans",
    "read_manifest",
]
