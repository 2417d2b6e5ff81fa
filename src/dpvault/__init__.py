"""dpvault: a self-hostable service that speaks Azure's Microsoft.DataProtection ARM API.

Layers import one way, top to bottom (docs/design/architecture.md; tests/unit/test_layering.py):
``runtime``/``app``/``cli`` (composition) -> ``resources`` (ARM handlers) -> ``protection`` (the core)
-> ``jobs`` (durable queue) -> ``vault`` (recovery points) -> ``engines`` and ``datastores`` (the two
ports) -> ``model`` (spec Structs, rules, records of work) -> ``services``/``identity``/``secrets`` ->
``store`` (state) -> ``arm`` (protocol) -> ``types``/``clock``/``errors``/``settings``.
"""

__version__ = "0.1.0"
