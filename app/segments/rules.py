"""Segment rules: a small condition language, the TOML rules file, and its validation.

Why TOML: the standard library reads it (:mod:`tomllib`), so the worker gains no
runtime dependency (PyYAML is only a test dependency here), it has no implicit
typing surprises (YAML's ``no`` / ``on`` / ``1e3``), and ``[rules.<name>]`` tables
make a duplicated rule name a parse error for free.

The file
--------
::

    version = 1

    [rules.highly_engaged]
    description = "Viewed products more than 3 times in 24 hours."
    when = "count(product_view, 24h) > 3"
    exit_margin = 1          # hysteresis: a member stays while the count is > 3 - 1
    min_dwell = "1h"         # and for at least an hour

    [rules.interest]
    for_each = "affinity.*"  # one segment per feature of the family
    segment = "interest:{key}"
    when = "affinity.{key} >= 0.3"

Keys of a rule: ``when`` (required), ``stay_when`` (the condition a *member* is held
to instead of ``when``: explicit hysteresis, e.g. enter 30 minutes after an add to cart,
stay until a purchase), ``description``, ``segment`` (the segment id;
defaults to the rule name; must contain ``{key}`` with ``for_each``), ``for_each``
(a feature family ``prefix.*``), ``exit_margin`` (a number >= 0) and ``min_dwell``
(a duration). Top-level ``defaults`` may set ``exit_margin`` and ``min_dwell``.

The condition language
----------------------
``when`` is comparisons joined by ``and`` / ``or`` (``and`` binds tighter) with
parentheses. A comparison is ``operand OP operand`` with OP one of
``> >= < <= == !=``; the left operand is one of

* a feature name (``monetary``, ``lifetime.purchases``, ``affinity.books``),
  checked against a :class:`~app.segments.known_features.FeatureRegistry`;
* ``count(<event type>, <window>)``: events of that type in the window ending now
  (:mod:`app.segments.windows`; the window must be answerable by a bucket tier);
* ``age(<event type or timestamp feature>)``: seconds since its newest occurrence
  (``inf`` when it never happened);

and the right operand is a number, a duration (``90s``, ``30m``, ``24h``, ``7d``,
``2w``: seconds), a quoted string (string features, ``==``/``!=`` only), or another
such operand. A comparison whose feature is absent is false.

Every problem found at load raises :class:`~app.errors.ConfigError` with the file,
the rule and the problem; the worker logs it and keeps its previous rules.

Examples
--------
>>> e = parse("count(product_view, 24h) > 3 and (monetary >= 500 or age(purchase) < 7d)")
>>> render(e)
'count(product_view, 24h) > 3 and (monetary >= 500 or age(purchase) < 7d)'
>>> parse("monetary >> 3")
Traceback (most recent call last):
...
app.errors.ConfigError: bad operator '>>' at column 10 in 'monetary >> 3'
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.segments import windows
from app.segments.known_features import DEFAULT_FEATURES, EVENT_TYPES, FeatureRegistry

OPS = (">", ">=", "<", "<=", "==", "!=")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Feature:
    """A named profile feature."""

    name: str
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", self.name)


@dataclass(frozen=True)
class Count:
    """``count(event, window)``: events in the last ``seconds``."""

    event: str
    seconds: float
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", f"count({self.event}, {format_duration(self.seconds)})")


@dataclass(frozen=True)
class Age:
    """``age(name)``: seconds since an event type or a timestamp feature."""

    name: str
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", f"age({self.name})")


@dataclass(frozen=True)
class Number:
    """A numeric literal; ``duration`` keeps the unit it was written with, if any."""

    value: float
    duration: bool = False


@dataclass(frozen=True)
class String:
    """A quoted string literal."""

    value: str


Operand = Feature | Count | Age | Number | String


@dataclass(frozen=True)
class Compare:
    """``left op right``."""

    left: Operand
    op: str
    right: Operand


@dataclass(frozen=True)
class And:
    """All of ``items``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items``."""

    items: tuple[Expr, ...]


Expr = Compare | And | Or


# --------------------------------------------------------------------------- rendering


def format_duration(seconds: float) -> str:
    """The shortest exact duration literal for ``seconds``.

    >>> format_duration(86400), format_duration(5400), format_duration(1.5)
    ('24h', '90m', '1.5s')
    """
    for unit in ("d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds and seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{int(seconds // size)}{unit}"
    return f"{_num(seconds)}s"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def render_operand(o: Operand) -> str:
    """The source text of an operand (also the key of its value in a reason)."""
    if isinstance(o, Feature | Count | Age):
        return o.text
    if isinstance(o, Number):
        return format_duration(o.value) if o.duration else _num(o.value)
    return '"' + o.value + '"'


def render(e: Expr, top: bool = True) -> str:
    """Canonical source text of an expression; ``parse(render(e)) == e``."""
    if isinstance(e, Compare):
        return f"{render_operand(e.left)} {e.op} {render_operand(e.right)}"
    sep = " and " if isinstance(e, And) else " or "
    text = sep.join(render(i, top=False) for i in e.items)
    return text if top else f"({text})"


# --------------------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<duration>\d+(?:\.\d+)?[smhdw])(?![\w.])
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])
      | (?P<string>"[^"]*"|'[^']*')
      | (?P<op>[<>=!]+)
      | (?P<punct>[(),])
      | (?P<name>[A-Za-z_][A-Za-z0-9_./:\-]*)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:  # only trailing whitespace left
            break
        kind = m.lastgroup or "bad"
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def fail(self, msg: str, col: int | None = None) -> ConfigError:
        if col is None:
            col = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text) + 1
        return ConfigError(f"{msg} at column {col} in {self.text!r}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str, value: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            want = repr(value) if value else kind
            got = "the end" if tok is None else repr(tok[1])
            raise self.fail(f"expected {want}, found {got}")
        self.i += 1
        return tok

    def expr(self) -> Expr:
        items = [self.conj()]
        while (t := self.peek()) and t[:2] == ("name", "or"):
            self.i += 1
            items.append(self.conj())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conj(self) -> Expr:
        items = [self.atom()]
        while (t := self.peek()) and t[:2] == ("name", "and"):
            self.i += 1
            items.append(self.atom())
        return items[0] if len(items) == 1 else And(tuple(items))

    def atom(self) -> Expr:
        t = self.peek()
        if t and t[:2] == ("punct", "("):
            self.i += 1
            e = self.expr()
            self.take("punct", ")")
            return e
        left = self.operand()
        if isinstance(left, Number | String):
            raise self.fail("the left side of a comparison must be a feature, count() or age()", t[2] if t else None)
        op = self.peek()
        if op is None or op[0] != "op":
            raise self.fail("expected a comparison operator " + " ".join(OPS))
        if op[1] not in OPS:
            raise self.fail(f"bad operator {op[1]!r}", op[2])
        self.i += 1
        right = self.operand()
        return Compare(left, op[1], right)

    def operand(self) -> Operand:
        t = self.peek()
        if t is None:
            raise self.fail("expected an operand, found the end")
        kind, value, col = t
        self.i += 1
        if kind == "number":
            return Number(float(value))
        if kind == "duration":
            return Number(parse_duration(value), duration=True)
        if kind == "string":
            return String(value[1:-1])
        if kind == "name" and value in ("count", "age") and (n := self.peek()) and n[:2] == ("punct", "("):
            self.i += 1
            arg = self.take("name")[1]
            if value == "count":
                self.take("punct", ",")
                w = self.peek()
                if w is None or w[0] not in ("duration", "number"):
                    raise self.fail("bad window: expected a duration such as 24h")
                self.i += 1
                seconds = parse_duration(w[1]) if w[0] == "duration" else float(w[1])
                self.take("punct", ")")
                return Count(arg, seconds)
            self.take("punct", ")")
            return Age(arg)
        if kind == "name" and value not in ("and", "or"):
            return Feature(value)
        raise self.fail(f"unexpected {value!r}", col)


def parse(text: str) -> Expr:
    """Parse a condition; raise :class:`ConfigError` (never anything else) when it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("empty condition")
    p = _Parser(text)
    e = p.expr()
    if p.peek() is not None:
        tok = p.peek()
        assert tok is not None
        if tok[0] == "op":
            raise p.fail(f"bad operator {tok[1]!r}", tok[2])
        raise p.fail(f"unexpected {tok[1]!r}")
    return e


def parse_duration(text: Any) -> float:
    """Seconds in a duration literal (``30m``, ``24h``, ``7d``) or a number of seconds.

    >>> parse_duration("30m"), parse_duration("1.5h"), parse_duration(60)
    (1800.0, 5400.0, 60.0)
    """
    if isinstance(text, bool):
        raise ConfigError(f"bad duration {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
        if m is None:
            raise ConfigError(f"bad duration {text!r}: expected a number and a unit s, m, h, d or w")
        value = float(m.group(1)) * DURATION_UNITS[m.group(2)]
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"bad duration {text!r}")
    return value


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One validated rule.

    Attributes
    ----------
    name : str
        The rule's name (its table name in the file).
    segment : str
        Segment id, or a template containing ``{key}`` when ``for_each`` is set.
    when : Expr
        The condition. With ``for_each`` it is parsed per key from ``when_text``.
    when_text : str
        The source of the condition.
    description : str
    exit_margin : float
        Hysteresis: for a member, thresholds of ``>``/``>=`` are lowered and those of
        ``<``/``<=`` raised by this much (numbers and counts only).
    min_dwell : float
        Seconds a member stays at least, whatever the condition says.
    for_each : str or None
        A feature family prefix (``affinity``): one segment per feature of it.
    stay : Expr or None
        The condition of a member (``stay_when``), ``None``: ``when``.
    stay_text : str or None
        The source of ``stay``.
    """

    name: str
    segment: str
    when: Expr
    when_text: str
    description: str = ""
    exit_margin: float = 0.0
    min_dwell: float = 0.0
    for_each: str | None = None
    stay: Expr | None = None
    stay_text: str | None = None

    def condition(self, member: bool) -> Expr:
        """The condition to evaluate: ``stay`` for a member when set, else ``when``."""
        return self.stay if member and self.stay is not None else self.when

    def condition_for(self, key: str, member: bool = False) -> Expr:
        """The condition of a ``for_each`` rule for one key of the family.

        The key is data (a category a publisher sent): it fills the parsed condition's slot
        and is never parsed, so no key can break or change the condition.

        >>> spec = {"for_each": "affinity.*", "segment": "i:{key}", "when": "affinity.{key} >= 0.3"}
        >>> rule = load_rules({"rules": {"i": spec}}).rules[0]
        >>> render(rule.condition_for("Home & Garden"))
        'affinity.Home & Garden >= 0.3'
        >>> rule.condition_for("x) or (monetary > 0")
        Compare(left=Feature(name='affinity.x) or (monetary > 0'), op='>=', right=Number(value=0.3, duration=False))
        """
        return with_key(self.condition(member), key)

    def segment_for(self, key: str) -> str:
        """The segment id of a ``for_each`` rule for one key of the family."""
        return self.segment.replace("{key}", key)


#: What ``{key}`` becomes in a ``for_each`` rule's parsed conditions: a name no feature or event
#: has, filled with each key by :func:`with_key` (never by editing the text and parsing it).
KEY_SLOT = "__for_each_key__"


def with_key(e: Expr, key: str) -> Expr:
    """``e`` with every :data:`KEY_SLOT` in its names and strings replaced by ``key``.

    >>> with_key(parse(f"count({KEY_SLOT}, 1h) > 1 and age({KEY_SLOT}) < 1d"), "it's <b>")
    And(items=(Compare(left=Count(event="it's <b>", seconds=3600.0), op='>', right=Number(value=1.0, duration=False)), \
Compare(left=Age(name="it's <b>"), op='<', right=Number(value=86400.0, duration=True))))
    """
    if isinstance(e, Compare):
        return Compare(_fill(e.left, key), e.op, _fill(e.right, key))
    items = tuple(with_key(item, key) for item in e.items)
    return And(items) if isinstance(e, And) else Or(items)


def _fill(o: Operand, key: str) -> Operand:
    if isinstance(o, Feature):
        return Feature(o.name.replace(KEY_SLOT, key))
    if isinstance(o, Count):
        return Count(o.event.replace(KEY_SLOT, key), o.seconds)
    if isinstance(o, Age):
        return Age(o.name.replace(KEY_SLOT, key))
    if isinstance(o, String):
        return String(o.value.replace(KEY_SLOT, key))
    return o


@dataclass(frozen=True)
class RuleSet:
    """The validated rules of one file, in file order."""

    rules: tuple[Rule, ...]
    source: str = "<rules>"

    def __iter__(self) -> Any:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def names(self) -> list[str]:
        """Rule names in file order."""
        return [r.name for r in self.rules]


_RULE_KEYS = {"when", "stay_when", "description", "segment", "for_each", "exit_margin", "min_dwell"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:\-]*")


def validate(e: Expr, registry: FeatureRegistry, tiers: Any = windows.DEFAULT_TIERS) -> None:
    """Raise :class:`ConfigError` when an expression names an unknown feature or event,
    has a window no tier answers, or compares with a threshold of the wrong type."""
    if isinstance(e, And | Or):
        for item in e.items:
            validate(item, registry, tiers)
        return
    kinds = [_operand_kind(o, registry, tiers) for o in (e.left, e.right)]
    if "string" in kinds:
        if kinds[0] != kinds[1]:
            raise ConfigError(
                f"bad threshold type in '{render(e)}': {render_operand(e.left)} is a {kinds[0]}, "
                f"{render_operand(e.right)} is a {kinds[1]}"
            )
        if e.op not in ("==", "!="):
            raise ConfigError(f"bad operator {e.op!r} in '{render(e)}': strings compare with == or != only")


def _operand_kind(o: Operand, registry: FeatureRegistry, tiers: Any) -> str:
    if isinstance(o, String):
        return "string"
    if isinstance(o, Number):
        return "number"
    if isinstance(o, Count):
        if o.event not in EVENT_TYPES:
            raise ConfigError(f"unknown event type {o.event!r} in count(); known: {', '.join(sorted(EVENT_TYPES))}")
        if windows.tier_for(o.seconds, tiers) is None:
            sizes = ", ".join(f"multiples of {format_duration(s)} up to {format_duration(s * k)}" for s, k in tiers)
            raise ConfigError(
                f"bad window {format_duration(o.seconds)} in {render_operand(o)}: windows must be {sizes}"
            )
        return "number"
    if isinstance(o, Age):
        if o.name in EVENT_TYPES:
            return "number"
        kind = registry.kind(o.name)
        if kind is None:
            raise ConfigError(f"unknown feature or event type {o.name!r} in age()")
        if kind != "timestamp":
            raise ConfigError(f"age() needs an event type or a timestamp feature; {o.name!r} is a {kind}")
        return "number"
    kind = registry.kind(o.name)
    if kind is None:
        raise ConfigError(f"unknown feature {o.name!r}")
    return "string" if kind == "string" else "number"


def load_rules(
    source: str | Path | Mapping[str, Any] | None = None,
    registry: FeatureRegistry = DEFAULT_FEATURES,
    tiers: Any = windows.DEFAULT_TIERS,
) -> RuleSet:
    """Load and validate a rules file.

    Parameters
    ----------
    source
        A path to a TOML file (a :class:`~pathlib.Path`, or a one-line ``str`` without
        ``=`` or ending in ``.toml``), TOML text (any other ``str``),
        an already parsed mapping, or ``None`` for the shipped ``default_rules.toml``.
    registry
        Known feature names.
    tiers
        Window bucket tiers (see :mod:`app.segments.windows`).

    Raises
    ------
    app.errors.ConfigError
        The file is unreadable, not TOML, or a rule is invalid; the message names the
        file, the rule and the problem.
    """
    if source is None:
        name = "default_rules.toml"
        text = resources.files("app.segments").joinpath(name).read_text(encoding="utf-8")
        data = _toml(text, name)
    elif isinstance(source, Mapping):
        name, data = "<rules>", dict(source)
    elif isinstance(source, Path) or ("\n" not in source and ("=" not in source or source.endswith(".toml"))):
        name = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
            raise ConfigError(f"segment rules {name}: cannot read: {exc}") from None
        data = _toml(text, name)
    else:
        name, data = "<rules>", _toml(source, "<rules>")
    return _build(data, name, registry, tiers)


def _toml(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"segment rules {name}: not valid TOML: {exc}") from None


def _build(data: Mapping[str, Any], name: str, registry: FeatureRegistry, tiers: Any) -> RuleSet:
    where = f"segment rules {name}"
    unknown = set(data) - {"version", "defaults", "rules"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}")
    if data.get("version", 1) != 1:
        raise ConfigError(f"{where}: unsupported version {data.get('version')!r} (expected 1)")
    defaults = data.get("defaults", {})
    rules_data = data.get("rules")
    if not isinstance(defaults, Mapping) or set(defaults) - {"exit_margin", "min_dwell"}:
        raise ConfigError(f"{where}: [defaults] may set exit_margin and min_dwell only")
    if not isinstance(rules_data, Mapping) or not rules_data:
        raise ConfigError(f"{where}: no [rules.<name>] tables")
    rules = []
    segments: dict[str, str] = {}
    for rule_name, spec in rules_data.items():
        try:
            rule = _rule(rule_name, spec, defaults, registry, tiers)
        except ConfigError as exc:
            raise ConfigError(f"{where}: rule {rule_name!r}: {exc}") from None
        if rule.segment in segments:
            raise ConfigError(
                f"{where}: rule {rule_name!r}: segment {rule.segment!r} is already produced by rule "
                f"{segments[rule.segment]!r}"
            )
        segments[rule.segment] = rule_name
        rules.append(rule)
    return RuleSet(tuple(rules), name)


def _rule(name: str, spec: Any, defaults: Mapping[str, Any], registry: FeatureRegistry, tiers: Any) -> Rule:
    if not _NAME.fullmatch(name):
        raise ConfigError("a rule name is letters, digits, _, - and : starting with a letter")
    if not isinstance(spec, Mapping):
        raise ConfigError("expected a table")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(_RULE_KEYS))})")
    when = spec.get("when")
    if not isinstance(when, str):
        raise ConfigError("'when' (a condition string) is required")
    stay_text = spec.get("stay_when")
    if stay_text is not None and not isinstance(stay_text, str):
        raise ConfigError("'stay_when' must be a condition string")
    margin = spec.get("exit_margin", defaults.get("exit_margin", 0))
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin) or margin < 0:
        raise ConfigError(f"exit_margin must be a number >= 0, got {margin!r}")
    dwell = parse_duration(spec.get("min_dwell", defaults.get("min_dwell", 0)))
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description must be a string")
    for_each = spec.get("for_each")
    segment = spec.get("segment", name)
    if not isinstance(segment, str) or not segment:
        raise ConfigError("segment must be a non-empty string")
    if for_each is not None:
        if not isinstance(for_each, str) or not for_each.endswith(".*"):
            raise ConfigError(f"for_each must name a feature family like 'affinity.*', got {for_each!r}")
        prefix = for_each[:-2]
        if prefix not in registry.families:
            raise ConfigError(f"unknown feature family {for_each!r}")
        if "{key}" not in segment or "{key}" not in when:
            raise ConfigError("a for_each rule needs {key} in both 'segment' and 'when'")
        expr = _checked(when.replace("{key}", KEY_SLOT), "when", registry, tiers)
        stay = (None if stay_text is None
                else _checked(stay_text.replace("{key}", KEY_SLOT), "stay_when", registry, tiers))
        return Rule(name, segment, expr, when, description, float(margin), dwell, prefix, stay, stay_text)
    if "{key}" in when or "{key}" in segment or "{key}" in (stay_text or ""):
        raise ConfigError("{key} is only allowed with for_each")
    expr = _checked(when, "when", registry, tiers)
    stay = None if stay_text is None else _checked(stay_text, "stay_when", registry, tiers)
    return Rule(name, segment, expr, when, description, float(margin), dwell, None, stay, stay_text)


def _checked(text: str, key: str, registry: FeatureRegistry, tiers: Any) -> Expr:
    try:
        expr = parse(text)
        validate(expr, registry, tiers)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}".replace(KEY_SLOT, "{key}")) from None
    return expr
