"""Identity: token verification, the claims it yields, and `sabaq token`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from signaling.cli import main
from signaling.identity import AuthError, AuthErrorReason, Identity, Role, Verifier, mint

SECRET = "s" * 40
OTHER_SECRET = "o" * 40
ISSUER = "uni-idp"
AUDIENCE = "sabaq"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    """Valid claims, with `changes` applied (a value of None removes the claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "name": "Amina",
        "role": "student",
        "lesson": "L1",
        "iat": now,
        "exp": now + 600,
    }
    for claim, value in changes.items():
        if value is None:
            claims.pop(claim, None)
        else:
            claims[claim] = value
    return claims


def _hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass(frozen=True)
class Keys:
    rsa_key: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_key=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
def hs_verifier() -> Verifier:
    return Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET)


# --- HS256: the table of refusals -------------------------------------------------------------

NONE_TOKEN = (
    _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    + "."
    + _b64(json.dumps(_claims()).encode())
    + "."
)

REFUSED: list[tuple[str, Callable[[], str], str]] = [
    ("expired beyond leeway", lambda: _hs(_claims(exp=int(time.time()) - 31)), "expired"),
    ("nbf in the future", lambda: _hs(_claims(nbf=int(time.time()) + 120)), "not_yet_valid"),
    ("iat in the future", lambda: _hs(_claims(iat=int(time.time()) + 120)), "not_yet_valid"),
    ("wrong audience", lambda: _hs(_claims(aud="other-app")), "wrong_audience"),
    ("wrong issuer", lambda: _hs(_claims(iss="evil-idp")), "wrong_issuer"),
    ("forged signature", lambda: _hs(_claims(), OTHER_SECRET), "bad_signature"),
    ("alg none", lambda: NONE_TOKEN, "algorithm_not_allowed"),
    ("missing sub", lambda: _hs(_claims(sub=None)), "missing_claim"),
    ("missing role", lambda: _hs(_claims(role=None)), "missing_claim"),
    ("missing exp", lambda: _hs(_claims(exp=None)), "missing_claim"),
    ("missing iss", lambda: _hs(_claims(iss=None)), "missing_claim"),
    ("missing aud", lambda: _hs(_claims(aud=None)), "missing_claim"),
    ("no lesson nor course", lambda: _hs(_claims(lesson=None)), "missing_claim"),
    ("unknown role", lambda: _hs(_claims(role="janitor")), "bad_claim"),
    ("role not a string", lambda: _hs(_claims(role=["admin"])), "bad_claim"),
    ("sub not a string", lambda: _hs(_claims(sub=42)), "bad_claim"),
    ("lesson not a string", lambda: _hs(_claims(lesson=7)), "bad_claim"),
    ("exp not a number", lambda: _hs(_claims(exp="tomorrow")), "malformed"),
    ("oversized", lambda: _hs(_claims(pad="x" * 9000)), "malformed"),
    ("empty", lambda: "", "missing"),
    ("blank", lambda: "   ", "missing"),
    ("garbage", lambda: "not a token", "malformed"),
    ("two segments", lambda: "abc.def", "malformed"),
    ("bad base64", lambda: "!!!.???.***", "malformed"),
    ("header not json", lambda: _b64(b"{nope") + ".e30.", "malformed"),
    ("header a list", lambda: _b64(b"[1]") + ".e30.", "malformed"),
    ("non-ascii", lambda: "ey\u00e9.ey.sig", "malformed"),
    ("tampered payload", lambda: _tamper(_hs(_claims())), "bad_signature"),
]


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(_claims(role='admin')).encode())}.{signature}"


@pytest.mark.parametrize(("make", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_tokens_say_why(
    hs_verifier: Verifier, make: Callable[[], str], reason: str
) -> None:
    token = make()
    with pytest.raises(AuthError) as caught:
        hs_verifier.verify(token)
    assert caught.value.reason == reason
    if token.strip():
        assert token not in str(caught.value) and token not in repr(caught.value)
    # PyJWT's own messages are not chained into tracebacks either.
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_valid_hs256_token_gives_the_identity(hs_verifier: Verifier) -> None:
    claims = _claims(course="C9")
    identity = hs_verifier.verify(_hs(claims))
    assert identity == Identity(
        user_id="u-1",
        name="Amina",
        role=Role.STUDENT,
        lesson_id="L1",
        course_id="C9",
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
    )


def test_expired_within_leeway_is_accepted(hs_verifier: Verifier) -> None:
    token = _hs(_claims(exp=int(time.time()) - 20))
    assert hs_verifier.verify(token).user_id == "u-1"


def test_nbf_within_leeway_is_accepted(hs_verifier: Verifier) -> None:
    assert hs_verifier.verify(_hs(_claims(nbf=int(time.time()) + 20))).role is Role.STUDENT


def test_name_defaults_to_sub_and_admin_needs_no_lesson(hs_verifier: Verifier) -> None:
    identity = hs_verifier.verify(_hs(_claims(name=None, lesson=None, role="admin")))
    assert identity.name == "u-1" and identity.role is Role.ADMIN
    assert identity.lesson_id is None and identity.course_id is None


def test_list_audience_containing_ours_is_accepted(hs_verifier: Verifier) -> None:
    assert hs_verifier.verify(_hs(_claims(aud=["lms", AUDIENCE]))).user_id == "u-1"


def test_auth_error_message_never_contains_the_token(hs_verifier: Verifier) -> None:
    token = _hs(_claims(role="janitor"))
    with pytest.raises(AuthError) as caught:
        hs_verifier.verify(token)
    for part in token.split("."):
        assert part not in str(caught.value)
    assert str(caught.value).startswith("the token has an invalid claim")


# --- asymmetric keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_pem_public_keys_verify_their_algorithm(keys: Keys, alg: str) -> None:
    private = keys.rsa_key if alg == "RS256" else keys.ec_key
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, public_key_pem=_pem(private))
    assert verifier.algorithms == frozenset({alg})
    assert verifier.verify(jwt.encode(_claims(), private, algorithm=alg)).user_id == "u-1"
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(_claims(), keys.rsa_other, algorithm="RS256"))
    assert caught.value.reason == ("bad_signature" if alg == "RS256" else "algorithm_not_allowed")
    with pytest.raises(AuthError) as caught:
        verifier.verify(_hs(_claims()))
    assert caught.value.reason == "algorithm_not_allowed"


def test_hs256_signed_with_the_public_key_is_refused(keys: Keys) -> None:
    """The key-confusion attack: the public PEM used as an HMAC secret."""
    pem = _pem(keys.rsa_key)
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(_claims(role="admin")).encode())
    )
    signature = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, public_key_pem=pem)
    with pytest.raises(AuthError) as caught:
        verifier.verify(f"{signing_input}.{_b64(signature)}")
    assert caught.value.reason == "algorithm_not_allowed"


@pytest.fixture
def jwks_file(keys: Keys, tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    document = {
        "keys": [
            _jwk(keys.rsa_key, "rsa-1", "RS256"),
            _jwk(keys.ec_key, "ec-1", "ES256"),
            {"kty": "oct", "k": _b64(SECRET.encode()), "kid": "hs", "alg": "HS256"},
        ]
    }
    path.write_text(json.dumps(document))
    return path


def test_jwks_chooses_the_key_by_kid(keys: Keys, jwks_file: Path) -> None:
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(jwks_file))
    assert verifier.algorithms == frozenset({"RS256", "ES256"})
    rs = jwt.encode(_claims(), keys.rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(_claims(sub="u-2"), keys.ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert verifier.verify(rs).user_id == "u-1"
    assert verifier.verify(es).user_id == "u-2"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda k: jwt.encode(_claims(), k.rsa_key, algorithm="RS256", headers={"kid": "nope"}),
            "unknown_key",
        ),
        (lambda k: jwt.encode(_claims(), k.rsa_key, algorithm="RS256"), "unknown_key"),
        (
            lambda k: jwt.encode(
                _claims(), k.rsa_other, algorithm="RS256", headers={"kid": "rsa-1"}
            ),
            "bad_signature",
        ),
        (
            lambda k: jwt.encode(_claims(), k.ec_key, algorithm="ES256", headers={"kid": "rsa-1"}),
            "algorithm_not_allowed",
        ),
        (
            lambda k: jwt.encode(_claims(), SECRET, algorithm="HS256", headers={"kid": "hs"}),
            "algorithm_not_allowed",
        ),
    ],
    ids=["unknown kid", "no kid", "wrong key", "alg of another key", "hs from jwks"],
)
def test_jwks_refusals(
    keys: Keys, jwks_file: Path, make: Callable[[Keys], str], reason: str
) -> None:
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(jwks_file))
    with pytest.raises(AuthError) as caught:
        verifier.verify(make(keys))
    assert caught.value.reason == reason


# --- configuration ---------------------------------------------------------------------------


def test_configuration_errors(keys: Keys, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret="short")
    with pytest.raises(ValueError, match="exactly one"):
        Verifier(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="exactly one"):
        Verifier(
            issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET, public_key_pem=_pem(keys.ec_key)
        )
    with pytest.raises(ValueError, match="PEM"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, public_key_pem="not a key")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, public_key_pem=_pem(p384))
    only_hs = tmp_path / "hs.json"
    only_hs.write_text(json.dumps({"keys": [{"kty": "oct", "k": "YWJj", "kid": "x"}]}))
    with pytest.raises(ValueError, match="no RS256 or ES256"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(only_hs))
    with pytest.raises(ValueError, match="cannot read"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(tmp_path / "absent.json"))


# --- admits() ----------------------------------------------------------------------------------

_EXP = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("role", "token_lesson", "token_course", "lesson", "course", "admitted"),
    [
        (Role.STUDENT, "L1", None, "L1", "C1", True),
        (Role.STUDENT, "L1", None, "L2", "C1", False),
        (Role.STUDENT, None, "C1", "L2", "C1", True),
        (Role.STUDENT, None, "C1", "L2", "C2", False),
        (Role.STUDENT, None, "C1", "L2", None, False),
        (Role.TEACHER, "L1", "C1", "L9", "C1", True),
        (Role.OBSERVER, "L1", "C1", "L9", "C2", False),
        (Role.ADMIN, None, None, "L9", None, True),
    ],
)
def test_admits(
    role: Role,
    token_lesson: str | None,
    token_course: str | None,
    lesson: str,
    course: str | None,
    admitted: bool,
) -> None:
    identity = Identity("u", "U", role, token_lesson, token_course, _EXP)
    assert identity.admits(lesson, course) is admitted


# --- mint() and `sabaq token` ----------------------------------------------------------------


def test_mint_round_trip_and_refusals(hs_verifier: Verifier) -> None:
    now = datetime.now(UTC)
    token = mint(
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        sub="t-1",
        name="Dr. Rahman",
        role="teacher",
        course="C1",
        ttl=120,
        now=now,
    )
    identity = hs_verifier.verify(token)
    assert (identity.role, identity.course_id, identity.lesson_id) == (Role.TEACHER, "C1", None)
    assert identity.expires_at == datetime.fromtimestamp(int(now.timestamp()) + 120, tz=UTC)
    common: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "sub": "s", "name": "n"}
    with pytest.raises(ValueError):
        mint(secret="short", role="student", lesson="L", **common)
    with pytest.raises(ValueError):
        mint(secret=SECRET, role="janitor", lesson="L", **common)
    with pytest.raises(ValueError):
        mint(secret=SECRET, role="student", **common)
    with pytest.raises(ValueError):
        mint(secret=SECRET, role="student", lesson="L", ttl=0, **common)


def test_cli_token_round_trip(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SABAQ_JWT_SECRET", SECRET)
    argv = ["token", "--role", "teacher", "--lesson", "L7", "--name", "Dr. Rahman", "--sub", "t-7"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    verifier = Verifier(issuer="sabaq-dev", audience="sabaq", hs256_secret=SECRET)
    identity = verifier.verify(out.strip())
    assert (identity.user_id, identity.name, identity.role) == ("t-7", "Dr. Rahman", Role.TEACHER)
    assert identity.admits("L7", None) and not identity.admits("L8", None)


def test_cli_token_custom_env_issuer_and_default_sub(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_SECRET", OTHER_SECRET)
    argv = ["token", "--role", "student", "--course", "C1", "--name", "Amina"]
    argv += ["--issuer", ISSUER, "--audience", AUDIENCE, "--secret-env", "MY_SECRET", "--ttl", "60"]
    assert main(argv) == 0
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=OTHER_SECRET)
    identity = verifier.verify(capsys.readouterr().out.strip())
    assert identity.user_id.startswith("dev-") and identity.course_id == "C1"


@pytest.mark.parametrize(
    ("secret", "extra", "message"),
    [
        (None, ["--lesson", "L"], "set SABAQ_JWT_SECRET"),
        ("short-secret", ["--lesson", "L"], "at least 32 bytes"),
        (SECRET, [], "give --lesson or --course"),
        (SECRET, ["--lesson", "L", "--ttl", "0"], "--ttl must be positive"),
    ],
)
def test_cli_token_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret: str | None,
    extra: list[str],
    message: str,
) -> None:
    if secret is None:
        monkeypatch.delenv("SABAQ_JWT_SECRET", raising=False)
    else:
        monkeypatch.setenv("SABAQ_JWT_SECRET", secret)
    assert main(["token", "--role", "student", "--name", "A", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    if secret is not None:
        assert secret not in captured.err


# --- fuzz --------------------------------------------------------------------------------------

_VERIFIER = Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET)
_SEGMENT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


@given(st.text() | st.builds(".".join, st.lists(_SEGMENT, min_size=1, max_size=4)))
def test_arbitrary_text_raises_only_auth_error(text: str) -> None:
    with pytest.raises(AuthError) as caught:
        _VERIFIER.verify(text)
    assert caught.value.reason in get_args(AuthErrorReason)


@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8)))
def test_arbitrary_json_payloads_raise_only_auth_error(payload: dict[str, Any]) -> None:
    # Signed by hand: PyJWT's encoder refuses some of these payloads (e.g. iss=None),
    # but a token carrying them can still arrive, correctly signed, from a broken issuer.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{_b64(signature)}"
    try:
        _VERIFIER.verify(token)
    except AuthError as error:
        assert token not in str(error)
