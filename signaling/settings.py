"""`sabaq serve`'s settings: defaults, then a TOML file, then ``SABAQ_*`` environment variables.

Every setting has a safe default: the server listens on loopback only, contacts
no STUN or TURN server and accepts WebSockets only from its own origins. The
file is ``sabaq.example.toml``'s shape (see docs/configuration.md); a variable
``SABAQ_<SECTION>_<KEY>`` overrides the key of that section, and the HS256
secret comes from ``SABAQ_JWT_SECRET``, as for ``sabaq token``.

Every mistake raises :class:`SettingsError` whose message starts with where the
value came from (``/etc/sabaq.toml: [server] port``, ``SABAQ_SERVER_PORT`` or
``[server] port`` for a value given in code) and never contains a secret.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, time
from pathlib import Path
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from sfu import IcePolicy, SfuConfig
from signaling import tls as _tls
from signaling.identity import MIN_HS256_SECRET_BYTES, Verifier

__all__ = [
    "AttendanceSettings",
    "AuthSettings",
    "FootprintSettings",
    "IceServer",
    "LimitsSettings",
    "MediaSettings",
    "MetricsSettings",
    "RecordingsSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "TlsMode",
    "TlsSettings",
    "describe",
    "load_settings",
]

TlsMode = Literal["off", "files", "self-signed"]
"""How `sabaq serve` does HTTPS: not at all, with given files, or with its own certificate."""

_CONFIG_VARIABLE: Final = "SABAQ_CONFIG"
# A metrics token guards an endpoint that anyone who can reach the port may try.
_MIN_METRICS_TOKEN: Final = 16
_SECRET_VARIABLE: Final = "SABAQ_JWT_SECRET"  # the variable `sabaq token` reads too

# The codecs aiortc 1.16 (pinned in pyproject.toml) can negotiate, in their usual spelling.
_VIDEO_CODECS: Final = ("video/VP8", "video/H264")
_AUDIO_CODECS: Final = ("audio/opus", "audio/G722", "audio/PCMU", "audio/PCMA")

_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_ICE_URL: Final = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[^\]]*\]|[^:?\[\]]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


class SettingsError(Exception):
    """A setting is unknown or invalid; the message says where it came from and why."""


class _Invalid(ValueError):
    """A value is wrong; the message says how, the caller says where."""


# Values ---------------------------------------------------------------------------------


def _kind(value: object) -> str:
    """What a TOML value is, in TOML's words."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, date | time):  # datetime is a date
        return "a date or time"
    return f"a {type(value).__name__}"


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {_kind(value)}")
    return value


def _nonempty(value: object) -> str:
    text = _string(value)
    if not text.strip():
        raise _Invalid("must not be empty")
    return text


def _integer(value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"must be an integer, not {_kind(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        if maximum is None:
            raise _Invalid(f"must be at least {minimum}, not {value}")
        raise _Invalid(f"must be between {minimum} and {maximum}, not {value}")
    return value


def _positive_int(value: object, _base: Path | None) -> int:
    return _integer(value, 1)


def _positive_float(value: object, _base: Path | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"must be a number, not {_kind(value)}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise _Invalid(f"must be a number greater than 0, not {value}")
    return number


def _minutes(value: object, _base: Path | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"must be a number of minutes, not {_kind(value)}")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= 600:
        raise _Invalid(f"must be between 0 and 600 minutes, not {value}")
    return number


def _share(value: object, _base: Path | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"must be a number from 0 to 1, not {_kind(value)}")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= 1:
        raise _Invalid(f"must be a number from 0 to 1, not {value}")
    return number


def _retention_days(value: object, _base: Path | None) -> int:
    return _integer(value, 0, 36500)


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Invalid(f"must be an array of strings, not {_kind(value)}")
    for item in value:
        if not isinstance(item, str):
            raise _Invalid(f"must be an array of strings, not one holding {_kind(item)}")
    return tuple(value)


def _is_host_name(text: str) -> bool:
    labels = text.split(".")
    return len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _checked_host(text: str) -> str:
    """An IP address (IPv6 with or without brackets) or a DNS host name in ASCII (A-labels)."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    try:
        # "университет.kz" is written "xn--...kz" on the wire, in certificates and origins.
        name = text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        name = ""
    if not name or not _is_host_name(name):
        raise _Invalid(f"{text!r} is neither an IP address nor a host name")
    return name


def _is_wildcard(host: str) -> bool:
    """Whether ``host`` is 0.0.0.0 or :: (every interface), which names no single address."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _host(value: object, _base: Path | None) -> str:
    return _checked_host(_nonempty(value).strip())


def _port(value: object, _base: Path | None) -> int:
    return _integer(value, 1, 65535)


def _ip_addresses(value: object, _base: Path | None) -> tuple[str, ...]:
    addresses = _strings(value)
    if not addresses:
        raise _Invalid("must list at least one address (leave it out for every interface)")
    try:
        return tuple(str(ipaddress.ip_address(a.strip())) for a in addresses)
    except ValueError as error:
        raise _Invalid(str(error)) from None


def _networks(value: object, _base: Path | None) -> tuple[str, ...]:
    networks = _strings(value)
    if not networks:
        raise _Invalid("must list at least one network (leave it out to allow any)")
    result = []
    for network in networks:
        try:
            # strict=False: "10.1.2.3/16" means 10.1.0.0/16, as IcePolicy reads it.
            result.append(str(ipaddress.ip_network(network.strip(), strict=False)))
        except ValueError:
            raise _Invalid(f"{network!r} is not an IP network such as 10.0.0.0/8") from None
    return tuple(result)


def _networks_or_empty(value: object, _base: Path | None) -> tuple[str, ...]:
    """Like `_networks`, but an empty list is allowed (it admits no address)."""
    return _networks(value, None) if _strings(value) else ()


def _metrics_token(value: object, _base: Path | None) -> str:
    # Never quote the value: it is a secret like the HS256 one.
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {_kind(value)}")
    if len(value) < _MIN_METRICS_TOKEN or not all("!" <= c <= "~" for c in value):
        raise _Invalid(
            f"must be at least {_MIN_METRICS_TOKEN} printable ASCII characters without spaces; "
            "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


def _host_names(value: object, _base: Path | None) -> tuple[str, ...]:
    return tuple(_checked_host(name.strip()) for name in _strings(value))


def _origin(scheme: str, host: str, port: int | None) -> str:
    """An origin as browsers send it: lower case, IPv6 in brackets, no default port."""
    host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _split_url(text: str, what: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of an http(s) URL, or _Invalid."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise _Invalid(f"{text!r} is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _Invalid(f"{text!r} is not {what}")
    if parts.username is not None or parts.query or parts.fragment:
        raise _Invalid(f"{text!r} is not {what} (no user, query or fragment)")
    return parts.scheme, _checked_host(parts.hostname), port, parts.path


def _public_url(value: object, _base: Path | None) -> str:
    text = _nonempty(value)
    scheme, host, port, path = _split_url(text, "an http(s) URL such as https://sabaq.example.edu")
    return _origin(scheme, host, port) + path.rstrip("/")


def _origins(value: object, _base: Path | None) -> tuple[str, ...]:
    result = []
    for text in _strings(value):
        what = "an origin such as https://sabaq.example.edu"
        scheme, host, port, path = _split_url(text, what)
        if path not in {"", "/"}:
            raise _Invalid(f"{text!r} is not {what} (an origin has no path)")
        result.append(_origin(scheme, host, port))
    return tuple(result)


def _path(value: object, base: Path | None) -> Path:
    path = Path(value if isinstance(value, os.PathLike) else _nonempty(value)).expanduser()
    # Relative paths in the file are relative to the file, wherever it is started from.
    return base / path if base is not None and not path.is_absolute() else path


def _existing_file(value: object, base: Path | None) -> Path:
    path = _path(value, base)
    if not path.is_file():
        raise _Invalid(f"no such file: {path}")
    return path


def _tls_mode(value: object, _base: Path | None) -> str:
    mode = _string(value)
    if mode not in get_args(TlsMode):
        raise _Invalid(f'must be "off", "files" or "self-signed", not {mode!r}')
    return mode


def _issuer(value: object, _base: Path | None) -> str:
    return _nonempty(value)


def _secret(value: object, _base: Path | None) -> str:
    # Never quote the value: this is the one setting whose text must not reach a log.
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {_kind(value)}")
    if len(value.encode()) < MIN_HS256_SECRET_BYTES:
        raise _Invalid(
            f"must be at least {MIN_HS256_SECRET_BYTES} bytes; make one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return value


def _leeway(value: object, _base: Path | None) -> int:
    # More than 5 minutes of skew is a broken clock, and it keeps expired tokens alive.
    return _integer(value, 0, 300)


def _codecs(kind: str, known: tuple[str, ...]) -> Callable[[object, Path | None], object]:
    def convert(value: object, _base: Path | None) -> tuple[str, ...]:
        names = _strings(value)
        if not names:
            raise _Invalid(f"must list at least one {kind} codec")
        spelled = {name.lower(): name for name in known}
        result = []
        for name in names:
            if name.strip().lower() not in spelled:
                raise _Invalid(f"{name!r} is not one of {', '.join(known)}")
            result.append(spelled[name.strip().lower()])
        if len(set(result)) != len(result):
            raise _Invalid("names a codec twice")
        return tuple(result)

    return convert


def _ice_url(text: str) -> str:
    match = _ICE_URL.fullmatch(text.strip())
    if match is None:
        raise _Invalid(f"{text!r} is not a STUN or TURN URL such as turn:turn.example.edu:3478")
    try:
        _checked_host(match["host"])
    except _Invalid as error:
        raise _Invalid(f"{text!r}: {error}") from None
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise _Invalid(f"{text!r}: the port must be between 1 and 65535")
    if match["transport"] is not None and match["scheme"].startswith("stun"):
        raise _Invalid(f"{text!r}: a STUN URL takes no transport (RFC 7064)")
    return text.strip()


def _optional_string(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise _Invalid(f"{name} must be a non-empty string")
    return value


def _check_ice_server(
    urls: object, username: object, credential: object
) -> tuple[tuple[str, ...], str | None, str | None]:
    """(urls, username, credential) of one STUN/TURN server, checked."""
    if isinstance(urls, str):
        urls = [urls]  # RTCIceServer allows one URL or a list
    try:
        url_list = _strings(urls)
    except _Invalid as error:
        raise _Invalid(f"urls {error}") from None
    if not url_list:
        raise _Invalid("urls must list at least one URL")
    checked = tuple(_ice_url(url) for url in url_list)
    user = _optional_string("username", username)
    password = _optional_string("credential", credential)
    # Browsers refuse a TURN server without both (InvalidAccessError).
    if any(url.startswith("turn") for url in checked) and (user is None or password is None):
        raise _Invalid("a TURN server needs a username and a credential")
    return checked, user, password


def _ice_servers(value: object, _base: Path | None) -> tuple[IceServer, ...]:
    if not isinstance(value, list | tuple):
        raise _Invalid(f"must be an array of tables ([[media.ice_servers]]), not {_kind(value)}")
    servers = []
    for index, entry in enumerate(value):
        if isinstance(entry, IceServer):
            servers.append(entry)
            continue
        if not isinstance(entry, dict):
            raise _Invalid(f"entry {index + 1} must be a table, not {_kind(entry)}")
        unknown = sorted(set(entry) - {"urls", "username", "credential"})
        if unknown:
            raise _Invalid(
                f"entry {index + 1}: unknown key {unknown[0]!r}; known: urls, username, credential"
            )
        if "urls" not in entry:
            raise _Invalid(f"entry {index + 1}: urls is missing")
        try:
            urls, username, credential = _check_ice_server(
                entry["urls"], entry.get("username"), entry.get("credential")
            )
        except _Invalid as error:
            raise _Invalid(f"entry {index + 1}: {error}") from None
        servers.append(IceServer(urls, username, credential))
    return tuple(servers)


# Environment variables: text to the value a TOML file would hold ------------------------


def _env_text(text: str) -> object:
    return text


def _env_int(text: str) -> object:
    try:
        return int(text.strip())
    except ValueError:
        raise _Invalid(f"must be an integer, not {text!r}") from None


def _env_float(text: str) -> object:
    try:
        return float(text.strip())
    except ValueError:
        raise _Invalid(f"must be a number, not {text!r}") from None


def _env_list(text: str) -> object:
    return [item.strip() for item in text.split(",") if item.strip()]


# The sections -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    convert: Callable[[object, Path | None], object]
    env: Callable[[str], object] | None  # None: only in the file
    optional: bool = False  # None allowed; an empty variable means None
    unset: str = "not set"  # how describe() shows None or an empty list
    secret: bool = False


_SPECS: Final[Mapping[str, Mapping[str, _Field]]] = {
    "server": {
        "host": _Field(_host, _env_text),
        "port": _Field(_port, _env_int),
        "public_url": _Field(_public_url, _env_text, optional=True),
        "allowed_origins": _Field(_origins, _env_list, unset="only the server's own"),
        "data_dir": _Field(_path, _env_text),
        "web_dir": _Field(_path, _env_text, optional=True, unset="web/ beside the package"),
    },
    "tls": {
        "mode": _Field(_tls_mode, _env_text),
        "cert": _Field(_path, _env_text, optional=True),
        "key": _Field(_path, _env_text, optional=True),
        "hostnames": _Field(_host_names, _env_list, unset="none beyond localhost"),
    },
    "auth": {
        "issuer": _Field(_issuer, _env_text),
        "audience": _Field(_issuer, _env_text),
        "hs256_secret": _Field(_secret, _env_text, optional=True, secret=True),
        "public_key_file": _Field(_existing_file, _env_text, optional=True),
        "jwks_file": _Field(_existing_file, _env_text, optional=True),
        "leeway": _Field(_leeway, _env_int),
    },
    "media": {
        "host_addresses": _Field(
            _ip_addresses, _env_list, optional=True, unset="every non-loopback interface"
        ),
        "allowed_networks": _Field(_networks, _env_list, optional=True, unset="any"),
        "ice_servers": _Field(_ice_servers, None, unset="none: no STUN or TURN is contacted"),
        "video_codecs": _Field(_codecs("video", _VIDEO_CODECS), _env_list),
        "audio_codecs": _Field(_codecs("audio", _AUDIO_CODECS), _env_list),
    },
    "limits": {
        "max_message_bytes": _Field(_positive_int, _env_int),
        "messages_per_second": _Field(_positive_float, _env_float),
        "message_burst": _Field(_positive_int, _env_int),
        "chat_per_10s": _Field(_positive_int, _env_int),
        "refused_before_close": _Field(_positive_int, _env_int),
        "heartbeat_s": _Field(_positive_float, _env_float),
        "join_timeout_s": _Field(_positive_float, _env_float),
        "offer_timeout_s": _Field(_positive_float, _env_float),
        "max_participants_per_lesson": _Field(_positive_int, _env_int),
    },
    "attendance": {
        "late_after_min": _Field(_minutes, _env_float),
        "present_min_share": _Field(_share, _env_float),
        "partial_min_share": _Field(_share, _env_float),
    },
    "footprint": {
        "checkpoint_every": _Field(_positive_int, _env_int),
    },
    "recordings": {
        "retention_days": _Field(_retention_days, _env_int),
    },
    "metrics": {
        "allowed_networks": _Field(_networks_or_empty, _env_list, unset="none: the token only"),
        "token": _Field(_metrics_token, _env_text, optional=True, secret=True),
    },
}

_Where = Callable[[str], str]


def _env_name(section: str, key: str) -> str | None:
    if section == "auth" and key == "hs256_secret":
        return _SECRET_VARIABLE
    if _SPECS[section][key].env is None:
        return None
    return f"SABAQ_{section}_{key}".upper()


def _check_tls(values: Mapping[str, Any], where: _Where) -> None:
    mode, cert, key = values["mode"], values["cert"], values["key"]
    if mode == "files":
        if cert is None or key is None:
            raise SettingsError(f'{where("mode")}: mode "files" needs both cert and key')
        for name, path in (("cert", cert), ("key", key)):
            if not path.is_file():
                raise SettingsError(f"{where(name)}: no such file: {path}")
    else:
        for name in ("cert", "key"):
            # Most likely a forgotten mode = "files": serving plain HTTP instead would
            # leave the cameras off for everyone but localhost, with no clear error.
            if values[name] is not None:
                raise SettingsError(
                    f'{where(name)}: set, but mode is "{mode}"; cert and key are used only '
                    'with mode = "files"'
                )


def _check_attendance(values: Mapping[str, Any], where: _Where) -> None:
    if values["partial_min_share"] > values["present_min_share"]:
        raise SettingsError(
            f"{where('partial_min_share')}: must not exceed present_min_share "
            f"({values['present_min_share']})"
        )


_CHECKS: Final[Mapping[str, Callable[[Mapping[str, Any], _Where], None]]] = {
    "tls": _check_tls,
    "attendance": _check_attendance,
}


def _in_code(section: str) -> _Where:
    return lambda key: f"[{section}] {key}"


def _validate(instance: Any, section: str) -> None:
    """Convert and check every field of a section built in code (the loader did it already)."""
    values: dict[str, Any] = {}
    where = _in_code(section)
    for key, spec in _SPECS[section].items():
        value = getattr(instance, key)
        if value is not None or not spec.optional:
            try:
                value = spec.convert(value, None)
            except _Invalid as error:
                raise SettingsError(f"{where(key)}: {error}") from None
            # Frozen: the normalised value (a tuple, a Path) replaces what was given.
            object.__setattr__(instance, key, value)
        values[key] = value
    check = _CHECKS.get(section)
    if check is not None:
        check(values, where)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where `sabaq serve` listens and which pages may open its WebSockets."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    data_dir: Path = Path("data")
    web_dir: Path | None = None

    def __post_init__(self) -> None:
        _validate(self, "server")

    @property
    def web_root(self) -> Path:
        """The directory of the web client: ``web_dir`` or the repository's ``web/``."""
        if self.web_dir is not None:
            return self.web_dir
        return Path(__file__).resolve().parent.parent / "web"

    def origins(self, tls: bool, hostnames: Iterable[str] = ()) -> frozenset[str]:
        """The Origin values allowed to open a WebSocket: the server's own plus ``allowed_origins``.

        The server's own are ``public_url``'s origin and localhost, 127.0.0.1,
        [::1], ``host`` and ``hostnames`` at ``port`` (https when ``tls``); a
        wildcard ``host`` (0.0.0.0, ::) names no origin.
        """
        scheme = "https" if tls else "http"
        result = set(self.allowed_origins)
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            result.add(_origin(parts.scheme, parts.hostname or "", parts.port))
        for name in ("localhost", "127.0.0.1", "::1", self.host, *hostnames):
            host = _checked_host(name)
            if not _is_wildcard(host):
                result.add(_origin(scheme, host, self.port))
        return frozenset(result)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """HTTPS: off, from given certificate files, or with a generated self-signed certificate."""

    mode: TlsMode = "off"
    cert: Path | None = None
    key: Path | None = None
    hostnames: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self, "tls")

    @property
    def enabled(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.mode != "off"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How tokens are verified: issuer, audience and exactly one key source."""

    issuer: str = "sabaq-dev"
    audience: str = "sabaq"
    hs256_secret: str | None = field(default=None, repr=False)
    public_key_file: Path | None = None
    jwks_file: Path | None = None
    leeway: int = 30

    def __post_init__(self) -> None:
        _validate(self, "auth")

    def key_sources(self) -> tuple[str, ...]:
        """The names of the key sources set (a verifier needs exactly one)."""
        return tuple(
            name
            for name in ("hs256_secret", "public_key_file", "jwks_file")
            if getattr(self, name) is not None
        )

    def build_verifier(self) -> Verifier:
        """A token verifier for the one configured key source, or SettingsError."""
        sources = self.key_sources()
        if not sources:
            raise SettingsError(
                f"[auth] no key source: set {_SECRET_VARIABLE} (HS256), "
                "public_key_file (RS256/ES256 PEM) or jwks_file"
            )
        if len(sources) > 1:
            raise SettingsError(f"[auth] give exactly one key source, not {' and '.join(sources)}")
        public_key_pem = None
        if self.public_key_file is not None:
            try:
                public_key_pem = self.public_key_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise SettingsError(
                    f"[auth] public_key_file: cannot read {self.public_key_file}: {error}"
                ) from None
        try:
            return Verifier(
                issuer=self.issuer,
                audience=self.audience,
                hs256_secret=self.hs256_secret,
                public_key_pem=public_key_pem,
                jwks_path=None if self.jwks_file is None else str(self.jwks_file),
                leeway=self.leeway,
            )
        except ValueError as error:
            # Verifier's messages name files and limits, never the secret.
            raise SettingsError(f"[auth] {sources[0]}: {error}") from None


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server offered to browsers (RTCIceServer)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            urls, _, _ = _check_ice_server(self.urls, self.username, self.credential)
        except _Invalid as error:
            raise SettingsError(f"[media] ice_servers: {error}") from None
        object.__setattr__(self, "urls", urls)

    def as_json(self) -> dict[str, Any]:
        """The RTCIceServer dictionary, without the keys that are not set."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """The media plane: where ICE gathers, whom it may talk to, STUN/TURN and codecs."""

    host_addresses: tuple[str, ...] | None = None
    allowed_networks: tuple[str, ...] | None = None
    ice_servers: tuple[IceServer, ...] = ()
    video_codecs: tuple[str, ...] = ("video/VP8", "video/H264")
    audio_codecs: tuple[str, ...] = ("audio/opus",)

    def __post_init__(self) -> None:
        _validate(self, "media")

    def ice_servers_json(self) -> list[dict[str, Any]]:
        """The ``iceServers`` list for the browsers' RTCPeerConnection (``[]`` by default)."""
        return [server.as_json() for server in self.ice_servers]

    def build_sfu_config(self) -> SfuConfig:
        """The SFU's configuration: ICE policy and codec preferences."""
        # IcePolicy takes URLs only for now, so a TURN server is usable by the
        # browsers (with credentials) but not by the SFU itself.
        policy = IcePolicy(
            host_addresses=self.host_addresses,
            allowed_networks=self.allowed_networks,
            ice_servers=[url for server in self.ice_servers for url in server.urls],
        )
        return SfuConfig(ice=policy, video_codecs=self.video_codecs, audio_codecs=self.audio_codecs)


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """Per-connection and per-lesson limits of the classroom protocol (docs/protocol.md)."""

    max_message_bytes: int = 65536
    messages_per_second: float = 20.0
    message_burst: int = 40
    chat_per_10s: int = 5
    refused_before_close: int = 200
    heartbeat_s: float = 10.0
    join_timeout_s: float = 10.0
    offer_timeout_s: float = 15.0
    max_participants_per_lesson: int = 500

    def __post_init__(self) -> None:
        _validate(self, "limits")


@dataclass(frozen=True, slots=True)
class AttendanceSettings:
    """When a student counts as present, late, partial or absent (docs/footprint.md)."""

    late_after_min: float = 10.0
    present_min_share: float = 0.75
    partial_min_share: float = 0.25

    def __post_init__(self) -> None:
        _validate(self, "attendance")


@dataclass(frozen=True, slots=True)
class FootprintSettings:
    """The ledger: a signed checkpoint every this many events (and at every lesson end)."""

    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        _validate(self, "footprint")


@dataclass(frozen=True, slots=True)
class RecordingsSettings:
    """Recorded lessons: how long they are kept (0: for ever)."""

    retention_days: int = 0

    def __post_init__(self) -> None:
        _validate(self, "recordings")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Who may read ``GET /metrics``: clients in these networks, or with the bearer token."""

    allowed_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _validate(self, "metrics")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `sabaq serve` is configured with."""

    server: ServerSettings = field(default_factory=ServerSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    attendance: AttendanceSettings = field(default_factory=AttendanceSettings)
    footprint: FootprintSettings = field(default_factory=FootprintSettings)
    recordings: RecordingsSettings = field(default_factory=RecordingsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    def origins(self) -> frozenset[str]:
        """The Origin values allowed to open a WebSocket with these settings."""
        return self.server.origins(self.tls.enabled, self.tls.hostnames)

    def base_url(self) -> str:
        """The URL that links printed at startup begin with (no trailing slash)."""
        if self.server.public_url is not None:
            return self.server.public_url
        host = self.server.host
        if _is_wildcard(host):
            host = "localhost"  # a wildcard bind is reachable here as localhost
        return _origin("https" if self.tls.enabled else "http", host, self.server.port)

    def certificate_names(self) -> tuple[str, ...]:
        """The names a self-signed certificate must cover besides localhost."""
        names = list(self.tls.hostnames)
        if not _is_wildcard(self.server.host):
            names.append(self.server.host)
        if self.server.public_url is not None:
            names.append(urlsplit(self.server.public_url).hostname or "")
        return tuple(dict.fromkeys(name for name in names if name))

    def tls_files(self) -> tuple[Path, Path] | None:
        """(certificate, key) to serve with, or None when TLS is off.

        In mode "self-signed" the pair lives in ``data_dir/tls`` and is made or
        renewed here (see :func:`signaling.tls.self_signed_certificate`).
        """
        if self.tls.mode == "off":
            return None
        if self.tls.mode == "files":
            assert self.tls.cert is not None and self.tls.key is not None  # checked on load
            return self.tls.cert, self.tls.key
        try:
            return _tls.self_signed_certificate(
                self.server.data_dir / "tls", self.certificate_names()
            )
        except _tls.TlsError as error:
            raise SettingsError(f"[tls] self-signed: {error}") from None


_SECTIONS: Final[Mapping[str, type[Any]]] = {
    "server": ServerSettings,
    "tls": TlsSettings,
    "auth": AuthSettings,
    "media": MediaSettings,
    "limits": LimitsSettings,
    "attendance": AttendanceSettings,
    "footprint": FootprintSettings,
    "recordings": RecordingsSettings,
    "metrics": MetricsSettings,
}


# Loading ----------------------------------------------------------------------------------


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise SettingsError(
            f"{path}: cannot read the configuration file: {error.strerror or error}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, overridden by the TOML file (``path`` or ``$SABAQ_CONFIG``), then by ``SABAQ_*``.

    ``env`` defaults to the process environment. Variables named ``SABAQ_<SECTION>_…``
    with an unknown key are refused; other ``SABAQ_*`` variables are left to their tools.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get(_CONFIG_VARIABLE):
        path = Path(environ[_CONFIG_VARIABLE]).expanduser()
    given: dict[str, dict[str, Any]] = {section: {} for section in _SPECS}
    labels: dict[tuple[str, str], str] = {}

    if path is not None:
        base = path.absolute().parent
        known = ", ".join(sorted(_SPECS))
        for section, table in _read_file(path).items():
            if not isinstance(table, dict):
                raise SettingsError(
                    f"{path}: {section} = … outside a section; settings go in sections: {known}"
                )
            if section not in _SPECS:
                raise SettingsError(f"{path}: unknown section [{section}]; known: {known}")
            specs = _SPECS[section]
            for key, raw in table.items():
                if key not in specs:
                    raise SettingsError(
                        f"{path}: [{section}] unknown key {key!r}; known: {', '.join(specs)}"
                    )
                label = f"{path}: [{section}] {key}"
                try:
                    given[section][key] = specs[key].convert(raw, base)
                except _Invalid as error:
                    raise SettingsError(f"{label}: {error}") from None
                labels[section, key] = label

    variables = {
        name: (section, key)
        for section, specs in _SPECS.items()
        for key in specs
        if (name := _env_name(section, key)) is not None
    }
    for name in sorted(environ):
        text = environ[name]
        if name in variables:
            section, key = variables[name]
            spec = _SPECS[section][key]
            assert spec.env is not None
            try:
                if spec.optional and not text.strip():
                    value: object = None  # an empty variable unsets an optional setting
                else:
                    value = spec.convert(spec.env(text), None)
            except _Invalid as error:
                raise SettingsError(f"{name}: {error}") from None
            given[section][key] = value
            labels[section, key] = name
            continue
        section = name.removeprefix("SABAQ_").split("_", 1)[0].lower()
        if name.startswith("SABAQ_") and section in _SPECS:
            raise SettingsError(f"{name}: {_unknown_variable(name, section)}")

    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = {f.name: f.default for f in fields(cls)} | given[section]
        check = _CHECKS.get(section)
        if check is not None:
            check(values, _labelled(labels, section))
        sections[section] = cls(**given[section])
    return Settings(**sections)


def _labelled(labels: Mapping[tuple[str, str], str], section: str) -> _Where:
    """Where a key of ``section`` was set, for errors that involve several keys."""
    return lambda key: labels.get((section, key), f"[{section}] {key}")


def _unknown_variable(name: str, section: str) -> str:
    key = name.removeprefix(f"SABAQ_{section.upper()}_").lower()
    if section == "auth" and key == "hs256_secret":
        return f"the HS256 secret is read from {_SECRET_VARIABLE}"
    if key in _SPECS[section]:
        return f"{key} can only be set in the configuration file ([[{section}.{key}]])"
    known = ", ".join(n for k in _SPECS[section] if (n := _env_name(section, k)) is not None)
    return f"no such setting; known in [{section}]: {known}"


# Describing -------------------------------------------------------------------------------


def _shown(spec: _Field, value: object) -> str:
    if value is None or value == ():
        return f"({spec.unset})"
    if spec.secret:
        return "***"
    if isinstance(value, tuple):
        if value and isinstance(value[0], IceServer):
            return "; ".join(_shown_ice_server(server) for server in value)
        return ", ".join(str(item) for item in value)
    return str(value)


def _shown_ice_server(server: IceServer) -> str:
    text = ", ".join(server.urls)
    if server.username is not None:
        text += f" (username {server.username}, credential ***)"
    return text


def describe(settings: Settings) -> str:
    """A multi-line summary for the startup log; secrets appear as ``***``."""
    lines = []
    for section in _SPECS:
        part = getattr(settings, section)
        lines.append(f"[{section}]")
        for key, spec in _SPECS[section].items():
            lines.append(f"  {key} = {_shown(spec, getattr(part, key))}")
        if section == "server":
            lines.append(f"  (origins allowed: {', '.join(sorted(settings.origins()))})")
            lines.append(f"  (web client: {part.web_root})")
    return "\n".join(lines)
