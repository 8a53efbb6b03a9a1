"""Host ownership: which merchant a destination host belongs to, and what a registration may change.

One rule everywhere (the link API, the claim of existing links, the attributor): a host belongs to the
merchant that registered the MOST SPECIFIC domain that is the host or a parent of it. shop1.example.com
registered by m1 stays m1's when m2 later registers example.com, so old and new links on a host always
agree on the owner.

Ownership never moves silently. A registration whose domain overlaps a domain of another merchant (the
same domain, a parent of it, or a subdomain of it) is refused, naming the owner, unless the admin passes
`transfer_domains`. With it, each listed domain becomes the registering merchant's: taken from its
previous owner (`same`), or carved out of another merchant's parent domain (`parent`); subdomains another
merchant registered stay that merchant's (`subdomain`: the most specific domain wins). Every overlap so
accepted is logged and appended to `Keys.domain_transfers`.

Ownership has a history: an order keeps the owner its click's host had when the order was first
received (`host_timeline`), so a domain moved later does not take the credit of orders received before.

Redis: `Keys.domain_owner(d)` names the owner of a registered domain d, `Keys.domain_owners(d)` since
when; `Keys.domain_subdomains(p)` maps every registered domain strictly below p to its owner (kept for
each parent p of a registered domain), so a registration reads the subdomains it overlaps at once instead
of scanning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from core.keys import Keys
from core.urls import host_candidates

OVERLAP_SAME = "same"  # the very domain is registered by another merchant
OVERLAP_PARENT = "parent"  # another merchant registered a parent of the domain
OVERLAP_SUBDOMAIN = "subdomain"  # another merchant registered a domain below it (it stays theirs)


@dataclass(frozen=True, slots=True)
class Overlap:
    domain: str  # the domain being registered
    taken: str  # the registered domain it overlaps
    owner: str  # the merchant that registered `taken`
    kind: str  # OVERLAP_SAME, OVERLAP_PARENT or OVERLAP_SUBDOMAIN

    def describe(self) -> str:
        if self.kind == OVERLAP_SAME:
            return f"domain {self.domain!r} is owned by merchant {self.owner!r}"
        relation = "a parent" if self.kind == OVERLAP_PARENT else "a subdomain"
        return f"{relation} of {self.domain!r}, {self.taken!r}, is owned by merchant {self.owner!r}"

    def as_dict(self) -> dict[str, str]:
        return {"domain": self.domain, "taken": self.taken, "owner": self.owner, "kind": self.kind}


def owner_of(host: str, owned: Mapping[str, str]) -> str:
    """The owner of `host` given the owner of each registered domain ('' if none covers it)."""
    return next((owned[name] for name in host_candidates(host) if name in owned), "")


def parents(domain: str) -> list[str]:
    """The registrable parents of a domain (the top-level domain excluded), nearest first."""
    return host_candidates(domain)[1:]


def find_overlaps(
    merchant_id: str,
    domains: list[str],
    owned: Mapping[str, str],
    below: Mapping[str, Mapping[str, str]],
) -> list[Overlap]:
    """Every way `domains` overlap domains registered by other merchants: the one that owns each domain's
    hosts today (the same domain or its nearest registered parent), and every registered domain below it
    (which would keep its hosts: the most specific domain wins). `owned`: the owner of each
    domain of `domains` and of each of their parents that is registered; `below`: per domain, the
    registered domains under it and their owners."""
    found = []
    for domain in domains:
        # Only the nearest registered domain at or above it owns its hosts today: a farther parent of
        # another merchant has already lost this subtree to it.
        name = next((n for n in host_candidates(domain) if n in owned), None)
        if name is not None and owned[name] != merchant_id:
            kind = OVERLAP_SAME if name == domain else OVERLAP_PARENT
            found.append(Overlap(domain, name, owned[name], kind))
        for name, owner in sorted(below.get(domain, {}).items()):
            if owner != merchant_id:
                found.append(Overlap(domain, name, owner, OVERLAP_SUBDOMAIN))
    return found


def transfer_entry(overlap: Overlap, merchant_id: str, now_ms: int) -> dict[str, str]:
    """The `Keys.domain_transfers` stream entry of one accepted overlap."""
    return {
        "domain": overlap.domain,
        "taken": overlap.taken,
        "kind": overlap.kind,
        "from": overlap.owner,
        "to": merchant_id,
        "at_ms": str(now_ms),
    }


async def read_owners(redis: Redis, keys: Keys, hosts: list[str]) -> dict[str, str]:
    """The current owner of each host ('' if none) by `owner_of`: one MGET for all of them."""
    names = sorted({name for host in hosts for name in host_candidates(host)})
    if not names:
        return {}
    # MGET by name: on a Redis Cluster, a pipeline's `mget` inside WATCH is split per slot and never
    # sent (redis-py); the keys are all in the control slot anyway (core/keys.py).
    found = await redis.execute_command("MGET", *[keys.domain_owner(n) for n in names])
    owned = {n: o.decode() for n, o in zip(names, found, strict=True) if o}
    return {host: owner_of(host, owned) for host in hosts}


def host_timeline(
    host: str, current: Mapping[str, str], history: Mapping[str, Sequence[tuple[int, str]]]
) -> tuple[tuple[int, str], ...]:
    """Who owned `host` since when, by `owner_of` at each change: (since_ms, owner) from 0, ascending, one
    entry per change ('' = nobody). `current`: the owner of each registered name now; `history`: each
    name's (at_ms, owner) ascending (`Keys.domain_owners`). A name owned now without a history was
    registered before histories were kept: owned by its current owner since 0."""
    lines = {
        name: history.get(name) or ([(0, current[name])] if name in current else [])
        for name in host_candidates(host)
    }
    timeline: list[tuple[int, str]] = []
    for at in sorted({0, *(since for line in lines.values() for since, _ in line)}):
        owned = {}
        for name, line in lines.items():
            held = [who for since, who in line if since <= at]
            if held and held[-1]:
                owned[name] = held[-1]
        owner = owner_of(host, owned)
        if not timeline or timeline[-1][1] != owner:
            timeline.append((at, owner))
    return tuple(timeline)


def history_entries(
    merchant_id: str,
    domains: list[str],
    owned: Mapping[str, str],
    latest: Mapping[str, bytes | None],
    now_ms: int,
) -> list[tuple[str, str]]:
    """(domain, entry) to append to `Keys.domain_owners` when `merchant_id` registers `domains`. `owned`:
    the owner of each registered domain now; `latest`: each domain's last entry (None: no history). An
    entry is dated after the one before it, whatever this machine's clock says (a retry after a
    WatchError, or another node's clock, may be behind): at the same time, the owner before would vanish
    from host_timeline. A domain taken from an owner with no history
    (registered before histories were kept) first gets that owner's entry at 0: its orders received until
    now keep their clicks."""
    entries = []
    for domain in domains:
        last = latest.get(domain)
        since_ms = now_ms if last is None else max(now_ms, int(last.split(b":", 1)[0]) + 1)
        if last is None and owned.get(domain, merchant_id) != merchant_id:
            entries.append((domain, f"0:{owned[domain]}"))
        entries.append((domain, f"{since_ms}:{merchant_id}"))
    return entries


async def read_owner_timelines(
    redis: Redis, keys: Keys, hosts: list[str]
) -> dict[str, tuple[str, tuple[tuple[int, str], ...]]]:
    """(the owner now, `host_timeline`) of each host: one MGET and one pipeline of LRANGEs."""
    names = sorted({name for host in hosts for name in host_candidates(host)})
    if not names:
        return {}
    found = await redis.execute_command("MGET", *[keys.domain_owner(n) for n in names])  # see read_owners
    current = {n: o.decode() for n, o in zip(names, found, strict=True) if o}
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.lrange(keys.domain_owners(name), 0, -1)
        lists = await pipe.execute()
    history = {}
    for name, entries in zip(names, lists, strict=True):
        if entries:
            pairs = (entry.decode().split(":", 1) for entry in entries)
            history[name] = [(int(at), who) for at, who in pairs]
            for index in range(1, len(entries)):  # in list order, the order they were made: see register
                since, who = history[name][index]
                history[name][index] = (max(since, history[name][index - 1][0] + 1), who)
    return {host: (owner_of(host, current), host_timeline(host, current, history)) for host in hosts}


async def read_overlap_facts(
    redis: Redis, keys: Keys, domains: list[str]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """What `find_overlaps` needs, read from Redis (inside the caller's WATCH)."""
    names = sorted({n for d in domains for n in host_candidates(d)})
    found = await redis.execute_command("MGET", *[keys.domain_owner(n) for n in names])  # see read_owners
    owned = {n: o.decode() for n, o in zip(names, found, strict=True) if o}
    below = {}
    for domain in domains:
        subs = await redis.hgetall(keys.domain_subdomains(domain))
        below[domain] = {k.decode(): v.decode() for k, v in subs.items()}
    return owned, below


def watched_keys(keys: Keys, domains: list[str]) -> list[str]:
    """Every key whose change would invalidate an overlap check of `domains`."""
    names = sorted({n for d in domains for n in host_candidates(d)})
    return [
        *(keys.domain_owner(n) for n in names),
        *(keys.domain_subdomains(d) for d in domains),
        *(keys.domain_owners(d) for d in domains),
    ]
