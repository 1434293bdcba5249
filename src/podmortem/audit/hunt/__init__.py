"""Rules as queries for the clouds' own log engines (``podmortem audit hunt``)."""

from podmortem.audit.hunt.plan import PROVIDERS, HuntPlan, UnknownRuleError, load_rules, plan_hunt

__all__ = ["PROVIDERS", "HuntPlan", "UnknownRuleError", "load_rules", "plan_hunt"]
