"""Indicators as data: the YAML files beside this module hold every rule (what to look for,
how bad it is, ATT&CK techniques, and positive/negative examples that the tests run). This
module compiles them and applies them to the stream of layer entries.

Matcher kinds (the ``kind`` key of a rule):

- ``path``: an entry's path (``paths`` globs, ``names`` regex searched in the base name,
  ``exclude_paths``), its type (``entry_kinds``, ``file_types``) and mode bits (``mode_any``);
  every condition given must hold.
- ``content``: files chosen by ``paths`` or ``file_types``; a bounded prefix of their content
  must contain one of the literal ``needles`` (a cheap filter) and match one of ``patterns``.
  ``secret: true`` rules report the ``key`` group and a hash of the ``value`` group, never
  the value.
- ``accounts``: ``/etc/passwd`` and ``/etc/shadow`` checks (``extra_uid0``,
  ``empty_password``).
- ``config``: the image config's ENV, CMD, ENTRYPOINT and history.
- ``integrity`` and ``structural``: metadata for findings computed in code (package
  integrity, hostile archives); their examples are whole images built by the tests.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podmortem.image.catalog import Hit, Notes, Rule, rules, rules_of_kind
from podmortem.image.model import Entry

_GLOB_CACHE: dict[str, str] = {}


def glob_regex(pattern: str) -> str:
    """Translate a path glob: ``**`` crosses directories, ``*`` and ``?`` do not."""
    if pattern in _GLOB_CACHE:
        return _GLOB_CACHE[pattern]
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                out.append("[" + pattern[i + 1 : j].replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    rx = "".join(out)
    _GLOB_CACHE[pattern] = rx
    return rx


_GLOB_SPECIAL = frozenset("/*?[\\")


class GlobSet:
    """A union of path globs, matched like ``^(?:glob1|glob2|...)$`` (DOTALL), but with the
    common ``**/NAME`` and ``**/*SUFFIX`` globs answered from the base name by a set lookup
    and ``str.endswith``: in one big alternation each ``(?:.*/)?`` branch rescans the path,
    and this runs for every member of every layer."""

    __slots__ = ("_names", "_rx", "_suffixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        names: list[str] = []
        suffixes: list[str] = []
        rest: list[str] = []
        for p in patterns:
            tail = p[3:] if p.startswith("**/") else ""
            if tail and not _GLOB_SPECIAL & set(tail):
                names.append(tail)  # (?:.*/)?NAME$: the last component is NAME
            elif tail[:1] == "*" and len(tail) > 1 and not _GLOB_SPECIAL & set(tail[1:]):
                suffixes.append(tail[1:])  # (?:.*/)?[^/]*SUFFIX$
            else:
                rest.append(p)
        self._names = frozenset(names)
        self._suffixes = tuple(dict.fromkeys(suffixes))
        parts = [glob_regex(p) for p in rest]
        self._rx = re.compile("^(?:" + "|".join(parts) + ")$", re.DOTALL) if parts else None

    def match(self, path: str) -> bool:
        base = path[path.rfind("/") + 1 :]
        # ``$`` also matches before a final newline: keep that for hostile names
        for b in (base, base[:-1]) if base.endswith("\n") else (base,):
            if b in self._names or (self._suffixes and b.endswith(self._suffixes)):
                return True
        return self._rx is not None and self._rx.match(path) is not None


def compile_globs(patterns: Iterable[str]) -> GlobSet | None:
    patterns = list(patterns)
    return GlobSet(patterns) if patterns else None


def value_hash(value: str | bytes) -> str:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_text(head: bytes) -> bool:
    return b"\0" not in head[:1024]


def file_types_of(entry: Entry) -> set[str]:
    """The content types rules select on, decided from the first bytes of the file."""
    types = set()
    if entry.is_elf:
        types.add("elf")
    if entry.is_script:
        types.add("script")
    if entry.kind == "file" and entry.mode & 0o111:
        types.add("executable")
    if entry.is_text:
        types.add("text")
    return types


@dataclass
class PathMatcher:
    rule: Rule
    paths: GlobSet | None
    exclude: GlobSet | None
    names: re.Pattern[str] | None
    entry_kinds: frozenset[str]
    file_types: frozenset[str]
    mode_any: int

    @classmethod
    def build(cls, rule: Rule) -> PathMatcher:
        p = rule.params
        names = p.get("names")
        return cls(
            rule,
            compile_globs(p.get("paths") or ()),
            compile_globs(p.get("exclude_paths") or ()),
            re.compile(str(names)) if names else None,
            frozenset(p.get("entry_kinds") or ("file",)),
            frozenset(p.get("file_types") or ()),
            int(str(p.get("mode_any") or 0), 0),
        )

    def match(self, entry: Entry, types: set[str], any_path: bool = True) -> bool:
        """``any_path``: whether the union of all path rules' globs matched (a prefilter:
        one regex per file instead of one per rule)."""
        # cheapest tests first: this runs for every member of every layer
        if entry.kind not in self.entry_kinds:
            return False
        if self.file_types and not (self.file_types & types):
            return False
        if self.mode_any and not entry.mode & self.mode_any:
            return False
        if self.paths is not None and (not any_path or not self.paths.match(entry.path)):
            return False
        if self.exclude is not None and self.exclude.match(entry.path):
            return False
        return self.names is None or bool(self.names.search(posixpath.basename(entry.path)))


def _in_comment(data: bytes, pos: int) -> bool:
    """Is ``pos`` on a line that is a comment (``#``, ``;`` or ``//``)?"""
    start = data.rfind(b"\n", 0, pos) + 1
    line = data[start : pos + 1].lstrip()
    return line.startswith((b"#", b";", b"//"))


@dataclass
class ContentMatcher:
    rule: Rule
    paths: GlobSet | None
    file_types: frozenset[str]
    exclude: GlobSet | None
    needles: tuple[bytes, ...]
    ignore_case: bool
    patterns: tuple[re.Pattern[bytes], ...]
    secret: bool
    skip_comments: bool = False
    # also search the needles through the whole of executable files, not just the head
    whole_executables: bool = False
    # read less than --scan-bytes when the rule's evidence always sits near the start
    head_bytes: int = 0

    @classmethod
    def build(cls, rule: Rule) -> ContentMatcher:
        p = rule.params
        ignore_case = bool(p.get("ignore_case"))
        needles = tuple(
            (n.lower() if ignore_case else n).encode("utf-8") for n in p.get("needles") or ()
        )
        return cls(
            rule,
            compile_globs(p.get("paths") or ()),
            frozenset(p.get("file_types") or ()),
            compile_globs(p.get("exclude_paths") or ()),
            needles,
            ignore_case,
            tuple(re.compile(str(x).encode("utf-8")) for x in p.get("patterns") or ()),
            bool(p.get("secret")),
            bool(p.get("skip_comment_lines")),
            bool(p.get("whole_executables")),
            int(p.get("head_bytes") or 0),
        )

    def selects(self, entry: Entry, types: set[str], any_path: bool) -> bool:
        """``any_path``: whether the union of all content rules' globs matched (a
        prefilter, so most files cost one regex match rather than one per rule)."""
        # the exclusion regex last: most files are selected by no rule, so it rarely runs
        if not (self.file_types & types) and not (
            any_path and self.paths is not None and self.paths.match(entry.path)
        ):
            return False
        return self.exclude is None or not self.exclude.match(entry.path)

    def scan(self, data: bytes, folded: bytes | None) -> list[re.Match[bytes]]:
        if self.head_bytes and len(data) > self.head_bytes:
            data = data[: self.head_bytes]
            folded = folded[: self.head_bytes] if folded is not None else None
        hay = folded if self.ignore_case and folded is not None else data
        if self.needles and not any(n in hay for n in self.needles):
            return []
        for rx in self.patterns:
            for m in rx.finditer(data):
                if self.skip_comments and _in_comment(data, m.start()):
                    continue
                return [m]
        return []


@dataclass
class AccountsMatcher:
    rule: Rule
    files: frozenset[str]
    check: str
    allow: frozenset[str]

    @classmethod
    def build(cls, rule: Rule) -> AccountsMatcher:
        p = rule.params
        files = [str(p["file"]), *[str(x) for x in p.get("also") or ()]]
        return cls(rule, frozenset(files), str(p["check"]), frozenset(p.get("allow") or ()))

    def scan(self, path: str, data: bytes) -> list[tuple[str, str]]:
        """``(account, line evidence)`` for each offending line."""
        out = []
        for lineno, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            fields = raw.split(":")
            if len(fields) < 2 or raw.startswith("#"):
                continue
            name = fields[0]
            if self.check == "extra_uid0":
                if len(fields) >= 3 and fields[2].strip() == "0" and name not in self.allow:
                    out.append((name, f"{path}:{lineno} account {name!r} has uid 0"))
            elif self.check == "empty_password" and fields[1] == "":
                out.append((name, f"{path}:{lineno} account {name!r} has an empty password"))
        return out


@dataclass
class ConfigMatcher:
    rule: Rule
    fields: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]
    secret: bool

    @classmethod
    def build(cls, rule: Rule) -> ConfigMatcher:
        p = rule.params
        return cls(
            rule,
            frozenset(p.get("fields") or ()),
            tuple(re.compile(str(x)) for x in p.get("patterns") or ()),
            tuple(re.compile(str(x)) for x in p.get("exclude_patterns") or ()),
            bool(p.get("secret")),
        )

    def scan(self, value: str) -> re.Match[str] | None:
        if any(x.search(value) for x in self.exclude):
            return None
        for rx in self.patterns:
            m = rx.search(value)
            if m:
                return m
        return None


def secret_evidence(m: re.Match[Any], where: str) -> tuple[str, tuple[str, ...]]:
    """Summary and evidence for a secret match: key name, location and a hash, never the
    value itself."""
    groups = m.groupdict()
    key = groups.get("key") or "value"
    value = groups.get("value") or m.group(0)
    key_s = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return (
        f"secret {key_s.strip()!r} at {where} (value redacted)",
        (f"key={key_s.strip()}", f"location={where}", f"value_sha256={value_hash(value)}"),
    )


def snippet(m: re.Match[Any], limit: int = 160) -> str:
    """The matched text as evidence, with any secret value in it replaced by its hash (a
    download command can carry ``-u user:password``)."""
    text = m.group(0)
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    s = redact(s)
    return s[:limit] + ("..." if len(s) > limit else "")


@functools.cache
def _secret_patterns() -> tuple[re.Pattern[str], ...]:
    out = []
    for rule in rules().values():
        if rule.kind == "config" and rule.params.get("secret"):
            out += [re.compile(str(p)) for p in rule.params.get("patterns") or ()]
    return tuple(out)


def redact(text: str) -> str:
    """Replace every secret value a config secret rule finds with its hash."""
    for rx in _secret_patterns():

        def repl(m: re.Match[str]) -> str:
            if "value" not in m.groupdict() or m.group("value") is None:
                return m.group(0)
            s, e = m.span("value")
            start = s - m.start()
            end = e - m.start()
            whole = m.group(0)
            return whole[:start] + f"<redacted {value_hash(m.group('value'))}>" + whole[end:]

        text = rx.sub(repl, text)
    return text


def line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


_DEFAULT: tuple[dict[str, Rule], Indicators] | None = None


class Indicators:
    """All compiled rules; ``scan_entry`` for layer entries, ``scan_config`` for configs."""

    def __init__(self) -> None:
        self.path = [PathMatcher.build(r) for r in rules_of_kind("path")]
        self.content = [ContentMatcher.build(r) for r in rules_of_kind("content")]
        self.accounts = [AccountsMatcher.build(r) for r in rules_of_kind("accounts")]
        self.config = [ConfigMatcher.build(r) for r in rules_of_kind("config")]
        self.account_files = frozenset(f for a in self.accounts for f in a.files)
        self._content_paths = compile_globs(
            p for c in self.content for p in c.rule.params.get("paths") or ()
        )
        self._content_types = frozenset(t for c in self.content for t in c.file_types)
        self._path_unglobbed = [m for m in self.path if m.paths is None]
        self._path_globs = compile_globs(
            p for m in self.path for p in m.rule.params.get("paths") or ()
        )
        self._memo: tuple[str | None, bool] = (None, False)
        self.stream_needles: tuple[bytes, ...] = tuple(
            dict.fromkeys(n for c in self.content if c.whole_executables for n in c.needles)
        )

    @classmethod
    def default(cls) -> Indicators:
        """The built-in rules, compiled once per process (the rules are immutable data)."""
        global _DEFAULT  # noqa: PLW0603 - a one-slot cache keyed by the loaded rule set
        loaded = rules()
        if _DEFAULT is None or _DEFAULT[0] is not loaded:
            _DEFAULT = (loaded, cls())
        return _DEFAULT[1]

    def _content_path_match(self, path: str) -> bool:
        # asked twice per file (plan, then scan): remember the last answer
        memo = self._memo
        if memo[0] == path:
            return memo[1]
        hit = self._content_paths is not None and self._content_paths.match(path)
        self._memo = (path, hit)
        return hit

    def needles_for(self, entry: Entry) -> tuple[bytes, ...]:
        """Needles to search through the whole file while it streams: executables only
        (their cost is what executables weigh, a fraction of an image)."""
        if entry.is_elf and entry.mode & 0o111:
            return self.stream_needles
        return ()

    def wants_content(self, entry: Entry) -> bool:
        """Could any content rule read this file? (decided before content is read, from the
        path and the first bytes)"""
        if entry.path in self.account_files:
            return True
        if self._content_path_match(entry.path):
            return True
        return bool(self._content_types & file_types_of(entry))

    def scan_entry(self, entry: Entry, data: bytes, notes: Notes) -> list[Hit]:
        types = file_types_of(entry)
        hits: list[Hit] = []

        def add(rule: Rule, summary: str, evidence: tuple[str, ...], **extra: Any) -> None:
            hits.append(
                notes.hit(
                    rule.id,
                    summary,
                    path=entry.path,
                    layer=entry.layer,
                    evidence=evidence,
                    sha256=entry.sha256,
                    entry=entry,
                    extra=extra,
                )
            )

        any_path = self._path_globs is not None and bool(self._path_globs.match(entry.path))
        # rules with path globs cannot match when the union of their globs did not
        for pm in self.path if any_path else self._path_unglobbed:
            if pm.match(entry, types, any_path):
                add(pm.rule, f"{pm.rule.title}: {entry.path}", (f"mode {entry.mode:04o}",))
        if entry.kind != "file" or not data:
            return hits
        folded: bytes | None = None
        any_path = self._content_path_match(entry.path)
        for cm in self.content:
            if not cm.selects(entry, types, any_path):
                continue
            if cm.ignore_case and folded is None:
                folded = data.lower()
            streamed = cm.whole_executables and bool(self.needles_for(entry))
            # executables were searched whole as they streamed: no second pass over the head
            matches = [] if streamed else cm.scan(data, folded)
            if not matches and cm.whole_executables and entry.needles_found:
                beyond = [(n, off) for n, off in entry.needles_found if n in cm.needles]
                if beyond:
                    needle, off = beyond[0]
                    text = needle.decode("utf-8", "replace")
                    add(
                        cm.rule,
                        f"{cm.rule.title}: {entry.path} contains {text!r} at byte {off}",
                        tuple(f"{n.decode('utf-8', 'replace')!r} at byte {o}" for n, o in beyond),
                    )
            for m in matches:
                where = f"{entry.path}:{line_of(data, m.start())}"
                if cm.secret:
                    summary, ev = secret_evidence(m, where)
                    add(cm.rule, summary, ev)
                else:
                    add(cm.rule, f"{cm.rule.title} at {where}", (snippet(m),))  # not secret
        if entry.path in self.account_files:
            for am in self.accounts:
                if entry.path in am.files:
                    for account, line in am.scan(entry.path, data):
                        add(am.rule, line, (line,), account=account)
        return hits

    def scan_config(self, config: dict[str, Any], notes: Notes) -> list[Hit]:
        """ENV, CMD, ENTRYPOINT and history; findings name the config key, not a path."""
        raw_cfg = config.get("config")
        cfg: dict[str, Any] = raw_cfg if isinstance(raw_cfg, dict) else {}
        values: list[tuple[str, str, str]] = []  # (field, key, value)
        env_list = cfg.get("Env")
        for i, env in enumerate(env_list if isinstance(env_list, list) else []):
            values.append(("env", f"config.Env[{i}]", str(env)))
        for fname, key in (("cmd", "Cmd"), ("entrypoint", "Entrypoint")):
            v = cfg.get(key)
            if isinstance(v, list):
                values.append((fname, f"config.{key}", " ".join(str(x) for x in v)))
            elif isinstance(v, str):
                values.append((fname, f"config.{key}", v))
        history = config.get("history") if isinstance(config.get("history"), list) else []
        layer_of_history: dict[int, int] = {}
        n = 0
        for i, h in enumerate(history or []):
            if isinstance(h, dict):
                if not h.get("empty_layer"):
                    layer_of_history[i] = n
                    n += 1
                values.append(
                    ("history", f"history[{i}].created_by", str(h.get("created_by") or ""))
                )
        hits: list[Hit] = []
        for field_, key, value in values:
            for cm in self.config:
                if field_ not in cm.fields:
                    continue
                m = cm.scan(value)
                if not m:
                    continue
                layer = None
                if key.startswith("history["):
                    hi = int(key[8 : key.index("]")])
                    layer = layer_of_history.get(hi)
                if cm.secret:
                    summary, ev = secret_evidence(m, key)
                else:
                    summary = f"{cm.rule.title} in {key}"
                    ev = (snippet(m),)
                hits.append(
                    notes.hit(cm.rule.id, summary, config_key=key, layer=layer, evidence=ev)
                )
        return hits
