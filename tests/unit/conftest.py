"""Shared fixtures for the pure-core unit tests: the spec's test vectors, kept inside the repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.core.encoding import unpadded_b64decode
from homeserver.core.signing import SigningKey, signing_key_from_seed

DATA = Path(__file__).parent / "data"


def load_vectors() -> dict[str, Any]:
    with open(DATA / "spec_vectors.json", encoding="utf-8") as f:
        return json.load(f)


VECTORS = load_vectors()


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return VECTORS


@pytest.fixture(scope="session")
def spec_key() -> SigningKey:
    """The signing key of the spec's cryptographic test vectors (server "domain", key "ed25519:1")."""
    sk = VECTORS["signing_key"]
    return signing_key_from_seed(unpadded_b64decode(sk["seed_unpadded_base64"]), sk["key_id"].split(":")[1])
