"""A vault's backupResourceGuardProxies (the link to a resource guard) and the multi-user
authorization checks of critical operations (``mua``)."""
