"""A stand-in for a HashiCorp Vault server that implements the KV version 2 read API.

No Vault server can be installed on the test machines, so the Vault source is
tested against this one. It implements only what the source uses, as Vault's
API documentation describes it (https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2):

- ``GET /v1/<mount>/data/<path>`` with the token in ``X-Vault-Token`` returns
  ``{"data": {"data": {field: value, …}, "metadata": {…}}, …}``;
- a missing or wrong token gets 403 with ``{"errors": ["permission denied"]}``;
- a path with no secret gets 404 with ``{"errors": []}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .loopback import Reply, Request

__all__ = ["FakeVault"]


@dataclass
class FakeVault:
    """Secrets by mount and path, readable with one token."""

    token: str
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def put(self, mount: str, path: str, data: dict[str, str]) -> None:
        self.secrets[(mount, path)] = data

    def route(self, request: Request) -> Reply:
        """Return Vault's reply to a KV version 2 read."""
        if request.headers.get("x-vault-token") != self.token:
            return _json_reply(403, {"errors": ["permission denied"]})
        prefix, _, rest = request.path.partition("/v1/")
        mount, separator, path = rest.partition("/data/")
        if prefix or not separator or (mount, path) not in self.secrets:
            return _json_reply(404, {"errors": []})
        body = {
            "request_id": "00000000-0000-0000-0000-000000000000",
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {
                "data": self.secrets[(mount, path)],
                "metadata": {
                    "created_time": "2024-01-01T00:00:00.000000Z",
                    "custom_metadata": None,
                    "deletion_time": "",
                    "destroyed": False,
                    "version": 1,
                },
            },
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
        return _json_reply(200, body)


def _json_reply(status: int, body: object) -> Reply:
    return Reply(status, json.dumps(body).encode(), content_type="application/json")
