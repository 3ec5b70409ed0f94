"""Token checks: HS256 with the secret, RS256 and ES256 with a JWKS file, and every way a
token is refused; and the settings the gateway refuses to start with."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from engine.cli import main
from engine.errors import ConfigError
from engine.gateway.tokens import TokenChecker, TokenRefused, load_jwks, sign_token
from engine.settings import load_settings
from tests.unit.gateway_fakes import hs256_with_header

SECRET = "a-secret-of-more-than-32-bytes-0123456789"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u-1", "iat": now, "exp": now + 300, **extra}


def refused(checker: TokenChecker, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        checker.user_of(token)
    return str(caught.value)


def test_hs256_good_token() -> None:
    checker = TokenChecker(secret=SECRET)
    assert checker.user_of(jwt.encode(claims(), SECRET, algorithm="HS256")) == "u-1"
    assert checker.user_of(sign_token(SECRET, "u-2")) == "u-2"


def test_expired_token() -> None:
    old = claims(exp=int(time.time()) - 60)
    assert refused(TokenChecker(secret=SECRET), jwt.encode(old, SECRET)) == "token expired"


def test_wrong_signature() -> None:
    token = jwt.encode(claims(), "another-secret-of-more-than-32-bytes-xx")
    assert refused(TokenChecker(secret=SECRET), token) == "bad signature"


def test_missing_sub_and_missing_exp() -> None:
    checker = TokenChecker(secret=SECRET)
    without_sub = {key: value for key, value in claims().items() if key != "sub"}
    assert refused(checker, jwt.encode(without_sub, SECRET)) == "claim 'sub' missing"
    without_exp = {key: value for key, value in claims().items() if key != "exp"}
    assert refused(checker, jwt.encode(without_exp, SECRET)) == "claim 'exp' missing"
    empty_sub = jwt.encode(claims(sub=""), SECRET)
    assert "sub" in refused(checker, empty_sub)


def test_audience_checked_only_when_configured() -> None:
    with_audience = TokenChecker(secret=SECRET, audience="shop-web")
    assert with_audience.user_of(jwt.encode(claims(aud="shop-web"), SECRET)) == "u-1"
    assert refused(with_audience, jwt.encode(claims(aud="admin"), SECRET)) == "wrong audience (aud)"
    assert "aud" in refused(with_audience, jwt.encode(claims(), SECRET))
    # Without an audience configured, a token's aud is not held against it.
    assert TokenChecker(secret=SECRET).user_of(jwt.encode(claims(aud="any"), SECRET)) == "u-1"


def _unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(payload)}."


def test_alg_none_is_refused() -> None:
    assert "not accepted" in refused(TokenChecker(secret=SECRET), _unsigned(claims()))
    assert "not accepted" in refused(TokenChecker(secret=SECRET), _unsigned(claims(), "None"))


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "Bearer", "é" * 10, "a" * 9000])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert refused(TokenChecker(secret=SECRET), token)


def test_refusals_never_hold_the_token_or_the_secret() -> None:
    checker = TokenChecker(secret=SECRET)
    for token in (
        jwt.encode(claims(exp=1), SECRET),
        jwt.encode(claims(), "wrong-secret-of-more-than-32-bytes-xx"),
        _unsigned(claims()),
        "not-a-token",
    ):
        reason = refused(checker, token)
        assert token not in reason and SECRET not in reason


CRAFTED_HEADERS = [
    {"alg": "HS256", "typ": "JWT", "kid": 123},
    {"alg": "HS256", "typ": "JWT", "crit": ["x-unknown"], "x-unknown": 1},
]


@pytest.mark.parametrize("header", CRAFTED_HEADERS, ids=["kid-not-a-string", "unknown-crit"])
def test_crafted_headers_are_refused(header: dict[str, Any]) -> None:
    token = hs256_with_header(SECRET, header, claims())
    assert refused(TokenChecker(secret=SECRET), token) == "malformed token"


def test_a_token_valid_for_more_than_a_day_is_refused() -> None:
    checker = TokenChecker(secret=SECRET)
    now = int(time.time())
    assert checker.user_of(jwt.encode(claims(exp=now + 23 * 3600), SECRET)) == "u-1"
    reason = refused(checker, jwt.encode(claims(exp=now + 25 * 3600), SECRET))
    assert reason == "token valid too long: exp is more than 24 h ahead"


# --- JWKS -----------------------------------------------------------------------------------


def _jwks(path: Path, *public_jwks: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(public_jwks)}))
    return path


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "other_rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def _public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def test_rs256_and_es256_with_a_jwks_file(tmp_path: Path, keys: dict[str, Any]) -> None:
    path = _jwks(
        tmp_path / "keys.jwks",
        _public_jwk(keys["rsa"], "rsa-1"),
        _public_jwk(keys["ec"], "ec-1"),
    )
    checker = TokenChecker(jwks=load_jwks(path))
    rs = jwt.encode(claims(sub="u-rs"), keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims(sub="u-es"), keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})
    assert checker.user_of(rs) == "u-rs"
    assert checker.user_of(es) == "u-es"
    # Signed by a key not in the file, under a kid that is.
    forged = jwt.encode(claims(), keys["other_rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    assert refused(checker, forged) == "bad signature"
    unknown_kid = jwt.encode(claims(), keys["rsa"], algorithm="RS256", headers={"kid": "nope"})
    assert "kid" in refused(checker, unknown_kid)


def test_jwks_refuses_hs256_and_none(tmp_path: Path, keys: dict[str, Any]) -> None:
    path = _jwks(tmp_path / "keys.jwks", _public_jwk(keys["rsa"], "rsa-1"))
    checker = TokenChecker(jwks=load_jwks(path))
    # The classic confusion: HS256 "signed" with the public key as the secret.
    assert "not accepted" in refused(checker, jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert "not accepted" in refused(checker, _unsigned(claims()))
    expired = jwt.encode(
        claims(exp=int(time.time()) - 60), keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"}
    )
    assert refused(checker, expired) == "token expired"


def test_a_single_key_needs_no_kid(tmp_path: Path, keys: dict[str, Any]) -> None:
    jwk = {k: v for k, v in _public_jwk(keys["ec"], "x").items() if k != "kid"}
    checker = TokenChecker(jwks=load_jwks(_jwks(tmp_path / "one.jwks", jwk)))
    assert checker.user_of(jwt.encode(claims(), keys["ec"], algorithm="ES256")) == "u-1"


def test_a_jwks_file_without_usable_keys_is_refused(tmp_path: Path) -> None:
    for content in ("not json", '{"keys": []}', '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'):
        path = tmp_path / "bad.jwks"
        path.write_text(content)
        with pytest.raises(ConfigError, match="DECLIC_GATEWAY_JWKS_FILE"):
            load_jwks(path)


# --- starting the gateway ----------------------------------------------------------------------


def test_exactly_one_way_to_check_tokens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DECLIC_GATEWAY_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("DECLIC_GATEWAY_JWKS_FILE", raising=False)
    assert main(["gateway"]) == 2
    err = capsys.readouterr().err
    assert "DECLIC_GATEWAY_TOKEN_SECRET" in err and "DECLIC_GATEWAY_JWKS_FILE" in err
    monkeypatch.setenv("DECLIC_GATEWAY_TOKEN_SECRET", SECRET)
    jwks = tmp_path / "keys.jwks"
    jwks.write_text('{"keys": []}')
    assert main(["gateway", "--gateway-jwks-file", str(jwks)]) == 2
    err = capsys.readouterr().err
    assert "--gateway-jwks-file" in err and "DECLIC_GATEWAY_TOKEN_SECRET" in err
    assert SECRET not in err


def test_a_short_secret_and_demo_without_secret_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DECLIC_GATEWAY_TOKEN_SECRET", "short")
    assert main(["gateway"]) == 2
    err = capsys.readouterr().err
    assert "DECLIC_GATEWAY_TOKEN_SECRET: must be at least 32 bytes" in err and "short" not in err
    monkeypatch.delenv("DECLIC_GATEWAY_TOKEN_SECRET")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = _jwks(tmp_path / "keys.jwks", _public_jwk(key, "k"))
    assert main(["gateway", "--demo", "--gateway-jwks-file", str(jwks)]) == 2
    assert "--demo" in capsys.readouterr().err


@pytest.mark.parametrize("origins", ["shop.example", "https://shop.example/path", "ftp://x"])
def test_invalid_origins_are_refused(origins: str) -> None:
    with pytest.raises(ConfigError, match="DECLIC_GATEWAY_ALLOWED_ORIGINS"):
        load_settings({"gateway_allowed_origins": origins})


def test_origins_are_split_on_commas() -> None:
    settings = load_settings(
        {"gateway_allowed_origins": "https://a.example, http://127.0.0.1:8000/,*"}
    )
    assert settings.gateway_origins() == ("https://a.example", "http://127.0.0.1:8000", "*")


def test_the_secret_is_never_described() -> None:
    settings = load_settings({"gateway_token_secret": SECRET})
    assert SECRET not in repr(settings) and SECRET not in str(settings.describe())
