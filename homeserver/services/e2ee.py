"""End-to-end encryption: publishing, querying and claiming keys, cross-signing, to-device
messages and device-list tracking (CS API § End-to-End Encryption, § Send-to-Device messaging).

The server never sees plaintext; it stores, hands out and relays what clients
sign, after checking the signatures it can check (``core.e2e_keys``). Two
streams come from here: ``to_device`` (a per-device inbox) and ``device_lists``
(which users' devices or cross-signing keys changed). After each commit the
position is published on the bus; ``/sync`` reads them through
:meth:`to_device_for_sync`, :meth:`device_list_changes`,
:meth:`one_time_key_counts` and :meth:`unused_fallback_key_types`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from homeserver import errors
from homeserver.core.canonical_json import dumps_compact
from homeserver.core.e2e_keys import (
    CROSS_SIGNING_USAGES,
    KeyCheckError,
    check_cross_signing_key,
    check_device_keys,
    check_one_time_key,
    device_ed25519_key,
    has_valid_signature,
    same_signed_content,
    split_key_id,
)
from homeserver.core.identifiers import get_domain, is_valid_user_id
from homeserver.core.tokens import SyncToken
from homeserver.infra.batch import BatchLoader
from homeserver.infra.bus import LocalBus, StreamUpdate
from homeserver.infra.guarded_cache import GuardedCache
from homeserver.services.auth import Requester, now_ms
from homeserver.services.notifier import Notifier
from homeserver.services.stream_cache import EventStreamCache
from homeserver.services.uia import PASSWORD, UIAService
from homeserver.storage.database import Database
from homeserver.storage.e2ee import E2EEStore

log = logging.getLogger(__name__)

MAX_ONE_TIME_KEYS_PER_UPLOAD = 1000
MAX_TO_DEVICE_MESSAGES = 10_000


def _key_error(e: KeyCheckError) -> errors.MatrixError:
    return errors.MatrixError(400, e.errcode, e.message)


def _as_object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.bad_json(f"'{name}' must be an object")
    return value


class E2EEService:
    def __init__(self, db: Database, store: E2EEStore, uia: UIAService, bus: LocalBus, server_name: str) -> None:
        self.db = db
        self.store = store
        self.uia = uia
        self.bus = bus
        self.server_name = server_name
        # Set by the wiring once they exist: which streams moved for a user, and the newest events.
        self.notifier: Notifier | None = None
        self.stream_cache: EventStreamCache | None = None
        self._key_counts: BatchLoader[tuple[str, str], tuple[dict[str, int], list[str]]] = BatchLoader(
            store.key_counts_for, lambda: ({}, [])
        )
        # (user, device) -> its key counts, as every sync reports them; dropped by every key write.
        self._key_count_cache: GuardedCache[tuple[str, str], tuple[dict[str, int], list[str]]] = GuardedCache()

    def _is_local(self, user_id: str) -> bool:
        return get_domain(user_id) == self.server_name

    @contextlib.contextmanager
    def _keys_changing(self, user_id: str, device_ids: Iterable[str]) -> Iterator[None]:
        """Around every write of one-time or fallback keys: the cached counts of those devices go."""
        cache = self._key_count_cache
        writes = [((user_id, d), cache.begin_write((user_id, d))) for d in device_ids]
        try:
            yield
        finally:
            for scope, token in writes:
                cache.end_write(scope, token)
                cache.invalidate(scope)

    # -- streams (the contract with /sync) --------------------------------------------
    async def max_positions(self) -> tuple[int, int]:
        """(to_device, device_lists): the current positions, for the notifier's start token."""
        return await self.store.max_positions()

    async def to_device_for_sync(
        self, user_id: str, device_id: str, since: int, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """Acknowledge (delete) this device's messages up to ``since``; return the next ones
        and the position of the last returned (``since`` if none)."""
        rows = await self.store.to_device_inbox(user_id, device_id, since, limit)
        messages = [{"type": r["type"], "sender": r["sender"], "content": json.loads(r["content"])} for r in rows]
        return messages, (rows[-1]["stream_id"] if rows else since)

    async def device_list_changes(self, user_id: str, since: SyncToken, upto: SyncToken) -> dict[str, list[str]]:
        """``{"changed": [...], "left": [...]}`` for a sync from ``since`` to ``upto``.

        changed: users sharing a room with ``user_id`` whose devices or keys changed
        in (since.device_lists, upto.device_lists], and users who began sharing a
        room with ``user_id`` in (since.events, upto.events]. left: users with whom
        ``user_id`` no longer shares any room after a membership change in that range.
        Sharing is judged on current membership (upto is "now" for a sync).
        """
        changed: set[str] = set()
        if upto.device_lists > since.device_lists:
            changed = await self.store.device_list_changes_seen_by(user_id, since.device_lists, upto.device_lists)
        left: set[str] = set()
        if upto.events > since.events:
            rows = await self.store.membership_changes_around(user_id, since.events, upto.events)
            candidates: set[str] = set()
            own_rooms: set[str] = set()
            for r in rows:
                if r["membership"] not in ("join", "leave", "ban"):
                    continue  # invites and knocks start or end no sharing of a joined room
                if r["state_key"] == user_id:
                    own_rooms.add(r["room_id"])
                elif r["state_key"]:
                    candidates.add(r["state_key"])
            if own_rooms:
                # The user joined or left these rooms: all of their members may have come or gone.
                candidates |= await self.store.joined_members(sorted(own_rooms))
            candidates.discard(user_id)
            if candidates:
                sharing = await self.store.users_sharing_a_room_with(user_id)
                for other in candidates:
                    (changed if other in sharing else left).add(other)
        changed -= left
        return {"changed": sorted(changed), "left": sorted(left)}

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self.store.count_one_time_keys(user_id, device_id)
        # Clients (and Synapse) expect the count of signed_curve25519 even when it is zero.
        counts.setdefault("signed_curve25519", 0)
        return counts

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        return await self.store.unused_fallback_key_types(user_id, device_id)

    async def add_to_sync(
        self, requester: Requester, since: SyncToken | None, now: SyncToken, next_token: SyncToken,
        response: dict[str, Any],
    ) -> SyncToken:
        """The SyncService extension hook: add to_device, device_lists and the key counts.

        The to_device position of the next token is that of the last message
        handed out, so a sync repeated with the same token gets the same messages
        and one with the next token acknowledges (deletes) them.
        """
        user_id, device_id = requester.user_id, requester.device_id
        since_to_device = since.to_device if since else 0
        position = since_to_device
        if since is None or self.notifier is None or self.notifier.moved_for(user_id, "to_device", since_to_device):
            # (With nothing new, the acknowledged messages are dropped on the next delivery.)
            messages, position = await self.to_device_for_sync(user_id, device_id, since_to_device)
            if messages:
                response["to_device"] = {"events": messages}
        if since is not None and self._device_lists_may_have_changed(user_id, since, now):
            changes = await self.device_list_changes(user_id, since, now)
            if changes["changed"] or changes["left"]:
                response["device_lists"] = changes
        key = (user_id, device_id)
        cached = self._key_count_cache.get(key)
        if cached is None:
            mark = self._key_count_cache.read_mark(key)
            cached = await self._key_counts.load(key)
            self._key_count_cache.put(key, cached, key, mark)
        counts, fallback_types = cached
        counts = dict(counts)
        counts.setdefault("signed_curve25519", 0)
        response["device_one_time_keys_count"] = counts
        response["device_unused_fallback_key_types"] = list(fallback_types)
        return next_token.with_stream("to_device", position)

    def _device_lists_may_have_changed(self, user_id: str, since: SyncToken, now: SyncToken) -> bool:
        """False only when neither a key change nor a membership change can concern this user."""
        notifier, cache = self.notifier, self.stream_cache
        if notifier is None or cache is None:
            return now.device_lists > since.device_lists or now.events > since.events
        if notifier.moved_for(user_id, "device_lists", since.device_lists):
            return True
        if now.events <= since.events:
            return False
        if cache.user_membership_changed_after(user_id, since.events):
            return True
        rows = cache.user_memberships(user_id, now.events)
        if rows is None:
            return True
        changed = cache.member_changes_after([r["room_id"] for r in rows if r["membership"] == "join"], since.events)
        return changed is None or changed

    async def _device_lists_changed(self, conn: Any, user_id: str) -> int:
        return await self.store.add_device_list_change(conn, user_id)

    async def _publish_device_list(self, user_id: str, position: int) -> None:
        users = await self.store.users_sharing_a_room_with(user_id)
        local = frozenset(u for u in users if self._is_local(u))
        await self.bus.publish(StreamUpdate("device_lists", position, users=local))

    # -- /keys/upload -----------------------------------------------------------------
    async def upload_keys(self, who: Requester, body: dict[str, Any]) -> dict[str, Any]:
        user_id, device_id = who.user_id, who.device_id
        device_keys = body.get("device_keys")
        one_time_keys = _as_object(body, "one_time_keys")
        fallback_keys = _as_object(body, "fallback_keys")
        if len(one_time_keys) > MAX_ONE_TIME_KEYS_PER_UPLOAD:
            raise errors.too_large(f"at most {MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys per upload")

        # Check everything before storing anything: a bad key refuses the whole upload.
        device_keys_json: str | None = None
        ed_key: str | None = None
        try:
            if device_keys is not None:
                ed_key = check_device_keys(device_keys, user_id, device_id)
                device_keys_json = dumps_compact(device_keys)
            elif one_time_keys or fallback_keys:
                ed_key = await self._stored_ed25519(who)
            otks = [
                (*check_one_time_key(kid, v, user_id, device_id, ed_key), dumps_compact(v))
                for kid, v in one_time_keys.items()
            ]
            fallbacks = [
                (*check_one_time_key(kid, v, user_id, device_id, ed_key, fallback=True), dumps_compact(v))
                for kid, v in fallback_keys.items()
            ]
        except KeyCheckError as e:
            raise _key_error(e) from None
        if len({alg for alg, _, _ in fallbacks}) != len(fallbacks):
            raise errors.invalid_param("at most one fallback key per algorithm")

        position = None
        with self._keys_changing(user_id, [device_id]):
            async with self.db.transaction() as conn:
                if not await self.store.device_exists(conn, user_id, device_id):
                    raise errors.not_found("Unknown device")
                if device_keys_json is not None and await self.store.set_device_keys(
                    conn, user_id, device_id, device_keys_json, now_ms()
                ):
                    position = await self._device_lists_changed(conn, user_id)
                if otks:
                    existing = await self.store.existing_one_time_keys(
                        conn, user_id, device_id, [a for a, _, _ in otks], [i for _, i, _ in otks]
                    )
                    new = []
                    for alg, ident, text in otks:
                        old = existing.get((alg, ident))
                        if old is None:
                            new.append((alg, ident, text))
                        elif old != text:
                            # As Synapse: a key ID is never reused for a different key.
                            raise errors.invalid_param(f"one-time key {alg}:{ident} already exists with different content")
                    await self.store.add_one_time_keys(conn, user_id, device_id, new, now_ms())
                for alg, ident, text in fallbacks:
                    await self.store.set_fallback_key(conn, user_id, device_id, alg, ident, text)
                counts = await self.store.count_one_time_keys(user_id, device_id, conn)
        if position is not None:
            await self._publish_device_list(user_id, position)
        counts.setdefault("signed_curve25519", 0)
        return {"one_time_key_counts": counts}

    async def _stored_ed25519(self, who: Requester) -> str | None:
        keys = await self.store.get_device_keys(who.user_id, who.device_id)
        return device_ed25519_key(keys, who.device_id) if keys else None

    # -- /keys/query -----------------------------------------------------------------
    async def query_keys(self, who: Requester, body: dict[str, Any]) -> dict[str, Any]:
        wanted = _as_object(body, "device_keys")
        local: dict[str, list[str]] = {}
        failures: dict[str, Any] = {}
        for user_id, devices in wanted.items():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise errors.bad_json("'device_keys' must map user IDs to lists of device IDs")
            if not is_valid_user_id(user_id):
                continue
            if self._is_local(user_id):
                local[user_id] = devices
            else:
                # Federation is not there yet: say which servers could not be asked.
                server = get_domain(user_id) or user_id
                failures[server] = {"status": 503, "message": "Federation is not supported yet"}
        users = sorted(local)
        rows = await self.store.device_keys_for_users(users)
        xsign = await self.store.cross_signing_keys(users)
        sigs = await self.store.signatures_on(users)
        device_keys: dict[str, dict[str, Any]] = {u: {} for u in users}
        for r in rows:
            wanted_devices = local[r["user_id"]]
            if wanted_devices and r["device_id"] not in wanted_devices:
                continue
            keys = json.loads(r["key_json"])
            keys.setdefault("unsigned", {})
            if isinstance(keys["unsigned"], dict) and r["display_name"] is not None:
                keys["unsigned"]["device_display_name"] = r["display_name"]
            device_keys[r["user_id"]][r["device_id"]] = keys
        master_keys: dict[str, Any] = {}
        self_signing: dict[str, Any] = {}
        user_signing: dict[str, Any] = {}
        for user_id, kinds in xsign.items():
            if "master" in kinds:
                master_keys[user_id] = kinds["master"][1]
            if "self_signing" in kinds:
                self_signing[user_id] = kinds["self_signing"][1]
            if "user_signing" in kinds and user_id == who.user_id:
                user_signing[user_id] = kinds["user_signing"][1]
        for s in sigs:
            target_user, target_key = s["target_user_id"], s["target_key_id"]
            signer = s["signer_user_id"]
            # Signatures one user makes on another's master key (with the user-signing key)
            # are only shown to the signer, as Synapse does.
            if signer != target_user and signer != who.user_id:
                continue
            obj = device_keys.get(target_user, {}).get(target_key)
            if obj is None:
                master = master_keys.get(target_user)
                if master is not None and xsign[target_user]["master"][0] == target_key:
                    obj = master
            if obj is None:
                continue
            obj.setdefault("signatures", {}).setdefault(signer, {})[s["signer_key_id"]] = s["signature"]
        return {
            "device_keys": device_keys,
            "master_keys": master_keys,
            "self_signing_keys": self_signing,
            "user_signing_keys": user_signing,
            "failures": failures,
        }

    # -- /keys/claim -------------------------------------------------------------------
    async def claim_keys(self, who: Requester, body: dict[str, Any]) -> dict[str, Any]:
        wanted = _as_object(body, "one_time_keys")
        requests: list[tuple[str, str, str]] = []
        failures: dict[str, Any] = {}
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
                raise errors.bad_json("'one_time_keys' must map user IDs to {device ID: algorithm}")
            if not self._is_local(user_id):
                failures[get_domain(user_id) or user_id] = {
                    "status": 503, "message": "Federation is not supported yet"
                }
                continue
            requests.extend((user_id, d, alg) for d, alg in devices.items())
        out: dict[str, dict[str, Any]] = {}
        for user_id, device_id, algorithm in requests:
            # One short transaction per key: a claim never waits on another device's.
            with self._keys_changing(user_id, [device_id]):
                async with self.db.transaction() as conn:
                    if not await self.store.device_exists(conn, user_id, device_id):
                        continue
                    claimed = await self.store.claim_one_time_key(conn, user_id, device_id, algorithm)
                    if claimed is None:
                        claimed = await self.store.claim_fallback_key(conn, user_id, device_id, algorithm)
            if claimed is not None:
                key_id, text = claimed
                out.setdefault(user_id, {})[device_id] = {f"{algorithm}:{key_id}": json.loads(text)}
        return {"one_time_keys": out, "failures": failures}

    # -- /keys/changes ---------------------------------------------------------------
    async def key_changes(self, who: Requester, from_token: str, to_token: str) -> dict[str, list[str]]:
        from homeserver.core.tokens import TokenError

        try:
            since, upto = SyncToken.decode(from_token), SyncToken.decode(to_token)
        except TokenError:
            raise errors.invalid_param("'from' and 'to' must be sync tokens") from None
        return await self.device_list_changes(who.user_id, since, upto)

    # -- cross-signing ------------------------------------------------------------------
    async def upload_cross_signing_keys(self, who: Requester, body: dict[str, Any], client_ip: str | None) -> None:
        user_id = who.user_id
        given: dict[str, tuple[str, dict[str, Any]]] = {}
        try:
            for usage in CROSS_SIGNING_USAGES:
                obj = body.get(f"{usage}_key")
                if obj is not None:
                    given[usage] = (check_cross_signing_key(obj, user_id, usage), obj)
        except KeyCheckError as e:
            raise _key_error(e) from None
        if not given:
            return
        existing = (await self.store.cross_signing_keys([user_id])).get(user_id, {})
        # Spec (v1.11+): UIA unless there is no master key yet, or the request changes nothing.
        unchanged = "master" in existing and all(
            usage in existing and existing[usage][0] == pub and same_signed_content(existing[usage][1], obj)
            for usage, (pub, obj) in given.items()
        )
        if unchanged:
            return
        uia_data: dict[str, Any] | None = None
        if "master" in existing:
            uia_data = await self.uia.authenticate(
                body, purpose="device_signing_upload", flows=[[PASSWORD]], user_id=user_id, client_ip=client_ip
            )
        master = given.get("master") or existing.get("master")
        if master is None:
            raise errors.missing_param("No master key available")
        master_pub = master[0]
        device_ids = set(await self.store.device_ids_of(user_id))
        for usage, (pub, obj) in given.items():
            if pub in device_ids:
                raise errors.forbidden("Key ID in use")
            if usage != "master" and not has_valid_signature(obj, user_id, f"ed25519:{master_pub}", master_pub):
                raise errors.MatrixError(400, "M_INVALID_SIGNATURE", f"the {usage} key is not signed by the master key")
        async with self.db.transaction() as conn:
            await self.store.lock_cross_signing(conn, user_id)
            await self.store.set_cross_signing_keys(
                conn, user_id, [(usage, pub, dumps_compact(obj)) for usage, (pub, obj) in given.items()], now_ms()
            )
            position = await self._device_lists_changed(conn, user_id)
        await self._publish_device_list(user_id, position)
        if uia_data is not None:
            await self.uia.finish(uia_data)

    async def upload_signatures(self, who: Requester, body: dict[str, Any]) -> dict[str, Any]:
        signer = who.user_id
        xsign = await self.store.cross_signing_keys(
            [signer, *(u for u in body if isinstance(u, str) and u != signer)]
        )
        mine = xsign.get(signer, {})
        failures: dict[str, dict[str, Any]] = {}
        to_store: list[tuple[str, str, str, str, str]] = []
        own_changed = False

        def fail(user: str, key: str, errcode: str, error: str) -> None:
            failures.setdefault(user, {})[key] = {"errcode": errcode, "error": error}

        for target_user, objects in body.items():
            if not isinstance(objects, dict):
                raise errors.bad_json("the body must map user IDs to {key ID: signed object}")
            for key_id, obj in objects.items():
                if not isinstance(obj, dict) or not isinstance(obj.get("signatures", {}), dict):
                    fail(target_user, key_id, "M_BAD_JSON", "the signed object must be an object")
                    continue
                sigs = obj.get("signatures", {}).get(signer)
                if not isinstance(sigs, dict) or not sigs:
                    fail(target_user, key_id, "M_INVALID_SIGNATURE", "no signature by the uploading user")
                    continue
                found = await self._check_signature_upload(who, mine, xsign, target_user, key_id, obj, sigs)
                if isinstance(found, tuple):
                    fail(target_user, key_id, *found)
                    continue
                for signer_key_id, sig in found:
                    to_store.append((signer, signer_key_id, target_user, key_id, sig))
                own_changed = True
        if to_store:
            async with self.db.transaction() as conn:
                await self.store.add_signatures(conn, to_store)
                position = await self._device_lists_changed(conn, signer) if own_changed else None
            if position is not None:
                await self._publish_device_list(signer, position)
        return {"failures": failures}

    async def _check_signature_upload(
        self,
        who: Requester,
        mine: dict[str, tuple[str, dict[str, Any]]],
        xsign: dict[str, dict[str, tuple[str, dict[str, Any]]]],
        target_user: str,
        key_id: str,
        obj: dict[str, Any],
        sigs: dict[str, Any],
    ) -> list[tuple[str, str]] | tuple[str, str]:
        """The verified (signer key ID, signature) pairs to store, or (errcode, error)."""
        signer = who.user_id
        candidates: list[tuple[str, str]] = []  # (signer key ID, public key)
        if target_user == signer:
            device = await self.store.get_device_keys(signer, key_id)
            master = mine.get("master")
            if device is not None:
                # One of my devices, signed with my self-signing key.
                if "self_signing" not in mine:
                    return ("M_MISSING_PARAM", "no self-signing key uploaded")
                if not same_signed_content(device, obj):
                    return ("M_INVALID_PARAM", "the signed object does not match the stored device keys")
                pub = mine["self_signing"][0]
                candidates = [(f"ed25519:{pub}", pub)]
            elif master is not None and master[0] == key_id:
                # My master key, signed by one of my devices.
                if not same_signed_content(master[1], obj):
                    return ("M_INVALID_PARAM", "the signed object does not match the stored master key")
                for sig_key_id in sigs:
                    try:
                        alg, dev = split_key_id(sig_key_id)
                    except KeyCheckError:
                        continue
                    dkeys = await self.store.get_device_keys(signer, dev) if alg == "ed25519" else None
                    ed = device_ed25519_key(dkeys, dev) if dkeys else None
                    if ed is not None:
                        candidates.append((sig_key_id, ed))
            else:
                return ("M_NOT_FOUND", "unknown key")
        else:
            # Another user's master key, signed with my user-signing key.
            theirs = xsign.get(target_user, {}).get("master")
            if theirs is None or theirs[0] != key_id:
                return ("M_NOT_FOUND", "unknown key")
            if "user_signing" not in mine:
                return ("M_MISSING_PARAM", "no user-signing key uploaded")
            if not same_signed_content(theirs[1], obj):
                return ("M_INVALID_PARAM", "the signed object does not match the stored master key")
            pub = mine["user_signing"][0]
            candidates = [(f"ed25519:{pub}", pub)]
        good = [
            (kid, sigs[kid]) for kid, pub in candidates
            if isinstance(sigs.get(kid), str) and has_valid_signature(obj, signer, kid, pub)
        ]
        if not good:
            return ("M_INVALID_SIGNATURE", "Invalid signature")
        return good

    # -- to-device -------------------------------------------------------------------
    async def send_to_device(self, who: Requester, event_type: str, txn_id: str, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, dict) or not all(isinstance(v, dict) for v in messages.values()):
            raise errors.bad_json("'messages' must map user IDs to {device ID: content}")
        for devices in messages.values():
            if not all(isinstance(c, dict) for c in devices.values()):
                raise errors.bad_json("each message content must be an object")
        local_users = [u for u in messages if self._is_local(u)]
        if len(messages) != len(local_users):
            log.info("to-device for remote users dropped: federation is not supported yet")
        async with self.db.transaction() as conn:
            if not await self.store.claim_to_device_txn(conn, who.user_id, who.device_id, txn_id, now_ms()):
                return  # a retry: it was delivered the first time
            known = await self.store.device_ids(conn, local_users)
            rows: list[tuple[str, str, str, str]] = []
            for user_id in local_users:
                devices = known.get(user_id, [])
                for device_id, content in messages[user_id].items():
                    text = dumps_compact(content)
                    targets = devices if device_id == "*" else [device_id] if device_id in devices else []
                    rows.extend((user_id, d, event_type, text) for d in targets)
            if len(rows) > MAX_TO_DEVICE_MESSAGES:
                raise errors.too_large("too many to-device messages in one request")
            if not rows:
                return
            position = await self.store.enqueue_to_device(conn, who.user_id, rows)
        await self.bus.publish(StreamUpdate("to_device", position, users=frozenset(u for u, _, _, _ in rows)))

    # -- devices going away ----------------------------------------------------------------
    async def devices_deleted(self, user_id: str, device_ids: Iterable[str]) -> None:
        """Hook for AccountService/AuthService: drop the keys and inbox of deleted devices."""
        ids = list(device_ids)
        if not ids:
            return
        with self._keys_changing(user_id, ids):
            async with self.db.transaction() as conn:
                await self.store.delete_device_data(conn, user_id, ids)
                position = await self._device_lists_changed(conn, user_id)
        await self._publish_device_list(user_id, position)
