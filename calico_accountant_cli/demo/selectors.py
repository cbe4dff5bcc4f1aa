"""Calico label selectors: parse once, evaluate against label maps (pure).

The demo needs to know which pods a policy applies to and which pods a rule's source
selector names, so that the lab's tables and the expected counts follow the sample
cluster's objects rather than a hand-written list.  Supported subset of Calico's
selector syntax (``libcalico-go/lib/selector``):

* ``key == 'value'``, ``key != 'value'`` (single or double quotes);
* ``has(key)``, ``key in {'a', 'b'}``, ``key not in {'a', 'b'}``;
* ``all()`` (and the empty selector, which also selects everything), ``global()``
  (true only for non-namespaced objects: never for a pod);
* ``!expr``, ``expr && expr``, ``expr || expr`` and parentheses, with Calico's
  precedence (``!`` binds tightest, then ``&&``, then ``||``).

Not supported (a :class:`SelectorError` says so): ``contains``, ``starts with``,
``ends with``.  ``key != 'v'`` is true when the key is absent, as in Calico.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "All",
    "And",
    "Equals",
    "Global",
    "Has",
    "In",
    "Not",
    "NotEquals",
    "Or",
    "Selector",
    "SelectorError",
    "parse_selector",
]


class SelectorError(ValueError):
    """A selector outside the supported subset, or malformed."""


@dataclass(frozen=True, slots=True)
class All:
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Global:
    def matches(self, labels: Mapping[str, str]) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Has:
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels


@dataclass(frozen=True, slots=True)
class Equals:
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value


@dataclass(frozen=True, slots=True)
class NotEquals:
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value


@dataclass(frozen=True, slots=True)
class In:
    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value in self.values


@dataclass(frozen=True, slots=True)
class Not:
    operand: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(operand.matches(labels) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(operand.matches(labels) for operand in self.operands)


Selector = All | Global | Has | Equals | NotEquals | In | Not | And | Or

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'[^']*'|"[^"]*")
      | (?P<op>==|!=|&&|\|\||[!(){},])
      | (?P<word>[A-Za-z0-9_./-]+)
    )""",
    re.VERBOSE,
)
_UNSUPPORTED = ("contains", "starts", "ends")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SelectorError(f"selector {text!r}: unexpected text at {text[position:]!r}")
        position = match.end()
        if match["string"] is not None:
            out.append(("string", match["string"][1:-1]))
        elif match["op"] is not None:
            out.append(("op", match["op"]))
        else:
            out.append(("word", match["word"]))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def fail(self, message: str) -> SelectorError:
        return SelectorError(f"selector {self.text!r}: {message}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end")
        self.index += 1
        return token

    def expect(self, kind: str, value: str | None = None) -> str:
        token_kind, token_value = self.take()
        if token_kind != kind or (value is not None and token_value != value):
            raise self.fail(f"expected {value or kind}, got {token_value!r}")
        return token_value

    def parse(self) -> Selector:
        if not self.tokens:
            return All()
        result = self.parse_or()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return result

    def parse_or(self) -> Selector:
        operands = [self.parse_and()]
        while self.peek() == ("op", "||"):
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Selector:
        operands = [self.parse_unary()]
        while self.peek() == ("op", "&&"):
            self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Selector:
        token = self.peek()
        if token == ("op", "!"):
            self.take()
            return Not(self.parse_unary())
        if token == ("op", "("):
            self.take()
            inner = self.parse_or()
            self.expect("op", ")")
            return inner
        return self.parse_term()

    def parse_term(self) -> Selector:
        word = self.expect("word")
        if word in ("has", "all", "global") and self.peek() == ("op", "("):
            self.take()
            if word == "has":
                key = self.expect("word")
                self.expect("op", ")")
                return Has(key)
            self.expect("op", ")")
            return All() if word == "all" else Global()
        token = self.take()
        if token == ("op", "=="):
            return Equals(word, self.expect("string"))
        if token == ("op", "!="):
            return NotEquals(word, self.expect("string"))
        if token == ("word", "in"):
            return In(word, self.parse_set())
        if token == ("word", "not"):
            self.expect("word", "in")
            return Not(In(word, self.parse_set()))
        if token[0] == "word" and token[1] in _UNSUPPORTED:
            raise self.fail(f"operator {token[1]!r} is not supported by the demo's selector subset")
        raise self.fail(f"expected an operator after {word!r}, got {token[1]!r}")

    def parse_set(self) -> frozenset[str]:
        self.expect("op", "{")
        values: list[str] = []
        if self.peek() == ("op", "}"):
            self.take()
            return frozenset()
        while True:
            values.append(self.expect("string"))
            separator = self.expect("op")
            if separator == "}":
                return frozenset(values)
            if separator != ",":
                raise self.fail(f"expected , or }} in a set, got {separator!r}")


def parse_selector(text: str | None) -> Selector:
    """Parse a Calico selector; ``None`` or blank selects everything."""
    return _Parser(text or "").parse()
