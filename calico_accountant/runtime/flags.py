"""Flags with their default and environment variable in the help, for every command.

One mechanism for every flag of every command, so a daemon's flag and its environment
variable can never drift apart and ``--help``, the generated configuration reference
(``docs/configuration.md``) and the parser agree:

* :class:`FlagSet` adds a flag and appends ``(default: ...; env $NAME)`` to its help.
  Given an ``env_prefix`` (the daemons: ``CALICO_ACCOUNTANT_``), every flag gets the
  variable ``PREFIX`` + the flag's name (``--max-series``: ``CALICO_ACCOUNTANT_MAX_SERIES``);
  older names that deployments already set (``NODENAME``, ``LOG_LEVEL``, ``ETCD_CERT_FILE``)
  are accepted as aliases, the canonical name first.
* A value from the environment goes through the flag's ``type`` and ``choices`` exactly
  like one from the command line, and a bad one stops the command with the variable's
  name (``$CALICO_ACCOUNTANT_INTERVAL='soon' is not valid``) instead of being ignored.
  argparse converts a *string* default through ``type`` only when the flag is absent, so
  the variable's text is kept as an :class:`EnvValue` default and converted then.
* Each action remembers its variables and its documented default (see :func:`env_names`
  and :func:`default_text`), which the reference generator reads.
"""

from __future__ import annotations

import argparse
import inspect
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ENV_PREFIX",
    "LOG_LEVELS",
    "EnvValue",
    "FlagSet",
    "HelpFormatter",
    "add_logging_flags",
    "default_text",
    "env_names",
    "non_negative_float",
    "non_negative_int",
    "parse_bool",
    "plain_help",
    "port",
    "positive_float",
    "positive_int",
]

ENV_PREFIX = "CALICO_ACCOUNTANT_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_ENV_ATTR = "calico_accountant_env"
_DEFAULT_ATTR = "calico_accountant_default"
_PLAIN_ATTR = "calico_accountant_help"
_FILE_METAVARS = frozenset({"FILE", "PATH", "FILE_OR_URL"})
_FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
"""shtab's ``FILE``: the completion scripts offer file names for these flags."""
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class EnvValue(str):
    """A flag's default taken from an environment variable; converted (and checked) by the
    flag's type only when the flag is not on the command line."""

    env: str

    def __new__(cls, text: str, env: str) -> EnvValue:
        value = super().__new__(cls, text)
        value.env = env
        return value


def env_names(action: argparse.Action) -> tuple[str, ...]:
    """The environment variables of a flag, canonical first (empty: none)."""
    names: tuple[str, ...] = getattr(action, _ENV_ATTR, ())
    return names


def plain_help(action: argparse.Action) -> str:
    """The flag's help without the default and variables appended (for the reference)."""
    text: str = getattr(action, _PLAIN_ATTR, None) or action.help or ""
    return text


def default_text(action: argparse.Action) -> str:
    """The flag's default as documented (independent of the environment)."""
    text: str = getattr(action, _DEFAULT_ATTR, "")
    return text


# --- value types: a wrong value is argparse's error, with the flag's name ----------------------


def _number(convert: Callable[[str], float], minimum: float, strict: bool, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = convert(text)
        if value < minimum or (strict and value == minimum):
            relation = "greater than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"{text!r} must be {relation} {minimum:g}")
        return value

    parse.__name__ = name
    return parse


positive_float = _number(float, 0, True, "positive number")
non_negative_float = _number(float, 0, False, "non-negative number")
positive_int = _number(int, 0, True, "positive integer")
non_negative_int = _number(int, 0, False, "non-negative integer")


def port(text: str) -> int:
    """A TCP port; 0 asks the system for a free one."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return value


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case), for on/off flags set by variable."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (use true or false)")


def _lower(text: str) -> str:
    return text.strip().lower()


def _env_aware(convert: Callable[[str], Any], choices: Iterable[Any] | None) -> Callable[[str], Any]:
    """``convert``, which for an :class:`EnvValue` also checks ``choices`` (argparse checks
    them for command-line values only) and names the variable in its error."""
    allowed = tuple(choices) if choices is not None else None

    def parse(text: str) -> Any:
        if not isinstance(text, EnvValue):
            return convert(text)
        try:
            value = convert(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
            raise argparse.ArgumentTypeError(f"${text.env}={str(text)!r} is not valid: {error}") from None
        if allowed is not None and value not in allowed:
            raise argparse.ArgumentTypeError(
                f"${text.env}={str(text)!r} is not valid: choose from {', '.join(map(str, allowed))}"
            )
        return value

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


class _ReplacingAppend(argparse.Action):
    """A repeatable flag whose default (from the environment) the command line replaces
    instead of extending."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, list) and current is not self.default else []
        items.append(values)
        setattr(namespace, self.dest, items)


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def _shown(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


class FlagSet:
    """Adds flags to a parser or argument group; see the module docstring."""

    def __init__(
        self,
        container: Any,
        *,
        env_prefix: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._container = container
        self.env_prefix = env_prefix
        self.environ = os.environ if environ is None else environ

    def group(self, title: str) -> FlagSet:
        """The same flag set for a titled group of ``--help``."""
        return FlagSet(
            self._container.add_argument_group(title), env_prefix=self.env_prefix, environ=self.environ
        )

    def add(
        self,
        *flags: str,
        help: str,
        default: Any = None,
        type: Callable[[str], Any] | None = None,
        choices: Sequence[Any] | None = None,
        action: str | type[argparse.Action] | None = None,
        env: str | Sequence[str] | None = None,
        aliases: Sequence[str] = (),
        shown_default: str | None = None,
        **kwargs: Any,
    ) -> argparse.Action:
        """Add one flag.  ``env`` overrides the prefix-derived variable, ``aliases`` are
        older names also read; ``shown_default`` documents a default computed at run time."""
        names = self._env_names(flags, env, aliases)
        # An empty variable counts as unset (a manifest's optional value left blank).
        raw, source = next(((self.environ[n], n) for n in names if self.environ.get(n)), (None, None))
        convert = type
        if choices is not None and convert is None and all(isinstance(c, str) for c in choices):
            convert = _lower
        documented = shown_default if shown_default is not None else _shown(default)
        if kwargs.get("required"):
            documented = "required"
        if action == "store_true":
            effective: Any = EnvValue(raw, source) if raw is not None and source else default
            created = self._container.add_argument(*flags, action="store_true", default=effective, **kwargs)
            created.type = _env_aware(parse_bool, None)
        elif action == "append":
            item = _env_aware(convert or str, choices)

            def each(text: str) -> Any:
                if isinstance(text, EnvValue):
                    return [item(EnvValue(part, text.env)) for part in _split_list(text)]
                return item(text)

            each.__name__ = item.__name__
            effective = EnvValue(raw, source) if raw is not None and source else default
            created = self._container.add_argument(
                *flags, action=_ReplacingAppend, default=effective, type=each, choices=choices, **kwargs
            )
        else:
            if action is not None and not inspect.isclass(action):
                raise ValueError(f"unsupported action {action!r}")
            if action is not None:
                kwargs["action"] = action
            effective = EnvValue(raw, source) if raw is not None and source else default
            if kwargs.get("nargs") == 0:
                created = self._container.add_argument(*flags, default=effective, **kwargs)
            else:
                created = self._container.add_argument(
                    *flags,
                    default=effective,
                    type=_env_aware(convert or str, choices),
                    choices=choices,
                    **kwargs,
                )
        if kwargs.get("metavar") in _FILE_METAVARS:
            created.complete = _FILE_COMPLETION
        created.help = _compose_help(help, documented, names)
        setattr(created, _ENV_ATTR, names)
        setattr(created, _DEFAULT_ATTR, documented)
        setattr(created, _PLAIN_ATTR, help)
        return created  # type: ignore[no-any-return]

    def _env_names(
        self, flags: Sequence[str], env: str | Sequence[str] | None, aliases: Sequence[str]
    ) -> tuple[str, ...]:
        if isinstance(env, str):
            primary: tuple[str, ...] = (env,)
        elif env is not None:
            primary = tuple(env)
        elif self.env_prefix is not None:
            long = next(flag for flag in flags if flag.startswith("--"))
            primary = (self.env_prefix + long[2:].upper().replace("-", "_"),)
        else:
            primary = ()
        return (*primary, *aliases)


def _compose_help(text: str, default: str, names: Sequence[str]) -> str:
    escaped = default.replace("%", "%%")
    suffix = escaped if default == "required" else f"default: {escaped}"
    if names:
        suffix += "; env " + " or ".join(f"${name}" for name in names)
    return f"{text} ({suffix})"


class HelpFormatter(argparse.HelpFormatter):
    """Wraps description and epilog by paragraph, keeping lines indented by two or more
    spaces as they are (examples), and blank lines between paragraphs; never breaks a
    line inside a hyphenated word (``iptables-save``, ``--max-series``)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                out.append(super(HelpFormatter, self)._fill_text(" ".join(paragraph), width, indent))
                paragraph.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                out.append("")
            elif line.startswith("  "):
                flush()
                out.append(indent + line)
            else:
                paragraph.append(line.strip())
        flush()
        return "\n".join(out)


def add_logging_flags(flags: FlagSet) -> None:
    """``--log-level`` and ``--log-format``, the same on both daemons."""
    from calico_accountant.runtime.process import LogFormat

    flags.add(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        aliases=("LOG_LEVEL",),
        help="least severe log lines printed",
    )
    flags.add(
        "--log-format",
        default=LogFormat.TEXT.value,
        choices=tuple(member.value for member in LogFormat),
        help="text lines, or one JSON object per line (time, level, logger, message)",
    )
