"""Hostile inputs for the reliability suite, as hypothesis strategies built from ``schemas/``.

Events and CRM records are *mostly valid*: every field the schema names, with the right
type most of the time, but every string may be arbitrary unicode (categories, product ids,
names, urls...) and numbers may be huge, negative or NaN; now and then a field has the
wrong type, a required one is missing, one is nested thousands deep, or the encoded bytes
are truncated, flipped or not UTF-8 at all. :func:`draw` turns a strategy into a list of
examples (hypothesis's generation phase only: no shrinking, the suite reports what it finds
and goes on).

Examples
--------
>>> docs = draw(event(), 20, seed=1)
>>> len(docs), all(isinstance(d, dict) for d in docs)
(20, True)
>>> len(draw(encoded(crm_record()), 5, seed=2)), type(draw(encoded(crm_record()), 1, seed=2)[0])
(5, <class 'bytes'>)
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CLICKSTREAM = json.loads((SCHEMAS / "clickstream.v1.json").read_text())
CRM = json.loads((SCHEMAS / "crm-profiles.v1.json").read_text())
EVENT_TYPES: list[str] = CLICKSTREAM["$defs"]["envelope"]["properties"]["type"]["enum"]

#: Strings that broke or could break code that treats data as text to parse, render or match.
NASTY = [
    "Home & Garden", "Crème brûlée", "<script>alert(1)</script>", "O'Neill", "a b", "{key}", "{}", "%s%n",
    "affinity.x >= 0.3 or", "count(purchase, 24h) > 1", "\\", '"', "'", "`", "${jndi:ldap://x}", "../../etc/passwd",
    "\u202eevil", "\u0000", "\ufeff", "\u200b", "ﬁ", "İ", "ß", "🙂" * 40, "x" * 128, "x" * 5000, "", " ", "\n", "\t",
    "null", "NaN", "-0", "1e309", "__watermark__/0", "__due__/0/1/a", "persona:profile:p-1", "p/p-1", "*", "?", "[",
    "🙂/🙂", "é" * 64, "\r\n\r\n", "<!--", "]]>", "SELECT 1;--",
]

text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40), st.text(min_size=100, max_size=300))
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, -0.0, 1e308, -1e308, 2**63, 2**64, 5e-324]),
)


@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` lists deep; :func:`dumps` writes it as brackets (json's encoder would recurse)."""

    depth: int


#: Values nested up to 3,000 deep (parsers and recursive code must not fall over).
deep = st.integers(min_value=1, max_value=3000).map(Deep)
leaf = st.one_of(st.none(), st.booleans(), numbers, text)
wrong = st.one_of(leaf, deep, st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8))


def pick(n: int) -> st.SearchStrategy[int]:
    """A number 0..n-1, about uniform: hypothesis favours small and boundary integers, and a choice between
    repeated strategies (``one_of(right, right, wrong)``) favours none of them as its weights would suggest."""
    return st.integers(min_value=0, max_value=2**32 - 1).map(lambda i: (i * 2654435761 + 12345) % 2**32 % n)


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _timestamp() -> st.SearchStrategy[str]:
    """Recent RFC 3339 times (in range for the worker) and every kind of bad one."""
    recent = st.integers(min_value=0, max_value=86_400).map(
        lambda ago: (datetime.now(UTC) - timedelta(seconds=ago)).isoformat().replace("+00:00", "Z")
    )
    bad = st.one_of(text, st.sampled_from(["2024-02-30T25:61:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+23:59",
                                           "1970-01-01"]))
    return pick(4).flatmap(lambda i: recent if i else bad)


def _string(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Strings the node's length limits allow (any unicode, :data:`NASTY` ones), one in eight of any length."""
    if "pattern" in node:
        return pick(8).flatmap(lambda i: text if i == 0 else st.from_regex(node["pattern"], fullmatch=True))
    low, high = node.get("minLength", 0), node.get("maxLength", 300)
    fits = [x for x in NASTY if low <= len(x) <= high]
    within = st.one_of(st.sampled_from(fits), st.text(min_size=low, max_size=min(high, 40)),
                       st.text(min_size=max(low, min(high, 100)), max_size=high))
    return pick(8).flatmap(lambda i: text if i == 0 else within)


def value(node: Mapping[str, Any], schema: Mapping[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """A mostly valid, hostile value for the schema ``node``: right type, any content; sometimes wrong."""
    node = _resolve(node, schema)
    if name in ("timestamp", "updated_at"):
        right: st.SearchStrategy[Any] = _timestamp()
    elif "const" in node:
        right = st.just(node["const"])
    elif "enum" in node:
        right = st.sampled_from(node["enum"])
    elif "anyOf" in node:
        right = st.one_of([value(n, schema, name) for n in node["anyOf"]])
    elif node.get("type") == "string":
        right = _string(node)
    elif node.get("type") in ("number", "integer"):
        low, high = node.get("minimum", 0), node.get("maximum", 10_000)
        right = st.one_of(st.integers(min_value=low, max_value=high), numbers)
    elif node.get("type") == "boolean":
        right = st.booleans()
    elif node.get("type") == "array":
        right = st.lists(value(node.get("items", {}), schema), max_size=4)
    elif node.get("type") == "object" or "properties" in node:
        right = obj(node, schema)
    else:
        right = wrong
    return pick(16).flatmap(lambda i: wrong if i == 0 else right)  # one value in 16 of a wrong type


def obj(node: Mapping[str, Any], schema: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the node's required properties (now and then one missing) and some optional ones."""
    props = node.get("properties", {})
    required = [k for k in node.get("required", []) if k in props]
    optional = {k: value(v, schema, k) for k, v in props.items() if k not in required}
    base = st.fixed_dictionaries({k: value(props[k], schema, k) for k in required}, optional=optional)
    junk = st.dictionaries(st.one_of(st.sampled_from(list(props) or ["x"]), st.text(max_size=10)), wrong, max_size=2)

    def damage(doc: dict[str, Any], how: int, extra: dict[str, Any]) -> dict[str, Any]:
        if how == 0 and required:  # one object in 20 loses a required field, one in 20 gets unknown ones
            doc.pop(required[len(doc) % len(required)], None)
        return {**doc, **extra} if how == 1 else doc

    return st.builds(damage, base, pick(20), junk)


def event(event_type: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A clickstream event: the envelope and its type's ``properties``, hostile values throughout."""
    defs = CLICKSTREAM["$defs"]

    def of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        envelope = {**defs["envelope"], "properties": {**defs["envelope"]["properties"]}}
        envelope["properties"]["type"] = {"const": kind}
        props = _resolve(defs[kind], CLICKSTREAM).get("properties", {}).get("properties")
        if props is not None:
            envelope["properties"]["properties"] = props
            envelope["required"] = [*envelope["required"], "properties"]
        return obj(envelope, CLICKSTREAM)

    return of(event_type) if event_type else st.sampled_from(EVENT_TYPES).flatmap(of)


def crm_record() -> st.SearchStrategy[dict[str, Any]]:
    """A crm-profiles record with hostile traits."""
    return obj(CRM, CRM)


def damaged(raw: bytes, how: int, where: int) -> bytes:
    """``raw`` damaged one of several ways (``how`` 6-9; any other leaves it intact).

    >>> damaged(b'{"a": 1}', 6, 3), damaged(b'{"a": 1}', 7, 0)
    (b'{"a', b'\\xff{"a": 1}')
    >>> damaged(b'{"a": 1}', 0, 3)
    b'{"a": 1}'
    """
    if how == 6:  # truncated
        return raw[: where % max(1, len(raw))]
    if how == 7:  # not UTF-8
        cut = where % (len(raw) + 1)
        return raw[:cut] + b"\xff" + raw[cut:]
    if how == 8 and raw:  # one flipped bit
        i = where % len(raw)
        return raw[:i] + bytes([raw[i] ^ (1 << (where % 8))]) + raw[i + 1:]
    if how == 9:  # not JSON at all
        return raw[::-1]
    return raw


def dumps(doc: Any) -> bytes:
    """JSON as a careless publisher writes it: any int, ``NaN``/``Infinity`` tokens, unescaped unicode.

    >>> dumps({"a": [Deep(2), float("nan")], "é": 2**70})
    b'{"a": [[[]], NaN], "\xc3\xa9": 1180591620717411303424}'
    """
    def deep_marker(value: Any) -> str:
        return f"\x00DEEP{value.depth}\x00"

    out = json.dumps(doc, ensure_ascii=False, allow_nan=True, default=deep_marker)
    out = re.sub(r'"\\u0000DEEP(\d+)\\u0000"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), out)
    return out.encode("utf-8", "surrogatepass")


def encoded(docs: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Encoded records of ``docs``, some of them damaged."""
    return st.builds(lambda doc, how, where: damaged(dumps(doc), how, where), docs,  # one in eight damaged
                     pick(32), st.integers(min_value=0, max_value=1 << 20))


def batch_record() -> st.SearchStrategy[bytes]:
    """A clickstream batch record (app/events/batch_records.py) of hostile events; sometimes the wrapper is hostile."""
    from app.events import batch_records

    events = st.lists(encoded(event()), min_size=1, max_size=5)
    good = st.builds(batch_records.encode, text, events)
    bad = encoded(st.fixed_dictionaries({"schema_version": value({"const": 1}, {}), "batch_id": text,
                                         "events": st.one_of(wrong, st.lists(event(), max_size=3))}))
    return st.one_of(good, good, good, bad)


def http_body() -> st.SearchStrategy[bytes]:
    """A ``POST /v1/events`` body: one event, an array, ``{"events": [...]}``; sometimes damaged or not JSON."""
    docs = st.one_of(event(), event(), st.lists(event(), max_size=6), st.fixed_dictionaries(
        {"events": st.lists(event(), max_size=6)}), wrong)
    return encoded(docs)


def with_duplicates(items: list[Any], every: int = 50) -> list[Any]:
    """``items`` with every ``every``-th one sent twice (publisher retries).

    >>> with_duplicates([1, 2, 3, 4], every=2)
    [1, 2, 2, 3, 4, 4]
    """
    return [x for i, item in enumerate(items, 1) for x in ([item, item] if i % every == 0 else [item])]


def draw(strategy: st.SearchStrategy[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` examples of ``strategy`` (generation only: no shrinking, no example database)."""
    out: list[Any] = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x: Any) -> None:
        out.append(x)

    hypothesis_seed(seed)(collect)()
    return out


#: Nodes a crossover looks at in one document (a 3,000-deep value has 3,000: the first ones do).
CROSSOVER_NODES = 400


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every value in ``doc`` below the root, breadth first, at most :data:`CROSSOVER_NODES`."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    queue = [(path, doc)]
    while queue and len(out) < CROSSOVER_NODES:
        where, node = queue.pop(0)
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            out.append(((*where, key), child))
            queue.append(((*where, key), child))
    return out


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced (the containers on the path copied, the rest shared).

    >>> _replaced({"a": [1, {"b": 2}]}, ("a", 1, "b"), "x")
    {'a': [1, {'b': 'x'}]}
    """
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replaced(doc[head], rest, value)
    return copy


def mutant(a: bytes, b: bytes, rng: random.Random) -> bytes:
    """A new input bred from two generated ones: one to three of ``a``'s values replaced by values found
    in ``b`` (any depth: a category may receive a nested list, a timestamp a hostile string), re-encoded,
    one in eight then damaged as :func:`encoded` damages; inputs that are not JSON are spliced as bytes.

    >>> rng = random.Random(3)
    >>> mutant(b'{"type": "page_view", "category": "x"}', b'{"category": "<script>", "price": NaN}', rng)
    b'{"type": NaN, "category": "x"}'
    >>> mutant(b'\\xff{"a', b'not json', random.Random(1))     # not JSON: a splice
    b'\\xffot json'
    """
    try:
        doc, other = json.loads(a), json.loads(b)
    except (ValueError, RecursionError):
        return _spliced(a, b, rng)
    if not isinstance(doc, dict | list) or not doc:  # a scalar or empty body: nothing to replace inside
        return _spliced(a, b, rng)
    donors = [value for _, value in _nodes(other)] or [other]
    for _ in range(rng.randint(1, 3)):
        targets = _nodes(doc)
        if not targets:
            break
        path, _ = rng.choice(targets)
        doc = _replaced(doc, path, rng.choice(donors))
    try:
        raw = dumps(doc)
    except RecursionError:  # a deep donor placed deep: too deep for json's encoder
        return _spliced(a, b, rng)
    return damaged(raw, rng.randrange(6, 14), rng.randrange(1 << 20)) if rng.randrange(8) == 0 else raw


def _spliced(a: bytes, b: bytes, rng: random.Random) -> bytes:
    return a[: rng.randrange(len(a) + 1)] + b[rng.randrange(len(b) + 1):]


def expand(seeds: list[bytes], n: int, seed: int = 0) -> list[bytes]:
    """``n`` inputs: the generated ``seeds`` first, then mutants bred from random pairs of them (:func:`mutant`).

    Generating an input with hypothesis takes 5 to 35 ms here (schemas with hostile values at
    every field); breeding one takes tens of microseconds. The worker fuzz draws a tenth of its
    inputs and breeds the rest (``RELIABILITY_FUZZ_BRED``), as mutational fuzzers build on a
    grammar's seeds: every field still gets the generator's hostile values, in new combinations.

    >>> out = expand([b'{"a": 1}', b'{"a": "x", "b": [2]}'], 6, seed=1)
    >>> len(out), out[:2] == [b'{"a": 1}', b'{"a": "x", "b": [2]}']
    (6, True)
    """
    rng = random.Random(seed)
    out = list(seeds[:n])
    while len(out) < n and seeds:
        out.append(mutant(rng.choice(seeds), rng.choice(seeds), rng))
    return out


def run_each(
    check: Callable[[Any], object], inputs: list[Any], expected: tuple[type[BaseException], ...]
) -> dict[str, Any]:
    """Call ``check`` on every input; count what it raises: expected exceptions, and any other (with examples).

    >>> from app.errors import ConfigError
    >>> def check(x):
    ...     if x == 1: raise ConfigError("no")
    ...     if x == 2: raise KeyError("k")
    >>> r = run_each(check, [0, 1, 2, 2], (ConfigError,))
    >>> r["inputs"], r["expected_errors"], r["unhandled"], r["unhandled_by_type"]
    (4, 1, 2, {'KeyError': 2})
    """
    expected_errors, unhandled = 0, 0
    by_type: dict[str, int] = {}
    examples: list[dict[str, str]] = []
    for item in inputs:
        try:
            check(item)
        except expected:
            expected_errors += 1
        except Exception as exc:  # what the fuzz is there to find
            unhandled += 1
            name = type(exc).__name__
            by_type[name] = by_type.get(name, 0) + 1
            if len(examples) < 10:
                examples.append({"input": repr(item)[:300], "error": f"{name}: {exc}"[:300]})
    return {"inputs": len(inputs), "expected_errors": expected_errors, "unhandled": unhandled,
            "unhandled_by_type": by_type, "unhandled_examples": examples}


RULE_TOKENS = ["count(", "age(", "affinity.", "affinity.*", "{key}", "product_view", "purchase", "first_seen",
               "monetary", "lifetime.purchases", ",", "24h", "7d", "30m", "0s", "-1h", "1e400h", ")", "(", ">=", "<=",
               "==", "!=", ">", "<", "=", "and", "or", "not", "0.3", "-1", "1e309", "nan", "'x'", '"y"', "'", '"']
#: Rule conditions: token soup of the language's own words, and hostile text.
conditions = st.one_of(st.lists(st.one_of(st.sampled_from(RULE_TOKENS), text), max_size=12).map(" ".join),
                       st.lists(st.sampled_from(RULE_TOKENS), max_size=12).map("".join), text)
_rule = st.fixed_dictionaries({}, optional={
    "when": st.one_of(conditions, wrong), "stay_when": st.one_of(conditions, wrong),
    "description": st.one_of(text, wrong),
    "for_each": st.one_of(st.sampled_from(["affinity.*", "affinity.", "*"]), text, wrong),
    "segment": st.one_of(st.sampled_from(["interest:{key}", "{key}", "{", "{0}", "{key!r}", "{key.__class__}"]), text),
    "exit_margin": st.one_of(numbers, wrong), "min_dwell": st.one_of(st.sampled_from(["1h", "0s", "-1s"]), text, wrong),
    "kind": wrong})
rule_mappings = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), wrong)},
    optional={"rules": st.one_of(st.dictionaries(text, st.one_of(_rule, wrong), max_size=3), wrong),
              "defaults": st.one_of(st.fixed_dictionaries({}, optional={"exit_margin": numbers, "min_dwell": text}),
                                    wrong), "extra": wrong})


def _toml_value(v: Any) -> str:
    """A TOML value for JSON-like ``v`` (JSON string escapes are TOML's); None and nesting as text.

    >>> _toml_value("a\\nb"), _toml_value(1.5), _toml_value(True), _toml_value([1, "x"])
    ('"a\\\\nb"', '1.5', 'true', '[1, "x"]')
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if v == v and abs(v) != float("inf") else "nan"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v if isinstance(v, str) else repr(v), ensure_ascii=False)


def rules_toml(doc: Mapping[str, Any]) -> str:
    """A rules file's text for a generated mapping (hostile rule names quoted as TOML keys)."""
    lines = [f"version = {_toml_value(doc.get('version'))}"]
    rules = doc.get("rules")
    for name, rule in (rules.items() if isinstance(rules, dict) else []):
        lines.append(f"[rules.{_toml_value(name)}]")
        lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in (rule.items() if isinstance(rule, dict) else [])]
    return "\n".join(lines) + "\n"


def _mutated_default(cut: int, length: int, insert: str) -> str:
    from importlib import resources

    base = resources.files("app.segments").joinpath("default_rules.toml").read_text(encoding="utf-8")
    cut %= len(base)
    return base[:cut] + insert + base[cut + length % 40:]


#: Rules files: generated mappings, their TOML text, the shipped file with a slice replaced by hostile text.
rule_sources = st.one_of(
    rule_mappings, rule_mappings.map(rules_toml),
    st.builds(_mutated_default, st.integers(min_value=0, max_value=1 << 16), st.integers(min_value=0, max_value=39),
              st.one_of(text, st.sampled_from(RULE_TOKENS))),
    text)


def settings_env() -> st.SearchStrategy[dict[str, str]]:
    """Environments for ``Settings.from_env``: a few of its variables, each set to a plausible or hostile string."""
    from dataclasses import fields

    from app.runtime.settings import Settings, Topics, _env_name

    names = [_env_name(f.name) for f in fields(Settings) if f.name != "topics"]
    names += [f"PERSONA_TOPIC_{f.name.upper()}" for f in fields(Topics)]
    plausible = st.one_of(st.integers(min_value=-(2**65), max_value=2**65).map(str),
                          st.floats().map(repr), st.sampled_from(["", "0", "1", "-1", "nan", "inf", "1e999", "0x10",
                                                                  "1_000", " 1 ", "true", "memory://", "rocksdb://",
                                                                  "compact://?hot=x", "kafka://", "redis://"]))
    return st.dictionaries(st.sampled_from(names), st.one_of(plausible, text), min_size=1, max_size=6)
