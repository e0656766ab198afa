"""Test doubles for E2EE clients: real ed25519 keys (PyNaCl) that sign like a Matrix client."""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.core.encoding import unpadded_b64encode
from homeserver.core.signing import SigningKey, sign_json


def random_curve25519() -> str:
    return unpadded_b64encode(secrets.token_bytes(32))


class FakeDevice:
    """A device's ed25519 identity key and the signed objects a client would upload."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.key = SigningKey(secrets.token_bytes(32), device_id)
        self.ed25519 = unpadded_b64encode(bytes(self.key.verify_key))

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return sign_json(obj, self.user_id, self.key)

    def device_keys(self) -> dict[str, Any]:
        return self.sign({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{self.device_id}": random_curve25519(), f"ed25519:{self.device_id}": self.ed25519},
        })

    def one_time_keys(self, n: int, start: int = 0) -> dict[str, Any]:
        return {f"signed_curve25519:K{i:04d}": self.sign({"key": random_curve25519()}) for i in range(start, start + n)}

    def fallback_keys(self, ident: str = "F0001") -> dict[str, Any]:
        return {f"signed_curve25519:{ident}": self.sign({"key": random_curve25519(), "fallback": True})}


class FakeCrossSigningKey:
    def __init__(self, user_id: str, usage: str) -> None:
        self.user_id = user_id
        self.usage = usage
        seed = secrets.token_bytes(32)
        pub = unpadded_b64encode(bytes(SigningKey(seed, "x").verify_key))
        self.public = pub
        self.key = SigningKey(seed, pub)

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return sign_json(obj, self.user_id, self.key)

    def unsigned_object(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "usage": [self.usage], "keys": {f"ed25519:{self.public}": self.public}}


def cross_signing_set(user_id: str) -> tuple[FakeCrossSigningKey, FakeCrossSigningKey, FakeCrossSigningKey, dict[str, Any]]:
    """Master, self-signing and user-signing keys and the device_signing/upload body for them."""
    master = FakeCrossSigningKey(user_id, "master")
    ssk = FakeCrossSigningKey(user_id, "self_signing")
    usk = FakeCrossSigningKey(user_id, "user_signing")
    body = {
        "master_key": master.unsigned_object(),
        "self_signing_key": master.sign(ssk.unsigned_object()),
        "user_signing_key": master.sign(usk.unsigned_object()),
    }
    return master, ssk, usk, body
