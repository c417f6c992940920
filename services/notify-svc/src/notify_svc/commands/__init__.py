"""notify-svc's use cases, one module per job: ``requests`` (the consumer's: record
requests, follow stage changes), ``delivery`` (the worker's bookkeeping around a send),
``notifications`` (reading the ledger), ``templates``, ``profile``, ``contacts``
(opt-outs) and ``tasks``.

The HTTP and consumer use cases run in their caller's transaction; delivery's open
their own, one short transaction per step. Rule errors are ``domain.NotifyRuleError``s;
results are records and rows, which ``views`` turns into responses.
"""
