"""The `sabaq` command."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from sfu import SfuConfig

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sabaq` console script."""
    parser = argparse.ArgumentParser(prog="sabaq", description="Sabaq live lessons.")
    parser.add_argument("--version", action="version", version=f"sabaq {version('sabaq')}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("info", help="what this installation can do")
    args = parser.parse_args(argv)
    if args.command == "info":
        config = SfuConfig()
        print(f"sabaq {version('sabaq')}")
        print("media plane: forwarding without decoding")
        print(f"  video codecs: {', '.join(config.video_codecs)}")
        print(f"  audio codecs: {', '.join(config.audio_codecs)}")
        print("'sabaq serve' arrives with the signaling service.")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
