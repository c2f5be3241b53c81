"""Who may post to ``raylens remediate``: a bearer token, or bcrypt basic auth from the web config.

Alertmanager sends either from its webhook's ``http_config``::

    webhook_configs:
      - url: https://remediate.example:9098/webhook
        http_config:
          authorization: {type: Bearer, credentials_file: /etc/alertmanager/remediate.token}
          # or: basic_auth: {username: alertmanager, password_file: /etc/alertmanager/remediate.password}

The token file holds the same token on both sides; basic auth reuses the exporter's bcrypt check
(``raylens.web.server.BasicAuth``), so the users live in the same exporter-toolkit web config that
also carries the TLS settings.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from raylens.config import MISSING, ConfigError, ConfigProblem, RemediationConfig
from raylens.web.server import BasicAuth
from raylens.web.webconfig import WebConfig, load_web_config

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class AuthResult:
    allowed: bool
    actor: str  # who, when allowed; why not, otherwise


class Authenticator:
    def __init__(self, token: str | None, basic: BasicAuth | None, allow_unauthenticated: bool = False):
        self._token = token.encode() if token else None
        self._basic = basic
        self._open = allow_unauthenticated

    def check(self, header: str | None) -> AuthResult:
        if self._open and (not header or (self._token is None and self._basic is None)):
            return AuthResult(True, "anonymous")
        if not header:
            return AuthResult(False, "no credentials")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self._token is not None:
            if hmac.compare_digest(credentials.strip().encode(), self._token):
                return AuthResult(True, "bearer-token")
            return AuthResult(False, "wrong bearer token")
        if scheme.lower() == "basic" and self._basic is not None:
            if self._basic.allows(header):
                user = _basic_user(credentials)
                return AuthResult(True, user)
            return AuthResult(False, "wrong basic auth credentials")
        return AuthResult(False, f"{scheme or 'empty'} credentials are not accepted here")


def _basic_user(credentials: str) -> str:
    return base64.b64decode(credentials).decode(errors="replace").partition(":")[0]


def load_authentication(config: RemediationConfig, source: str) -> tuple[Authenticator, WebConfig]:
    """Read the token file and web config; ``ConfigError`` naming the field when either is unusable."""
    web_config = load_web_config(config.web_config_file) if config.web_config_file else WebConfig()
    token = None
    if config.bearer_token_file is not None:
        try:
            token = config.bearer_token_file.read_text().strip()
        except OSError as error:
            raise ConfigError(
                [
                    ConfigProblem(
                        source,
                        "remediation.bearer_token_file",
                        str(config.bearer_token_file),
                        f"cannot read: {error.strerror}",
                    )
                ]
            ) from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                [
                    ConfigProblem(
                        source,
                        "remediation.bearer_token_file",
                        str(config.bearer_token_file),
                        f"expected a token of at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)",
                    )
                ]
            )
    basic = BasicAuth(web_config.basic_auth_users) if web_config.basic_auth_users else None
    if token is None and basic is None and not config.allow_unauthenticated:
        raise ConfigError(
            [
                ConfigProblem(
                    source,
                    "remediation.bearer_token_file",
                    MISSING,
                    "expected a bearer token file or basic_auth_users in remediation.web_config_file: the "
                    "remediation service never runs without authentication",
                )
            ]
        )
    return Authenticator(token, basic, config.allow_unauthenticated), web_config
