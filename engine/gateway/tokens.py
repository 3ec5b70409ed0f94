"""The app's tokens: JWTs naming the user (`sub`), short-lived (`exp`), checked here.

A token whose `exp` is more than MAX_TOKEN_SECONDS (24 h) ahead is refused: a token is
short-lived, and a stream ends when its token expires.

HS256 with a shared secret (DECLIC_GATEWAY_TOKEN_SECRET), or RS256 / ES256 with the
public keys of a JWKS file (DECLIC_GATEWAY_JWKS_FILE): exactly one of them. Any other
algorithm, "none" included, is refused. ``aud`` is checked when
DECLIC_GATEWAY_TOKEN_AUDIENCE is set. No token or secret ever goes into a log line or an
error message: the reasons say what is wrong, never what was given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from engine.errors import ConfigError
from engine.settings import Settings

HS_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")
# Clock differences between the app's token issuer and the gateway.
LEEWAY_SECONDS = 10
MAX_SUBJECT_LENGTH = 256
MAX_TOKEN_LENGTH = 8192
DEMO_TOKEN_SECONDS = 600
# The longest a token may be valid for from now (its `exp` ahead of the gateway's clock).
MAX_TOKEN_SECONDS = 24 * 3600


class TokenRefused(Exception):
    """Raise when a token is missing or invalid; the message says why, in plain words."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What an accepted token says: its user, and until when the gateway accepts it."""

    user_id: str
    accepted_until: float  # epoch seconds: `exp` plus the leeway


class TokenChecker:
    """Check tokens and return the user they name."""

    def __init__(
        self,
        secret: str | None = None,
        jwks: jwt.PyJWKSet | None = None,
        audience: str | None = None,
    ) -> None:
        if (secret is None) == (jwks is None):
            raise ValueError("give exactly one of secret and jwks")
        self._secret = secret
        self._jwks = jwks
        self.audience = audience

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenChecker:
        """Return the checker the settings describe; raise ConfigError if they describe none
        or the JWKS file holds no usable key."""
        settings.check_gateway_tokens()
        secret = settings.gateway_token_secret
        if secret is not None:
            return cls(secret=secret.get_secret_value(), audience=settings.gateway_token_audience)
        assert settings.gateway_jwks_file is not None  # checked above
        jwks = load_jwks(settings.gateway_jwks_file)
        return cls(jwks=jwks, audience=settings.gateway_token_audience)

    @property
    def signs_demo_tokens(self) -> bool:
        """Return whether this checker has the secret /demo/token signs with."""
        return self._secret is not None

    def user_of(self, token: str) -> str:
        """Return the token's `sub`; raise TokenRefused saying why it is not accepted."""
        return self.check(token).user_id

    def check(self, token: str) -> TokenClaims:
        """Return the token's user and until when it is accepted; raise TokenRefused saying
        why it is not accepted."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenRefused("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:  # DecodeError, and headers PyJWT refuses (kid, crit)
            raise TokenRefused("malformed token") from None
        algorithm = header.get("alg")
        allowed = HS_ALGORITHMS if self._secret is not None else JWKS_ALGORITHMS
        if not isinstance(algorithm, str) or algorithm not in allowed:
            raise TokenRefused(
                f"algorithm {str(algorithm)[:16]!r} not accepted (only {', '.join(allowed)})"
            )
        key = self._secret if self._secret is not None else self._public_key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad signature") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRefused(f"claim {error.claim!r} missing") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("wrong audience (aud)") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token not valid yet (nbf or iat ahead)") from None
        except jwt.InvalidTokenError as error:
            raise TokenRefused(f"invalid token ({type(error).__name__})") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT_LENGTH:
            raise TokenRefused(f"sub must be a user id of 1 to {MAX_SUBJECT_LENGTH} characters")
        expires = int(claims["exp"])  # PyJWT checked it is a whole number
        if expires > time.time() + MAX_TOKEN_SECONDS + LEEWAY_SECONDS:
            raise TokenRefused(
                f"token valid too long: exp is more than {MAX_TOKEN_SECONDS // 3600} h ahead"
            )
        return TokenClaims(subject, expires + LEEWAY_SECONDS)

    def _public_key(self, header: dict[str, Any]) -> Any:
        assert self._jwks is not None
        kid = header.get("kid")
        keys = [key for key in self._jwks.keys if key.algorithm_name == header.get("alg")]
        if kid is not None:
            keys = [key for key in keys if key.key_id == kid]
        if len(keys) != 1:
            raise TokenRefused(
                "no key of the JWKS file matches the token's kid and alg"
                if keys == [] or kid is not None
                else "the token has no kid and the JWKS file holds several keys for its alg"
            )
        return keys[0].key

    def sign_demo_token(self, user_id: str, now_s: float | None = None) -> str:
        """Return an HS256 token for a user, valid DEMO_TOKEN_SECONDS (demo only)."""
        if self._secret is None:
            raise ValueError("demo tokens need the HS256 secret")
        return sign_token(self._secret, user_id, self.audience, now_s=now_s)


def sign_token(
    secret: str,
    user_id: str,
    audience: str | None = None,
    seconds: int = DEMO_TOKEN_SECONDS,
    now_s: float | None = None,
) -> str:
    """Return an HS256 token for ``user_id`` valid ``seconds`` (what an app's backend does)."""
    now = int(time.time() if now_s is None else now_s)
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + seconds}
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def load_jwks(path: Path) -> jwt.PyJWKSet:
    """Return the usable public keys (RS256, ES256) of a JWKS file; raise ConfigError naming
    the setting if it cannot be read or holds none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([("gateway_jwks_file", f"cannot read {path}: {error}")]) from None
    try:
        jwks = jwt.PyJWKSet.from_json(text)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
        raise ConfigError(
            [("gateway_jwks_file", f"{path} is no JWKS with a usable key ({error})")]
        ) from None
    usable = [
        key for key in jwks.keys if key.algorithm_name in JWKS_ALGORITHMS and not _is_private(key)
    ]
    if not usable:
        raise ConfigError(
            [
                (
                    "gateway_jwks_file",
                    f"{path} holds no public RS256 or ES256 key (kty RSA, or EC on P-256)",
                )
            ]
        )
    jwks.keys = usable
    return jwks


def _is_private(key: jwt.PyJWK) -> bool:
    """Return whether a JWK carries a private key: the gateway needs public keys only."""
    return hasattr(key.key, "private_numbers")
