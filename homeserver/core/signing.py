"""Ed25519 server signing keys, signed JSON and event signatures.

Appendices § Signing JSON and § Checking for a Signature; server-server API
§ Signing Events. Key files are parsed from and formatted to text here; reading
and writing the file itself belongs to ``infra``.
"""

from __future__ import annotations

import secrets
from typing import Any

import nacl.exceptions
import nacl.signing

from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.encoding import unpadded_b64decode, unpadded_b64encode
from homeserver.core.hashing import add_content_hash
from homeserver.core.identifiers import get_domain
from homeserver.core.redaction import prune_event_dict
from homeserver.core.room_versions import EventFormat, RoomVersion

__all__ = [
    "ED25519",
    "SignatureError",
    "SigningKey",
    "VerifyKey",
    "decode_verify_key",
    "format_signing_key_file",
    "generate_signing_key",
    "hash_and_sign_event",
    "key_id",
    "parse_signing_key_file",
    "servers_required_to_sign",
    "sign_event",
    "sign_json",
    "signing_key_from_seed",
    "verify_event_signature",
    "verify_key_base64",
    "verify_signed_json",
]

ED25519 = "ed25519"

VerifyKey = nacl.signing.VerifyKey


class SignatureError(Exception):
    """A signature is missing, malformed or does not verify."""


class SigningKey(nacl.signing.SigningKey):
    """An ed25519 signing key with the key version that names it (``ed25519:<version>``)."""

    def __init__(self, seed: bytes, version: str) -> None:
        super().__init__(seed)
        self.version = version
        self.alg = ED25519

    @property
    def key_id(self) -> str:
        return f"{self.alg}:{self.version}"

    @property
    def seed(self) -> bytes:
        return bytes(self)

    def __repr__(self) -> str:
        # Never print the seed.
        return f"<SigningKey {self.key_id} {verify_key_base64(self)}>"


def signing_key_from_seed(seed: bytes, version: str) -> SigningKey:
    if len(seed) != 32:
        raise ValueError("an ed25519 seed is 32 bytes")
    return SigningKey(seed, version)


def generate_signing_key(version: str) -> SigningKey:
    """A fresh random key. The version is free text; it must not contain ':' or whitespace."""
    _check_version(version)
    return SigningKey(secrets.token_bytes(32), version)


def _check_version(version: str) -> None:
    # A version with whitespace would not survive the key file format, and
    # one with ':' would make key IDs ambiguous.
    if not version or any(c.isspace() or c == ":" for c in version):
        raise ValueError(f"bad key version: {version!r}")


def key_id(signing_key: SigningKey) -> str:
    return signing_key.key_id


def verify_key_base64(signing_key: SigningKey | nacl.signing.SigningKey) -> str:
    """The public key as unpadded base64, as published by ``/_matrix/key/v2/server``."""
    return unpadded_b64encode(bytes(signing_key.verify_key))


def decode_verify_key(key_b64: str) -> VerifyKey:
    """A public key from its unpadded base64 form; ``ValueError`` if it is not one."""
    raw = unpadded_b64decode(key_b64)
    if len(raw) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    return VerifyKey(raw)


def parse_signing_key_file(text: str) -> list[SigningKey]:
    """Parse the signing key file format Synapse uses: ``ed25519 <version> <base64 seed>`` per line.

    Blank lines are skipped; anything else malformed raises ``ValueError``.
    """
    keys: list[SigningKey] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] != ED25519:
            raise ValueError(f"signing key file line {lineno}: expected 'ed25519 <version> <seed>'")
        _, version, seed_b64 = parts
        try:
            seed = unpadded_b64decode(seed_b64)
            keys.append(signing_key_from_seed(seed, version))
        except ValueError as e:
            raise ValueError(f"signing key file line {lineno}: {e}") from None
    return keys


def format_signing_key_file(keys: list[SigningKey]) -> str:
    """The key file text for ``keys``, one line each, newline-terminated."""
    return "".join(f"{k.alg} {k.version} {unpadded_b64encode(k.seed)}\n" for k in keys)


def _signable_bytes(obj: dict[str, Any]) -> bytes:
    return encode_canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def _copy_signatures(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # Two levels deep, so adding a signature never changes the caller's dicts.
    old = obj.get("signatures")
    if not isinstance(old, dict):
        return {}
    return {name: dict(sigs) if isinstance(sigs, dict) else sigs for name, sigs in old.items()}


def sign_json(obj: dict[str, Any], server_name: str, signing_key: SigningKey) -> dict[str, Any]:
    """A copy of ``obj`` with this key's signature added under ``signatures[server_name]``.

    The signature covers the canonical JSON of ``obj`` without ``signatures``
    and ``unsigned``; existing signatures, and ``unsigned``, are kept.
    """
    signature = signing_key.sign(_signable_bytes(obj)).signature
    signatures = _copy_signatures(obj)
    server_sigs = signatures.get(server_name)
    if not isinstance(server_sigs, dict):
        server_sigs = signatures[server_name] = {}
    server_sigs[signing_key.key_id] = unpadded_b64encode(signature)
    return {**obj, "signatures": signatures}


def _signature_bytes(obj: dict[str, Any], server_name: str, key_id: str) -> bytes:
    signatures = obj.get("signatures")
    if not isinstance(signatures, dict):
        raise SignatureError("object has no signatures")
    server_sigs = signatures.get(server_name)
    if not isinstance(server_sigs, dict):
        raise SignatureError(f"no signatures from {server_name}")
    sig_b64 = server_sigs.get(key_id)
    if not isinstance(sig_b64, str):
        raise SignatureError(f"no signature from {server_name} with key {key_id}")
    try:
        sig = unpadded_b64decode(sig_b64)
    except ValueError:
        raise SignatureError(f"signature from {server_name} {key_id} is not base64") from None
    if len(sig) != 64:
        raise SignatureError(f"signature from {server_name} {key_id} has the wrong length")
    return sig


def verify_signed_json(obj: dict[str, Any], server_name: str, key_id: str, verify_key: VerifyKey) -> None:
    """Check ``server_name``'s signature with ``key_id`` on ``obj``; raise ``SignatureError`` if bad."""
    sig = _signature_bytes(obj, server_name, key_id)
    try:
        verify_key.verify(_signable_bytes(obj), sig)
    except nacl.exceptions.BadSignatureError:
        raise SignatureError(f"signature from {server_name} {key_id} does not verify") from None


def sign_event(
    pdu: dict[str, Any], server_name: str, signing_key: SigningKey, room_version: RoomVersion
) -> dict[str, Any]:
    """A copy of ``pdu`` with a signature over its redacted form added.

    The content hash must already be in ``pdu`` (see :func:`hash_and_sign_event`):
    it is what lets the signature, which covers only the essential keys,
    vouch for the rest.
    """
    redacted = prune_event_dict(pdu, room_version)
    signed = sign_json(redacted, server_name, signing_key)
    return {**pdu, "signatures": signed["signatures"]}


def hash_and_sign_event(
    pdu: dict[str, Any], server_name: str, signing_key: SigningKey, room_version: RoomVersion
) -> dict[str, Any]:
    """Add the content hash, then sign: the whole outgoing-event procedure of the spec."""
    return sign_event(add_content_hash(pdu), server_name, signing_key, room_version)


def verify_event_signature(
    pdu: dict[str, Any], server_name: str, key_id: str, verify_key: VerifyKey, room_version: RoomVersion
) -> None:
    """Check one server's signature on an event (over its redacted form); raise ``SignatureError``.

    This does not check the content hash: a redacted copy of an event still
    carries a valid signature. Use ``check_content_hash`` for that.
    """
    verify_signed_json(prune_event_dict(pdu, room_version), server_name, key_id, verify_key)


def servers_required_to_sign(pdu: dict[str, Any], room_version: RoomVersion) -> set[str]:
    """The servers whose signatures an event must carry (server-server API § Validating
    hashes and signatures): the sender's server, and in rooms v1/v2 also the server
    named in the event ID.

    Not covered here, because the auth rules own them: the signature of the
    authorising server of a restricted join (``join_authorised_via_users_server``)
    and the third-party invite case.
    """
    servers: set[str] = set()
    sender = pdu.get("sender")
    if isinstance(sender, str) and (domain := get_domain(sender)) is not None:
        servers.add(domain)
    if room_version.event_format == EventFormat.V1:
        event_id = pdu.get("event_id")
        if isinstance(event_id, str) and (domain := get_domain(event_id)) is not None:
            servers.add(domain)
    return servers
