"""The sites page's read side (ns.sites.overview): which computers a site holds and who
serves it, with assignment's subnet test, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from taskfleet.ns import sites
from taskfleet.storage.models import Computer, Site, TaskServer, TaskServerSite
from tests.ns.seeded import seeded


def run(db_url: str, check: Any) -> Any:
    return seeded(db_url, seed, lambda session, _: check(session))


async def seed(session: Any) -> None:
    def computer(name: str, *addresses: str) -> Computer:
        c = Computer(
            name=name, hardware_id=f"hw-{name}", addresses=list(addresses), enrolled_at=1.0
        )
        session.add(c)
        return c

    computer("pc-paris", "10.1.0.5/24", "127.0.0.1/8")
    computer("pc-lo", "127.0.0.1/8", "fe80::1/64")  # every host has these
    computer("pc-v6", "2001:db8::5/64")
    relay = computer("ts-paris-host", "10.1.9.9/24")
    far = computer("ts-far-host", "192.168.1.2/24")
    paris = Site(name="paris", subnets=["10.1.0.0/16", "2001:db8::/32"])
    session.add_all([paris, Site(name="loop", subnets=["127.0.0.0/8", "fe80::/10"])])
    await session.flush()
    made = {
        name: TaskServer(computer_id=host.id, name=name, url="http://x", credential_hash="x",
                         registered_at=1.0)
        for host, name in ((relay, "ts-paris"), (far, "ts-far"))
    }  # fmt: skip
    session.add_all(made.values())
    await session.flush()
    session.add(TaskServerSite(task_server_id=made["ts-far"].id, site_id=paris.id))


def test_a_site_holds_the_computers_in_its_subnets_and_names_who_serves_it(db_url: str) -> None:
    async def check(session: Any) -> None:
        # When the sites are read for the console
        shown = {o.site.name: o for o in await sites.overview(session)}
        # Then a site holds the computers in its subnets, task servers left out
        paris = shown["paris"]
        assert sorted(c.name for c in paris.computers) == ["pc-paris", "pc-v6"]
        # And it is served by the task server inside it and by the one told to serve it
        assert paris.serving == ["ts-far", "ts-paris"]
        assert paris.explicit == {"ts-far"}

    run(db_url, check)


def test_loopback_and_link_local_addresses_put_no_computer_in_a_site(db_url: str) -> None:
    async def check(session: Any) -> None:
        # Given a site made of the loopback and link-local ranges every host has
        loop = next(o for o in await sites.overview(session) if o.site.name == "loop")
        # Then no computer is in it (assignment's test: those addresses say nothing)
        assert loop.computers == [] and loop.serving == []

    run(db_url, check)


def test_a_site_is_found_by_id_or_by_name(db_url: str) -> None:
    async def check(session: Any) -> None:
        paris = await sites.get(session, "paris")
        assert (await sites.find(session, str(paris.id))).name == "paris"
        assert (await sites.find(session, "paris")).id == paris.id
        assert [s.name for s in await sites.listed(session)] == ["loop", "paris"]
        assert [s.name for s in await sites.listed(session, "loop")] == ["loop"]

    run(db_url, check)
