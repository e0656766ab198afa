"""Content hashes, reference hashes, event IDs, signing keys, signed JSON and signed events."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from homeserver.core.encoding import unpadded_b64decode, unpadded_b64encode, urlsafe_b64encode
from homeserver.core.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    reference_hash_base64,
    room_id_for_create_event,
)
from homeserver.core.redaction import prune_event_dict
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.core.signing import (
    SignatureError,
    SigningKey,
    decode_verify_key,
    format_signing_key_file,
    generate_signing_key,
    hash_and_sign_event,
    key_id,
    parse_signing_key_file,
    servers_required_to_sign,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_key_base64,
    verify_signed_json,
)
from tests.unit.conftest import VECTORS

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())
PRE_V11 = [v for v in ALL_VERSIONS if int(v.identifier) < 11]
V11_UP = [v for v in ALL_VERSIONS if int(v.identifier) >= 11]
RV = KNOWN_ROOM_VERSIONS
JSON_CASES = VECTORS["json_signing"]["cases"]
EVENT_CASES = VECTORS["event_signing"]["cases"]


def vid(v: RoomVersion) -> str:
    return f"v{v.identifier}"


# -- signing keys ---------------------------------------------------------------


def test_spec_key_derives_expected_public_key(spec_key: SigningKey) -> None:
    assert verify_key_base64(spec_key) == VECTORS["signing_key"]["derived_ed25519_public_key_unpadded_base64"]
    assert key_id(spec_key) == spec_key.key_id == "ed25519:1"


def test_generate_signing_key() -> None:
    k = generate_signing_key("a_1")
    assert k.key_id == "ed25519:a_1"
    assert len(k.seed) == 32
    assert generate_signing_key("a_1").seed != k.seed
    assert k.seed.hex() not in repr(k) and unpadded_b64encode(k.seed) not in repr(k)
    for bad in ("", "a b", "a:b", "a\n"):
        with pytest.raises(ValueError):
            generate_signing_key(bad)


def test_key_file_round_trip(spec_key: SigningKey) -> None:
    text = format_signing_key_file([spec_key])
    # The spec writes the seed as "...XA1", whose last character carries
    # non-zero padding bits; decoding accepts it, encoding gives the
    # canonical "...XA0" for the same 32 bytes.
    assert text == "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n"
    assert parse_signing_key_file(f"ed25519 1 {VECTORS['signing_key']['seed_unpadded_base64']}")[0].seed == (
        spec_key.seed
    )
    (parsed,) = parse_signing_key_file(text)
    assert parsed.seed == spec_key.seed and parsed.version == "1"

    two = generate_signing_key("auto")
    parsed_two = parse_signing_key_file("\n" + format_signing_key_file([spec_key, two]) + "\n\n")
    assert [(k.version, k.seed) for k in parsed_two] == [("1", spec_key.seed), ("auto", two.seed)]
    # Synapse writes the seed unpadded; a padded seed is read too.
    assert parse_signing_key_file(f"ed25519 x {unpadded_b64encode(two.seed)}=")[0].seed == two.seed


@pytest.mark.parametrize(
    "text",
    [
        "ed25519 1",
        "ed25519 1 seed extra",
        "curve25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1",
        "ed25519 1 not!base64",
        "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW",  # too short for a seed
    ],
)
def test_key_file_rejects_bad_lines(text: str) -> None:
    with pytest.raises(ValueError):
        parse_signing_key_file(text)


def test_decode_verify_key(spec_key: SigningKey) -> None:
    vk = decode_verify_key(verify_key_base64(spec_key))
    assert bytes(vk) == bytes(spec_key.verify_key)
    with pytest.raises(ValueError):
        decode_verify_key("AAAA")


# -- signed JSON ----------------------------------------------------------------


@pytest.mark.parametrize("case", JSON_CASES, ids=range(len(JSON_CASES)))
def test_json_signing_vectors(case: dict[str, Any], spec_key: SigningKey) -> None:
    original = copy.deepcopy(case["input"])
    signed = sign_json(case["input"], "domain", spec_key)
    assert signed == case["expected_signed"]
    assert case["input"] == original  # the input is not modified
    verify_signed_json(case["expected_signed"], "domain", "ed25519:1", spec_key.verify_key)


def test_signing_details_example_is_well_formed() -> None:
    # The spec's "Signing Details" object is illustrative: its signature was
    # not made with the key it shows, so only its shape is checked here.
    obj = VECTORS["signing_details_example"]["object"]
    decode_verify_key(obj["signing_keys"]["ed25519:1"])
    assert len(unpadded_b64decode(obj["signatures"]["example.org"]["ed25519:1"])) == 64


def test_sign_json_keeps_other_signatures_and_unsigned(spec_key: SigningKey) -> None:
    other = generate_signing_key("2")
    obj = {"a": 1, "unsigned": {"age": 5}, "signatures": {"elsewhere": {"ed25519:x": "sig"}}}
    once = sign_json(obj, "domain", spec_key)
    twice = sign_json(once, "domain", other)
    assert twice["unsigned"] == {"age": 5}
    assert twice["signatures"]["elsewhere"] == {"ed25519:x": "sig"}
    assert set(twice["signatures"]["domain"]) == {"ed25519:1", "ed25519:2"}
    assert "domain" not in obj["signatures"] and set(once["signatures"]["domain"]) == {"ed25519:1"}
    # Signatures and unsigned are not covered: the first signature still verifies.
    verify_signed_json(twice, "domain", "ed25519:1", spec_key.verify_key)
    verify_signed_json(twice, "domain", "ed25519:2", other.verify_key)
    # Same signature as signing the bare object.
    assert once["signatures"]["domain"] == sign_json({"a": 1}, "domain", spec_key)["signatures"]["domain"]


def test_verify_signed_json_failures(spec_key: SigningKey) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, "domain", spec_key)
    vk = spec_key.verify_key
    with pytest.raises(SignatureError):
        verify_signed_json({**signed, "one": 2}, "domain", "ed25519:1", vk)
    with pytest.raises(SignatureError):
        verify_signed_json({**signed, "three": 3}, "domain", "ed25519:1", vk)
    with pytest.raises(SignatureError):
        verify_signed_json(signed, "domain", "ed25519:1", generate_signing_key("x").verify_key)
    with pytest.raises(SignatureError):
        verify_signed_json(signed, "other", "ed25519:1", vk)
    with pytest.raises(SignatureError):
        verify_signed_json(signed, "domain", "ed25519:2", vk)
    with pytest.raises(SignatureError):
        verify_signed_json({"one": 1, "two": "Two"}, "domain", "ed25519:1", vk)
    for bad_sig in ("!!!", "AAAA", 12):
        with pytest.raises(SignatureError):
            verify_signed_json(
                {**signed, "signatures": {"domain": {"ed25519:1": bad_sig}}}, "domain", "ed25519:1", vk
            )
    # A padded signature is still accepted: decoders take both forms.
    sig = signed["signatures"]["domain"]["ed25519:1"]
    padded = {**signed, "signatures": {"domain": {"ed25519:1": sig + "=="}}}
    verify_signed_json(padded, "domain", "ed25519:1", vk)


# -- content hash -------------------------------------------------------------------


@pytest.mark.parametrize("case", EVENT_CASES, ids=range(len(EVENT_CASES)))
def test_content_hash_vectors(case: dict[str, Any]) -> None:
    expected = case["expected_signed"]["hashes"]["sha256"]
    assert unpadded_b64encode(compute_content_hash(case["input"])) == expected
    hashed = add_content_hash(case["input"])
    assert hashed["hashes"] == {"sha256": expected}
    assert check_content_hash(hashed)
    assert check_content_hash(case["expected_signed"])


def test_content_hash_by_hand() -> None:
    pdu = {"type": "X", "content": {"b": 1, "a": "é"}, "unsigned": {"age": 1}, "signatures": {}, "hashes": {}}
    expected = hashlib.sha256('{"content":{"a":"é","b":1},"type":"X"}'.encode()).digest()
    assert compute_content_hash(pdu) == expected


def test_content_hash_detects_changes() -> None:
    pdu = add_content_hash({"type": "m.room.message", "content": {"body": "hi"}, "sender": "@a:b"})
    assert check_content_hash(pdu)
    assert not check_content_hash({**pdu, "content": {"body": "ho"}})
    assert not check_content_hash({**pdu, "extra": 1})
    # unsigned and signatures are outside the hash
    assert check_content_hash({**pdu, "unsigned": {"age": 9}, "signatures": {"x": {}}})
    assert not check_content_hash({k: v for k, v in pdu.items() if k != "hashes"})
    assert not check_content_hash({**pdu, "hashes": {"sha256": "not base64!"}})
    assert not check_content_hash({**pdu, "hashes": {"sha256": 5}})
    assert not check_content_hash({**pdu, "hashes": "x"})


def test_add_content_hash_keeps_other_algorithms_and_input() -> None:
    pdu = {"type": "X", "content": {}, "hashes": {"sha512": "keep"}}
    out = add_content_hash(pdu)
    assert out["hashes"]["sha512"] == "keep" and "sha256" in out["hashes"]
    assert pdu["hashes"] == {"sha512": "keep"}


# -- signed events -------------------------------------------------------------------


@pytest.mark.parametrize("rv", PRE_V11, ids=vid)
@pytest.mark.parametrize("case", EVENT_CASES, ids=range(len(EVENT_CASES)))
def test_event_signing_vectors_pre_v11(case: dict[str, Any], rv: RoomVersion, spec_key: SigningKey) -> None:
    original = copy.deepcopy(case["input"])
    signed = hash_and_sign_event(case["input"], "domain", spec_key, rv)
    assert signed == case["expected_signed"]
    assert case["input"] == original
    verify_event_signature(case["expected_signed"], "domain", "ed25519:1", spec_key.verify_key, rv)


@pytest.mark.parametrize("rv", V11_UP, ids=vid)
@pytest.mark.parametrize("case", EVENT_CASES, ids=range(len(EVENT_CASES)))
def test_event_signing_vectors_v11_strip_origin(
    case: dict[str, Any], rv: RoomVersion, spec_key: SigningKey
) -> None:
    # The vectors carry a top-level "origin", which v11+ redaction strips
    # before signing: same content hash, a different (but valid) signature.
    signed = hash_and_sign_event(case["input"], "domain", spec_key, rv)
    assert signed["hashes"] == case["expected_signed"]["hashes"]
    assert signed["signatures"] != case["expected_signed"]["signatures"]
    verify_event_signature(signed, "domain", "ed25519:1", spec_key.verify_key, rv)
    with pytest.raises(SignatureError):
        verify_event_signature(case["expected_signed"], "domain", "ed25519:1", spec_key.verify_key, rv)


def _message_event(rv: RoomVersion) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "content": {"body": "hello", "msgtype": "m.text"},
        "prev_events": [],
        "auth_events": [],
        "depth": 4,
        "origin_server_ts": 1000000,
    }
    if rv.identifier in ("1", "2"):
        pdu["event_id"] = "$abc:domain"
    return add_content_hash(pdu)


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=vid)
def test_event_signature_survives_redaction_but_not_tampering(rv: RoomVersion, spec_key: SigningKey) -> None:
    signed = sign_event(_message_event(rv), "domain", spec_key, rv)
    vk = spec_key.verify_key
    verify_event_signature(signed, "domain", "ed25519:1", vk, rv)
    # A redacted copy still verifies (the signature covers only essential keys)...
    redacted = prune_event_dict(signed, rv)
    verify_event_signature(redacted, "domain", "ed25519:1", vk, rv)
    # ...but its content hash no longer matches, which is how redaction is detected.
    assert check_content_hash(signed) and not check_content_hash(redacted)
    # Changing the content changes no signature but breaks the hash.
    changed = {**signed, "content": {"body": "evil"}}
    verify_event_signature(changed, "domain", "ed25519:1", vk, rv)
    assert not check_content_hash(changed)
    # Changing an essential key or the hash itself breaks the signature.
    for tampered in (
        {**signed, "sender": "@evil:domain"},
        {**signed, "depth": 5},
        {**signed, "hashes": {"sha256": unpadded_b64encode(b"\0" * 32)}},
    ):
        with pytest.raises(SignatureError):
            verify_event_signature(tampered, "domain", "ed25519:1", vk, rv)
    # unsigned is outside everything.
    verify_event_signature({**signed, "unsigned": {"age": 1}}, "domain", "ed25519:1", vk, rv)


# -- reference hashes and event IDs ------------------------------------------------------


def test_reference_hash_by_hand() -> None:
    rv = RV["4"]
    pdu = {
        "type": "m.room.message",
        "content": {"body": "gone after redaction"},
        "hashes": {"sha256": "abc"},
        "signatures": {"domain": {"ed25519:1": "sig"}},
        "unsigned": {"age": 1},
        "depth": 1,
        "custom": "dropped",
    }
    expected = hashlib.sha256(b'{"content":{},"depth":1,"hashes":{"sha256":"abc"},"type":"m.room.message"}')
    assert compute_reference_hash(pdu, rv) == expected.digest()
    assert reference_hash_base64(pdu, rv) == unpadded_b64encode(expected.digest())
    assert compute_event_id(pdu, rv) == "$" + urlsafe_b64encode(expected.digest())
    assert compute_event_id(pdu, RV["3"]) == "$" + unpadded_b64encode(expected.digest())


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=vid)
def test_event_id_format_and_stability(rv: RoomVersion, spec_key: SigningKey) -> None:
    pdu = _message_event(rv)
    signed = sign_event(pdu, "domain", spec_key, rv)
    eid = compute_event_id(signed, rv)
    if rv.identifier in ("1", "2"):
        assert eid == "$abc:domain"
    else:
        assert eid.startswith("$") and len(eid) == 44
        alphabet_extra = "+/" if rv.identifier == "3" else "-_"
        assert all(c.isalnum() or c in alphabet_extra for c in eid[1:])
        # Signatures, unsigned data and redaction do not change the event ID...
        assert compute_event_id(pdu, rv) == eid
        assert compute_event_id({**signed, "unsigned": {"age": 3}}, rv) == eid
        assert compute_event_id(prune_event_dict(signed, rv), rv) == eid
        # ...the content does, through the content hash.
        assert compute_event_id(add_content_hash({**pdu, "content": {"body": "x"}}), rv) != eid


def test_v1_event_id_requires_field() -> None:
    with pytest.raises(ValueError):
        compute_event_id({"type": "X"}, RV["1"])


def test_room_id_for_create_event(spec_key: SigningKey) -> None:
    rv = RV["12"]
    create = add_content_hash(
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": "@u:domain",
            "content": {"room_version": "12"},
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": 1,
        }
    )
    create = sign_event(create, "domain", spec_key, rv)
    room_id = room_id_for_create_event(create, rv)
    assert room_id == "!" + compute_event_id(create, rv)[1:]
    assert room_id == "!" + urlsafe_b64encode(compute_reference_hash(create, rv))
    with pytest.raises(ValueError):
        room_id_for_create_event(create, RV["11"])
    with pytest.raises(ValueError):
        room_id_for_create_event({**create, "type": "m.room.message"}, rv)


def test_servers_required_to_sign() -> None:
    pdu = {"sender": "@a:one.example", "event_id": "$e:two.example", "type": "X"}
    assert servers_required_to_sign(pdu, RV["1"]) == {"one.example", "two.example"}
    assert servers_required_to_sign(pdu, RV["2"]) == {"one.example", "two.example"}
    assert servers_required_to_sign(pdu, RV["3"]) == {"one.example"}
    assert servers_required_to_sign({**pdu, "event_id": "$e:one.example"}, RV["1"]) == {"one.example"}
    assert servers_required_to_sign({"type": "X"}, RV["10"]) == set()
