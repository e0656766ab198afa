"""Checking the keys clients publish for end-to-end encryption (CS API § End-to-End Encryption).

Pure functions over plain JSON values: the shape of device keys, one-time and
fallback keys and cross-signing keys, and their ed25519 signatures (Appendices
§ Signing JSON: canonical JSON without ``signatures`` and ``unsigned``). A
check that fails raises :class:`KeyCheckError` carrying the Matrix error code the
API should answer with; nothing here does I/O.

The server never trusts what it cannot verify: device keys must be signed by
their own ed25519 key, signed one-time and fallback keys by the device's
ed25519 key, self-signing and user-signing keys by the master key.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.encoding import unpadded_b64decode
from homeserver.core.signing import SignatureError, decode_verify_key, verify_signed_json

__all__ = [
    "CROSS_SIGNING_USAGES",
    "KeyCheckError",
    "check_cross_signing_key",
    "check_device_keys",
    "check_one_time_key",
    "device_ed25519_key",
    "has_valid_signature",
    "same_signed_content",
    "should_replace_backup_key",
    "split_key_id",
    "strip_signatures",
]

CROSS_SIGNING_USAGES = ("master", "self_signing", "user_signing")
MAX_KEY_ID_LEN = 255


class KeyCheckError(ValueError):
    def __init__(self, errcode: str, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message


def _bad(message: str) -> KeyCheckError:
    return KeyCheckError("M_BAD_JSON", message)


def _invalid_signature(message: str) -> KeyCheckError:
    return KeyCheckError("M_INVALID_SIGNATURE", message)


def split_key_id(key_id: str) -> tuple[str, str]:
    """``"signed_curve25519:AAAAHQ"`` -> ``("signed_curve25519", "AAAAHQ")``; ``KeyCheckError`` if malformed."""
    if not isinstance(key_id, str) or len(key_id) > MAX_KEY_ID_LEN:
        raise _bad(f"bad key ID {key_id!r}")
    algorithm, sep, ident = key_id.partition(":")
    if not sep or not algorithm or not ident:
        raise _bad(f"key ID {key_id!r} must be '<algorithm>:<id>'")
    return algorithm, ident


def strip_signatures(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def same_signed_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True if the two objects are equal apart from ``signatures`` and ``unsigned``."""
    return strip_signatures(a) == strip_signatures(b)


def _is_ed25519_public_key(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(unpadded_b64decode(value)) == 32
    except ValueError:
        return False


def has_valid_signature(obj: dict[str, Any], signer: str, key_id: str, public_key_b64: str) -> bool:
    """True if ``obj`` carries a good signature by ``signer`` with ``key_id`` (``ed25519:...``)."""
    try:
        verify_signed_json(obj, signer, key_id, decode_verify_key(public_key_b64))
    except (SignatureError, ValueError):
        return False
    return True


def device_ed25519_key(device_keys: dict[str, Any], device_id: str) -> str | None:
    keys = device_keys.get("keys")
    if not isinstance(keys, dict):
        return None
    value = keys.get(f"ed25519:{device_id}")
    return value if isinstance(value, str) else None


def check_device_keys(obj: Any, user_id: str, device_id: str) -> str:
    """Check a ``device_keys`` upload for ``user_id``'s ``device_id``; return its ed25519 key.

    The object must name this user and device, list its algorithms, carry an
    ed25519 and a curve25519 key for the device, and be signed by that ed25519 key.
    """
    if not isinstance(obj, dict):
        raise _bad("'device_keys' must be an object")
    if obj.get("user_id") != user_id:
        raise KeyCheckError("M_INVALID_PARAM", "'device_keys.user_id' must be the uploading user")
    if obj.get("device_id") != device_id:
        raise KeyCheckError("M_INVALID_PARAM", "'device_keys.device_id' must be the uploading device")
    algorithms = obj.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise _bad("'device_keys.algorithms' must be a list of strings")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise _bad("'device_keys.keys' must map key IDs to strings")
    for kid in keys:
        split_key_id(kid)
    ed_key = keys.get(f"ed25519:{device_id}")
    if not _is_ed25519_public_key(ed_key):
        raise _bad(f"'device_keys.keys' needs a valid 'ed25519:{device_id}' key")
    if not isinstance(keys.get(f"curve25519:{device_id}"), str):
        raise _bad(f"'device_keys.keys' needs a 'curve25519:{device_id}' key")
    if not isinstance(obj.get("signatures", {}), dict):
        raise _bad("'device_keys.signatures' must be an object")
    assert isinstance(ed_key, str)
    if not has_valid_signature(obj, user_id, f"ed25519:{device_id}", ed_key):
        raise _invalid_signature("The device keys are not signed by the device's ed25519 key")
    return ed_key


def check_one_time_key(
    key_id: str, value: Any, user_id: str, device_id: str, device_ed25519: str | None, *, fallback: bool = False
) -> tuple[str, str]:
    """Check one one-time (or fallback) key; return ``(algorithm, id)``.

    Keys of a ``signed_*`` algorithm are objects with a ``key`` and a signature
    by the device's ed25519 key; other algorithms (plain ``curve25519``) may be
    bare strings. Fallback keys are always signed objects with ``fallback: true``.
    """
    algorithm, ident = split_key_id(key_id)
    signed = algorithm.startswith("signed_") or fallback
    if not signed:
        if isinstance(value, str) and value:
            return algorithm, ident
        if not isinstance(value, dict):
            raise _bad(f"one-time key {key_id!r} must be a string or an object")
    if not isinstance(value, dict) or not isinstance(value.get("key"), str) or not value["key"]:
        raise _bad(f"key {key_id!r} must be an object with a 'key' string")
    if fallback and value.get("fallback") is not True:
        raise _bad(f"fallback key {key_id!r} must carry 'fallback: true'")
    if device_ed25519 is None:
        raise KeyCheckError("M_INVALID_PARAM", "Upload the device keys before signed one-time keys")
    if not has_valid_signature(value, user_id, f"ed25519:{device_id}", device_ed25519):
        raise _invalid_signature(f"key {key_id!r} is not signed by the device's ed25519 key")
    return algorithm, ident


def check_cross_signing_key(obj: Any, user_id: str, usage: str) -> str:
    """Check the shape of a cross-signing key of ``usage``; return its public key (unpadded base64)."""
    if not isinstance(obj, dict):
        raise _bad(f"the {usage} key must be an object")
    if obj.get("user_id") != user_id:
        raise KeyCheckError("M_INVALID_PARAM", f"the {usage} key must belong to {user_id}")
    usages = obj.get("usage")
    if not isinstance(usages, list) or usage not in usages or not all(isinstance(u, str) for u in usages):
        raise KeyCheckError("M_INVALID_PARAM", f"the {usage} key must list {usage!r} in 'usage'")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise KeyCheckError("M_INVALID_PARAM", f"the {usage} key must contain exactly one key")
    ((kid, public),) = keys.items()
    algorithm, ident = split_key_id(kid)
    if algorithm != "ed25519" or ident != public or not _is_ed25519_public_key(public):
        raise KeyCheckError("M_INVALID_PARAM", f"the {usage} key must be 'ed25519:<key>': <key>")
    if not isinstance(obj.get("signatures", {}), dict):
        raise _bad(f"the {usage} key's 'signatures' must be an object")
    return str(public)


def should_replace_backup_key(current: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether an uploaded backup key replaces the stored one for the same session (CS API
    § Server-side key backups): a verified key beats an unverified one; then the lower
    ``first_message_index`` wins; then the lower ``forwarded_count``. A tie keeps the stored key.
    """
    if current is None:
        return True
    if bool(current["is_verified"]) != bool(new["is_verified"]):
        return bool(new["is_verified"])
    if new["first_message_index"] != current["first_message_index"]:
        return bool(new["first_message_index"] < current["first_message_index"])
    return bool(new["forwarded_count"] < current["forwarded_count"])
