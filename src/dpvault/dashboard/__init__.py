"""The web dashboard at ``/dashboard``: vaults, backup instances, jobs and recovery-point timelines of
one tenant, for people (Azure's Backup center, on the same server as the API).

Server-rendered HTML (Jinja2 templates in ``templates/``) and one small script (``static/``) that
refreshes the open page's content in place: pages work without JavaScript, every number comes
from the same renderers the API uses, and no asset comes from anywhere but this server. Sign-in
and sessions: ``signin.py``.
"""
