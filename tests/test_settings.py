"""Settings: defaults, the TOML file, SABAQ_* variables, their errors, and what they build."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sfu import IcePolicy
from signaling.identity import Role, mint
from signaling.settings import (
    AuthSettings,
    IceServer,
    LimitsSettings,
    MediaSettings,
    ServerSettings,
    Settings,
    SettingsError,
    TlsSettings,
    describe,
    load_settings,
)
from signaling.tls import CERT_FILE, KEY_FILE

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-" * 6  # 42 bytes
TURN_PASSWORD = "turn-pass-do-not-log"


def _file(directory: Path, text: str) -> Path:
    path = directory / "sabaq.toml"
    path.write_text(text, encoding="utf-8")
    return path


# Defaults and precedence -------------------------------------------------------------------


def test_defaults_are_safe() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.tls.mode == "off"
    assert settings.auth.key_sources() == ()
    assert settings.media.ice_servers == ()
    assert settings.media.ice_servers_json() == []
    assert settings.media.host_addresses is None
    assert settings.server.web_root == ROOT / "web"
    assert settings.base_url() == "http://127.0.0.1:8080"
    assert settings.tls_files() is None


def test_unrelated_variables_are_ignored() -> None:
    env = {"PATH": "/bin", "SABAQ_BROWSER": "x", "SABAQ_CONFIG": "", "SABAQ_LOG_LEVEL": "debug"}
    assert load_settings(env=env) == Settings()


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        """
        [server]
        host = "0.0.0.0"
        port = 9000
        public_url = "https://sabaq.example.edu"
        [media]
        host_addresses = ["10.0.0.1"]
        [limits]
        heartbeat_s = 5
        """,
    )
    env = {
        "SABAQ_SERVER_PORT": "8443",
        "SABAQ_SERVER_PUBLIC_URL": "",  # empty: unset what the file set
        "SABAQ_TLS_MODE": "self-signed",
        "SABAQ_TLS_HOSTNAMES": "sabaq.lan, 10.0.0.5,",
        "SABAQ_MEDIA_HOST_ADDRESSES": "10.0.0.5,10.0.0.6",
        "SABAQ_MEDIA_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.7/24",
        "SABAQ_LIMITS_JOIN_TIMEOUT_S": "2.5",
        "SABAQ_JWT_SECRET": SECRET,
    }
    settings = load_settings(path, env)
    assert settings.server.host == "0.0.0.0"  # from the file
    assert settings.server.port == 8443
    assert settings.server.public_url is None
    assert settings.tls.mode == "self-signed"
    assert settings.tls.hostnames == ("sabaq.lan", "10.0.0.5")
    assert settings.media.host_addresses == ("10.0.0.5", "10.0.0.6")
    assert settings.media.allowed_networks == ("10.0.0.0/8", "192.168.1.0/24")
    assert settings.limits.heartbeat_s == 5.0
    assert settings.limits.join_timeout_s == 2.5
    assert settings.auth.hs256_secret == SECRET


def test_the_file_comes_from_sabaq_config_unless_given(tmp_path: Path) -> None:
    named = _file(tmp_path, "[server]\nport = 9001\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 9002\n", encoding="utf-8")
    assert load_settings(env={"SABAQ_CONFIG": str(named)}).server.port == 9001
    assert load_settings(other, env={"SABAQ_CONFIG": str(named)}).server.port == 9002


def test_relative_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "keys").mkdir(parents=True)
    (conf / "keys" / "c.pem").write_text("x")
    (conf / "keys" / "k.pem").write_text("x")
    (conf / "keys" / "jwks.json").write_text("{}")
    path = _file(
        conf,
        """
        [server]
        data_dir = "var"
        web_dir = "/srv/web"
        [tls]
        mode = "files"
        cert = "keys/c.pem"
        key = "keys/../keys/k.pem"
        [auth]
        jwks_file = "keys/jwks.json"
        """,
    )
    settings = load_settings(path, env={})
    assert settings.server.data_dir == conf / "var"
    assert settings.server.web_dir == Path("/srv/web")
    assert settings.tls.cert == conf / "keys" / "c.pem"
    assert settings.auth.jwks_file == conf / "keys" / "jwks.json"
    assert settings.tls_files() == (conf / "keys" / "c.pem", conf / "keys/../keys/k.pem")
    # From the environment, relative to the working directory, as a shell user expects.
    from_env = load_settings(path, env={"SABAQ_SERVER_DATA_DIR": "here"})
    assert from_env.server.data_dir == Path("here")


def test_the_example_file_loads_and_covers_every_key() -> None:
    example = ROOT / "sabaq.example.toml"
    assert load_settings(example, env={}) == Settings(server=ServerSettings(data_dir=ROOT / "data"))
    # Every key appears, set or commented out, under its section.
    mentioned: dict[str, set[str]] = {}
    section = ""
    for line in example.read_text(encoding="utf-8").splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            section = header[1]
        elif re.fullmatch(r"# \[\[media\.ice_servers\]\]", line):
            mentioned["media"].add("ice_servers")
            section = "media.ice_servers"
        elif key := re.match(r"(?:# )?([a-z0-9_]+) = ", line):
            mentioned.setdefault(section, set()).add(key[1])
    for name in ("server", "tls", "auth", "media", "limits", "metrics"):
        fields = type(getattr(Settings(), name)).__dataclass_fields__
        assert mentioned[name] == set(fields), name
    assert mentioned["media.ice_servers"] == {"urls", "username", "credential"}


def test_the_documentation_names_every_key_and_variable() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for section in ("server", "tls", "auth", "media", "limits", "metrics"):
        for key in type(getattr(Settings(), section)).__dataclass_fields__:
            assert f"| `{key}` |" in text, key
            if key not in {"hs256_secret", "ice_servers"}:
                assert f"`SABAQ_{section.upper()}_{key.upper()}`" in text, key
    assert "`SABAQ_JWT_SECRET`" in text


# Errors ------------------------------------------------------------------------------------

_SECTIONS = "attendance, auth, footprint, limits, media, metrics, recordings, server, tls"
_SERVER_KEYS = "host, port, public_url, allowed_origins, data_dir, web_dir"

FILE_ERRORS: list[tuple[str, str]] = [
    ("[serve]\nport = 1", f"{{file}}: unknown section [serve]; known: {_SECTIONS}"),
    (
        "port = 1",
        f"{{file}}: port = … outside a section; settings go in sections: {_SECTIONS}",
    ),
    ("server = 1", f"{{file}}: server = … outside a section; settings go in sections: {_SECTIONS}"),
    ("[server]\nprot = 1", f"{{file}}: [server] unknown key 'prot'; known: {_SERVER_KEYS}"),
    ('[server]\nport = "8080"', "{file}: [server] port: must be an integer, not a string"),
    ("[server]\nport = true", "{file}: [server] port: must be an integer, not a boolean"),
    ("[server]\nport = 8080.0", "{file}: [server] port: must be an integer, not a float"),
    ("[server]\nport = 0", "{file}: [server] port: must be between 1 and 65535, not 0"),
    ("[server]\nport = 70000", "{file}: [server] port: must be between 1 and 65535, not 70000"),
    ('[server]\nhost = " "', "{file}: [server] host: must not be empty"),
    (
        '[server]\nhost = "my host"',
        "{file}: [server] host: 'my host' is neither an IP address nor a host name",
    ),
    (
        '[server]\npublic_url = "ftp://sabaq.example.edu"',
        "{file}: [server] public_url: 'ftp://sabaq.example.edu' is not an http(s) URL such as"
        " https://sabaq.example.edu",
    ),
    (
        '[server]\npublic_url = "https://a:b@sabaq.example.edu"',
        "{file}: [server] public_url: 'https://a:b@sabaq.example.edu' is not an http(s) URL"
        " such as https://sabaq.example.edu (no user, query or fragment)",
    ),
    (
        '[server]\npublic_url = "https://sabaq.example.edu:99999"',
        "{file}: [server] public_url: 'https://sabaq.example.edu:99999' is not a valid URL",
    ),
    (
        '[server]\nallowed_origins = "https://lms.example.edu"',
        "{file}: [server] allowed_origins: must be an array of strings, not a string",
    ),
    (
        "[server]\nallowed_origins = [1]",
        "{file}: [server] allowed_origins: must be an array of strings, not one holding an integer",
    ),
    (
        '[server]\nallowed_origins = ["https://lms.example.edu/course"]',
        "{file}: [server] allowed_origins: 'https://lms.example.edu/course' is not an origin"
        " such as https://sabaq.example.edu (an origin has no path)",
    ),
    (
        '[server]\nallowed_origins = ["*"]',
        "{file}: [server] allowed_origins: '*' is not an origin such as https://sabaq.example.edu",
    ),
    ("[server]\ndata_dir = 5", "{file}: [server] data_dir: must be a string, not an integer"),
    ('[server]\nweb_dir = ""', "{file}: [server] web_dir: must not be empty"),
    (
        "[server]\ndata_dir = 2024-09-01",
        "{file}: [server] data_dir: must be a string, not a date or time",
    ),
    (
        '[tls]\nmode = "on"',
        '{file}: [tls] mode: must be "off", "files" or "self-signed", not \'on\'',
    ),
    ('[tls]\nmode = "files"', '{file}: [tls] mode: mode "files" needs both cert and key'),
    (
        '[tls]\nmode = "files"\ncert = "c.pem"',
        '{file}: [tls] mode: mode "files" needs both cert and key',
    ),
    (
        '[tls]\nmode = "files"\ncert = "missing.pem"\nkey = "present.key"',
        "{file}: [tls] cert: no such file: {dir}/missing.pem",
    ),
    (
        '[tls]\nmode = "files"\ncert = "present.pem"\nkey = "missing.key"',
        "{file}: [tls] key: no such file: {dir}/missing.key",
    ),
    (
        '[tls]\ncert = "present.pem"',
        '{file}: [tls] cert: set, but mode is "off"; cert and key are used only with'
        ' mode = "files"',
    ),
    (
        '[tls]\nmode = "self-signed"\nkey = "present.key"',
        '{file}: [tls] key: set, but mode is "self-signed"; cert and key are used only with'
        ' mode = "files"',
    ),
    (
        '[tls]\nhostnames = ["sabaq.lan", "bad_name"]',
        "{file}: [tls] hostnames: 'bad_name' is neither an IP address nor a host name",
    ),
    ('[auth]\nissuer = ""', "{file}: [auth] issuer: must not be empty"),
    ("[auth]\naudience = 1", "{file}: [auth] audience: must be a string, not an integer"),
    (
        '[auth]\nhs256_secret = "too-short"',
        "{file}: [auth] hs256_secret: must be at least 32 bytes; make one with: python3 -c"
        " 'import secrets; print(secrets.token_urlsafe(48))'",
    ),
    (
        '[auth]\npublic_key_file = "nope.pem"',
        "{file}: [auth] public_key_file: no such file: {dir}/nope.pem",
    ),
    ('[auth]\njwks_file = "."', "{file}: [auth] jwks_file: no such file: {dir}"),
    ("[auth]\nleeway = -1", "{file}: [auth] leeway: must be between 0 and 300, not -1"),
    ("[auth]\nleeway = 3600", "{file}: [auth] leeway: must be between 0 and 300, not 3600"),
    (
        "[media]\nhost_addresses = []",
        "{file}: [media] host_addresses: must list at least one address (leave it out for"
        " every interface)",
    ),
    (
        '[media]\nhost_addresses = ["10.0.0.300"]',
        "{file}: [media] host_addresses: '10.0.0.300' does not appear to be an IPv4 or IPv6"
        " address",
    ),
    (
        "[media]\nallowed_networks = []",
        "{file}: [media] allowed_networks: must list at least one network (leave it out to"
        " allow any)",
    ),
    (
        '[media]\nallowed_networks = ["10.0.0.0/33"]',
        "{file}: [media] allowed_networks: '10.0.0.0/33' is not an IP network such as 10.0.0.0/8",
    ),
    (
        '[media]\nvideo_codecs = ["video/VP9"]',
        "{file}: [media] video_codecs: 'video/VP9' is not one of video/VP8, video/H264",
    ),
    (
        '[media]\naudio_codecs = ["video/VP8"]',
        "{file}: [media] audio_codecs: 'video/VP8' is not one of audio/opus, audio/G722,"
        " audio/PCMU, audio/PCMA",
    ),
    (
        "[media]\nvideo_codecs = []",
        "{file}: [media] video_codecs: must list at least one video codec",
    ),
    (
        '[media]\naudio_codecs = ["audio/opus", "audio/OPUS"]',
        "{file}: [media] audio_codecs: names a codec twice",
    ),
    (
        '[media]\nice_servers = "stun:stun.example.edu"',
        "{file}: [media] ice_servers: must be an array of tables ([[media.ice_servers]]), not"
        " a string",
    ),
    (
        '[media]\nice_servers = ["stun:stun.example.edu"]',
        "{file}: [media] ice_servers: entry 1 must be a table, not a string",
    ),
    (
        '[[media.ice_servers]]\nurls = ["stun:a.example.edu"]\n'
        '[[media.ice_servers]]\nurls = ["http://stun.example.edu"]',
        "{file}: [media] ice_servers: entry 2: 'http://stun.example.edu' is not a STUN or TURN"
        " URL such as turn:turn.example.edu:3478",
    ),
    (
        '[[media.ice_servers]]\nurls = ["turn:turn.example.edu"]',
        "{file}: [media] ice_servers: entry 1: a TURN server needs a username and a credential",
    ),
    (
        '[[media.ice_servers]]\nurls = ["turn:turn.example.edu"]\nusername = "u"',
        "{file}: [media] ice_servers: entry 1: a TURN server needs a username and a credential",
    ),
    (
        '[[media.ice_servers]]\nurls = "stun:stun.example.edu?transport=udp"',
        "{file}: [media] ice_servers: entry 1: 'stun:stun.example.edu?transport=udp': a STUN"
        " URL takes no transport (RFC 7064)",
    ),
    (
        '[[media.ice_servers]]\nurls = "stun:stun.example.edu:70000"',
        "{file}: [media] ice_servers: entry 1: 'stun:stun.example.edu:70000': the port must be"
        " between 1 and 65535",
    ),
    (
        '[[media.ice_servers]]\nurls = "stun:bad_host"',
        "{file}: [media] ice_servers: entry 1: 'stun:bad_host': 'bad_host' is neither an IP"
        " address nor a host name",
    ),
    (
        '[[media.ice_servers]]\nurls = []\nusername = "u"',
        "{file}: [media] ice_servers: entry 1: urls must list at least one URL",
    ),
    (
        "[[media.ice_servers]]\nurls = [1]",
        "{file}: [media] ice_servers: entry 1: urls must be an array of strings, not one"
        " holding an integer",
    ),
    (
        '[[media.ice_servers]]\nurls = "turn:t.example.edu"\nusername = "u"\npassword = "p"',
        "{file}: [media] ice_servers: entry 1: unknown key 'password'; known: urls, username,"
        " credential",
    ),
    (
        '[[media.ice_servers]]\nusername = "u"',
        "{file}: [media] ice_servers: entry 1: urls is missing",
    ),
    (
        '[[media.ice_servers]]\nurls = "turn:t.example.edu"\nusername = "u"\ncredential = ""',
        "{file}: [media] ice_servers: entry 1: credential must be a non-empty string",
    ),
    (
        "[limits]\nmessages_per_second = 0",
        "{file}: [limits] messages_per_second: must be a number greater than 0, not 0",
    ),
    (
        "[limits]\nheartbeat_s = nan",
        "{file}: [limits] heartbeat_s: must be a number greater than 0, not nan",
    ),
    (
        '[limits]\njoin_timeout_s = "10"',
        "{file}: [limits] join_timeout_s: must be a number, not a string",
    ),
    ("[limits]\nmessage_burst = -5", "{file}: [limits] message_burst: must be at least 1, not -5"),
    (
        "[limits]\nmax_participants_per_lesson = 0",
        "{file}: [limits] max_participants_per_lesson: must be at least 1, not 0",
    ),
    (
        "[limits]\nchat_per_10s = 2.5",
        "{file}: [limits] chat_per_10s: must be an integer, not a float",
    ),
]


@pytest.mark.parametrize(("text", "message"), FILE_ERRORS)
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "present.pem").write_text("x")
    (tmp_path / "present.key").write_text("x")
    path = _file(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == message.format(file=path, dir=tmp_path)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(SettingsError) as caught:
        load_settings(missing, env={})
    assert str(caught.value) == (
        f"{missing}: cannot read the configuration file: No such file or directory"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(env={"SABAQ_CONFIG": str(missing)})
    assert str(caught.value).startswith(f"{missing}: cannot read")
    broken = _file(tmp_path, "[server\nport = 1")
    with pytest.raises(SettingsError) as caught:
        load_settings(broken, env={})
    assert re.fullmatch(
        rf"{re.escape(str(broken))}: not valid TOML: .+ \(at line 1, column \d+\)",
        str(caught.value),
    )


ENV_ERRORS: list[tuple[dict[str, str], str]] = [
    ({"SABAQ_SERVER_PORT": "eighty"}, "SABAQ_SERVER_PORT: must be an integer, not 'eighty'"),
    ({"SABAQ_SERVER_PORT": "0"}, "SABAQ_SERVER_PORT: must be between 1 and 65535, not 0"),
    ({"SABAQ_SERVER_HOST": ""}, "SABAQ_SERVER_HOST: must not be empty"),
    (
        {"SABAQ_SERVER_PROT": "1"},
        "SABAQ_SERVER_PROT: no such setting; known in [server]: SABAQ_SERVER_HOST,"
        " SABAQ_SERVER_PORT, SABAQ_SERVER_PUBLIC_URL, SABAQ_SERVER_ALLOWED_ORIGINS,"
        " SABAQ_SERVER_DATA_DIR, SABAQ_SERVER_WEB_DIR",
    ),
    (
        {"SABAQ_AUTH_SECRET": "x"},
        "SABAQ_AUTH_SECRET: no such setting; known in [auth]: SABAQ_AUTH_ISSUER,"
        " SABAQ_AUTH_AUDIENCE, SABAQ_JWT_SECRET, SABAQ_AUTH_PUBLIC_KEY_FILE,"
        " SABAQ_AUTH_JWKS_FILE, SABAQ_AUTH_LEEWAY",
    ),
    (
        {"SABAQ_AUTH_HS256_SECRET": SECRET},
        "SABAQ_AUTH_HS256_SECRET: the HS256 secret is read from SABAQ_JWT_SECRET",
    ),
    (
        {"SABAQ_MEDIA_ICE_SERVERS": "stun:stun.example.edu"},
        "SABAQ_MEDIA_ICE_SERVERS: ice_servers can only be set in the configuration file"
        " ([[media.ice_servers]])",
    ),
    (
        {"SABAQ_JWT_SECRET": "short"},
        "SABAQ_JWT_SECRET: must be at least 32 bytes; make one with: python3 -c 'import"
        " secrets; print(secrets.token_urlsafe(48))'",
    ),
    (
        {"SABAQ_LIMITS_HEARTBEAT_S": "fast"},
        "SABAQ_LIMITS_HEARTBEAT_S: must be a number, not 'fast'",
    ),
    (
        {"SABAQ_LIMITS_HEARTBEAT_S": "-1"},
        "SABAQ_LIMITS_HEARTBEAT_S: must be a number greater than 0, not -1.0",
    ),
    (
        {"SABAQ_LIMITS_REFUSED_BEFORE_CLOSE": "-3"},
        "SABAQ_LIMITS_REFUSED_BEFORE_CLOSE: must be at least 1, not -3",
    ),
    (
        {"SABAQ_MEDIA_ALLOWED_NETWORKS": "10.0.0.0/8,campus"},
        "SABAQ_MEDIA_ALLOWED_NETWORKS: 'campus' is not an IP network such as 10.0.0.0/8",
    ),
    (
        {"SABAQ_MEDIA_VIDEO_CODECS": ""},
        "SABAQ_MEDIA_VIDEO_CODECS: must list at least one video codec",
    ),
    (
        {"SABAQ_SERVER_ALLOWED_ORIGINS": "https://lms.example.edu/x"},
        "SABAQ_SERVER_ALLOWED_ORIGINS: 'https://lms.example.edu/x' is not an origin such as"
        " https://sabaq.example.edu (an origin has no path)",
    ),
    ({"SABAQ_TLS_MODE": "files"}, 'SABAQ_TLS_MODE: mode "files" needs both cert and key'),
    (
        {"SABAQ_TLS_CERT": "/nonexistent/c.pem"},
        'SABAQ_TLS_CERT: set, but mode is "off"; cert and key are used only with mode = "files"',
    ),
    (
        {"SABAQ_TLS_MODE": "files", "SABAQ_TLS_CERT": "/nonexistent/c.pem", "SABAQ_TLS_KEY": "/"},
        "SABAQ_TLS_CERT: no such file: /nonexistent/c.pem",
    ),
    (
        {"SABAQ_AUTH_PUBLIC_KEY_FILE": "/nonexistent/key.pem"},
        "SABAQ_AUTH_PUBLIC_KEY_FILE: no such file: /nonexistent/key.pem",
    ),
]


@pytest.mark.parametrize(("env", "message"), ENV_ERRORS)
def test_environment_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env=env)
    assert str(caught.value) == message


def test_a_variable_overriding_the_file_is_named_in_cross_checks(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    path = _file(tmp_path, '[tls]\nmode = "files"\ncert = "c.pem"\nkey = "c.pem"\n')
    assert load_settings(path, env={}).tls.mode == "files"
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env={"SABAQ_TLS_MODE": "self-signed"})
    assert str(caught.value) == (
        f'{path}: [tls] cert: set, but mode is "self-signed"; cert and key are used only'
        ' with mode = "files"'
    )
    unset = {"SABAQ_TLS_MODE": "self-signed", "SABAQ_TLS_CERT": "", "SABAQ_TLS_KEY": ""}
    assert load_settings(path, env=unset).tls == TlsSettings(mode="self-signed")


CODE_ERRORS: list[tuple[Callable[[], object], str]] = [
    (lambda: ServerSettings(port=0), "[server] port: must be between 1 and 65535, not 0"),
    (
        lambda: ServerSettings(host="a b"),
        "[server] host: 'a b' is neither an IP address nor a host name",
    ),
    (lambda: TlsSettings(mode="files"), '[tls] mode: mode "files" needs both cert and key'),
    (
        lambda: TlsSettings(mode="on"),  # type: ignore[arg-type]
        '[tls] mode: must be "off", "files" or "self-signed", not \'on\'',
    ),
    (
        lambda: AuthSettings(hs256_secret="short"),
        "[auth] hs256_secret: must be at least 32 bytes; make one with: python3 -c 'import"
        " secrets; print(secrets.token_urlsafe(48))'",
    ),
    (
        lambda: IceServer(("turn:turn.example.edu",)),
        "[media] ice_servers: a TURN server needs a username and a credential",
    ),
    (
        lambda: MediaSettings(host_addresses=("eth0",)),
        "[media] host_addresses: 'eth0' does not appear to be an IPv4 or IPv6 address",
    ),
    (lambda: LimitsSettings(chat_per_10s=0), "[limits] chat_per_10s: must be at least 1, not 0"),
    (
        lambda: LimitsSettings(offer_timeout_s=float("inf")),
        "[limits] offer_timeout_s: must be a number greater than 0, not inf",
    ),
]


@pytest.mark.parametrize(("build", "message"), CODE_ERRORS)
def test_settings_built_in_code_are_checked_too(build: Callable[[], object], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        build()
    assert str(caught.value) == message


def test_values_are_normalised() -> None:
    server = ServerSettings(
        host="Sabaq.LAN",
        public_url="HTTPS://Sabaq.Example.EDU:443/lessons/",
        allowed_origins=["http://LMS.example.edu:80", "https://[FD00::1]:8443"],  # type: ignore[arg-type]
        data_dir="data",  # type: ignore[arg-type]
    )
    assert server.host == "sabaq.lan"
    assert server.public_url == "https://sabaq.example.edu/lessons"
    assert server.allowed_origins == ("http://lms.example.edu", "https://[fd00::1]:8443")
    assert server.data_dir == Path("data")
    media = MediaSettings(
        host_addresses=["fd00:0::5"],  # type: ignore[arg-type]
        video_codecs=("video/h264",),
        audio_codecs=("AUDIO/OPUS", "audio/pcmu"),
    )
    assert media.host_addresses == ("fd00::5",)
    assert media.video_codecs == ("video/H264",)
    assert media.audio_codecs == ("audio/opus", "audio/PCMU")
    assert IceServer("stun:stun.example.edu").urls == ("stun:stun.example.edu",)  # type: ignore[arg-type]
    assert ServerSettings(host="университет.kz").host == "xn--b1agajc0ayikbb.kz"


# Secrets -----------------------------------------------------------------------------------


def test_secrets_never_show(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        f"""
        [[media.ice_servers]]
        urls = ["turn:turn.example.edu:3478?transport=udp", "turns:turn.example.edu"]
        username = "sabaq"
        credential = "{TURN_PASSWORD}"
        """,
    )
    settings = load_settings(path, env={"SABAQ_JWT_SECRET": SECRET})
    summary = describe(settings)
    for text in (repr(settings), str(settings), summary, repr(settings.auth), repr(settings.media)):
        assert SECRET not in text
        assert TURN_PASSWORD not in text
    assert "  hs256_secret = ***" in summary.splitlines()
    assert (
        "  ice_servers = turn:turn.example.edu:3478?transport=udp, turns:turn.example.edu"
        " (username sabaq, credential ***)"
    ) in summary.splitlines()
    # The browsers do get the credential: TURN needs it.
    assert settings.media.ice_servers_json() == [
        {
            "urls": ["turn:turn.example.edu:3478?transport=udp", "turns:turn.example.edu"],
            "username": "sabaq",
            "credential": TURN_PASSWORD,
        }
    ]


def test_a_short_secret_is_not_quoted_in_the_error() -> None:
    short = "hunter2-hunter2"
    with pytest.raises(SettingsError) as caught:
        load_settings(env={"SABAQ_JWT_SECRET": short})
    assert short not in str(caught.value)


def test_describe_lists_every_key_with_defaults_spelled_out() -> None:
    summary = describe(Settings())
    lines = summary.splitlines()
    assert lines[0] == "[server]"
    assert "  host = 127.0.0.1" in lines
    assert "  public_url = (not set)" in lines
    assert "  allowed_origins = (only the server's own)" in lines
    assert "  hs256_secret = (not set)" in lines
    assert "  host_addresses = (every non-loopback interface)" in lines
    assert "  ice_servers = (none: no STUN or TURN is contacted)" in lines
    assert "  max_participants_per_lesson = 500" in lines
    assert (
        "  (origins allowed: http://127.0.0.1:8080, http://[::1]:8080, http://localhost:8080)"
        in lines
    )
    keys = [line.split(" = ")[0].strip() for line in lines if " = " in line]
    assert len(keys) == 6 + 4 + 6 + 5 + 9 + 3 + 1 + 1 + 2


# Origins, URLs and certificate names --------------------------------------------------------

ORIGINS: list[tuple[dict[str, Any], bool, tuple[str, ...], set[str]]] = [
    (
        {},
        False,
        (),
        {"http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"},
    ),
    (
        {"port": 443},
        True,
        (),
        {"https://localhost", "https://127.0.0.1", "https://[::1]"},
    ),
    (
        {"host": "0.0.0.0", "port": 80},
        False,
        ("sabaq.lan", "10.0.0.5"),
        {
            "http://localhost",
            "http://127.0.0.1",
            "http://[::1]",
            "http://sabaq.lan",
            "http://10.0.0.5",
        },
    ),
    (
        {"host": "::", "port": 8443},
        True,
        ("fd00::5",),
        {
            "https://localhost:8443",
            "https://127.0.0.1:8443",
            "https://[::1]:8443",
            "https://[fd00::5]:8443",
        },
    ),
    (
        {
            "host": "10.0.0.5",
            "public_url": "https://sabaq.kaznu.kz/",
            "allowed_origins": ("https://lms.kaznu.kz", "http://localhost:3000"),
        },
        True,
        (),
        {
            "https://localhost:8080",
            "https://127.0.0.1:8080",
            "https://[::1]:8080",
            "https://10.0.0.5:8080",
            "https://sabaq.kaznu.kz",
            "https://lms.kaznu.kz",
            "http://localhost:3000",
        },
    ),
    (
        {"public_url": "http://sabaq.example.edu:8000/path"},
        False,
        (),
        {
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://sabaq.example.edu:8000",
        },
    ),
]


@pytest.mark.parametrize(("server", "tls", "hostnames", "expected"), ORIGINS)
def test_origins(
    server: dict[str, Any], tls: bool, hostnames: tuple[str, ...], expected: set[str]
) -> None:
    assert ServerSettings(**server).origins(tls, hostnames) == expected


def test_settings_origins_use_the_tls_mode_and_hostnames() -> None:
    settings = Settings(tls=TlsSettings(mode="self-signed", hostnames=("sabaq.lan",)))
    assert "https://sabaq.lan:8080" in settings.origins()
    assert all(origin.startswith("https://") for origin in settings.origins())


BASE_URLS: list[tuple[Settings, str]] = [
    (Settings(), "http://127.0.0.1:8080"),
    (Settings(server=ServerSettings(host="0.0.0.0")), "http://localhost:8080"),
    (
        Settings(server=ServerSettings(host="::", port=443), tls=TlsSettings(mode="self-signed")),
        "https://localhost",
    ),
    (Settings(server=ServerSettings(host="fd00::5", port=8443)), "http://[fd00::5]:8443"),
    (
        Settings(server=ServerSettings(public_url="https://sabaq.kaznu.kz/live/")),
        "https://sabaq.kaznu.kz/live",
    ),
]


@pytest.mark.parametrize(("settings", "url"), BASE_URLS)
def test_base_url(settings: Settings, url: str) -> None:
    assert settings.base_url() == url


def test_certificate_names_and_the_self_signed_pair(tmp_path: Path) -> None:
    settings = Settings(
        server=ServerSettings(
            host="192.168.1.20", public_url="https://sabaq.lan:8443", data_dir=tmp_path / "d"
        ),
        tls=TlsSettings(mode="self-signed", hostnames=("sabaq.lan", "10.0.0.5")),
    )
    assert settings.certificate_names() == ("sabaq.lan", "10.0.0.5", "192.168.1.20")
    files = settings.tls_files()
    assert files == (tmp_path / "d" / "tls" / CERT_FILE, tmp_path / "d" / "tls" / KEY_FILE)
    assert Settings(server=ServerSettings(host="::")).certificate_names() == ()


# What the settings build -------------------------------------------------------------------


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "uni-idp",
        "aud": "sabaq-kaznu",
        "sub": "u-7",
        "name": "Амина",
        "role": "student",
        "lesson": "L1",
        "iat": now,
        "exp": now + 600,
        **extra,
    }


def test_build_verifier_from_the_hs256_secret() -> None:
    auth = load_settings(env={"SABAQ_JWT_SECRET": SECRET}).auth
    verifier = auth.build_verifier()
    assert verifier.algorithms == {"HS256"}
    token = mint(
        secret=SECRET,
        issuer="sabaq-dev",
        audience="sabaq",
        sub="t-1",
        name="Teacher",
        role=Role.TEACHER,
        lesson="L1",
    )
    identity = verifier.verify(token)
    assert (identity.user_id, identity.role, identity.lesson_id) == ("t-1", Role.TEACHER, "L1")


def test_build_verifier_from_an_rs256_public_key_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "university.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    path = _file(
        tmp_path,
        '[auth]\nissuer = "uni-idp"\naudience = "sabaq-kaznu"\n'
        'public_key_file = "university.pem"\n',
    )
    verifier = load_settings(path, env={}).auth.build_verifier()
    assert verifier.algorithms == {"RS256"}
    token = jwt.encode(_claims(), private, algorithm="RS256")
    assert verifier.verify(token).name == "Амина"


def test_build_verifier_from_a_jwks_file(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="2024-09", use="sig", alg="ES256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    path = _file(
        tmp_path,
        '[auth]\nissuer = "uni-idp"\naudience = "sabaq-kaznu"\njwks_file = "jwks.json"\n',
    )
    verifier = load_settings(path, env={}).auth.build_verifier()
    assert verifier.algorithms == {"ES256"}
    token = jwt.encode(_claims(), private, algorithm="ES256", headers={"kid": "2024-09"})
    assert verifier.verify(token).user_id == "u-7"


def test_build_verifier_needs_exactly_one_usable_key_source(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": []}', encoding="utf-8")
    (tmp_path / "key.pem").write_text("not a key", encoding="utf-8")
    cases: list[tuple[AuthSettings, str]] = [
        (
            AuthSettings(),
            "[auth] no key source: set SABAQ_JWT_SECRET (HS256), public_key_file (RS256/ES256"
            " PEM) or jwks_file",
        ),
        (
            AuthSettings(hs256_secret=SECRET, jwks_file=tmp_path / "jwks.json"),
            "[auth] give exactly one key source, not hs256_secret and jwks_file",
        ),
        (
            AuthSettings(jwks_file=tmp_path / "jwks.json"),
            f"[auth] jwks_file: {tmp_path}/jwks.json holds no RS256 or ES256 signing key",
        ),
        (
            AuthSettings(public_key_file=tmp_path / "key.pem"),
            "[auth] public_key_file: cannot load the PEM public key: ",
        ),
    ]
    for auth, message in cases:
        with pytest.raises(SettingsError) as caught:
            auth.build_verifier()
        assert str(caught.value).startswith(message), str(caught.value)
        assert SECRET not in str(caught.value)


def test_build_sfu_config(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        """
        [media]
        host_addresses = ["127.0.0.1"]
        allowed_networks = ["127.0.0.0/8", "10.1.2.3/16"]
        video_codecs = ["video/H264"]
        audio_codecs = ["audio/opus", "audio/PCMU"]
        [[media.ice_servers]]
        urls = "stun:stun.example.edu:3478"
        [[media.ice_servers]]
        urls = ["turn:turn.example.edu?transport=tcp"]
        username = "u"
        credential = "p"
        """,
    )
    config = load_settings(path, env={}).media.build_sfu_config()
    assert isinstance(config.ice, IcePolicy)
    assert config.ice.host_addresses == ["127.0.0.1"]
    assert config.ice.allowed_networks is not None
    assert [str(n) for n in config.ice.allowed_networks] == ["127.0.0.0/8", "10.1.0.0/16"]
    assert config.ice.allows("10.1.200.9") and not config.ice.allows("10.2.0.1")
    assert [s.urls for s in config.ice.ice_servers] == [
        "stun:stun.example.edu:3478",
        "turn:turn.example.edu?transport=tcp",
    ]
    assert config.video_codecs == ("video/H264",)
    assert config.audio_codecs == ("audio/opus", "audio/PCMU")
    default = MediaSettings().build_sfu_config()
    assert default.ice.host_addresses is None
    assert default.ice.allowed_networks is None
    assert default.ice.ice_servers == []  # no STUN: aiortc's default would be Google's
    assert default.codecs("video") == ("video/VP8", "video/H264")
