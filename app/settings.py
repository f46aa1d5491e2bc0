"""Server settings, read from ``RELMEM_*`` environment variables and the command line."""

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DASK_SCHEDULER_PATTERN = re.compile(r"^(tcp|tls)://[^/\s]+:\d{1,5}$")


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
    ws_queue_size: int = Field(
        256,
        ge=1,
        le=65536,
        description=(
            "Messages buffered for each websocket client; a client that falls this far "
            "behind is disconnected so that it cannot delay the others."
        ),
    )
    ws_send_buffer_bytes: int = Field(
        256 * 1024,
        ge=4096,
        le=64 * 2**20,
        description=(
            "Kernel send buffer (SO_SNDBUF) of each websocket connection, in bytes; bounds "
            "what a client that stops reading can hold before its queue fills up."
        ),
    )

    executor: Literal["local", "dask"] = Field(
        "local",
        description=(
            "Where runs train: local worker processes, or an existing Dask distributed "
            "cluster (needs dask_scheduler)."
        ),
    )
    dask_scheduler: str | None = Field(
        None,
        description="Address of the Dask scheduler, tcp://HOST:PORT, for executor 'dask'.",
    )

    @model_validator(mode="after")
    def _check_executor(self) -> "Settings":
        if self.executor == "dask":
            if not self.dask_scheduler:
                raise ValueError("executor 'dask' needs dask_scheduler (tcp://HOST:PORT)")
            if not DASK_SCHEDULER_PATTERN.match(self.dask_scheduler):
                raise ValueError(
                    "dask_scheduler must look like tcp://HOST:PORT or tls://HOST:PORT, "
                    f"got {self.dask_scheduler!r}"
                )
        return self

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
