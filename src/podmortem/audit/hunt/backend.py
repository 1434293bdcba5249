"""The shared part of podmortem's pySigma backends for cloud log engines.

Each language (Logs Insights, KQL, the Cloud Logging filter, BigQuery SQL) is a small
``TextQueryBackend`` subclass, as pySigma's own backends are; no maintained pySigma backend
covers these engines for pySigma 2 (``pySigma-backend-kusto`` 1.0.1 pins ``pysigma<2``).
What the base adds to pySigma's:

* field mapping as a pySigma processing pipeline (:class:`TargetFieldTransformation`);
* fields a provider does not record fold to constants before conversion, with Sigma's
  semantics (a value never matches an absent field, ``not`` over it is true), and a rule that
  folds to "never" is reported, not printed;
* array fields: the condition is rendered on one element and wrapped in the language's
  "any element" construct;
* ``actorClass`` (podmortem's actor classes, ``actors.yml``) as a boolean over the username
  and groups, in the order the classes are tried;
* anything the language cannot say raises :class:`Unexpressible` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
)

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.hunt.since import Since
from podmortem.audit.hunt.fields import FieldResolver, Ref, TargetFieldTransformation
from podmortem.audit.hunt.values import Unexpressible, user_regex

Node = ConditionItem | ConditionFieldEqualsValueExpression | ConditionValueExpression
_OPS = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
    CompareOperators.NEQ: "!=",
}
_NUMERIC = "0123456789"


@dataclass(frozen=True, slots=True)
class QueryContext:
    since: Since | None = None
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class Aggregation:
    """A correlation as this language's expressions: group keys, the distinct-counted value
    (None: requests), the window, and the threshold."""

    groups: list[str]
    value: str | None
    window_s: int
    op: str
    count: int
    group_names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Translation:
    """A rule's condition in one language, or the constant it folded to."""

    expr: str | None  # None: the condition folded to a constant
    constant: bool | None = None
    notes: list[str] = field(default_factory=list)
    preludes: list[str] = field(default_factory=list)  # KQL: mv-apply steps before `where`


class HuntBackend(TextQueryBackend):
    name: ClassVar[str] = "podmortem hunt backend"
    formats: ClassVar[dict[str, str]] = {"default": "query text"}
    requires_pipeline: ClassVar[bool] = False
    language: ClassVar[str] = ""
    target_name: ClassVar[str] = ""

    parenthesize = True
    group_expression: ClassVar[str] = "({expr})"
    token_separator: str = " "
    or_token: ClassVar[str] = "or"
    and_token: ClassVar[str] = "and"
    not_token: ClassVar[str] = "not"
    eq_token: ClassVar[str] = " = "
    convert_or_as_in: ClassVar[bool] = False
    convert_and_as_in: ClassVar[bool] = False
    # ``not X`` of the language, null-safe where the language needs it.
    not_template: ClassVar[str] = "not ({expr})"

    def __init__(self, resolver: FieldResolver) -> None:
        item = ProcessingItem(
            TargetFieldTransformation(resolver), identifier=f"podmortem_{self.target_name}"
        )
        super().__init__(processing_pipeline=ProcessingPipeline(items=[item]))
        self.resolver = resolver
        self.notes: list[str] = []
        self._vars = 0

    # ------------------------------------------------------------------ driver

    def translate(self, rule: SigmaRule) -> Translation:
        """The rule's detection in this language (several conditions: OR)."""
        self.notes = []
        self.init_processing_pipeline(None)
        self.last_processing_pipeline.apply(rule)
        parts: list[str] = []
        always = False
        for cond in rule.detection.parsed_condition:
            folded = self.fold(cond.parsed)
            if folded is True:
                always = True
            elif folded is not False:
                state = ConversionState(processing_state=dict(self.last_processing_pipeline.state))
                parts.append(str(self.convert_condition(folded, state)))
        notes = list(dict.fromkeys(self.notes))
        if always:
            return Translation(None, True, notes)
        if not parts:
            return Translation(None, False, notes)
        expr = parts[0] if len(parts) == 1 else "(" + f" {self.or_token} ".join(parts) + ")"
        return Translation(expr, None, notes, self.take_preludes())

    def detection_query(self, tr: Translation, ctx: QueryContext) -> str:
        raise NotImplementedError

    def correlation_query(self, base: Translation, agg: Aggregation, ctx: QueryContext) -> str:
        raise Unexpressible(f"{self.language} has no aggregation over time windows")

    def group_expr(self, ref: Ref) -> str:
        raise Unexpressible(f"{ref.native} cannot be grouped on in {self.language}")

    def translate_node(self, node: Any) -> Translation:
        """A condition tree built here (not from a rule file), e.g. an actor exclusion."""
        self.notes = []
        folded = self.fold(node)
        if isinstance(folded, bool):
            return Translation(None, folded, list(self.notes))
        state = ConversionState(processing_state={})
        expr = str(self.convert_condition(folded, state))
        return Translation(expr, None, list(dict.fromkeys(self.notes)), self.take_preludes())

    def actor_exclusion(self, classes: list[str]) -> Translation:
        """``not (actorClass in classes)``: the actors whose activity a correlation does not
        count (the rule's expected actors), as the embedded engine does."""
        tok = self.resolver.token(Ref("actor", "actorClass"))
        leaves = [ConditionFieldEqualsValueExpression(tok, SigmaString(c)) for c in classes]
        node: Any = self._not(self._and(leaves) if len(leaves) == 1 else ConditionOR(leaves))
        for leaf in leaves:
            if leaf.parent is None:
                leaf.parent = node.args[0]
        return self.translate_node(node)

    def take_preludes(self) -> list[str]:
        return []

    def new_var(self) -> str:
        self._vars += 1
        return f"_e{self._vars}"

    # ------------------------------------------------------------------ folding

    def fold(self, node: Any) -> Any:
        """``node`` with leaves that are constant for this provider replaced by True/False,
        or True/False for the whole node."""
        if isinstance(node, ConditionAND | ConditionOR):
            is_and = isinstance(node, ConditionAND)
            kept = []
            for a in node.args:
                f = self.fold(a)
                if f is (not is_and):  # False in an AND, True in an OR decides it
                    return f
                if f is not is_and:
                    kept.append(f)
            if not kept:
                return is_and
            if len(kept) == 1:
                return kept[0]
            new = ConditionAND(kept) if is_and else ConditionOR(kept)
            for k in kept:
                k.parent = new
            return new
        if isinstance(node, ConditionNOT):
            f = self.fold(node.args[0])
            if isinstance(f, bool):
                return not f
            new_not = ConditionNOT([f])
            f.parent = new_not
            return new_not
        if isinstance(node, ConditionFieldEqualsValueExpression) and node.field is not None:
            if self.resolver.ref(str(node.field)).kind == "actor":
                return self.fold(self.actor_condition(node))
            const = self.leaf_constant(node)
            if const is not None:
                return const
        return node

    def leaf_constant(self, cond: ConditionFieldEqualsValueExpression) -> bool | None:
        ref = self.resolver.ref(str(cond.field))
        value = cond.value
        if ref.kind == "absent":
            self.notes.append(f"{ref.native}: {ref.reason}")
            if isinstance(value, SigmaNull):
                return True
            if isinstance(value, SigmaExists):
                return not value.exists
            return False
        if ref.value_type == "integer" and isinstance(value, SigmaString):
            text = str(value)
            if value.contains_special() or not text.lstrip("-").isdigit():
                # the embedded engine compiles the same thing to FALSE (with a warning)
                self.notes.append(f"{ref.native} holds integers; the value {text!r} never matches")
                return False
        if isinstance(value, SigmaExpansion):
            return None
        return None

    # ------------------------------------------------------------------ dispatch

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> Any:
        arg = cond.args[0]
        expr = str(self.convert_condition(arg, state))
        if isinstance(arg, ConditionAND | ConditionOR | ConditionNOT):
            expr = self.group_expression.format(expr=expr)
        return self.not_template.format(expr=expr)

    def convert_condition_field_eq_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        ref = self.resolver.ref(str(cond.field))
        if ref.kind == "unsupported":
            raise Unexpressible(f"{ref.native}: {ref.reason}")
        if isinstance(cond.value, SigmaExpansion):
            return super().convert_condition_field_eq_val(cond, state)
        if ref.kind == "derived":
            from podmortem.audit.hunt.gke_fields import NOTES

            if ref.derived in NOTES:
                self.notes.append(NOTES[ref.derived])
            return self.derived(ref, cond.value)
        if ref.kind == "path" and ref.has_array:
            return self.any_element(ref, cond, state)
        return super().convert_condition_field_eq_val(cond, state)

    def element_condition(
        self, cond: ConditionFieldEqualsValueExpression, inner: Ref
    ) -> ConditionFieldEqualsValueExpression:
        """The same test, on a field inside one element."""
        new = ConditionFieldEqualsValueExpression(self.resolver.token(inner), cond.value)
        new.parent = cond.parent
        return new

    def any_element(
        self, ref: Ref, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        """The test on ANY element of the first array on the field's path (nested arrays
        recurse through the inner condition). ``|exists`` is true when an element has the
        field; a null test is true when none has it, as the embedded engine reads lists."""
        outer, inner = ref.split_first_array()
        var = self.new_var()
        inner = replace(inner, element_of=var)
        if isinstance(cond.value, SigmaNull):
            test = ConditionFieldEqualsValueExpression(
                self.resolver.token(inner), SigmaExists(True)
            )
            test.parent = cond.parent
            pred = self.convert_condition_field_eq_val(test, state)
            return self.not_template.format(expr=self.wrap_any(outer, var, str(pred)))
        pred = self.convert_condition_field_eq_val(self.element_condition(cond, inner), state)
        return self.wrap_any(outer, var, str(pred))

    def wrap_any(self, outer: Ref, var: str, pred: str) -> str:
        raise Unexpressible(f"{outer.native}: array fields are not supported in {self.language}")

    def derived(self, ref: Ref, value: Any) -> str:
        raise Unexpressible(f"{ref.native}: no derived field {ref.derived} in {self.language}")

    # pySigma's value-type entry points, each sent to one method of the language.
    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaString)  # noqa: S101 - pySigma's dispatch
        return self.str_match(self._ref(cond), cond.value, cased=False)

    def convert_condition_field_eq_val_str_case_sensitive(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCasedString)  # noqa: S101
        return self.str_match(self._ref(cond), cond.value, cased=True)

    def convert_condition_field_eq_val_num(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaNumber)  # noqa: S101
        n = cond.value.number
        if not isinstance(n, int):
            raise Unexpressible(f"{cond.field}: non-integer number {n!r}")
        return self.num_eq(self._ref(cond), n)

    def convert_condition_field_eq_val_bool(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaBool)  # noqa: S101
        return self.bool_eq(self._ref(cond), cond.value.boolean)

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        value = cond.value
        assert isinstance(value, SigmaRegularExpression)  # noqa: S101
        flags = ""
        if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
            flags += "i"
        if SigmaRegularExpressionFlag.MULTILINE in value.flags:
            flags += "m"
        if SigmaRegularExpressionFlag.DOTALL in value.flags:
            flags += "s"
        return self.re_match(self._ref(cond), user_regex(value.regexp.original, flags=flags))

    def convert_condition_field_eq_val_cidr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCIDRExpression)  # noqa: S101
        return self.cidr_match(self._ref(cond), str(cond.value.network))

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        value = cond.value
        assert isinstance(value, SigmaCompareExpression)  # noqa: S101
        n = value.number.number
        return self.compare(self._ref(cond), _OPS[value.op], float(n))

    def convert_condition_field_eq_val_null(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return self.is_null(self._ref(cond))

    def convert_condition_field_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return self.exists(self._ref(cond))

    def convert_condition_field_eq_field(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        raise Unexpressible("field references (|fieldref) are not translated to cloud engines")

    def convert_condition_field_eq_query_expr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        raise Unexpressible("query expressions are not translated to cloud engines")

    def convert_condition_val_str(self, cond: ConditionValueExpression, state: Any) -> str:
        assert isinstance(cond.value, SigmaString)  # noqa: S101
        return self.keyword(cond.value)

    def convert_condition_val_num(self, cond: ConditionValueExpression, state: Any) -> str:
        return self.keyword(SigmaString(str(cond.value)))

    def convert_condition_val_re(self, cond: ConditionValueExpression, state: Any) -> str:
        raise Unexpressible("field-less regular expressions are not translated")

    def _ref(self, cond: ConditionFieldEqualsValueExpression) -> Ref:
        ref = self.resolver.ref(str(cond.field))
        if ref.kind == "whole":
            return ref
        if ref.kind != "path":
            raise Unexpressible(f"{ref.native}: cannot be compared in {self.language}")
        return ref

    # ------------------------------------------------------------------ language parts

    def str_match(self, ref: Ref, value: SigmaString, *, cased: bool) -> str:
        raise NotImplementedError

    def re_match(self, ref: Ref, regex: str) -> str:
        raise NotImplementedError

    def num_eq(self, ref: Ref, n: int) -> str:
        raise NotImplementedError

    def bool_eq(self, ref: Ref, b: bool) -> str:
        raise NotImplementedError

    def compare(self, ref: Ref, op: str, n: float) -> str:
        raise NotImplementedError

    def cidr_match(self, ref: Ref, cidr: str) -> str:
        raise Unexpressible(f"CIDR matching is not translated to {self.language}")

    def is_null(self, ref: Ref) -> str:
        raise NotImplementedError

    def exists(self, ref: Ref) -> str:
        raise NotImplementedError

    def keyword(self, value: SigmaString) -> str:
        raise Unexpressible(
            f"keyword (field-less) searches have no place to look in {self.language}"
        )

    # ------------------------------------------------------------------ actor classes

    def actor_condition(self, cond: ConditionFieldEqualsValueExpression) -> Any:
        """``actorClass = X`` as: the actor matches class X and none of the classes tried
        before it (actors.yml order); the default class (human) matches none."""
        value = cond.value
        if not isinstance(value, SigmaString) or value.contains_special():
            raise Unexpressible("actorClass is compared with plain class names only")
        wanted = str(value).lower()
        policy = ActorPolicy.default_policy()
        names = [c.name for c in policy.classes]
        if wanted not in [*names, policy.default]:
            self.notes.append(f"actorClass {wanted!r} is not a class; it never matches")
            return False
        before = names if wanted == policy.default else names[: names.index(wanted)]
        parts: list[Node] = []
        if wanted != policy.default:
            parts.append(self._class_match(policy, wanted))
        parts += [self._not(self._class_match(policy, n)) for n in before]
        node = self._and(parts)
        node.parent = cond.parent
        return node

    def _class_match(self, policy: ActorPolicy, name: str) -> Node:
        cls = next(c for c in policy.classes if c.name == name)
        user = self.resolver.tokens("user.username")
        groups = self.resolver.tokens("user.groups")
        leaves: list[Node] = []
        for pattern in cls.usernames:
            # actors.yml globs: only `*` is a wildcard; Sigma's `?` and `\` are escaped.
            escaped = pattern.replace("\\", "\\\\").replace("?", "\\?")
            for tok in user:
                leaves.append(ConditionFieldEqualsValueExpression(tok, SigmaString(escaped)))
        for g in cls.groups:
            for tok in groups:
                leaves.append(ConditionFieldEqualsValueExpression(tok, SigmaString(g)))
        node = ConditionOR(leaves)
        for leaf in leaves:
            leaf.parent = node
        return node

    def _and(self, parts: list[Node]) -> Node:
        if len(parts) == 1:
            return parts[0]
        node = ConditionAND(parts)
        for p in parts:
            p.parent = node
        return node

    def _not(self, part: Node) -> Node:
        node = ConditionNOT([part])
        part.parent = node
        return node


def is_plain_digits(text: str) -> bool:
    return bool(text) and all(c in _NUMERIC for c in text)
