"""The recordings library: the catalogue, signed media URLs, the API and retention.

The recorder (``recorder/``) writes track files and registers them here
(:class:`Catalogue`); a background job makes the single MP4 and reports its
progress here too. :func:`setup_recordings` serves the library to the lesson's
teachers, the course's enrolled students and admins (docs: the module
docstrings of :mod:`.api` and :mod:`.urls`).
"""

from .api import CATALOGUE_KEY, setup_recordings
from .catalogue import Catalogue
from .model import (
    COMPOSITE_STATUSES,
    PART_STATUSES,
    RECORDING_STATUSES,
    CatalogueError,
    Part,
    Recording,
    RecordingNotFound,
)
from .retention import RetentionTask, purge_expired
from .urls import MediaSigner, load_or_create_secret

__all__ = [
    "CATALOGUE_KEY",
    "COMPOSITE_STATUSES",
    "PART_STATUSES",
    "RECORDING_STATUSES",
    "Catalogue",
    "CatalogueError",
    "MediaSigner",
    "Part",
    "Recording",
    "RecordingNotFound",
    "RetentionTask",
    "load_or_create_secret",
    "purge_expired",
    "setup_recordings",
]
