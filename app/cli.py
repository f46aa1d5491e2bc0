"""The ``relmem`` command line: ``relmem serve [--host] [--port] [--data-dir] …`` and
``relmem import FOLDER … [--data-dir]``.

Each option falls back to its ``RELMEM_*`` environment variable, then to the default in
``app.settings.Settings``. The web server is imported inside ``serve`` so that spawned
training workers, which import the main module, stay light.
"""

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from app.settings import Settings, is_loopback

logger = logging.getLogger("app.cli")

LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relmem",
        description="Relational Memory Explorer: train RMC and LSTM models and inspect them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Serve the explorer and its JSON API.")
    serve.add_argument(
        "--host",
        help="Address to bind [RELMEM_HOST, 127.0.0.1]. Any address other than loopback "
        "exposes the explorer, which has no authentication, to other machines.",
    )
    serve.add_argument("--port", type=int, help="TCP port [RELMEM_PORT, 8000].")
    serve.add_argument(
        "--data-dir", help="Folder for the run database and checkpoints [RELMEM_DATA_DIR, ./data]."
    )
    serve.add_argument(
        "--max-concurrent-runs",
        type=int,
        help="Training runs that execute at once [RELMEM_MAX_CONCURRENT_RUNS, CPU count].",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        help="Extra host name accepted in the Host header; repeat for several "
        "[RELMEM_ALLOWED_HOSTS as a JSON list].",
    )
    serve.add_argument(
        "--executor",
        choices=("local", "dask"),
        help="Where runs train: local worker processes or a Dask cluster [RELMEM_EXECUTOR, local].",
    )
    serve.add_argument(
        "--scheduler",
        dest="dask_scheduler",
        help="Dask scheduler address tcp://HOST:PORT for --executor dask [RELMEM_DASK_SCHEDULER].",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="[info]")

    imports = commands.add_parser(
        "import",
        help="Add run folders written by python -m models.train to the explorer's data.",
        description="Check each run folder (config.json, metrics.jsonl, summary.json, "
        "checkpoint.npz) with the rules of POST /api/runs and store it as a finished run. "
        "A running server shows the imported runs when its pages are reloaded.",
    )
    imports.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="run folder")
    imports.add_argument(
        "--data-dir", help="Folder for the run database and checkpoints [RELMEM_DATA_DIR, ./data]."
    )
    imports.add_argument(
        "--again",
        action="store_true",
        help="Import a folder whose checkpoint an earlier import stored, as another run.",
    )
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "max_concurrent_runs": args.max_concurrent_runs,
        "allowed_hosts": args.allowed_hosts,
        "executor": args.executor,
        "dask_scheduler": args.dask_scheduler,
    }
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


def _url(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def warn_if_exposed(host: str) -> bool:
    """Log a warning and return True when ``host`` is not a loopback address."""
    if is_loopback(host):
        return False
    logger.warning(
        "binding %s: the explorer is reachable from other machines and has no "
        "authentication; bind 127.0.0.1 unless this is intended",
        host,
    )
    return True


def serve(settings: Settings, log_level: str) -> None:
    import uvicorn

    from app.main import create_app
    from app.ws_protocol import bounded_websocket_protocol

    warn_if_exposed(settings.host)
    logger.info(
        "Relational Memory Explorer at %s, data directory %s",
        _url(settings),
        settings.data_dir.resolve(),
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=log_level,
        server_header=False,
        # Compressing every message for every client would run zlib on the event loop;
        # the clients are on this machine, so bandwidth is not worth that CPU time.
        ws_per_message_deflate=False,
        ws=bounded_websocket_protocol(settings.ws_send_buffer_bytes),
    )


def import_runs(settings: Settings, folders: list[Path], again: bool = False) -> int:
    """Import each run folder into the settings' data folder; return 1 if any failed.

    ``again`` imports checkpoints that an earlier import stored, as new runs.
    """
    from app.importer import RunImportError, import_run
    from app.store import Store

    store = Store(settings.database_path)
    failed = 0
    try:
        for folder in folders:
            try:
                run = import_run(folder, store, settings.runs_dir, again=again)
            except RunImportError as exc:
                print(f"relmem import: {folder}: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(f"imported {folder} as run {run['id']} ({run['name']}): /runs/{run['id']}")
    finally:
        store.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
            return import_runs(Settings(**overrides), args.folders, args.again)
        settings = _settings_from(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']} (got {error.get('input')!r})"
            for error in exc.errors()
        )
        parser.error(f"invalid settings: {problems}")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    serve(settings, args.log_level)
    return 0
