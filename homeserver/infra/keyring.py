"""The server's own signing keys, kept in a file in the data directory."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from homeserver.core.signing import (
    SigningKey,
    format_signing_key_file,
    generate_signing_key,
    parse_signing_key_file,
)

log = logging.getLogger(__name__)


def load_or_create_signing_key(path: Path) -> SigningKey:
    """The first key of the file, generating the file (mode 0600) on first use."""
    if path.exists():
        keys = parse_signing_key_file(path.read_text())
        if not keys:
            raise ValueError(f"{path} holds no signing key")
        return keys[0]
    key = generate_signing_key("a_" + secrets.token_hex(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(format_signing_key_file([key]))
    tmp.chmod(0o600)
    tmp.replace(path)
    log.info("generated a signing key in %s", path)
    return key
