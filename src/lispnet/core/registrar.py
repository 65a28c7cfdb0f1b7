"""The Map-Server's Map-Register path (RFC 9301 section 8.2; spec 7, 8): a mixin of
``MapServer``, kept apart so each module stays readable.

Three ways in, one set of rules:

1. **Identical refresh** (``_refresh_quick`` for a one-record Map-Register with a bare
   IPv4/IPv6 EID, read at fixed offsets; ``_refresh_fast`` for the other shapes
   ``regfast.parse_register`` reads): every record matches, signature for signature, a
   registration the same registrant already holds.  When no two sites' prefixes overlap
   (so the site is the registration's own), the HMAC is checked on the raw bytes and
   the registrations' expiry moved; the Map-Notify is the register with a new first
   word and a new HMAC.  No decoding, no object built but the answer.
2. **Common shapes** (``_view_from_parsed``): the same parse gives the records (EID
   prefixes, locator tuples from the shared ``LocatorCache``) for ``_install``.
3. **Everything else**: the general decoder's ``MapRegister`` gives them.

``_install`` then applies the rules of the module docstring of ``map_server.py``:
site by the configured prefixes and the Key ID, HMAC, site enabled, each record inside
the site's prefixes and its RLOCs allowed, withdraw on TTL 0, table limit, install or
refresh (in place: ``RegistrationTable.upsert``), expiry, events, Map-Notify.  Ways 1
and 2 give the same table, counters, events and sends as way 3 (tested with
Hypothesis against a Map-Server with the fast path off).
"""

from __future__ import annotations

from collections.abc import Callable
from hmac import compare_digest
from ipaddress import IPv4Address, IPv6Address
from math import ceil
from typing import Any, NamedTuple

from ..db.lpm import LpmTable
from ..db.sites import AllowedPrefix, Registration, RegistrationTable, SitePolicy, registrant_key
from ..wire.control import MapNotify, MapRegister, parse_control
from ..wire.enums import MessageType
from ..wire.prefix import EidPrefix
from ..wire.records import EidRecord, LocatorRecord
from .engine import Endpoint, Event
from .expiry import ExpiryBuckets
from .mapsys import Counters, MapServerConfig, RegistrationWithdrawn, SiteRegistered
from .regfast import (
    ACTIONS,
    M_BYTE2,
    Interner,
    LocatorCache,
    ParsedRegister,
    hmac_digest,
    notify_from,
    parse_register,
    verify,
)

_MNOT_I = 0x08000000  # Map-Notify I bit
_NOTIFY_ONE = ((MessageType.MAP_NOTIFY << 28) | 1).to_bytes(4, "big")
_NOTIFY_ONE_I = ((MessageType.MAP_NOTIFY << 28) | _MNOT_I | 1).to_bytes(4, "big")

# what the identical-refresh shortcuts did (else the Map-Notify to send)
_NOT_QUICK = 0
"""Not a shape the shortcut reads, or several registrants: try the next way."""
_NO_SHORTCUT = 1
"""Not an identical refresh (absent, changed, other registrant): ``_install`` it."""
_BAD_HMAC = 2
"""An identical refresh but the HMAC is wrong: ``_install`` rejects it."""
_DONE = 3
"""Refreshed; no Map-Notify asked for."""
_NOTIFY_TYPE = MessageType.MAP_NOTIFY << 28
_P_BYTE0 = 0x08  # Map-Register P bit (0x08000000)
_MERGE_BYTE2 = 0x04  # a bit (0x00000400)
_T_BYTE2 = 0x08  # T bit (0x00000800)

RegRecord = tuple[EidPrefix, tuple[LocatorRecord, ...], int, Any, int, "bytes | None"]
"""(prefix, locators, TTL, action, map-version, signature or None) of one record."""


class RegView(NamedTuple):
    """What ``_install`` needs of a Map-Register, from either reader."""

    key_id: int
    alg_id: int
    auth_end: int
    proxy_reply: bool
    merge: bool
    use_ttl: bool
    want_map_notify: bool
    xtr_id: int | None
    site_id: int | None
    records: list[RegRecord]
    msg: MapRegister | None
    """The decoded message (general path), else decoded on demand for a partial Map-Notify."""


class Registrar:
    """Map-Register handling over the attributes ``MapServer`` owns."""

    sites: dict[str, SitePolicy]
    configured: LpmTable[list[tuple[SitePolicy, AllowedPrefix]]]
    registrations: RegistrationTable
    expiry: ExpiryBuckets[Registration]
    counters: Counters
    config: MapServerConfig
    register_fast_path: bool
    _sites_overlap: bool
    _sigs: Interner
    _locs: LocatorCache
    _intern: Callable[[Any, Any], Any]
    _interned: dict[Any, Any]
    _emit: Callable[[Event], None]
    _send: Callable[[bytes, Endpoint, str], None]
    _reject: Callable[..., None]
    _remove_registration: Callable[[Registration], None]

    def _on_map_register(self, data: bytes, src: Endpoint, now: float) -> None:
        notify = self._register(data, src, now)
        if notify is not None:
            self._send(notify, src, "map-notify")

    def _register(self, data: bytes, src: Endpoint, now: float) -> bytes | None:
        """Handle one Map-Register; returns the Map-Notify to send back to ``src``, if any.
        Raises ``DecodeError`` for what the general decoder refuses."""
        view: RegView | None = None
        if self.register_fast_path:
            done = self._refresh_quick(data, src, now)
            if isinstance(done, bytes):
                return done
            if done == _DONE:
                return None
            p = parse_register(data)
            if p is not None:
                if done == _NOT_QUICK:
                    done = self._refresh_fast(p, data, src, now)
                    if isinstance(done, bytes):
                        return done
                    if done == _DONE:
                        return None
                view = self._view_from_parsed(p, data)
        if view is None:
            view = self._view_from_decoder(data, src, now)
            if view is None:
                return None
        return self._install(view, data, src, now)

    # ------------------------------------------------------------------ 1. identical refresh
    def _refresh_quick(self, data: bytes, src: Endpoint, now: float) -> bytes | int:
        """The identical refresh of a one-record Map-Register with a bare IPv4/IPv6 EID by
        a prefix's only registrant: ``regfast.quick_eid``, ``quick_sig``, ``verify``,
        ``notify_from`` and ``_bump`` inlined (the 60 s refresh of every registered EID
        comes this way).  Returns the Map-Notify or one of the ``_NOT_QUICK``... codes."""
        if self._sites_overlap:
            return _NO_SHORTCUT
        n = len(data)
        if n < 16 or data[3] != 1:
            return _NOT_QUICK
        auth_len = (data[14] << 8) | data[15]
        rs = 16 + auth_len
        if rs + 12 > n:
            return _NOT_QUICK
        afi = data[rs + 11]
        if data[rs + 10] or (afi != 1 and afi != 2):
            return _NOT_QUICK
        end = rs + (16 if afi == 1 else 28)
        if end > n:
            return _NOT_QUICK
        value = int.from_bytes(data[rs + 12 : end], "big")
        mask_len = data[rs + 5]
        fam = self.registrations.table.bit_family(0, afi)
        if fam is None:
            return _NO_SHORTCUT
        d = fam.by_len.get(mask_len)
        if d is None:
            return _NO_SHORTCUT
        entry = d.get(value >> (fam.bits - mask_len))
        if entry is None:
            return _NO_SHORTCUT
        reg = entry.only()
        if reg is None:
            return _NOT_QUICK
        sig = reg.sig
        if sig is None or sig != data[0:3] + data[12:16] + data[rs : rs + 12] + data[end:]:  # regfast.quick_sig
            return _NO_SHORTCUT
        etr = reg.etr
        addr = src.address
        if etr is None or (reg.xtr_id is None and etr[0] is not addr and etr[0] != addr):
            return _NO_SHORTCUT
        if int(reg.prefix.address) != value:  # type: ignore[arg-type]
            return _NO_SHORTCUT  # host bits differ: the general path replaces the prefix
        site = self.sites.get(reg.site) if reg.site is not None else None
        if site is None or not site.enabled:
            return _NO_SHORTCUT
        alg_id = data[13]
        skey = site.key_for(data[12], alg_id)
        if skey is None or auth_len == 0:
            return _NO_SHORTCUT
        key = skey.key
        zeroed = data[:16] + bytes(auth_len) + data[rs:]  # regfast.verify
        if not compare_digest(hmac_digest(key, alg_id, zeroed)[:auth_len], data[16:rs]):
            return _BAD_HMAC
        if etr[1] != src.port or (etr[0] is not addr and etr[0] != addr):
            reg.etr = self._intern(("etr", src), (addr, src.port))
        reg.last_registered = now
        reg.registrations += 1
        at = reg.expires_at = now + (reg.ttl * 60.0 if reg.use_ttl else self.config.registration_timeout_s)
        filed = reg.filed_at
        if not filed or filed > ceil(at):  # ExpiryBuckets.add is a no-op otherwise
            self.expiry.add(reg)
        self.counters.registrations["accepted"] += 1
        if not data[2] & M_BYTE2:
            return _DONE
        flagged = self.config.notify_xtr_id_flagged and reg.xtr_id is not None
        body = (_NOTIFY_ONE_I if flagged else _NOTIFY_ONE) + zeroed[4:]  # regfast.notify_from
        return body[:16] + hmac_digest(key, alg_id, body)[:auth_len] + body[rs:]

    def _refresh_fast(self, p: ParsedRegister, data: bytes, src: Endpoint, now: float) -> bytes | int:
        """Refresh registrations that are re-registered unchanged (any number of records,
        LCAF EIDs, several registrants per prefix).  Results as ``_refresh_quick``."""
        if self._sites_overlap:
            return _NO_SHORTCUT
        table = self.registrations.table
        xtr_id = p.xtr_id
        addr = src.address
        regs: list[Registration] = []
        site_name: str | None = None
        for rv in p.records:
            fam = table.bit_family(rv.iid, rv.afi)
            if fam is None:
                return _NO_SHORTCUT
            d = fam.by_len.get(rv.mask_len)
            if d is None:
                return _NO_SHORTCUT
            entry = d.get(rv.addr >> (fam.bits - rv.mask_len))
            if entry is None:
                return _NO_SHORTCUT
            reg = entry.only()
            if reg is None or reg.xtr_id != xtr_id:
                reg = entry.registrant(xtr_id if xtr_id is not None else self._rloc_key(addr))
                if reg is None:
                    return _NO_SHORTCUT
            etr = reg.etr
            if etr is None or (xtr_id is None and etr[0] is not addr and etr[0] != addr):
                return _NO_SHORTCUT
            if reg.sig is not rv.sig and reg.sig != rv.sig:
                return _NO_SHORTCUT
            if int(reg.prefix.address) != rv.addr:  # type: ignore[arg-type]
                return _NO_SHORTCUT  # host bits differ: the general path replaces the prefix
            if site_name is None:
                site_name = reg.site
            elif reg.site != site_name:
                return _NO_SHORTCUT
            regs.append(reg)
        return self._bump(regs, site_name, data, p.auth_end, xtr_id, src, now)

    def _bump(
        self, regs: list[Registration], site_name: str | None, data: bytes, auth_end: int, xtr_id: int | None,
        src: Endpoint, now: float,
    ) -> bytes | int:
        """Check the HMAC with the registrations' site key, then move their expiry."""
        site = self.sites.get(site_name) if site_name is not None else None
        if site is None or not site.enabled:
            return _NO_SHORTCUT
        alg_id = data[13]
        skey = site.key_for(data[12], alg_id)
        if skey is None:
            return _NO_SHORTCUT
        zeroed = verify(data, auth_end, skey.key, alg_id)
        if zeroed is None:
            return _BAD_HMAC
        timeout = self.config.registration_timeout_s
        add = self.expiry.add
        addr = src.address
        for reg in regs:
            etr = reg.etr
            assert etr is not None
            if etr[1] != src.port or (etr[0] is not addr and etr[0] != addr):
                reg.etr = self._intern(("etr", src), (addr, src.port))
            reg.last_registered = now
            reg.registrations += 1
            reg.expires_at = now + (reg.ttl * 60.0 if reg.use_ttl else timeout)
            add(reg)
        self.counters.registrations["accepted"] += len(regs)
        if not data[2] & M_BYTE2:
            return _DONE
        flagged = self.config.notify_xtr_id_flagged and xtr_id is not None
        first = _NOTIFY_TYPE | (_MNOT_I if flagged else 0) | data[3]
        return notify_from(zeroed, first, auth_end, skey.key, alg_id)

    # ------------------------------------------------------------------ 2./3. the records
    def _view_from_parsed(self, p: ParsedRegister, data: bytes) -> RegView | None:
        records: list[RegRecord] = []
        sigs = self._sigs
        for rv in p.records:
            locs = self._locs.get(rv.locators, rv.loc_count)
            if locs is None:
                return None
            addr = IPv4Address(rv.addr) if rv.afi == 1 else IPv6Address(rv.addr)
            prefix = EidPrefix(rv.iid, addr, rv.mask_len)
            records.append((prefix, locs, rv.ttl, ACTIONS[rv.action], rv.map_version, sigs(rv.sig)))
        b2 = data[2]
        return RegView(
            p.key_id, p.alg_id, p.auth_end, bool(data[0] & _P_BYTE0), bool(b2 & _MERGE_BYTE2),
            bool(b2 & _T_BYTE2), bool(b2 & M_BYTE2), p.xtr_id, p.site_id, records, None,
        )

    def _view_from_decoder(self, data: bytes, src: Endpoint, now: float) -> RegView | None:
        msg = parse_control(data)
        if not isinstance(msg, MapRegister):  # pragma: no cover - the type nibble says 3
            self.counters.dropped["unexpected-type"] += 1
            return None
        try:
            records: list[RegRecord] = [
                (rec.prefix, self._intern(rec.locators, rec.locators), rec.ttl, rec.action, rec.map_version, None)
                for rec in msg.records
            ]
        except ValueError as e:
            self._reject(None, "malformed", src, None, now, str(e))
            return None
        if not records:
            self._reject(None, "malformed", src, None, now, "no records")
            return None
        return RegView(
            msg.key_id, int(msg.alg_id), 16 + len(msg.auth_data), msg.proxy_reply, msg.merge, msg.use_ttl,
            msg.want_map_notify, msg.xtr_id, msg.site_id, records, msg,
        )

    # ------------------------------------------------------------------ the rules
    def _rloc_key(self, addr: Any) -> str:
        """The registrant key of a Map-Register without xTR-ID from ``addr`` (shared text)."""
        k: str | None = self._interned.get(("rk", addr))
        if k is None:
            k = self._intern(("rk", addr), registrant_key(None, (addr, 0)))
            assert k is not None
        return k

    @staticmethod
    def _allowed(site: SitePolicy, p: EidPrefix, covering: list[list[tuple[SitePolicy, AllowedPrefix]]]) -> bool:
        """``site.allowed_prefix_for(p) is not None``, from the configured prefixes that
        cover ``p`` (for an IP prefix they all contain it: only the length rule is left)."""
        if not isinstance(p.address, IPv4Address | IPv6Address):
            return site.allowed_prefix_for(p) is not None
        for lst in covering:
            for s, ap in lst:
                if s is site and (ap.accept_more_specifics or ap.prefix.mask_len == p.mask_len):
                    return True
        return False

    def _configured_covering(self, p: EidPrefix) -> list[list[tuple[SitePolicy, AllowedPrefix]]]:
        """``configured.covering(p)`` values, most specific first, without building prefixes."""
        a = p.address
        fam = self.configured.bit_family(p.iid, 1 if a.version == 4 else 2) if isinstance(a, IPv4Address | IPv6Address) \
            else None
        if fam is None or not isinstance(a, IPv4Address | IPv6Address):
            return [lst for _, lst in self.configured.covering(p)]
        v = int(a)
        bits = fam.bits
        out = []
        for neg in fam.lengths:
            if -neg <= p.mask_len:
                lst = fam.by_len[-neg].get(v >> (bits + neg))
                if lst is not None:
                    out.append(lst)
        return out

    def _install(self, v: RegView, data: bytes, src: Endpoint, now: float) -> bytes | None:
        first_prefix = v.records[0][0]
        # which site: every site configuring a prefix covering one of the records
        candidates: list[SitePolicy] = []
        covers = [self._configured_covering(rec[0]) for rec in v.records]
        for lsts in covers:
            for lst in lsts:
                for s, _ap in lst:
                    if not any(c is s for c in candidates):  # identity: SitePolicy.__eq__ is costly
                        candidates.append(s)
        if not candidates:
            self._reject(None, "eid-not-in-any-site", src, first_prefix, now)
            return None
        site: SitePolicy | None = None
        key = None
        zeroed: bytes | None = None
        reason = "bad-key-id"
        for s in candidates:
            k = s.key_for(v.key_id, v.alg_id)
            if k is None:
                continue
            zeroed = verify(data, v.auth_end, k.key, v.alg_id)
            if zeroed is not None:
                site, key = s, k
                break
            reason = "bad-hmac"
        if site is None or key is None or zeroed is None:
            detail = f"key-id {v.key_id} algorithm {v.alg_id} auth-length {v.auth_end - 16}"
            self._reject(candidates[0].name, reason, src, first_prefix, now, detail)
            return None
        if not site.enabled:
            self._reject(site.name, "site-disabled", src, first_prefix, now)
            return None

        accepted: list[int] = []
        etr = self._intern(("etr", src), (src.address, src.port))
        rkey = v.xtr_id if v.xtr_id is not None else self._rloc_key(src.address)
        fm, fp = site.force_merge, site.proxy_reply
        timeout = self.config.registration_timeout_s
        table = self.registrations
        for i, (p, locators, ttl, action, map_version, sig) in enumerate(v.records):
            if not self._allowed(site, p, covers[i]):
                self._reject(site.name, "eid-outside-site-prefixes", src, p, now)
                continue
            if site.allowed_rlocs:
                bad = [loc for loc in locators if not site.rloc_allowed(loc)]
                if bad:
                    self._reject(site.name, "rloc-not-allowed", src, p, now, f"locator {bad[0].address}")
                    continue
            accepted.append(i)
            entry = table.get(p)
            if ttl == 0:  # RFC 9301 section 8.2: TTL 0 withdraws
                old = entry.registrant(rkey) if entry is not None else None
                if old is not None and not old.is_static:
                    self._remove_registration(old)
                    self.counters.registrations["withdrawn"] += 1
                    self._emit(RegistrationWithdrawn(site.name, p, "ttl-0"))
                continue
            if (entry is None or entry.registrant(rkey) is None) and len(table) >= self.config.max_registrations:
                accepted.pop()
                self._reject(site.name, "table-full", src, p, now)
                continue
            reg = Registration(
                prefix=p,
                site=site.name,
                locators=locators,
                ttl=ttl,
                etr=etr,
                xtr_id=v.xtr_id,
                site_id=v.site_id,
                proxy_reply=v.proxy_reply,
                merge=v.merge,
                use_ttl=v.use_ttl,
                want_map_notify=v.want_map_notify,
                key_id=v.key_id,
                alg_id=v.alg_id,
                map_version=map_version,
                action=action,
                first_registered=now,
                last_registered=now,
                expires_at=now + (ttl * 60.0 if v.use_ttl else timeout),
                rkey=rkey,
                sig=sig,
            )
            _, prev, changed = table.upsert(reg, fm, fp, key=rkey)
            self.expiry.add(reg if prev is None else prev)
            self.counters.registrations["accepted"] += 1
            if changed:
                self.counters.registrations["new" if prev is None else "changed"] += 1
                self._emit(SiteRegistered(site.name, p, src, v.xtr_id, locators, prev is None))

        if not (v.want_map_notify and accepted):
            return None
        flagged = self.config.notify_xtr_id_flagged and v.xtr_id is not None
        if len(accepted) == len(v.records):
            # same records and trailer: the received bytes with a new first word
            first = _NOTIFY_TYPE | (_MNOT_I if flagged else 0) | len(accepted)
            return notify_from(zeroed, first, v.auth_end, key.key, v.alg_id)
        msg = v.msg
        if msg is None:
            m = parse_control(data)
            assert isinstance(m, MapRegister)
            msg = m
        recs: tuple[EidRecord, ...] = tuple(msg.records[i] for i in accepted)
        notify = MapNotify(
            msg.nonce,
            recs,
            msg.key_id,
            msg.alg_id,
            b"",
            xtr_id=msg.xtr_id,
            site_id=msg.site_id,
            unflagged_xtr_id=msg.xtr_id is not None and not flagged,
        )
        return notify.signed(key.key, v.auth_end - 16).to_bytes()


__all__ = ["RegRecord", "RegView", "Registrar"]
