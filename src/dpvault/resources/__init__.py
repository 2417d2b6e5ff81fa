"""Resource types of Microsoft.DataProtection (and the minimal Microsoft.Resources stubs they live in).

Each resource type has a folder: ``schema.py`` mirrors the 2023-01-01 spec as msgspec Structs,
``rules.py`` holds the decisions about them, ``handlers.py`` answers the ARM routes.
"""
