"""Watch mode: audit records as they are written -> the audit rules, run incrementally ->
findings naming a pod -> a case with that pod's evidence, protected (and isolated), before
the autoscaler, a crash loop or the attacker removes it.

::

    sources (tail, webhook spool, CloudWatch, ...) --chunks--> detector (audit.engine per
    chunk, correlations over a sliding window) --findings--> responder (rate limit,
    cooldown, dry run) --> actions (podmortem.acquire, podmortem.cloud)

Exactly-once bookkeeping: :mod:`podmortem.watch.state`.
"""
