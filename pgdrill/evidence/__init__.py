"""Evidence of a drill: the evidence document (build), the run context its activities share,
the tamper-evident run ledger and the guardrail policy over it, the sink that keeps both in
S3, and the redacted logs saved beside them."""


def __getattr__(name: str):
    # `pgdrill.evidence` was one module before 0.2; its names are now pgdrill.evidence.build's
    from pgdrill._moved import old_names

    return old_names(__name__, "pgdrill.evidence.build", name)
