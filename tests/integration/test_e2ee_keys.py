"""End-to-end encryption keys over real HTTP: upload, query, claim, cross-signing, signatures,
device-list changes, and refusal of bad input (nothing stored)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from homeserver.core.tokens import SyncToken
from tests.conftest import auth_header, register
from tests.e2ee_fakes import FakeDevice, cross_signing_set

V3 = "/_matrix/client/v3"


async def login_user(client: httpx.AsyncClient, name: str) -> tuple[dict[str, Any], dict[str, str], FakeDevice]:
    acct = await register(client, name)
    return acct, auth_header(acct["access_token"]), FakeDevice(acct["user_id"], acct["device_id"])


async def query(client: httpx.AsyncClient, h: dict[str, str], *users: str) -> dict[str, Any]:
    r = await client.post(f"{V3}/keys/query", headers=h, json={"device_keys": {u: [] for u in users}})
    assert r.status_code == 200, r.text
    return r.json()


async def test_upload_query_and_counts(client: httpx.AsyncClient, server: Any) -> None:
    alice, ah, adev = await login_user(client, "alice")
    bob, bh, _ = await login_user(client, "bob")
    dk = adev.device_keys()
    body = {"device_keys": dk, "one_time_keys": adev.one_time_keys(5), "fallback_keys": adev.fallback_keys()}
    r = await client.post(f"{V3}/keys/upload", headers=ah, json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"one_time_key_counts": {"signed_curve25519": 5}}
    # Re-uploading the same keys changes nothing.
    r = await client.post(f"{V3}/keys/upload", headers=ah, json=body)
    assert r.json() == {"one_time_key_counts": {"signed_curve25519": 5}}
    # An empty upload reports the counts.
    r = await client.post(f"{V3}/keys/upload", headers=ah, json={})
    assert r.json() == {"one_time_key_counts": {"signed_curve25519": 5}}

    result = await query(client, bh, alice["user_id"], "@nobody:localhost")
    got = result["device_keys"][alice["user_id"]][alice["device_id"]]
    assert {k: v for k, v in got.items() if k != "unsigned"} == dk
    assert result["device_keys"]["@nobody:localhost"] == {}
    assert result["failures"] == {}
    # Only the devices asked for.
    r = await client.post(f"{V3}/keys/query", headers=bh, json={"device_keys": {alice["user_id"]: ["OTHER"]}})
    assert r.json()["device_keys"][alice["user_id"]] == {}

    e2ee = server.services.e2ee
    assert await e2ee.one_time_key_counts(alice["user_id"], alice["device_id"]) == {"signed_curve25519": 5}
    assert await e2ee.unused_fallback_key_types(alice["user_id"], alice["device_id"]) == ["signed_curve25519"]
    assert await e2ee.one_time_key_counts(bob["user_id"], bob["device_id"]) == {"signed_curve25519": 0}


async def test_one_time_key_id_reused_with_other_content_is_refused(client: httpx.AsyncClient) -> None:
    _, ah, adev = await login_user(client, "alice")
    r = await client.post(f"{V3}/keys/upload", headers=ah, json={"device_keys": adev.device_keys(),
                                                                  "one_time_keys": adev.one_time_keys(2)})
    assert r.status_code == 200
    r = await client.post(f"{V3}/keys/upload", headers=ah, json={"one_time_keys": adev.one_time_keys(3)})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await client.post(f"{V3}/keys/upload", headers=ah, json={})
    assert r.json()["one_time_key_counts"] == {"signed_curve25519": 2}


async def test_bad_keys_are_refused_and_nothing_is_stored(client: httpx.AsyncClient, server: Any) -> None:
    alice, ah, adev = await login_user(client, "alice")
    _, bh, _ = await login_user(client, "bob")
    uid, did = alice["user_id"], alice["device_id"]

    def tampered(obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "algorithms": ["m.megolm.v1.aes-sha2"]}

    other = FakeDevice("@bob:localhost", did)
    other_device = FakeDevice(uid, "NOTMINE")
    unsigned = {k: v for k, v in adev.device_keys().items() if k != "signatures"}
    no_curve = adev.sign({"user_id": uid, "device_id": did, "algorithms": [],
                          "keys": {f"ed25519:{did}": adev.ed25519}})
    cases = [
        ({"device_keys": tampered(adev.device_keys())}, "M_INVALID_SIGNATURE"),
        ({"device_keys": unsigned}, "M_INVALID_SIGNATURE"),
        ({"device_keys": other.device_keys()}, "M_INVALID_PARAM"),
        ({"device_keys": other_device.device_keys()}, "M_INVALID_PARAM"),
        ({"device_keys": no_curve}, "M_BAD_JSON"),
        ({"device_keys": "nope"}, "M_BAD_JSON"),
        ({"device_keys": {**adev.device_keys(), "keys": []}}, "M_BAD_JSON"),
        # Good device keys, but one bad one-time key: the whole upload is refused.
        ({"device_keys": adev.device_keys(),
          "one_time_keys": {**adev.one_time_keys(2), "signed_curve25519:BAD": {"key": "abc", "signatures": {}}}},
         "M_INVALID_SIGNATURE"),
        ({"device_keys": adev.device_keys(),
          "one_time_keys": {"signed_curve25519:X": other_device.sign({"key": "abc"})}}, "M_INVALID_SIGNATURE"),
        ({"device_keys": adev.device_keys(), "one_time_keys": {"nocolon": "abc"}}, "M_BAD_JSON"),
        ({"device_keys": adev.device_keys(), "one_time_keys": []}, "M_BAD_JSON"),
        ({"device_keys": adev.device_keys(),
          "fallback_keys": {"signed_curve25519:F": adev.sign({"key": "abc"})}}, "M_BAD_JSON"),  # no fallback: true
        # One-time keys before any device keys: nothing to check their signatures against.
        ({"one_time_keys": adev.one_time_keys(1)}, "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        r = await client.post(f"{V3}/keys/upload", headers=ah, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["errcode"] == errcode, (body, r.text)
    result = await query(client, bh, uid)
    assert result["device_keys"][uid] == {}
    e2ee = server.services.e2ee
    assert await e2ee.one_time_key_counts(uid, did) == {"signed_curve25519": 0}
    assert await e2ee.unused_fallback_key_types(uid, did) == []
    r = await client.post(f"{V3}/keys/upload", headers=ah, content=b"{not json")
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    r = await client.post(f"{V3}/keys/upload", json={})
    assert r.status_code == 401


async def test_concurrent_claims_hand_out_each_key_once_then_the_fallback(
    client: httpx.AsyncClient, server: Any
) -> None:
    alice, ah, adev = await login_user(client, "alice")
    uid, did = alice["user_id"], alice["device_id"]
    otks = adev.one_time_keys(10)
    fallback = adev.fallback_keys()
    r = await client.post(f"{V3}/keys/upload", headers=ah,
                          json={"device_keys": adev.device_keys(), "one_time_keys": otks, "fallback_keys": fallback})
    assert r.status_code == 200
    claimers = [await login_user(client, f"claimer{i}") for i in range(4)]

    async def sync_keys() -> tuple[dict[str, int], list[str]]:
        r = await client.get(f"{V3}/sync", headers=ah)
        body = r.json()
        return body["device_one_time_keys_count"], body["device_unused_fallback_key_types"]

    # Syncs keep the counts in memory; every claim must still show in the next sync.
    assert await sync_keys() == ({"signed_curve25519": 10}, ["signed_curve25519"])

    async def claim(i: int) -> dict[str, Any]:
        h = claimers[i % len(claimers)][1]
        body = {"one_time_keys": {uid: {did: "signed_curve25519"}}}
        async with server.client() as c:
            r = await c.post(f"{V3}/keys/claim", headers=h, json=body)
        assert r.status_code == 200, r.text
        return r.json()["one_time_keys"][uid][did]

    results, *_ = await asyncio.gather(asyncio.gather(*(claim(i) for i in range(20))),
                                       *(sync_keys() for _ in range(5)))
    handed = [kid for res in results for kid in res]
    otk_claims = [k for k in handed if k in otks]
    assert sorted(otk_claims) == sorted(otks), "every one-time key exactly once"
    fallback_claims = [res for res in results if next(iter(res)) in fallback]
    assert len(fallback_claims) == 10
    for res in fallback_claims:
        assert res == fallback
    for res in results:
        kid, value = next(iter(res.items()))
        if kid in otks:
            assert value == otks[kid]
    e2ee = server.services.e2ee
    assert await e2ee.one_time_key_counts(uid, did) == {"signed_curve25519": 0}
    assert await e2ee.unused_fallback_key_types(uid, did) == []
    assert await sync_keys() == ({"signed_curve25519": 0}, [])
    # A new fallback key is unused again.
    r = await client.post(f"{V3}/keys/upload", headers=ah, json={"fallback_keys": adev.fallback_keys("F0002")})
    assert r.status_code == 200
    assert await e2ee.unused_fallback_key_types(uid, did) == ["signed_curve25519"]
    assert await sync_keys() == ({"signed_curve25519": 0}, ["signed_curve25519"])
    r = await client.post(f"{V3}/keys/upload", headers=ah, json={"one_time_keys": adev.one_time_keys(3, start=100)})
    assert r.status_code == 200, r.text
    assert await sync_keys() == ({"signed_curve25519": 3}, ["signed_curve25519"])
    # Unknown devices and algorithms give nothing.
    r = await client.post(f"{V3}/keys/claim", headers=ah,
                          json={"one_time_keys": {uid: {"NOPE": "signed_curve25519", did: "other_alg"}}})
    assert r.json() == {"one_time_keys": {}, "failures": {}}


async def test_cross_signing_and_signatures(client: httpx.AsyncClient) -> None:
    alice, ah, adev = await login_user(client, "alice")
    _, bh, bdev = await login_user(client, "bob")
    auid = alice["user_id"]
    adk = adev.device_keys()
    assert (await client.post(f"{V3}/keys/upload", headers=ah, json={"device_keys": adk})).status_code == 200
    assert (await client.post(f"{V3}/keys/upload", headers=bh, json={"device_keys": bdev.device_keys()})).status_code == 200

    _, ssk, _, body = cross_signing_set(auid)
    # Self-signing key not signed by the master key: refused, nothing stored.
    bad = {**body, "self_signing_key": ssk.unsigned_object()}
    r = await client.post(f"{V3}/keys/device_signing/upload", headers=ah, json=bad)
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_SIGNATURE", r.text
    assert (await query(client, bh, auid))["master_keys"] == {}
    # Only a self-signing key, with no master key anywhere.
    r = await client.post(f"{V3}/keys/device_signing/upload", headers=ah,
                          json={"self_signing_key": body["self_signing_key"]})
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    # The first upload needs no UIA (spec v1.11), nor does repeating it.
    for _ in range(2):
        r = await client.post(f"{V3}/keys/device_signing/upload", headers=ah, json=body)
        assert r.status_code == 200, r.text
    # Replacing keys does.
    _, _, _, body2 = cross_signing_set(auid)
    r = await client.post(f"{V3}/keys/device_signing/upload", headers=ah, json=body2)
    assert r.status_code == 401 and "session" in r.json()
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": auid},
            "password": "wrong", "session": r.json()["session"]}
    r = await client.post(f"{V3}/keys/device_signing/upload", headers=ah, json={**body2, "auth": auth})
    assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"
    assert (await query(client, bh, auid))["master_keys"][auid]["keys"] == body["master_key"]["keys"]
    r = await client.post(f"{V3}/keys/device_signing/upload", headers=ah,
                          json={**body2, "auth": {**auth, "password": "correct horse"}})
    assert r.status_code == 200, r.text
    body = body2

    seen_by_bob = await query(client, bh, auid)
    assert seen_by_bob["master_keys"][auid] == body["master_key"]
    assert seen_by_bob["self_signing_keys"][auid] == body["self_signing_key"]
    assert seen_by_bob["user_signing_keys"] == {}
    seen_by_alice = await query(client, ah, auid)
    assert seen_by_alice["user_signing_keys"][auid] == body["user_signing_key"]



async def test_signature_upload_round_trip(client: httpx.AsyncClient) -> None:
    alice, ah, adev = await login_user(client, "alice")
    bob, bh, bdev = await login_user(client, "bob")
    auid, buid, adid = alice["user_id"], bob["user_id"], alice["device_id"]
    adk = adev.device_keys()
    await client.post(f"{V3}/keys/upload", headers=ah, json={"device_keys": adk})
    await client.post(f"{V3}/keys/upload", headers=bh, json={"device_keys": bdev.device_keys()})
    amaster, assk, ausk, abody = cross_signing_set(auid)
    bmaster, _, _, bbody = cross_signing_set(buid)
    assert (await client.post(f"{V3}/keys/device_signing/upload", headers=ah, json=abody)).status_code == 200
    assert (await client.post(f"{V3}/keys/device_signing/upload", headers=bh, json=bbody)).status_code == 200

    signed_device = assk.sign({k: v for k, v in adk.items() if k != "signatures"})
    signed_master = adev.sign(abody["master_key"])
    signed_bob = ausk.sign(bbody["master_key"])
    wrong_content = assk.sign({**{k: v for k, v in adk.items() if k != "signatures"}, "algorithms": []})
    r = await client.post(f"{V3}/keys/signatures/upload", headers=ah, json={
        auid: {adid: signed_device, amaster.public: signed_master, "UNKNOWN": signed_device},
        buid: {bmaster.public: signed_bob, "nope": signed_bob},
    })
    assert r.status_code == 200, r.text
    failures = r.json()["failures"]
    assert set(failures) == {auid, buid}
    assert set(failures[auid]) == {"UNKNOWN"} and set(failures[buid]) == {"nope"}
    r = await client.post(f"{V3}/keys/signatures/upload", headers=ah, json={auid: {adid: wrong_content}})
    assert r.json()["failures"][auid][adid]["errcode"] == "M_INVALID_PARAM"
    # A signature made with some other key but labelled as the self-signing key.
    impostor = cross_signing_set(auid)[1]
    forged = impostor.sign({k: v for k, v in adk.items() if k != "signatures"})
    forged["signatures"] = {auid: {f"ed25519:{assk.public}": forged["signatures"][auid][f"ed25519:{impostor.public}"]}}
    r = await client.post(f"{V3}/keys/signatures/upload", headers=ah, json={auid: {adid: forged}})
    assert r.json()["failures"][auid][adid]["errcode"] == "M_INVALID_SIGNATURE"

    seen_by_bob = await query(client, bh, auid, buid)
    dev_sigs = seen_by_bob["device_keys"][auid][adid]["signatures"][auid]
    assert dev_sigs[f"ed25519:{assk.public}"] == signed_device["signatures"][auid][f"ed25519:{assk.public}"]
    assert dev_sigs[f"ed25519:{adid}"] == adk["signatures"][auid][f"ed25519:{adid}"]
    assert f"ed25519:{adid}" in seen_by_bob["master_keys"][auid]["signatures"][auid]
    # Alice's user-signing signature on Bob's master key is only shown to Alice.
    assert auid not in seen_by_bob["master_keys"][buid].get("signatures", {})
    seen_by_alice = await query(client, ah, buid)
    assert f"ed25519:{ausk.public}" in seen_by_alice["master_keys"][buid]["signatures"][auid]


async def test_device_list_changes_for_room_mates(client: httpx.AsyncClient, server: Any) -> None:
    alice, ah, _ = await login_user(client, "alice")
    bob, bh, _ = await login_user(client, "bob")
    carol, _, _ = await login_user(client, "carol")
    auid, buid, cuid = alice["user_id"], bob["user_id"], carol["user_id"]
    e2ee = server.services.e2ee
    notifier = server.services.notifier

    r = await client.post(f"{V3}/createRoom", headers=ah, json={"preset": "public_chat"})
    room_id = r.json()["room_id"]
    before_join = notifier.current_token()
    assert (await client.post(f"{V3}/join/{room_id}", headers=bh, json={})).status_code == 200
    after_join = notifier.current_token()
    assert after_join.is_after(before_join)
    # Bob started sharing a room with Alice: he is "changed" for her, and she for him.
    assert (await e2ee.device_list_changes(auid, before_join, after_join))["changed"] == [buid]
    assert (await e2ee.device_list_changes(buid, before_join, after_join))["changed"] == [auid]

    # Bob logs in on a new device and uploads its keys.
    r = await client.post(f"{V3}/login", json={"type": "m.login.password", "password": "correct horse",
                                               "identifier": {"type": "m.id.user", "user": "bob"}})
    new = r.json()
    newdev = FakeDevice(buid, new["device_id"])
    since = notifier.current_token()
    r = await client.post(f"{V3}/keys/upload", headers=auth_header(new["access_token"]),
                          json={"device_keys": newdev.device_keys()})
    assert r.status_code == 200
    upto = notifier.current_token()
    assert upto.device_lists > since.device_lists
    assert await e2ee.device_list_changes(auid, since, upto) == {"changed": [buid], "left": []}
    # Carol shares no room with Bob: nothing for her.
    assert await e2ee.device_list_changes(cuid, since, upto) == {"changed": [], "left": []}
    # The same through /keys/changes.
    r = await client.get(f"{V3}/keys/changes", headers=ah, params={"from": since.encode(), "to": upto.encode()})
    assert r.status_code == 200 and r.json() == {"changed": [buid], "left": []}
    r = await client.get(f"{V3}/keys/changes", headers=ah, params={"from": "garbage", "to": upto.encode()})
    assert r.status_code == 400

    # Deleting the device is a change too, and its keys go.
    since = notifier.current_token()
    r = await client.post(f"{V3}/logout", headers=auth_header(new["access_token"]))
    assert r.status_code == 200
    upto = notifier.current_token()
    assert (await e2ee.device_list_changes(auid, since, upto))["changed"] == [buid]
    assert new["device_id"] not in (await query(client, ah, buid))["device_keys"][buid]

    # Bob leaves: Alice no longer shares a room with him.
    since = notifier.current_token()
    assert (await client.post(f"{V3}/rooms/{room_id}/leave", headers=bh, json={})).status_code == 200
    upto = notifier.current_token()
    assert await e2ee.device_list_changes(auid, since, upto) == {"changed": [], "left": [buid]}
    assert await e2ee.device_list_changes(buid, since, upto) == {"changed": [], "left": [auid]}
    assert upto.device_lists == (await e2ee.max_positions())[1]
    assert SyncToken.decode(upto.encode()) == upto


async def test_new_device_appears_in_sync_device_lists(client: httpx.AsyncClient) -> None:
    _, ah, _ = await login_user(client, "alice")
    bob, bh, _ = await login_user(client, "bob")
    r = await client.post(f"{V3}/createRoom", headers=ah, json={"preset": "public_chat"})
    room_id = r.json()["room_id"]
    since = (await client.get(f"{V3}/sync", headers=ah, params={"timeout": "0"})).json()["next_batch"]
    assert (await client.post(f"{V3}/join/{room_id}", headers=bh, json={})).status_code == 200
    r = await client.get(f"{V3}/sync", headers=ah, params={"since": since, "timeout": "0"})
    assert r.json()["device_lists"]["changed"] == [bob["user_id"]]
    since = r.json()["next_batch"]

    r = await client.post(f"{V3}/login", json={"type": "m.login.password", "password": "correct horse",
                                               "identifier": {"type": "m.id.user", "user": "bob"}})
    new = r.json()
    dev = FakeDevice(bob["user_id"], new["device_id"])
    r = await client.post(f"{V3}/keys/upload", headers=auth_header(new["access_token"]),
                          json={"device_keys": dev.device_keys()})
    assert r.status_code == 200
    r = await client.get(f"{V3}/sync", headers=ah, params={"since": since, "timeout": "5000"})
    assert r.json()["device_lists"] == {"changed": [bob["user_id"]], "left": []}
