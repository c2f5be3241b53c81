"""The exporter-toolkit web configuration file: TLS and basic auth, as Prometheus exporters read it.

Format (https://prometheus.io/docs/prometheus/latest/configuration/https/)::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: ca.crt                          # optional
      min_version: TLS12                              # optional
    basic_auth_users:
      alice: $2y$10$...                               # bcrypt hash

Relative paths are resolved against the file's own directory, as exporter-toolkit does. Options
that raylens cannot honour (cipher suites, curve preferences) are refused rather than ignored.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from raylens.config import MISSING, ConfigError, ConfigProblem, problems_from_validation, read_yaml_mapping

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version:
            context.maximum_version = _TLS_VERSIONS[self.max_version]
        context.load_cert_chain(certfile=str(self.cert_file), keyfile=str(self.key_file))
        if self.client_auth_type != "NoClientCert":
            if self.client_ca_file is not None:
                context.load_verify_locations(cafile=str(self.client_ca_file))
            # Python's ssl can only require-and-verify or optionally verify; it cannot accept an
            # unverified certificate, so the "Any" variants verify when a CA is given.
            required = self.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert")
            context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        return context


class HttpServerConfig(_Strict):
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfig(_Strict):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not (isinstance(hashed, str) and hashed[:4] in ("$2a$", "$2b$", "$2y$") and len(hashed) == 60):
                raise ValueError(f"expected a bcrypt hash ($2y$..., 60 characters) for user {user!r}")
        return users


def _resolve(path: Path | None, base: Path) -> Path | None:
    return None if path is None or path.is_absolute() else base / path


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config; raise ``ConfigError`` naming the file and every bad field."""
    data: dict[str, Any] = read_yaml_mapping(path)
    source = str(path)
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, WebConfig, source)) from None

    tls = config.tls_server_config
    if tls is None:
        return config
    base = path.parent
    tls = tls.model_copy(
        update={
            "cert_file": _resolve(tls.cert_file, base) or tls.cert_file,
            "key_file": _resolve(tls.key_file, base) or tls.key_file,
            "client_ca_file": _resolve(tls.client_ca_file, base) or tls.client_ca_file,
        }
    )
    problems = []
    for field in ("cert_file", "key_file", "client_ca_file"):
        file = getattr(tls, field)
        if file is not None and not file.is_file():
            problems.append(ConfigProblem(source, f"tls_server_config.{field}", str(file), "expected a readable file"))
    if tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not tls.client_ca_file:
        problems.append(
            ConfigProblem(
                source,
                "tls_server_config.client_ca_file",
                None,
                f"expected a CA file when client_auth_type is {tls.client_auth_type}",
            )
        )
    if not problems:
        try:
            tls.ssl_context()
        except (ssl.SSLError, OSError) as error:
            problems.append(
                ConfigProblem(source, "tls_server_config", MISSING, f"cannot load certificate or key: {error}")
            )
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"tls_server_config": tls})
