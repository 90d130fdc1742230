"""Who is joining: JWTs verified with PyJWT, and the identity they carry.

The operator configures exactly one key source for a :class:`Verifier`: an HS256
secret, an RS256/ES256 public key in PEM, or a local JWKS file (keys chosen by
``kid``). The algorithm allow-list follows from the key source alone and is
checked against the token's header before PyJWT sees the token, so ``alg=none``
and HS256-signed-with-a-public-key tokens are refused. Keys are never fetched
over the network.

Tokens never appear in logs: :class:`AuthError` carries a fixed ``reason`` and a
message written here, never the token or a fragment of it.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "DEFAULT_LEEWAY",
    "MAX_TOKEN_LENGTH",
    "MIN_HS256_SECRET_BYTES",
    "AuthError",
    "AuthErrorReason",
    "Identity",
    "Role",
    "Verifier",
    "mint",
]

MAX_TOKEN_LENGTH: Final = 8 * 1024
"""Longest token accepted, in characters; longer ones are refused as malformed."""

MIN_HS256_SECRET_BYTES: Final = 32
"""Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size)."""

DEFAULT_LEEWAY: Final = 30
"""Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""

_MIN_RSA_BITS: Final = 2048
_ASYMMETRIC_ALGORITHMS: Final = frozenset({"RS256", "ES256"})

AuthErrorReason = Literal[
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "unknown_key",
    "wrong_audience",
    "wrong_issuer",
    "algorithm_not_allowed",
    "missing_claim",
    "bad_claim",
]
"""Why a token was refused; a fixed set, safe to log and to count."""

_MESSAGES: Final[Mapping[AuthErrorReason, str]] = {
    "missing": "no token was given",
    "malformed": "the token is not a well-formed JWT",
    "expired": "the token has expired",
    "not_yet_valid": "the token is not valid yet",
    "bad_signature": "the token's signature does not verify",
    "unknown_key": "the token names a key that is not configured",
    "wrong_audience": "the token is meant for another audience",
    "wrong_issuer": "the token comes from another issuer",
    "algorithm_not_allowed": "the token's algorithm is not allowed",
    "missing_claim": "the token lacks a required claim",
    "bad_claim": "the token has an invalid claim",
}


class AuthError(Exception):
    """A token was refused.

    ``reason`` is one of :data:`AuthErrorReason`; the message says the same in
    words (plus, at most, a claim name) and never contains the token.
    """

    reason: AuthErrorReason

    def __init__(self, reason: AuthErrorReason, detail: str | None = None) -> None:
        message = _MESSAGES[reason] if detail is None else f"{_MESSAGES[reason]}: {detail}"
        super().__init__(message)
        self.reason = reason


class Role(enum.StrEnum):
    """What a participant may do in a lesson."""

    TEACHER = "teacher"
    ASSISTANT = "assistant"
    STUDENT = "student"
    OBSERVER = "observer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified content of a token."""

    user_id: str
    name: str
    role: Role
    lesson_id: str | None
    course_id: str | None
    expires_at: datetime

    def admits(self, lesson_id: str, course_id: str | None) -> bool:
        """Whether this identity may join lesson ``lesson_id`` of course ``course_id``.

        An admin is admitted everywhere; anyone else when the token's lesson is
        this lesson, or when the token's course is the lesson's course.
        """
        if self.role is Role.ADMIN:
            return True
        if self.lesson_id is not None and self.lesson_id == lesson_id:
            return True
        return self.course_id is not None and self.course_id == course_id


# PyJWT's exceptions, most specific first (InvalidSignatureError is a DecodeError;
# all of them are InvalidTokenError).
_PYJWT_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], AuthErrorReason], ...]] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "algorithm_not_allowed"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidIssuedAtError, "bad_claim"),
    (jwt.InvalidKeyError, "bad_signature"),
    (jwt.DecodeError, "malformed"),
)


def _reason_of(error: jwt.PyJWTError) -> AuthErrorReason:
    for kind, reason in _PYJWT_REASONS:
        if isinstance(error, kind):
            return reason
    return "malformed"


def _algorithm_of(key: Any) -> str:
    """The one algorithm a public key verifies, or ValueError."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {_MIN_RSA_BITS} bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs a P-256 key")
        return "ES256"
    raise ValueError("only RSA (RS256) and P-256 EC (ES256) public keys are supported")


def _load_jwks(path: str) -> dict[str, jwt.PyJWK]:
    """The RS256/ES256 signing keys of a local JWKS file, by ``kid``."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the JWKS file {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{path} is not a JWKS document (no 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"every signing key in {path} needs a 'kid'")
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWKError:
            continue  # a key type or algorithm PyJWT cannot use: not ours
        if key.algorithm_name not in _ASYMMETRIC_ALGORITHMS:
            continue  # never HS* (or anything else) from a JWKS file
        if _algorithm_of(key.key) != key.algorithm_name:
            raise ValueError(f"key {kid!r} in {path} does not fit its algorithm")
        if kid in keys:
            raise ValueError(f"kid {kid!r} appears twice in {path}")
        keys[kid] = key
    if not keys:
        raise ValueError(f"{path} holds no RS256 or ES256 signing key")
    return keys


class Verifier:
    """Verifies tokens from one issuer for one audience.

    Give exactly one key source: ``hs256_secret`` (at least 32 bytes; allows
    HS256), ``public_key_pem`` (an RSA or P-256 public key; allows RS256 or
    ES256 accordingly) or ``jwks_path`` (a local JWKS file; allows RS256 and
    ES256, the key chosen by the token's ``kid``). Misconfiguration raises
    ValueError here, not at the first token.
    """

    __slots__ = ("_algorithms", "_audience", "_issuer", "_jwks", "_key", "_leeway")

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        hs256_secret: str | bytes | None = None,
        public_key_pem: str | None = None,
        jwks_path: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must be non-empty")
        sources = [s for s in (hs256_secret, public_key_pem, jwks_path) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of hs256_secret, public_key_pem, jwks_path")
        if not math.isfinite(leeway) or leeway < 0:
            raise ValueError("leeway must be a non-negative number of seconds")
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._key: bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None
        self._jwks: dict[str, jwt.PyJWK] | None = None
        if hs256_secret is not None:
            secret = hs256_secret.encode() if isinstance(hs256_secret, str) else hs256_secret
            if len(secret) < MIN_HS256_SECRET_BYTES:
                raise ValueError(
                    f"the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
                )
            self._key = secret
            self._algorithms: frozenset[str] = frozenset({"HS256"})
        elif public_key_pem is not None:
            try:
                key = serialization.load_pem_public_key(public_key_pem.encode())
            except ValueError as error:
                raise ValueError(f"cannot load the PEM public key: {error}") from error
            if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
                raise ValueError("only RSA and EC public keys are supported")
            self._algorithms = frozenset({_algorithm_of(key)})
            self._key = key
        else:
            assert jwks_path is not None
            self._jwks = _load_jwks(jwks_path)
            self._algorithms = frozenset(k.algorithm_name for k in self._jwks.values())

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms this verifier accepts (fixed by its key source)."""
        return self._algorithms

    def verify(self, token: str) -> Identity:
        """The identity in ``token``, or AuthError saying why it was refused."""
        if not isinstance(token, str) or not token.strip():
            raise AuthError("missing")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("malformed", f"longer than {MAX_TOKEN_LENGTH} characters")
        if not token.isascii():
            raise AuthError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise AuthError(_reason_of(error)) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("algorithm_not_allowed")
        key: Any = self._key
        if self._jwks is not None:
            kid = header.get("kid")
            if kid is None and len(self._jwks) == 1:
                key = next(iter(self._jwks.values()))
            elif not isinstance(kid, str) or kid not in self._jwks:
                raise AuthError("unknown_key")
            else:
                key = self._jwks[kid]
            if alg != key.algorithm_name:
                raise AuthError("algorithm_not_allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iss", "aud", "sub", "role"],
                    "enforce_minimum_key_length": True,
                    "strict_aud": False,
                    # sub is checked below (bad_claim); jti is not used.
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.MissingRequiredClaimError as error:
            raise AuthError("missing_claim", error.claim) from None
        except jwt.PyJWTError as error:
            raise AuthError(_reason_of(error)) from None
        except (ValueError, TypeError, OverflowError):
            raise AuthError("malformed") from None
        return _identity_of(claims)


def _identity_of(claims: Mapping[str, Any]) -> Identity:
    """Checks the Sabaq claims of an already verified payload."""
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise AuthError("bad_claim", "sub")
    name = claims.get("name", sub)
    if not isinstance(name, str) or not name:
        raise AuthError("bad_claim", "name")
    try:
        role = Role(claims["role"])
    except (ValueError, TypeError):
        raise AuthError("bad_claim", "role") from None
    lesson = claims.get("lesson")
    course = claims.get("course")
    for claim, value in (("lesson", lesson), ("course", course)):
        if value is not None and (not isinstance(value, str) or not value):
            raise AuthError("bad_claim", claim)
    if role is not Role.ADMIN and lesson is None and course is None:
        raise AuthError("missing_claim", "lesson or course")
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError("bad_claim", "exp")
    try:
        expires_at = datetime.fromtimestamp(exp, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise AuthError("bad_claim", "exp") from None
    return Identity(
        user_id=sub,
        name=name,
        role=role,
        lesson_id=lesson,
        course_id=course,
        expires_at=expires_at,
    )


def mint(
    *,
    secret: str | bytes,
    issuer: str,
    audience: str,
    sub: str,
    name: str,
    role: Role | str,
    lesson: str | None = None,
    course: str | None = None,
    ttl: int = 3600,
    now: datetime | None = None,
) -> str:
    """An HS256 token for development and tests, valid for ``ttl`` seconds from ``now``.

    Refuses (ValueError) what :meth:`Verifier.verify` would refuse: a short
    secret, an unknown role, no lesson or course for a non-admin, ttl <= 0.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < MIN_HS256_SECRET_BYTES:
        raise ValueError(f"the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes")
    the_role = Role(role)
    if the_role is not Role.ADMIN and lesson is None and course is None:
        raise ValueError("a non-admin token needs a lesson or a course")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    issued = (now or datetime.now(UTC)).astimezone(UTC)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "name": name,
        "role": the_role.value,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl)).timestamp()),
    }
    if lesson is not None:
        claims["lesson"] = lesson
    if course is not None:
        claims["course"] = course
    return jwt.encode(claims, key, algorithm="HS256")
