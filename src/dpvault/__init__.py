"""dpvault: a self-hostable service that speaks Azure's Microsoft.DataProtection ARM API.

Requests flow one way: ``arm`` (protocol) -> ``resources`` (rules and handlers) -> ``store``
(state) -> ``jobs`` (durable background work) -> ``protection`` (engines) -> ``datastores``
(where backup bytes live).
"""

__version__ = "0.1.0"
