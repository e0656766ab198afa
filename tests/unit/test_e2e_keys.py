"""core.e2e_keys: device, one-time and cross-signing key checks, and the backup replacement rule."""

from __future__ import annotations

import pytest

from homeserver.core.e2e_keys import (
    KeyCheckError,
    check_cross_signing_key,
    check_device_keys,
    check_one_time_key,
    has_valid_signature,
    same_signed_content,
    should_replace_backup_key,
    split_key_id,
)
from tests.e2ee_fakes import FakeDevice, cross_signing_set

USER, DEVICE = "@alice:example.org", "DEV1"


def test_good_device_keys_return_the_ed25519_key() -> None:
    dev = FakeDevice(USER, DEVICE)
    assert check_device_keys(dev.device_keys(), USER, DEVICE) == dev.ed25519


@pytest.mark.parametrize("mutate, errcode", [
    (lambda d: {**d, "user_id": "@mallory:example.org"}, "M_INVALID_PARAM"),
    (lambda d: {**d, "device_id": "OTHER"}, "M_INVALID_PARAM"),
    (lambda d: {**d, "algorithms": "x"}, "M_BAD_JSON"),
    (lambda d: {**d, "keys": {"ed25519:DEV1": "short"}}, "M_BAD_JSON"),
    (lambda d: {**d, "signatures": {}}, "M_INVALID_SIGNATURE"),
    (lambda d: {**d, "algorithms": ["changed"]}, "M_INVALID_SIGNATURE"),
])
def test_bad_device_keys(mutate: object, errcode: str) -> None:
    dev = FakeDevice(USER, DEVICE)
    with pytest.raises(KeyCheckError) as e:
        check_device_keys(mutate(dev.device_keys()), USER, DEVICE)  # type: ignore[operator]
    assert e.value.errcode == errcode


def test_unsigned_fields_do_not_matter() -> None:
    dev = FakeDevice(USER, DEVICE)
    keys = {**dev.device_keys(), "unsigned": {"device_display_name": "phone"}}
    check_device_keys(keys, USER, DEVICE)
    assert same_signed_content(keys, dev.device_keys() | {"keys": keys["keys"]})


def test_one_time_keys() -> None:
    dev = FakeDevice(USER, DEVICE)
    (kid, value), = dev.one_time_keys(1).items()
    assert check_one_time_key(kid, value, USER, DEVICE, dev.ed25519) == ("signed_curve25519", "K0000")
    assert check_one_time_key("curve25519:A", "abc", USER, DEVICE, None) == ("curve25519", "A")
    with pytest.raises(KeyCheckError):
        check_one_time_key(kid, value, USER, DEVICE, FakeDevice(USER, DEVICE).ed25519)
    with pytest.raises(KeyCheckError):
        check_one_time_key(kid, "bare-string", USER, DEVICE, dev.ed25519)
    (fid, fvalue), = dev.fallback_keys().items()
    check_one_time_key(fid, fvalue, USER, DEVICE, dev.ed25519, fallback=True)
    with pytest.raises(KeyCheckError):
        check_one_time_key(kid, value, USER, DEVICE, dev.ed25519, fallback=True)  # lacks fallback: true
    with pytest.raises(KeyCheckError):
        split_key_id("no-colon")


def test_cross_signing_keys() -> None:
    master, ssk, _, body = cross_signing_set(USER)
    assert check_cross_signing_key(body["master_key"], USER, "master") == master.public
    assert check_cross_signing_key(body["self_signing_key"], USER, "self_signing") == ssk.public
    assert has_valid_signature(body["self_signing_key"], USER, f"ed25519:{master.public}", master.public)
    assert not has_valid_signature(ssk.unsigned_object(), USER, f"ed25519:{master.public}", master.public)
    with pytest.raises(KeyCheckError):
        check_cross_signing_key(body["master_key"], USER, "self_signing")
    with pytest.raises(KeyCheckError):
        check_cross_signing_key({**body["master_key"], "keys": {"ed25519:abc": master.public}}, USER, "master")
    with pytest.raises(KeyCheckError):
        check_cross_signing_key(body["master_key"], "@bob:example.org", "master")


def _k(fmi: int, fc: int, verified: bool) -> dict[str, object]:
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified}


@pytest.mark.parametrize("current, new, replace", [
    (None, _k(9, 9, False), True),
    (_k(0, 0, False), _k(9, 9, True), True),
    (_k(0, 0, True), _k(0, 0, False), False),
    (_k(5, 0, False), _k(4, 9, False), True),
    (_k(5, 0, False), _k(6, 0, False), False),
    (_k(5, 2, False), _k(5, 1, False), True),
    (_k(5, 2, False), _k(5, 2, False), False),
])
def test_backup_replacement_rule(current: object, new: dict[str, object], replace: bool) -> None:
    assert should_replace_backup_key(current, new) is replace  # type: ignore[arg-type]
