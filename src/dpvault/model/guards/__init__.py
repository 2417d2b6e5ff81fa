"""guards: resource guards, a vault's resource guard proxy, and the rules of multi-user authorization."""
