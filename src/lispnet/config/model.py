"""The node configuration: frozen pydantic models read from one TOML file.

The same models are the REST API's request and response bodies for the writable parts
of the mapping system (sites and static mappings), so a site written through the API and
a site written in the file are one and the same value.

Keys are kebab-case in TOML and JSON (``authentication-keys``, ``eid-prefix``), the
vocabulary of the field (lispers.net ``lisp.config``, OOR ``oor.conf``: database-mapping,
map-server, map-resolver, eid-prefix, instance-id).  Python attributes are snake_case.
Every model forbids unknown keys so a typo is reported instead of silently ignored.

Layout of a node file (see ``examples/msmr.toml`` and ``examples/xtr.toml``)::

    [node]                       who am I, which roles, where to listen
    [[site]]                     Map-Server: sites, keys, EID prefixes they may register
    [[static-mapping]]           Map-Server: mappings answered without a registration
    [map-server-options]         Map-Server: registration timeout, limits
    [map-resolver-options]       Map-Resolver: negative replies, rate limits
    [[map-resolver]]             xTR / MR: where Map-Requests go
    [[map-server]]               xTR / MR: where to register (xTR) or forward (MR), with keys
    [[database-mapping]]         ETR: the local EID prefixes and their RLOCs
    [[proxy-etr]]                ITR: PETRs for negative map-cache entries
    [[instance]]                 xTR: instance-id -> local interface / VRF
    [xtr]                        xTR timers and sizes

Nothing here does I/O; ``load.py`` reads the file and formats errors.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..wire.enums import Action, AuthAlg
from ..wire.prefix import EidPrefix

IPAddr = IPv4Address | IPv6Address
IPNet = IPv4Network | IPv6Network


def kebab(name: str) -> str:
    """snake_case attribute -> kebab-case key."""
    return name.replace("_", "-")


# --- scalar field types --------------------------------------------------------------


def _ip_address(value: Any) -> IPAddr:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address string, got {type(value).__name__}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 address: {value!r}") from None


def _ip_network(value: Any) -> IPNet:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IP prefix string, got {type(value).__name__}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 prefix: {value!r}") from None


def _host_port(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    if not isinstance(value, str):
        raise ValueError("expected \"HOST:PORT\" (e.g. \"127.0.0.1:8080\", \"[::1]:8080\")")
    split_host_port(value)
    return value


def split_host_port(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` -> (host, port); ValueError when malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected \"[V6ADDR]:PORT\", got {text!r}")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"expected \"HOST:PORT\" (IPv6 as \"[::1]:8080\"), got {text!r}")
    if not host:
        raise ValueError(f"missing host in {text!r}")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_s)


IpAddress = Annotated[
    IPAddr,
    PlainValidator(_ip_address),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "format": "ip-address"}),
]
IpNetwork = Annotated[
    IPNet,
    PlainValidator(_ip_network),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "format": "ip-prefix"}),
]
HostPort = Annotated[str | None, PlainValidator(_host_port), WithJsonSchema({"type": "string"})]
InstanceId = Annotated[int, Field(ge=0, le=0xFFFFFFFF)]
Port = Annotated[int, Field(ge=1, le=65535)]
U8 = Annotated[int, Field(ge=0, le=255)]

Role = Literal[
    "map-server", "map-resolver", "itr", "etr", "xtr", "pitr", "petr", "pxtr", "rtr", "ddt-node"
]
ROLES: tuple[str, ...] = (
    "map-server", "map-resolver", "itr", "etr", "xtr", "pitr", "petr", "pxtr", "rtr", "ddt-node",
)
XTR_ROLES = frozenset({"itr", "etr", "xtr", "pitr", "petr", "pxtr", "rtr"})
AlgorithmName = Literal["hmac-sha-1", "hmac-sha-256"]
ALGORITHMS: dict[str, AuthAlg] = {
    "hmac-sha-1": AuthAlg.HMAC_SHA_1_96,
    "hmac-sha-256": AuthAlg.HMAC_SHA_256_128,
}
ActionName = Literal[
    "no-action", "natively-forward", "send-map-request", "drop", "drop-policy-denied", "drop-auth-failure"
]
ACTIONS: dict[str, Action] = {
    "no-action": Action.NO_ACTION,
    "natively-forward": Action.NATIVELY_FORWARD,
    "send-map-request": Action.SEND_MAP_REQUEST,
    "drop": Action.DROP,
    "drop-policy-denied": Action.DROP_POLICY_DENIED,
    "drop-auth-failure": Action.DROP_AUTH_FAILURE,
}
LogLevel = Literal["debug", "info", "warning", "error"]
DataplaneName = Literal["tun", "ebpf", "vxlan-gpe", "vxlan", "none"]
MapRequestOffloadName = Literal["off", "ebpf"]


class ConfigModel(BaseModel):
    """Base: frozen, kebab-case keys (snake_case accepted from Python), unknown keys refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=kebab,
        populate_by_name=True,
        str_strip_whitespace=True,
    )

    def to_toml_dict(self) -> dict[str, Any]:
        """JSON-able dict with kebab-case keys and no None values (state file, API bodies)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_prefix(text: str, iid: int = 0) -> EidPrefix:
    try:
        return EidPrefix.parse(text, iid)
    except (ValueError, IndexError) as e:
        raise ValueError(f"not an EID prefix ({e}): {text!r}") from None


def _unique(items: Iterable[Any], what: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate {what} {item!r}")
        seen.add(item)


# --- mapping-system side -------------------------------------------------------------


class AuthenticationKey(ConfigModel):
    """One shared key of a site (RFC 9301 section 5.6: Key ID + Algorithm ID)."""

    key_id: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    """Key ID carried in the Map-Register; several keys allow rekeying without downtime."""
    algorithm: AlgorithmName = "hmac-sha-256"
    """HMAC algorithm; it also fixes the authentication data length (20 or 32 bytes)."""
    key: Annotated[str, Field(min_length=1, repr=False)]
    """The pre-shared key (never shown by the API)."""

    @property
    def alg_id(self) -> AuthAlg:
        return ALGORITHMS[self.algorithm]


class SiteEidPrefix(ConfigModel):
    """An EID prefix a site may register."""

    prefix: str
    """EID prefix: ``10.1.0.0/16``, ``2001:db8::/32``, ``00:11:22:00:00:00/24`` (MAC)."""
    instance_id: InstanceId = 0
    """Instance-id (0 = default)."""
    accept_more_specifics: bool = False
    """Accept registrations of prefixes inside this one, not only the exact prefix."""

    @field_validator("prefix")
    @classmethod
    def _valid(cls, v: str) -> str:
        _check_prefix(v)
        return v

    @property
    def eid_prefix(self) -> EidPrefix:
        return EidPrefix.parse(self.prefix, self.instance_id)


class Site(ConfigModel):
    """A Map-Server site: who may register which EID prefixes with which keys."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    """Site name (unique; used in the API path /sites/{name})."""
    description: str = ""
    """Free text."""
    authentication_keys: tuple[AuthenticationKey, ...]
    """Keys accepted for this site's Map-Registers (at least one)."""
    eid_prefixes: tuple[SiteEidPrefix, ...] = ()
    """EID prefixes the site may register."""
    allowed_rlocs: tuple[IpNetwork, ...] = ()
    """When not empty, every registered RLOC must fall inside one of these prefixes."""
    proxy_reply: bool | None = None
    """Force (true) or forbid (false) Map-Server proxy replies; unset = as the ETR asks (P bit)."""
    force_merge: bool = False
    """Merge the RLOC sets of this site's ETRs even when they do not set the merge bit."""
    enabled: bool = True
    """A disabled site rejects every registration (reason: site-disabled)."""

    @field_validator("authentication_keys")
    @classmethod
    def _unique_key_ids(cls, v: tuple[AuthenticationKey, ...]) -> tuple[AuthenticationKey, ...]:
        if not v:
            raise ValueError("at least one key is needed")
        _unique((k.key_id for k in v), "key-id")
        return v

    @field_validator("eid_prefixes")
    @classmethod
    def _unique_prefixes(cls, v: tuple[SiteEidPrefix, ...]) -> tuple[SiteEidPrefix, ...]:
        _unique((str(p.eid_prefix) for p in v), "eid-prefix")
        return v


class Locator(ConfigModel):
    """An RLOC with its priority and weight (RFC 9301 section 5.4)."""

    address: IpAddress
    """The RLOC."""
    priority: U8 = 1
    """Unicast priority, lower preferred; 255 = not for unicast."""
    weight: U8 = 100
    """Unicast weight among locators of equal priority."""
    m_priority: U8 = 255
    """Multicast priority."""
    m_weight: U8 = 0
    """Multicast weight."""


class StaticMapping(ConfigModel):
    """A mapping the Map-Server answers without any registration (or a negative one)."""

    eid_prefix: str
    """EID prefix."""
    instance_id: InstanceId = 0
    """Instance-id."""
    rlocs: tuple[Locator, ...] = ()
    """Locator set; empty = a negative mapping with ``action``."""
    ttl: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 1440
    """Record TTL in minutes."""
    action: ActionName = "no-action"
    """Action of a negative mapping (ignored with RLOCs)."""

    @field_validator("eid_prefix")
    @classmethod
    def _valid(cls, v: str) -> str:
        _check_prefix(v)
        return v

    @property
    def prefix(self) -> EidPrefix:
        return EidPrefix.parse(self.eid_prefix, self.instance_id)

    @property
    def action_code(self) -> Action:
        return ACTIONS[self.action]


class MapServerOptions(ConfigModel):
    """Map-Server behaviour."""

    registration_timeout: Annotated[float, Field(gt=0)] = 180.0
    """Seconds after which a registration not refreshed is removed (3 x 60 s)."""
    max_registrations: Annotated[int, Field(ge=1)] = 2_000_000
    """Upper bound on installed registrations (memory bound against hostile ETRs)."""
    proxy_reply_ttl: Annotated[int, Field(ge=0)] | None = None
    """Override the TTL (minutes) of proxy Map-Replies; unset = the registered TTL."""


class MapResolverOptions(ConfigModel):
    """Map-Resolver behaviour."""

    negative_action: ActionName = "natively-forward"
    """Action of Negative Map-Replies."""
    negative_ttl: Annotated[int, Field(ge=0)] = 15
    """TTL (minutes) of negative replies for non-EID space."""
    unregistered_ttl: Annotated[int, Field(ge=0)] = 1
    """TTL (minutes) of negative replies for configured but unregistered EIDs."""
    map_request_rate_limit: Annotated[int, Field(ge=0)] = 1000
    """Map-Requests accepted per source address per second (0 = unlimited)."""
    accept_plain_requests: bool = True
    """Answer Map-Requests that are not ECM-encapsulated."""

    @property
    def negative_action_code(self) -> Action:
        return ACTIONS[self.negative_action]


# --- xTR side ------------------------------------------------------------------------


class MapResolverRef(ConfigModel):
    """A Map-Resolver this node sends Map-Requests to."""

    address: IpAddress
    """Map-Resolver address."""
    port: Port = 4342
    """Its control port."""


class MapServerRef(ConfigModel):
    """A Map-Server this node registers with (xTR) or forwards requests to (MR)."""

    address: IpAddress
    """Map-Server address."""
    port: Port = 4342
    """Its control port."""
    key_id: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    """Key ID sent in Map-Registers."""
    algorithm: AlgorithmName = "hmac-sha-256"
    """HMAC algorithm."""
    key: str | None = Field(default=None, min_length=1, repr=False)
    """Shared key (required for xTR roles)."""
    proxy_reply: bool = False
    """Ask the Map-Server to answer Map-Requests for us (P bit)."""
    want_map_notify: bool = True
    """Ask for a Map-Notify acknowledging each registration (M bit)."""
    merge: bool = False
    """Ask the Map-Server to merge our RLOCs with the site's other ETRs."""
    eid_prefixes: tuple[str, ...] = ()
    """Map-Resolver: EID prefixes this Map-Server is authoritative for (``[iid]prefix``);
    empty = a catch-all for everything no other Map-Server claims."""

    @field_validator("eid_prefixes")
    @classmethod
    def _valid_prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            _check_prefix(p)
        return v

    @property
    def alg_id(self) -> AuthAlg:
        return ALGORITHMS[self.algorithm]

    @property
    def prefixes(self) -> tuple[EidPrefix, ...]:
        return tuple(EidPrefix.parse(p) for p in self.eid_prefixes)


class DatabaseMapping(ConfigModel):
    """A local EID prefix this ETR is authoritative for."""

    eid_prefix: str
    """EID prefix."""
    instance_id: InstanceId = 0
    """Instance-id."""
    rlocs: tuple[Locator, ...]
    """The RLOCs that reach this prefix (at least one)."""

    @field_validator("rlocs")
    @classmethod
    def _some_rlocs(cls, v: tuple[Locator, ...]) -> tuple[Locator, ...]:
        if not v:
            raise ValueError("at least one RLOC is needed")
        return v
    ttl: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 1440
    """TTL (minutes) given in Map-Replies and registrations."""

    @field_validator("eid_prefix")
    @classmethod
    def _valid(cls, v: str) -> str:
        _check_prefix(v)
        return v

    @property
    def prefix(self) -> EidPrefix:
        return EidPrefix.parse(self.eid_prefix, self.instance_id)


class ProxyEtr(ConfigModel):
    """A PETR used for traffic to non-EID destinations."""

    address: IpAddress
    """PETR RLOC."""
    priority: U8 = 1
    """Priority among PETRs."""
    weight: U8 = 100
    """Weight among PETRs."""


class Instance(ConfigModel):
    """Instance-id to local interface / VRF (decapsulated packets go there)."""

    instance_id: InstanceId
    """Instance-id."""
    interface: Annotated[str, Field(min_length=1, max_length=15)]
    """Local interface or VRF name."""


class XtrOptions(ConfigModel):
    """xTR timers and sizes (defaults from RFC 9301 practice, see spec section 12)."""

    register_interval: Annotated[float, Field(gt=0)] = 60.0
    """Seconds between Map-Registers."""
    registration_ttl: Annotated[int, Field(ge=1)] = 3
    """TTL (minutes) put in Map-Register records."""
    map_request_timeout: Annotated[float, Field(gt=0)] = 2.0
    """Seconds before a Map-Request is retransmitted (doubling)."""
    map_request_retries: Annotated[int, Field(ge=0)] = 3
    """Retransmissions before giving up."""
    map_cache_size: Annotated[int, Field(ge=1)] = 10000
    """Maximum map-cache entries (LRU eviction)."""
    rloc_probing: bool = False
    """Probe the RLOCs of map-cache entries."""
    rloc_probe_interval: Annotated[float, Field(gt=0)] = 10.0
    """Seconds between RLOC-probes."""
    nat_traversal: bool = False
    """Behind a NAT: use Info-Request and an RTR."""
    gbp_group_tag: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    """VXLAN-GBP: the local group policy id (16-bit group tag) put on encapsulated packets."""


# --- the node ------------------------------------------------------------------------


class Node(ConfigModel):
    """Who this node is and where it listens."""

    name: Annotated[str, Field(min_length=1)]
    """Node name (logs, metrics label)."""
    roles: tuple[Role, ...]
    """Roles hosted by this process."""
    api: HostPort = "127.0.0.1:8080"
    """REST API and /metrics listen address (HOST:PORT); "off" disables it."""
    control_addresses: tuple[IpAddress, ...] = ()
    """Addresses the control port is bound on; empty = all (0.0.0.0 and ::)."""
    control_port: Annotated[int, Field(ge=0, le=65535)] = 4342
    """UDP control port (0 = ephemeral, for tests)."""
    state_file: str | None = None
    """JSON file keeping API-written sites and static mappings across restarts."""
    log_level: LogLevel = "info"
    """Logging level."""
    dataplane: DataplaneName = "tun"
    """Forwarding backend for xTR roles."""
    rlocs: tuple[IpAddress, ...] = ()
    """xTR: local RLOCs."""
    rloc_interfaces: tuple[str, ...] = ()
    """xTR: interfaces whose addresses are local RLOCs."""
    data_port: Annotated[int, Field(ge=0, le=65535)] = 4341
    """xTR: UDP data port."""
    tun_tunnel_offload: bool = True
    """xTR, TUN data plane: TCP super-packets cross whole through UDP-tunnel GSO when the
    kernel has it (Linux 6.17+); false = the kernel cuts TCP before the TUN."""
    tun_udp_offload: bool = True
    """xTR, TUN data plane, with the tunnel offload and ``lan-gro``: UDP from an instance's LAN
    reaches the ITR in GRO-merged runs of one flow and crosses whole; false = one TUN read
    per datagram."""
    lan_gro: bool = True
    """xTR, TUN, VXLAN-GPE and VXLAN data planes: GRO and UDP GRO forwarding on the instance
    (LAN) interfaces, so runs of a flow's datagrams are carried as one packet, cut back into
    the datagrams at the far end; put back on stop. The eBPF data plane leaves LANs alone."""
    lan_batch_us: Annotated[int, Field(ge=0, le=10000)] = 20
    """With ``lan-gro``: NAPI polls of the LAN interfaces batched over this many microseconds
    (gro_flush_timeout, napi_defer_hard_irqs) so GRO has runs to merge where the device does
    not batch by itself (veth); the latency a packet may gain. 0 = leave those alone."""
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    """Map-Request answering processes sharing the control port (SO_REUSEPORT); 1 = in-process."""
    map_request_offload: MapRequestOffloadName = "off"
    """Map-Server: answer common-shape Map-Requests in the kernel from the daemon's reply
    templates ("ebpf": a tc program on the interface of the first IPv4 control address;
    falls back to the daemon, with a log line, when it cannot load)."""

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one role is needed")
        _unique(v, "role")
        return v


class NodeConfig(ConfigModel):
    """A whole node file."""

    node: Node
    site: tuple[Site, ...] = ()
    static_mapping: tuple[StaticMapping, ...] = ()
    map_server_options: MapServerOptions = MapServerOptions()
    map_resolver_options: MapResolverOptions = MapResolverOptions()
    map_resolver: tuple[MapResolverRef, ...] = ()
    map_server: tuple[MapServerRef, ...] = ()
    database_mapping: tuple[DatabaseMapping, ...] = ()
    proxy_etr: tuple[ProxyEtr, ...] = ()
    instance: tuple[Instance, ...] = ()
    xtr: XtrOptions = XtrOptions()

    @field_validator("site")
    @classmethod
    def _unique_sites(cls, v: tuple[Site, ...]) -> tuple[Site, ...]:
        _unique((s.name for s in v), "site name")
        return v

    @field_validator("instance")
    @classmethod
    def _unique_instances(cls, v: tuple[Instance, ...]) -> tuple[Instance, ...]:
        _unique((i.instance_id for i in v), "instance-id")
        return v

    @field_validator("static_mapping")
    @classmethod
    def _unique_static(cls, v: tuple[StaticMapping, ...]) -> tuple[StaticMapping, ...]:
        _unique((str(m.prefix) for m in v), "static mapping prefix")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> NodeConfig:
        roles = set(self.node.roles)
        if roles & {"etr", "xtr", "pxtr", "petr"} and self.database_mapping and not self.map_server:
            raise ValueError("an ETR with database-mapping needs at least one [[map-server]] to register with")
        if roles & {"etr", "xtr"}:
            for i, ms in enumerate(self.map_server):
                if ms.key is None:
                    raise ValueError(f"map-server[{i}].key is required for the ETR role")
        return self

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self.node.roles)

    def site_by_name(self, name: str) -> Site | None:
        for s in self.site:
            if s.name == name:
                return s
        return None


__all__ = [
    "ACTIONS",
    "ALGORITHMS",
    "ROLES",
    "XTR_ROLES",
    "AuthenticationKey",
    "ConfigModel",
    "DatabaseMapping",
    "Instance",
    "Locator",
    "MapResolverOptions",
    "MapResolverRef",
    "MapServerOptions",
    "MapServerRef",
    "Node",
    "NodeConfig",
    "ProxyEtr",
    "Site",
    "SiteEidPrefix",
    "StaticMapping",
    "XtrOptions",
    "kebab",
    "split_host_port",
]
