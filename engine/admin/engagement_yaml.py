"""An engagement as a YAML file that `declic engagements apply` accepts unchanged.

The console's `Export YAML` and `declic engagements export` write the same text: the
engagement as published (defaults filled in, status included), keys in the schema's
order, so that applying the file back is an `unchanged`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from engine.schemas import load_schema

HEADER = "# Apply with: declic engagements apply FILE\n"


def engagement_yaml(engagements: Iterable[Mapping[str, Any]]) -> str:
    """Return engagements as YAML documents (one per engagement), in the schema's key order."""
    order = list(load_schema("engagement")["properties"])
    documents = [
        yaml.safe_dump(
            _ordered(engagement, order),
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=100,
        )
        for engagement in engagements
    ]
    return HEADER + "---\n".join(documents)


def _ordered(engagement: Mapping[str, Any], order: list[str]) -> dict[str, Any]:
    known = {key: engagement[key] for key in order if key in engagement}
    return {**known, **{key: value for key, value in engagement.items() if key not in known}}
