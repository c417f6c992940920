"""Service settings: environment variables with the one prefix ``DUNNING_``.

Every service reads the same ``ServiceSettings``; the few that differ per
service get their defaults from its ``ServiceSpec``: the database file from its
name, the port from its place in the platform (``port_offset``).
Settings are validated at start-up and a bad value stops the process with a
message that names the variable.
"""

from __future__ import annotations

import hmac
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "DUNNING_"
#: A bootstrap key given as its stored form: ``hmac-sha256:<hex>``, the HMAC of the key
#: under ``DUNNING_KEY_PEPPER`` (``dunning keys hash``); checked by ``api_keys.KeyRing``.
HASHED_KEY_PREFIX = "hmac-sha256:"

#: The platform's first port; a service listens on it + its ``ServiceSpec.port_offset``
#: (the platform's list of services and their ports is the ``dunning`` command's:
#: ``dunning_cli.platform.SERVICES``).
DEFAULT_BASE_PORT = 8001

S = TypeVar("S", bound="ServiceSettings")


class ClockKind(StrEnum):
    """Which clock a service reads time from."""

    SYSTEM = "system"
    MANUAL = "manual"


class ServiceSettings(BaseSettings):
    """Settings shared by every service; see docs/settings.md for the full table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    service_name: str = Field(
        default="dunning",
        description="Name of the running service; set by the service itself, not by users.",
        exclude=True,
    )
    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for embedded data: SQLite databases, the embedded log, .eml files.",
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy async URL. Empty means SQLite at <data_dir>/<service>.sqlite. "
            "PostgreSQL: postgresql+asyncpg://user:pass@host/db (each service uses its own schema)."
        ),
    )
    database_ssl_mode: Literal["", "disable", "require", "verify-ca", "verify-full"] = Field(
        default="",
        description=(
            "TLS to PostgreSQL, as libpq's sslmode: require (encrypted, server not checked), "
            "verify-ca (certificate signed by a trusted CA), verify-full (and issued for the "
            "URL's host name). Empty: the driver's default (TLS if the server offers it, "
            "unchecked). Not in the URL: sslmode= there is refused."
        ),
    )
    database_ssl_ca_file: str = Field(
        default="",
        description=(
            "PEM file of the CA(s) that signed the PostgreSQL server's certificate "
            "(verify-ca, verify-full); empty trusts the system's CAs."
        ),
    )
    database_ssl_cert_file: str = Field(
        default="",
        description=(
            "PEM client certificate for mutual TLS with PostgreSQL "
            "(with DUNNING_DATABASE_SSL_KEY_FILE)."
        ),
    )
    database_ssl_key_file: str = Field(
        default="", description="PEM private key of DUNNING_DATABASE_SSL_CERT_FILE (unencrypted)."
    )
    database_schema: str = Field(
        default="",
        description="PostgreSQL schema for this service's tables; empty means the service name.",
    )
    bus_url: str = Field(
        default="embedded:",
        description=(
            "Event bus. 'embedded:' (log at <data_dir>/bus.sqlite), 'embedded:/path/bus.sqlite', "
            "or 'kafka://host:9092[,host2:9092]'."
        ),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description=(
            "How the services reach Kafka: PLAINTEXT, SSL (TLS), or SASL_SSL (TLS plus a "
            "SASL login). SASL without TLS is refused."
        ),
    )
    kafka_linger_ms: int = Field(
        default=5,
        ge=0,
        le=1_000,
        description=(
            "How long the Kafka producer waits to fill a batch before it sends: more "
            "throughput per request, that much more latency per event."
        ),
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description=(
            "How long a Kafka fetch waits at the broker for new records. A partition "
            "resumed after its chunk is fetched again only when the fetch in flight returns, "
            "so at low rates an event can wait up to this long: lower is less latency, "
            "more fetch requests while idle."
        ),
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism for SASL_SSL."
    )
    kafka_username: str = Field(default="", description="SASL user name (SASL_SSL only).")
    kafka_password: SecretStr = Field(
        default=SecretStr(""), description="SASL password (SASL_SSL only). A secret."
    )
    kafka_ca_file: str = Field(
        default="",
        description=(
            "PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL); "
            "empty trusts the system's CAs. Broker host names are always verified."
        ),
    )
    kafka_cert_file: str = Field(
        default="",
        description="PEM client certificate for mutual TLS (with DUNNING_KAFKA_KEY_FILE).",
    )
    kafka_key_file: str = Field(
        default="", description="PEM private key of DUNNING_KAFKA_CERT_FILE (unencrypted)."
    )
    bus_partitions: int = Field(default=8, ge=1, le=1024, description="Partitions per topic.")
    bus_replication_factor: int = Field(
        default=1, ge=1, le=16, description="Kafka replication factor for created topics."
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix for every topic name, to share one broker between environments.",
    )
    consumer_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts at an event before it goes to the dead-letter topic.",
    )
    consumer_batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Events fetched per consumer poll."
    )
    consumer_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Partitions a consumer applies at once (each partition stays in order).",
    )
    consumer_retry_max_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description=(
            "How long a consumer retries a chunk through a transient failure (database or "
            "broker away) before it stops and its supervisor restarts it; never dead-letters."
        ),
    )
    inbox_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description=(
            "Inbox rows (applied event ids) older than this are purged; must exceed any "
            "redelivery window (crash recovery, relay re-publish, DLQ replay)."
        ),
    )
    idempotency_retention_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "Idempotency keys (stored POST responses) older than this, in wall-clock hours, "
            "are purged; a client retrying later than this runs its request again."
        ),
    )
    embedded_log_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="Embedded log: records older than this are deleted once every group read them.",
    )
    embedded_log_max_records: int = Field(
        default=1_000_000,
        ge=1_000,
        description="Embedded log: records kept per partition (older ones deleted once read).",
    )
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Bootstrap keys: comma-separated tenant:key pairs, valid besides the managed keys "
            "(`dunning keys`); a key may be given hashed, as hmac-sha256:<hex> (`dunning keys "
            "hash`). Every /v1 route needs a key as a Bearer key."
        ),
    )
    clock: ClockKind = Field(
        default=ClockKind.SYSTEM,
        description="'system', or 'manual' for tests and simulations (adds /v1/admin/clock).",
    )
    host: str = Field(default="127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "HTTP port; 0 means the service's default (DUNNING_BASE_PORT + its index, "
            "ServiceSpec.port_offset)."
        ),
    )
    base_port: int = Field(
        default=DEFAULT_BASE_PORT,
        ge=1,
        le=65532,
        description=(
            "First port of the platform: each service listens on base + its index in the "
            "platform (ServiceSpec.port_offset) unless DUNNING_PORT says otherwise."
        ),
    )
    admin_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Bootstrap bearer key for /v1/admin/* (API keys, manual clock and tick), besides "
            "managed admin keys; empty: only managed ones. A secret. `make run` uses a "
            "development key when it is unset."
        ),
    )
    key_pepper: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Secret key of the HMAC-SHA256 under which managed API keys are stored; the "
            "same on every service. Without it a stolen key table can be checked against "
            "guesses; changing it invalidates every managed key. A secret."
        ),
    )
    rate_limit_per_s: float = Field(
        default=500.0,
        ge=0,
        description=(
            "Requests per second each tenant API key may make to one service instance, on "
            "average; past it a 429 with Retry-After. 0 turns the limit off. Admin routes "
            "and signed webhooks are not limited."
        ),
    )
    rate_limit_burst: int = Field(
        default=1000,
        ge=1,
        description="Requests a key may make at once before the average rate applies.",
    )
    otlp_endpoint: str = Field(
        default="",
        description="OTLP/HTTP endpoint for traces (e.g. http://127.0.0.1:4318); empty: no export.",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: Literal["json", "text"] = Field(
        default="json",
        description=(
            "json: one JSON object per log line (time, level, service, logger, message, "
            "trace_id, span_id, tenant); text: the same as a line for people."
        ),
    )
    access_log: bool = Field(
        default=False,
        description="Log every HTTP request (uvicorn's access log, at INFO); off under load.",
    )
    migrate: bool = Field(
        default=True,
        description=(
            "Bring the service's tables to the newest revision at start-up. false: only "
            "check, and refuse to start until `<service> migrate` (a migration Job) has "
            "run, so that replicas never race on migrations."
        ),
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        """Parse ``tenant:key,tenant2:key2`` into ``{key: tenant}``."""
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for tenant, key in tenant_pairs(value, "tenant:key"):
            if key in keys:
                raise ValueError("the same key is given for two tenants")
            keys[key] = tenant
        return keys

    @field_validator("bus_url")
    @classmethod
    def _check_bus_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("embedded", "kafka"):
            raise ValueError("must start with 'embedded:' or 'kafka://'")
        if scheme == "kafka" and not urlsplit(value).netloc:
            raise ValueError("kafka:// needs at least one host:port")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @field_validator(
        "kafka_ca_file",
        "kafka_cert_file",
        "kafka_key_file",
        "database_ssl_ca_file",
        "database_ssl_cert_file",
        "database_ssl_key_file",
    )
    @classmethod
    def _check_file(cls, value: str) -> str:
        # At start-up, not at the first connection: a wrong path should stop the deploy.
        if value and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_kafka_security(self) -> ServiceSettings:
        protocol = f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL"
        login = bool(self.kafka_username or self.kafka_password.get_secret_value())
        if self.kafka_security_protocol == "SASL_SSL":
            if not (self.kafka_username and self.kafka_password.get_secret_value()):
                raise ValueError(
                    f"{protocol}=SASL_SSL needs {ENV_PREFIX}KAFKA_USERNAME "
                    f"and {ENV_PREFIX}KAFKA_PASSWORD"
                )
        elif login:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_USERNAME/PASSWORD are set but {protocol} is "
                f"{self.kafka_security_protocol}: a login is sent only over TLS "
                f"({protocol}=SASL_SSL); SASL without TLS is refused"
            )
        files = self.kafka_ca_file or self.kafka_cert_file or self.kafka_key_file
        if files and self.kafka_security_protocol == "PLAINTEXT":
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_CA_FILE/CERT_FILE/KEY_FILE need {protocol}=SSL or SASL_SSL"
            )
        _check_pair("KAFKA_CERT_FILE", self.kafka_cert_file, "KAFKA_KEY_FILE", self.kafka_key_file)
        return self

    @model_validator(mode="after")
    def _check_database_ssl(self) -> ServiceSettings:
        mode = f"{ENV_PREFIX}DATABASE_SSL_MODE"
        url = self.database_url
        if url.startswith("postgresql"):
            in_url = sorted(k for k in parse_qs(urlsplit(url).query) if k.startswith("ssl"))
            if in_url:
                raise ValueError(
                    f"{ENV_PREFIX}DATABASE_URL: {', '.join(in_url)} in the URL is refused (the "
                    f"driver does not read them there); set {mode} and "
                    f"{ENV_PREFIX}DATABASE_SSL_CA_FILE instead"
                )
        elif self.database_ssl_mode:
            raise ValueError(f"{mode} applies to PostgreSQL only (DUNNING_DATABASE_URL is SQLite)")
        if self.database_ssl_ca_file and self.database_ssl_mode not in ("verify-ca", "verify-full"):
            raise ValueError(
                f"{ENV_PREFIX}DATABASE_SSL_CA_FILE needs {mode}=verify-full or verify-ca"
            )
        if self.database_ssl_cert_file and self.database_ssl_mode in ("", "disable"):
            raise ValueError(
                f"{ENV_PREFIX}DATABASE_SSL_CERT_FILE needs a {mode} other than disable"
            )
        _check_pair(
            "DATABASE_SSL_CERT_FILE",
            self.database_ssl_cert_file,
            "DATABASE_SSL_KEY_FILE",
            self.database_ssl_key_file,
        )
        return self

    # Derived values --------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file per service in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.sqlite')}"

    @property
    def effective_schema(self) -> str | None:
        """The PostgreSQL schema of this service (None on SQLite, where each has its own file)."""
        if not self.effective_database_url.startswith("postgresql"):
            return None
        return self.database_schema or self.service_name.replace("-", "_")

    @property
    def is_embedded_bus(self) -> bool:
        """True when the bus is the embedded SQLite log."""
        return self.bus_url.startswith("embedded:")

    @property
    def embedded_bus_path(self) -> Path:
        """File of the embedded log."""
        path = self.bus_url.removeprefix("embedded:")
        return Path(path) if path else self.data_dir / "bus.sqlite"

    @property
    def kafka_bootstrap(self) -> list[str]:
        """Bootstrap servers of a kafka:// bus URL."""
        return [h for h in urlsplit(self.bus_url).netloc.split(",") if h]

    def tenant_for_key(self, key: str) -> str | None:
        """The tenant an API key belongs to, if any (constant time in the key's content)."""
        # Compare against every key so timing does not leak which ones exist.
        found: str | None = None
        for known, tenant in self.api_keys.items():
            # A hashed entry's text is not a key (api_keys.KeyRing checks those).
            if hmac.compare_digest(known.encode(), key.encode()) and not is_hashed(known):
                found = tenant
        return found

    def is_admin_key(self, key: str) -> bool:
        """True when ``key`` is the configured admin key (never when none is configured)."""
        admin = self.admin_key.get_secret_value()
        matches = hmac.compare_digest(admin.encode(), key.encode())
        return bool(admin) and matches and not is_hashed(admin)


def is_hashed(key: str) -> bool:
    """True for a bootstrap key given in its stored form (``HASHED_KEY_PREFIX``)."""
    return key.startswith(HASHED_KEY_PREFIX)


def _check_pair(cert_name: str, cert: str, key_name: str, key: str) -> None:
    """A client certificate and its key come together."""
    if bool(cert) != bool(key):
        raise ValueError(f"{ENV_PREFIX}{cert_name} and {ENV_PREFIX}{key_name} go together")


def tenant_pairs(value: str, shape: str) -> list[tuple[str, str]]:
    """``a:1, b:2`` as ``[("a", "1"), ("b", "2")]``; ValueError naming ``shape`` otherwise.

    The form of every per-tenant setting (``DUNNING_API_KEYS``, invoice-svc's grace days,
    notify-svc's webhook keys). The value may hold ':' after the first one. A malformed
    pair is named by its position, never quoted: its value may be a secret.
    """
    pairs = []
    parts = filter(None, (part.strip() for part in value.split(",")))
    for number, pair in enumerate(parts, start=1):
        left, sep, right = pair.partition(":")
        if not sep or not left.strip() or not right.strip():
            raise ValueError(f"expected {shape} pairs separated by commas; pair {number} is not")
        pairs.append((left.strip(), right.strip()))
    return pairs


class _NamedSpec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def settings_type(self) -> type[ServiceSettings]: ...

    @property
    def port_offset(self) -> int | None: ...


def load_settings(service: str | _NamedSpec, **overrides: Any) -> ServiceSettings:
    """Read and validate the settings of ``service`` (a ServiceSpec, or a name for the shared
    settings only); exit with a message naming each bad variable when invalid."""
    if isinstance(service, str):
        name, settings_type, offset = service, ServiceSettings, None
    else:
        name, settings_type, offset = service.name, service.settings_type, service.port_offset
    try:
        return with_default_port(settings_type(service_name=name, **overrides), offset)
    except ValidationError as exc:
        lines = [f"{name}: invalid settings:"]
        for err in exc.errors():
            if not err["loc"]:  # a rule across settings: its message names them
                lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
                continue
            variable = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {variable}: {err['msg']}")
        sys.exit("\n".join(lines))


def with_default_port(settings: S, port_offset: int | None) -> S:
    """``settings`` with ``DUNNING_PORT`` 0 (the default) made ``base_port`` + ``port_offset``,
    the service's place in the platform; unchanged without an offset or with a port set."""
    if settings.port == 0 and port_offset is not None:
        object.__setattr__(settings, "port", settings.base_port + port_offset)
    return settings


def settings_types() -> list[type[ServiceSettings]]:
    """``ServiceSettings`` and every subclass imported so far (each service's own settings)."""
    found: list[type[ServiceSettings]] = [ServiceSettings]
    for settings_type in found:
        found.extend(s for s in settings_type.__subclasses__() if s not in found)
    return found


def setting_env_names(*types: type[ServiceSettings]) -> set[str]:
    """Every environment variable the given settings read (default: every imported settings
    type; import the services' settings modules first). Used to check deploy files."""
    return {
        ENV_PREFIX + name.upper()
        for settings_type in types or tuple(settings_types())
        for name in settings_type.model_fields
        if name != "service_name"
    }
