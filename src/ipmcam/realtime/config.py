"""Settings from a TOML file: every option of ``live``, ``apply``, ``demo`` and ``studio``, overridden by flags.

The file holds option names (dashes or underscores) at the top level, for
every command, and in ``[live]``, ``[apply]``, ``[demo]`` or ``[studio]`` tables, for one::

    reference = "~/looks"          # a photo, a folder (cycled with n/p) or a preset name
    intensity = 0.8
    strength = { lips = 1.0, eyes = 0.6, skin = 0.3 }
    mirror = true
    output-size = "1280x720"       # or [1280, 720]

    [live]
    camera = 1
    preview = true

It is read from ``--config PATH``, else from ``$XDG_CONFIG_HOME/ipmcam/config.toml``
(``~/.config/ipmcam/config.toml``) when that exists. Flags given on the
command line win. ``ipmcam config --print`` shows the settings in effect and
where each one comes from.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipmcam.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

#: commands whose options a config file may set
COMMANDS = ("live", "apply", "demo", "studio")
#: destinations that are not settings
_NOT_SETTINGS = {"help", "config", "handler", "command", "verbose", "root_parser"}


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a one-line error when it is missing or malformed."""
    path = Path(path).expanduser()
    if tomllib is None:
        raise UserError("reading TOML needs Python 3.11+ or the tomli package (pip install tomli)")
    if not path.is_file():
        raise UserError(f"config {path}: file not found")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config {path}: not valid TOML ({exc})") from None


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "ipmcam" / "config.toml"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subparsers nowhere public
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _options(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Settable options of a command by destination name (positionals and --help left out)."""
    return {a.dest: a for a in sub._actions  # noqa: SLF001
            if a.option_strings and a.dest not in _NOT_SETTINGS and a.default is not argparse.SUPPRESS}


def _as_text(value: Any) -> str:
    """A TOML value in the form the flag's parser reads."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
        if not isinstance(value, bool):
            raise UserError(f"config {where}: {key} must be true or false, got {value!r}")
        return value
    text = _as_text(value)
    if action.type is Path:
        text = os.path.expanduser(text)
    try:
        converted = action.type(text) if action.type is not None else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise UserError(f"config {where}: {key}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        raise UserError(f"config {where}: {key} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def settings_for(parser: argparse.ArgumentParser, command: str, data: dict[str, Any],
                 where: str = "file") -> dict[str, Any]:
    """The config values (converted like their flags) for one command; unknown keys are one-line errors."""
    subs = _subparsers(parser)
    known = {c: _options(subs[c]) for c in COMMANDS if c in subs}
    top = {k: v for k, v in data.items() if not (k in COMMANDS and isinstance(v, dict))}
    for section in COMMANDS:
        if isinstance(data.get(section), dict):
            for key in data[section]:
                if key.replace("-", "_") not in known.get(section, {}):
                    raise UserError(f"config {where}: [{section}] {key}: not an option of `ipmcam {section}`")
    for key in top:
        if not any(key.replace("-", "_") in options for options in known.values()):
            raise UserError(f"config {where}: {key}: no command has this option "
                            f"(options look like the flags: intensity, output-size, ...)")
    options = known.get(command, {})
    merged = {**top, **(data.get(command) if isinstance(data.get(command), dict) else {})}
    out = {}
    for key, value in merged.items():
        dest = key.replace("-", "_")
        if dest in options:  # a top-level key for another command only is skipped here
            out[dest] = _convert(options[dest], key, value, where)
    return out


def _find_config(argv: Sequence[str]) -> tuple[Path | None, bool]:
    """The ``--config`` value in argv (or the default file), and whether it was asked for explicitly."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser(), True
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).expanduser(), True
    path = default_path()
    return (path if path.is_file() else None), False


def _command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    subs = _subparsers(parser)
    return next((a for a in argv if a in subs), None)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args`` with the config file's values as defaults (flags still win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command(parser, argv)
    if command in COMMANDS:
        path, _ = _find_config(argv)
        if path is not None:
            values = settings_for(parser, command, load_toml(path), str(path))
            _subparsers(parser)[command].set_defaults(**values)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- ipmcam config --print


def _toml_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f'"{value[0]}x{value[1]}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) or '""' for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def effective(parser: argparse.ArgumentParser, command: str, path: Path | None) -> dict[str, tuple[Any, str]]:
    """Every option of ``command``: (value in effect, "default" or the config file it came from)."""
    options = _options(_subparsers(parser)[command])
    values = settings_for(parser, command, load_toml(path), str(path)) if path is not None else {}
    return {dest: (values[dest], str(path)) if dest in values else (action.default, "default")
            for dest, action in options.items()}


def render_effective(parser: argparse.ArgumentParser, path: Path | None, commands: Sequence[str] = COMMANDS[:2]) -> str:
    """The settings in effect as a TOML document (unset options commented out)."""
    lines = [f"# config file: {path if path is not None else 'none'}"]
    for command in commands:
        lines += ["", f"[{command}]"]
        for dest, (value, source) in effective(parser, command, path).items():
            key = dest.replace("_", "-")
            text = _toml_value(value)
            note = "" if source == "default" else "  # from config"
            lines.append(f"# {key} =  (unset)" if text is None else f"{key} = {text}{note}")
    return "\n".join(lines) + "\n"


def cmd_config(args: argparse.Namespace) -> int:
    if not args.print:
        print(f"default config file: {default_path()}"
              f" ({'present' if default_path().is_file() else 'absent'}); "
              "`ipmcam config --print` shows the settings in effect", file=sys.stderr)
        return 0
    path = args.config.expanduser() if args.config is not None else (default_path() if default_path().is_file() else None)
    commands = (args.command_name,) if args.command_name else COMMANDS[:2]
    sys.stdout.write(render_effective(args.root_parser, path, commands))
    return 0


def register(sub: Any) -> None:
    """Add the ``config`` subcommand to the ipmcam CLI."""
    p = sub.add_parser("config", help="show the settings in effect (defaults, config file)",
                       description="Settings come from defaults, then the config file (--config PATH, else "
                                   f"{default_path()}), then flags.")
    p.add_argument("--print", action="store_true", help="print the effective settings of live and apply as TOML")
    p.add_argument("--config", type=Path, help="config file to read (default: the one above, when present)")
    p.add_argument("--for", dest="command_name", choices=COMMANDS, help="only this command's settings")
    p.set_defaults(handler=cmd_config)
