"""REST resources of the mapping system (Map-Server / Map-Resolver roles).

::

    GET    /sites                    sites (keys hidden) with registration / rejection counts
    GET    /sites/{name}             one site, its registrations and its rejections
    PUT    /sites/{name}             create or replace a site (body: the [[site]] schema)
    POST   /sites                    create a site (409 if it exists)
    DELETE /sites/{name}             delete a site and its registrations
    GET    /registrations            ?iid=N&eid=PREFIX&site=NAME
    GET    /rejections               ?site=NAME   per site and reason, last offender and time
    GET    /static-mappings
    PUT    /static-mappings          create or replace (body: the [[static-mapping]] schema)
    DELETE /static-mappings          ?eid-prefix=P&instance-id=N

Bodies are the config models (``config.model.Site``, ``StaticMapping``): kebab-case
keys, unknown keys refused, the same validation as the node file.  Handlers only parse,
call the :class:`MappingServiceLike` method and shape the HTTP status.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Query, Response

from ..config.model import Site, StaticMapping
from ..wire.prefix import EidPrefix


class MappingServiceLike(Protocol):
    def list_sites(self) -> list[dict[str, Any]]: ...

    def get_site(self, name: str) -> dict[str, Any] | None: ...

    def put_site(self, site: Site) -> bool: ...

    def create_site(self, site: Site) -> None: ...

    def delete_site(self, name: str) -> bool: ...

    def list_registrations(
        self, iid: int | None = None, eid: EidPrefix | None = None, site: str | None = None
    ) -> list[dict[str, Any]]: ...

    def rejections(self, site: str | None = None) -> list[dict[str, Any]]: ...

    def static_mappings(self) -> list[dict[str, Any]]: ...

    def put_static_mapping(self, m: StaticMapping) -> bool: ...

    def delete_static_mapping(self, prefix: EidPrefix) -> bool: ...


def _prefix(text: str, iid: int | None) -> EidPrefix:
    try:
        p = EidPrefix.parse(text, iid or 0)
    except (ValueError, IndexError) as e:
        raise HTTPException(status_code=400, detail=f"bad EID prefix {text!r}: {e}") from None
    return p


def mapping_router(svc: MappingServiceLike) -> APIRouter:
    r = APIRouter(tags=["mapping system"])

    @r.get("/sites", summary="Sites with their policy (keys hidden)")
    async def list_sites() -> list[dict[str, Any]]:
        return svc.list_sites()

    @r.get("/sites/{name}", summary="One site with its registrations and rejections")
    async def get_site(name: str) -> dict[str, Any]:
        d = svc.get_site(name)
        if d is None:
            raise HTTPException(status_code=404, detail=f"no site {name!r}")
        return d

    @r.put("/sites/{name}", summary="Create or replace a site")
    async def put_site(name: str, site: Site, response: Response) -> dict[str, Any]:
        if site.name != name:
            raise HTTPException(status_code=400, detail=f"site name {site.name!r} does not match the path {name!r}")
        replaced = svc.put_site(site)
        response.status_code = 200 if replaced else 201
        return {"site": name, "result": "replaced" if replaced else "created"}

    @r.post("/sites", status_code=201, summary="Create a site")
    async def post_site(site: Site) -> dict[str, Any]:
        try:
            svc.create_site(site)
        except KeyError:
            raise HTTPException(status_code=409, detail=f"site {site.name!r} exists") from None
        return {"site": site.name, "result": "created"}

    @r.delete("/sites/{name}", summary="Delete a site and its registrations")
    async def delete_site(name: str) -> dict[str, Any]:
        if not svc.delete_site(name):
            raise HTTPException(status_code=404, detail=f"no site {name!r}")
        return {"site": name, "result": "deleted"}

    @r.get("/registrations", summary="Registered EID prefixes")
    async def registrations(
        iid: int | None = Query(None, ge=0, le=0xFFFFFFFF, description="Only this instance-id"),
        eid: str | None = Query(None, description="Only inside this prefix (or the one covering this EID)"),
        site: str | None = Query(None, description="Only this site"),
    ) -> list[dict[str, Any]]:
        p = _prefix(eid, iid) if eid else None
        return svc.list_registrations(iid=iid, eid=p, site=site)

    @r.get("/rejections", summary="Rejected Map-Registers per site and reason")
    async def rejections(site: str | None = Query(None)) -> list[dict[str, Any]]:
        return svc.rejections(site)

    @r.get("/static-mappings", summary="Static mappings")
    async def static_mappings() -> list[dict[str, Any]]:
        return svc.static_mappings()

    @r.put("/static-mappings", summary="Create or replace a static mapping")
    async def put_static(mapping: StaticMapping, response: Response) -> dict[str, Any]:
        replaced = svc.put_static_mapping(mapping)
        response.status_code = 200 if replaced else 201
        return {"eid-prefix": str(mapping.prefix), "result": "replaced" if replaced else "created"}

    @r.delete("/static-mappings", summary="Delete a static mapping")
    async def delete_static(
        eid_prefix: str = Query(..., alias="eid-prefix"),
        instance_id: int = Query(0, alias="instance-id", ge=0, le=0xFFFFFFFF),
    ) -> dict[str, Any]:
        p = _prefix(eid_prefix, instance_id)
        if not svc.delete_static_mapping(p):
            raise HTTPException(status_code=404, detail=f"no static mapping {p}")
        return {"eid-prefix": str(p), "result": "deleted"}

    return r


__all__ = ["MappingServiceLike", "mapping_router"]
