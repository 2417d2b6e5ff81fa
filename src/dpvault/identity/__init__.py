"""Identity: the server's token-signing key, bearer-token issue and validation, and TLS material."""
