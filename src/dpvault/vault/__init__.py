"""The vault: recovery points as the datastore holds them, and their lifecycle.

- ``format``: the vault format (docs/design/vault-format.md): where a recovery point's objects live
  (keys), its manifest, and the format number readers check;
- ``points``: the one owner of recovery points' lifecycle -- intend, record, retire, purge, verify,
  sweep. It is the only caller of ``Datastore.delete``: retention, instance and resource-group
  deletes and failed backups all go through it, so soft delete and immutability have one place to go.
"""
