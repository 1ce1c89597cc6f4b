"""``secretctl``: inspect and drive the secretd daemon by hand.

Exit codes: 0 success; 1 the daemon rejected the request; 2 invalid usage;
3 the daemon cannot be reached; 4 no such secret or scope; 5 a secret's
source failed; 130 interrupted (Ctrl-C); 141 the output pipe was closed
(as for a program killed by SIGPIPE).  ``run`` exits with the program's
status, 128 + N when the program was killed by signal N, with 5 without
running it when a secret it references cannot be resolved (unless
``--allow-missing``), with 125 when secretctl itself failed (as ``env`` and
``docker run`` do), 126 when the program cannot be executed and 127 when it
is not found.  ``run`` passes SIGTERM, SIGINT, SIGHUP and SIGQUIT on to the
program and waits for it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK = 0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_SOURCE = 5
EXIT_RUN_FAILED = 125
#: 128 + the signal's number, as shells report a program killed by SIGINT or SIGPIPE.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class UsageError(Exception):
    """The command line is invalid; the message says how to fix it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secretctl", description="Inspect and drive the secretd daemon.")
    parser.add_argument("--socket", type=Path, help="daemon socket (default: $SECRETD_SOCKET, else "
                        "$XDG_RUNTIME_DIR/secretd/secretd.sock, else /tmp/secretd-UID/secretd.sock)")
    parser.add_argument("--json", action="store_true", help="print listings as JSON")
    commands = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")

    commands.add_parser("status", help="show the daemon's version, uptime, socket and counts")
    commands.add_parser("list", help="list secrets: names, descriptions, source kinds and states, never values")
    set_parser = commands.add_parser("set", help="add or replace a global secret (value from stdin by default)")
    set_parser.add_argument("name", help="a shell variable name such as API_KEY")
    set_parser.add_argument("--description", default="", help="text shown to agents next to the name")
    set_parser.add_argument("--inject", choices=["referenced", "always", "never"], default="referenced",
                            help="when the secret goes into a command's environment (default: referenced)")
    source = set_parser.add_mutually_exclusive_group()
    source.add_argument("--env", metavar="VAR", help="read the value from the daemon's environment variable VAR")
    source.add_argument("--file", metavar="PATH", help="read the value from a file (one trailing newline removed)")
    source.add_argument("--command", dest="command_argv", nargs=argparse.REMAINDER, metavar="ARGV",
                        help="run ARGV (no shell) and use its stdout; must come last")
    rm_parser = commands.add_parser("rm", help="remove global secrets")
    rm_parser.add_argument("names", nargs="+", metavar="NAME")
    resolve_parser = commands.add_parser("resolve", help="print the names a shell command would receive")
    resolve_parser.add_argument("shell_command", metavar="COMMAND", nargs="+")
    get_parser = commands.add_parser("get", help="print one secret's value (an explicit reveal)")
    get_parser.add_argument("name", help="the secret's name")
    mask_parser = commands.add_parser("mask", help="mask stdin (or FILE) to stdout as a stream")
    mask_parser.add_argument("file", nargs="?", type=Path)
    run_parser = commands.add_parser("run", help="run a program with the secrets its arguments reference")
    run_parser.add_argument("--all", action="store_true", help="give the program every secret")
    run_parser.add_argument("--allow-missing", action="store_true",
                            help="run the program even when a secret it references cannot be resolved")
    run_parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]",
                            help="the program and its arguments; the secrets they name go into its environment, "
                                 "and its output is masked")
    commands.add_parser("reload", help="make the daemon read its config file again")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run secretctl; return its exit status."""
    from secretd.protocol.errors import NotFoundError, RemoteError, SourceError, TransportError

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "action", None) == "set":
            parser.error(f"unrecognized arguments: {' '.join(extra)} (a value is read from stdin, never from "
                         "argv: printf '%s' VALUE | secretctl set NAME)")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Most specific first: NotFoundError and SourceError are RemoteErrors.
    exit_codes: list[tuple[type[Exception], int]] = [
        (UsageError, EXIT_USAGE),
        (TransportError, EXIT_UNREACHABLE),
        (NotFoundError, EXIT_NOT_FOUND),
        (SourceError, EXIT_SOURCE),
        (RemoteError, EXIT_REMOTE),
    ]
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # The reader of our output went away (``secretctl run ... | head -2``).
        # Report it as a shell does for a program killed by SIGPIPE, so that
        # ``set -o pipefail`` detects it, and send the rest of the output, which
        # Python flushes at exit, to /dev/null instead of a second error.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass  # sys.stdout has no file descriptor (replaced in-process, as by pytest)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (UsageError, TransportError, RemoteError) as exc:
        message = exc.message if isinstance(exc, RemoteError) else str(exc)
        print(f"secretctl: {message}", file=sys.stderr)
        return next(code for kind, code in exit_codes if isinstance(exc, kind))


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .blocking import Client

    return Client(args.socket, client_name="secretctl")


def _dispatch(args: argparse.Namespace) -> int:
    command = args.action
    if command == "run":
        return _run(args)
    if command == "set":
        spec = _spec_from_args(args)
    with _client(args) as client:
        if command == "status":
            return _print(args, client.status(), _format_status)
        if command == "list":
            return _print(args, client.list_secrets(None), _format_list)
        if command == "set":
            result = client.update_secrets(None, [spec])
            if result.too_short:
                print(f"secretctl: warning: the value of {args.name!r} is shorter than 4 characters "
                      "and will not be masked in output", file=sys.stderr)
            return EXIT_OK
        if command == "rm":
            client.remove_secrets(None, args.names)
            return EXIT_OK
        if command == "resolve":
            resolved = client.resolve_env(None, " ".join(args.shell_command))
            _print(args, sorted(resolved.env), lambda names: "\n".join(names))
            for name, reason in sorted(resolved.errors.items()):
                print(f"secretctl: {name} is referenced but could not be resolved: {reason}", file=sys.stderr)
            return EXIT_SOURCE if resolved.errors else EXIT_OK
        if command == "get":
            sys.stdout.write(client.get_secret(None, args.name) + "\n")
            return EXIT_OK
        if command == "mask":
            return _mask(client, args.file)
        if command == "reload":
            return _print(args, client.reload(), lambda r: f"reloaded: {r['secrets']} global secrets from the config file")
    raise UsageError(f"unknown command {command!r}")


def _spec_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import msgspec

    from secretd.protocol.messages import SecretSpec
    from secretd.protocol.sources import CommandSource, EnvSource, FileSource, StaticSource

    if args.command_argv == []:
        raise UsageError("--command needs the program to run, e.g. --command pass show github/token")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", args.name) or len(args.name) > 256:
        raise UsageError(
            f"invalid secret name {args.name!r}: use a shell variable name such as API_KEY "
            "(letters, digits and underscores, not starting with a digit)"
        )
    if args.env is not None:
        source: Any = EnvSource(var=args.env)
    elif args.file is not None:
        source = FileSource(path=os.path.abspath(args.file))
    elif args.command_argv is not None:
        source = CommandSource(argv=args.command_argv)
    else:
        source = StaticSource(value=_read_value(args.name))
    try:
        return msgspec.convert(
            {"name": args.name, "source": msgspec.to_builtins(source), "description": args.description,
             "inject": args.inject},
            SecretSpec,
        )
    except msgspec.ValidationError as exc:
        raise UsageError(f"invalid secret {args.name!r}: {exc}") from None


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value for {name}: ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
    if not value:
        raise UsageError(f"no value for {name!r} on stdin; pipe it in, e.g. 'pass show x | secretctl set {name}'")
    return value


def _mask(client: Any, file: Path | None) -> int:
    source = sys.stdin.buffer if file is None else _open_input(file)
    out = sys.stdout.buffer
    with source, client.stream(None) as stream:
        while chunk := _read_input(source, file):
            out.write(stream.feed(chunk))
            out.flush()
        out.write(stream.close())
        out.flush()
    return EXIT_OK


def _open_input(file: Path) -> Any:
    try:
        return open(file, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {str(file)!r}: {exc.strerror}") from None


def _read_input(source: Any, file: Path | None) -> bytes:
    try:
        return source.read1(65536) if hasattr(source, "read1") else source.read(65536)
    except OSError as exc:
        raise UsageError(f"cannot read {'stdin' if file is None else repr(str(file))}: {exc.strerror}") from None


def _run(args: argparse.Namespace) -> int:
    import shlex

    from secretd.protocol.errors import SecretdError

    from .terminal import MaskingUnavailable, run_argv

    program = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not program:
        raise UsageError("run needs a program: secretctl run -- PROGRAM [ARGS...]")

    def forward(name: str, data: bytes) -> None:
        stream = sys.stdout.buffer if name == "stdout" else sys.stderr.buffer
        stream.write(data)
        stream.flush()

    try:
        with _client(args) as client:
            # One resolution serves both the check and the program's environment, so a
            # source runs once and cannot fail between the two.
            resolved = client.resolve_env(None, shlex.join(program), all=args.all)
            if resolved.errors and not args.allow_missing:
                for name, reason in sorted(resolved.errors.items()):
                    print(f"secretctl: {name} could not be resolved: {reason}", file=sys.stderr)
                print("secretctl: program not run; fix the source or pass --allow-missing", file=sys.stderr)
                return EXIT_SOURCE
            for name, reason in sorted(resolved.denied.items()):
                print(f"secretctl: note: {name} not injected: {reason} (see its 'inject' and 'programs' settings)",
                      file=sys.stderr)
            if not resolved.env and not resolved.errors and not resolved.denied and not args.all:
                _note_nothing_injected(client, program)
            # The program reads secretctl's stdin, as in a pipeline: cat body.json | secretctl run -- curl --data @- URL
            result = run_argv(client, None, program, resolved=resolved, stdin=None, forward_signals=True,
                              on_output=forward)
    except FileNotFoundError:
        print(f"secretctl: {program[0]!r}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"secretctl: {program[0]!r}: permission denied", file=sys.stderr)
        return 126
    except MaskingUnavailable as exc:
        print(f"secretctl: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except SecretdError as exc:
        print(f"secretctl: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    for name, reason in sorted(result.errors.items()):
        print(f"secretctl: warning: {name} not injected: {reason}", file=sys.stderr)
    if result.exit_code < 0:
        return 128 - result.exit_code
    return result.exit_code


def _note_nothing_injected(client: Any, program: list[str]) -> None:
    """Print one line when the program gets no secret although some could be injected.

    A secret is injected only when the command line references it, so a script
    that reads ``$API_KEY`` itself gets nothing unless ``--all`` is passed or the
    command line names the variable.  The suggested ``sh -c 'API_KEY=$API_KEY ...'``
    form is a reference in each reference mode (word, shell and substring).  The
    note names only the program, never its arguments, which may hold a value.
    """
    import shlex

    infos = [info for info in client.list_secrets(None) if info.inject != "never"]
    if not infos:
        return
    name = next((info.name for info in infos if info.state != "failed"), infos[0].name)
    command = shlex.quote(program[0]) + (" ..." if len(program) > 1 else "")
    example = shlex.join(["secretctl", "run", "--", "sh", "-c", f"{name}=${name} {command}"])
    print(f"secretctl: note: no secret injected: the command line references none, and references inside a "
          f"script do not count; pass --all, or name the variable: {example}", file=sys.stderr)


def _print(args: argparse.Namespace, value: Any, formatter: Any) -> int:
    import msgspec

    if args.json:
        print(json.dumps(msgspec.to_builtins(value), indent=2))
    else:
        text = formatter(value)
        if text:
            print(text)
    return EXIT_OK


def _format_status(status: Any) -> str:
    lines = [
        f"secretd {status.daemon_version} (protocol {status.protocol}), pid {status.pid}",
        f"socket:       {status.socket}",
        f"uptime:       {_duration(status.uptime)}",
        f"scopes:       {status.scopes} conversation scopes open",
        f"secrets:      {status.secrets} ({status.global_secrets} global)",
        f"connections:  {status.connections}, streams: {status.streams}",
        f"placeholder:  {status.placeholder}",
        f"references:   {status.reference_mode} mode",
        "masker:       " + ("C module (fast)" if status.masker_accelerated
                            else "pure Python (slow: reinstall secretd with a C compiler and the Python headers)")
        + (", modules compiled with mypyc" if status.masker_compiled else ""),
    ]
    if status.too_short:
        lines.append(f"too short to mask (under 4 characters): {', '.join(status.too_short)}")
    else:
        lines.append("too short to mask: none")
    return "\n".join(lines)


def _format_list(infos: list[Any]) -> str:
    if not infos:
        return "no secrets; add one with 'secretctl set NAME'"
    rows = [("NAME", "SOURCE", "STATE", "AGE", "DESCRIPTION")]
    for info in infos:
        state = info.state + (" (too short to mask)" if info.too_short else "")
        if info.last_error:
            state += f": {info.last_error}"
        age = "-" if info.age is None else _duration(info.age)
        rows.append((info.name, info.source, state, age, info.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows
    ).rstrip()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


if __name__ == "__main__":
    sys.exit(main())
