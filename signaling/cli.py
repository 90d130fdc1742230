"""The `sabaq` command."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from importlib.metadata import version
from pathlib import Path

from sfu import SfuConfig
from signaling.footprint import cli as footprint_cli
from signaling.identity import MIN_HS256_SECRET_BYTES, Role, mint

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sabaq` console script."""
    parser = argparse.ArgumentParser(prog="sabaq", description="Sabaq live lessons.")
    parser.add_argument("--version", action="version", version=f"sabaq {version('sabaq')}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("info", help="what this installation can do")
    serve = commands.add_parser(
        "serve",
        help="run Sabaq (embedded mode: signaling, SFU and web pages in one process)",
        description="Run Sabaq. Settings come from a TOML file (--config or SABAQ_CONFIG) "
        "and SABAQ_* environment variables; see docs/configuration.md.",
    )
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="create the lesson 'demo' and print a teacher link and two student links",
    )
    token = commands.add_parser(
        "token",
        help="mint an HS256 token for development and tests",
        description="Print an HS256 token signed with the secret in an environment variable.",
    )
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--name", required=True, help="display name")
    token.add_argument("--sub", help="user id (default: a fresh dev-… id)")
    token.add_argument("--lesson", help="the lesson the token admits to")
    token.add_argument("--course", help="the course the token admits to")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--issuer", default="sabaq-dev")
    token.add_argument("--audience", default="sabaq")
    token.add_argument(
        "--secret-env",
        default="SABAQ_JWT_SECRET",
        metavar="VAR",
        help="environment variable holding the HS256 secret",
    )
    footprint_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "footprint":
        return footprint_cli.run(args)
    if args.command == "token":
        return _token(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "info":
        config = SfuConfig()
        print(f"sabaq {version('sabaq')}")
        print("media plane: forwarding without decoding")
        print(f"  video codecs: {', '.join(config.video_codecs)}")
        print(f"  audio codecs: {', '.join(config.audio_codecs)}")
        return 0
    parser.print_help()
    return 2


def _serve(args: argparse.Namespace) -> int:
    """`sabaq serve`: settings errors go to stderr with exit status 2."""
    from signaling.serve import serve  # noqa: PLC0415 - loads aiohttp, uvloop, the SFU
    from signaling.settings import SettingsError, load_settings  # noqa: PLC0415
    from signaling.tls import TlsError  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
        return serve(settings, demo=args.demo)
    except (SettingsError, TlsError) as exc:
        print(f"sabaq serve: {exc}", file=sys.stderr)
        return 2


def _token(args: argparse.Namespace) -> int:
    """`sabaq token`: print a token; errors go to stderr with exit status 2."""
    secret = os.environ.get(args.secret_env)
    if not secret:
        print(f"sabaq token: set {args.secret_env} to the HS256 secret", file=sys.stderr)
        return 2
    if len(secret.encode()) < MIN_HS256_SECRET_BYTES:
        print(
            f"sabaq token: the secret in {args.secret_env} must be at least "
            f"{MIN_HS256_SECRET_BYTES} bytes",
            file=sys.stderr,
        )
        return 2
    if args.role != Role.ADMIN and args.lesson is None and args.course is None:
        print("sabaq token: give --lesson or --course (only admin needs neither)", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("sabaq token: --ttl must be positive", file=sys.stderr)
        return 2
    print(
        mint(
            secret=secret,
            issuer=args.issuer,
            audience=args.audience,
            sub=args.sub or f"dev-{uuid.uuid4().hex[:12]}",
            name=args.name,
            role=args.role,
            lesson=args.lesson,
            course=args.course,
            ttl=args.ttl,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
