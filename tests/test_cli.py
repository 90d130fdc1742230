"""The `sabaq` console script."""

from __future__ import annotations

import pytest

from signaling.cli import main


def test_info_lists_the_forwarded_codecs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "video/VP8" in out and "audio/opus" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: sabaq" in capsys.readouterr().out
