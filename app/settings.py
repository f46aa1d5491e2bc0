"""Server settings, read from ``RELMEM_*`` environment variables and the command line."""

import ipaddress
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _default_concurrency() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """Configuration of one server process.

    Every field can be set through the environment with the ``RELMEM_`` prefix, for
    example ``RELMEM_DATA_DIR=/srv/relmem``; ``relmem serve`` options override them.
    """

    model_config = SettingsConfigDict(env_prefix="RELMEM_", extra="ignore")

    data_dir: Path = Field(
        Path("./data"), description="Folder for relmem.sqlite3 and one folder per run."
    )
    host: str = Field("127.0.0.1", description="Address to bind; loopback unless set.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    max_concurrent_runs: int = Field(
        default_factory=_default_concurrency,
        ge=1,
        le=256,
        description="Training runs that may execute at once; the rest wait in order.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Extra host names accepted in the Host header, besides localhost, 127.0.0.1, "
            "[::1] and the bound host; as a JSON list in the environment."
        ),
    )
    cancel_grace_seconds: float = Field(
        3.0,
        gt=0,
        le=600,
        description="Seconds a cancelled worker may keep running before it is terminated.",
    )
    explorer_threads: int = Field(
        2, ge=1, le=64, description="Explorer requests (predict) that run at once."
    )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "relmem.sqlite3"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def host_names(self) -> set[str]:
        """Return the host names (without port or brackets) accepted in the Host header."""
        names = {*LOOPBACK_NAMES, *(name.lower() for name in self.allowed_hosts)}
        names.add(self.host.lower().strip("[]"))
        return names


def is_loopback(host: str) -> bool:
    """Return whether binding ``host`` keeps the server reachable from this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
