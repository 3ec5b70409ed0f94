"""`declic doctor`: check a deployment from where it runs, one line per check.

``checks`` holds the result type and the output formats, ``judge`` and ``version`` the
pure verdicts (unit-tested without a broker), the ``probe_*`` modules ask Kafka, and
``run`` puts them together, each check bounded in time.
"""
