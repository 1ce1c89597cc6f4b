"""The secretd daemon: server, scopes, sources, resolver and masker."""
