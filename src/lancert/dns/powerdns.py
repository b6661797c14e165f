"""``lancert dns powerdns``: a PowerDNS Authoritative configuration that serves the zone from lancert's
own database, answering what the embedded server answers.

Choice: PowerDNS's generic SQL backend (gsqlite3 for the service's SQLite file, gpgsql for its
PostgreSQL), with the backend's lookup queries replaced by queries over a derived table of lancert's
records; no copy of the data, no table of PowerDNS's own, no push. Why not the HTTP API driven by the
service: every TXT change would have to reach every PowerDNS instance (and be retried when one is down),
and the zone would exist in two places that can disagree; over SQL each PowerDNS reads what the service
committed, like every embedded worker does. Why not a view created by a migration: the zone's constants
(SOA, NS address, CAA issuers) are configuration of the DNS deployment, not rows of the service, and
PowerDNS's queries get ``:qname`` so names that exist only by computation (``<ip>.<label>.<zone>``,
``<label>.<zone>``) can be produced for exactly the name asked.

The derived table (one ``WITH`` query, the parameter used once so that gpgsql's positional binding
works) holds:

- SOA, NS, CAA at the apex and ``ns.<zone>`` A/AAAA: literals written here;
- ``_acme-challenge.<label>.<zone>`` TXT: ``dns_txt_records``, read live;
- ``<a-b-c-d>.<label>.<zone>``: an A record computed in SQL, the octets checked as the embedded server
  checks them (decimal, at most 255, no leading zero). Not a LUA record with ``createForward()``, as the
  issue suggested: PowerDNS does not packet-cache answers made by LUA records and builds a Lua state for
  each (791 queries/s against 46,299 for a plain zone in one dnsperf run), and ``createForward()``
  answers ``0.0.0.0`` for a label that is no address (``300-1-1-1``);
- ``<x>.<label>.<zone>`` whose first label could be a dashed IPv6 address (``0-9a-f-``, two dashes or
  more, not four decimal groups): a LUA AAAA record, a short Lua chunk that parses the label as lancert
  does (``createForward6()`` reads another form) and returns nothing when it is no address. IPv6 LAN
  names are rare; IPv4 queries never run Lua;
- ``<label>.<zone>`` for a valid box label: an empty non-terminal row (type NULL), so PowerDNS answers
  NODATA, not NXDOMAIN, as the embedded server does (RFC 8020).

Differences that remain (documented in the README): a first label of ``0-9a-f-`` with two dashes or more
that is no address (``1-2-3``) gets NODATA from PowerDNS and NXDOMAIN from the embedded server; ANY over
UDP gets TC=1 (PowerDNS's ``any-to-tcp``) instead of one RRset.

Caches: PowerDNS's packet and query caches live 1 s here (20 s and 60 s by default), so a TXT record
is served within :data:`lancert.dns.TXT_MAX_STALENESS` of its commit, as from the embedded server. They
cannot be longer for the other names alone (one setting for all), so a name not asked within the last
second costs one SQL lookup; the zone cache spares the SOA lookups up the name.
"""

# S608: the SQL here is configuration text for PowerDNS, built from the zone's own validated names and
# constants (quoted by _sql_string); the only runtime input, the name asked, is PowerDNS's bound :qname.
# ruff: noqa: S608

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from lancert.dns.zone import ANSWER_TTL, NEGATIVE_TTL, SOA_TIMERS, TXT_TTL
from lancert.errors import LancertError
from lancert.storage.files import KEY_MODE, atomic_write

# Lua of the LUA records: ``qname`` is the name asked; an empty table means "no record of this type".
# No "#" anywhere (Lua's length operator): PowerDNS's configuration parser starts a comment there.
_LUA_AAAA = (
    "local l=qname:getRawLabels()[1] "
    "if select(2,l:gsub('-',''))<2 or not l:match('^[0-9a-f-]+$') then return {} end "
    "local ok,a=pcall(newCA,(l:gsub('-',':'))) "
    "if not ok or not a:isIPv6() then return {} end "
    "return a:toString()"
)


@dataclass(frozen=True)
class PowerDNSLayout:
    zone: str
    database: str  # the service's SQLAlchemy URL
    ns_address: str = "127.0.0.1"
    caa_issuers: tuple[str, ...] = ()
    address: str = "127.0.0.1"
    port: int = 53


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _row(name: str, rtype: str, content: str, ttl: int) -> str:
    return (
        f"SELECT {_sql_string(content)} AS content, {ttl} AS ttl, 0 AS prio, {_sql_string(rtype)} AS type,"
        f" 1 AS domain_id, 0 AS disabled, {_sql_string(name)} AS name, 1 AS auth"
    )


_V4_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


def _name_ctes(zone: str, postgres: bool) -> str:
    """CTEs after ``q`` (the name asked, lower-case) that take it apart, each MATERIALIZED (inlined,
    every column reference re-expands the CTEs below it: 1.3 ms a lookup instead of 60 µs): ``rel`` (the
    name without ``.<zone>``, '' outside the zone), ``dots`` in it, its ``first`` and ``second`` labels, the
    ``dashes`` in the first, and ``v4``: the first label spells an IPv4 address as lancert writes it
    (four decimal octets without leading zeros)."""
    suffix = "." + zone
    under = f"q.n LIKE {_sql_string('%' + suffix)} AND length(q.n) > {len(suffix)}"
    ctes = [
        f"l AS MATERIALIZED (SELECT q.n AS n, CASE WHEN {under}"
        f" THEN substr(q.n, 1, length(q.n) - {len(suffix)}) ELSE '' END AS rel FROM q)",
    ]
    if postgres:
        ctes.append(
            "m AS MATERIALIZED (SELECT n, rel, length(rel) - length(replace(rel, '.', '')) AS dots,"
            " split_part(rel, '.', 1) AS first, split_part(rel, '.', 2) AS second FROM l)"
        )
        ctes.append(
            "v AS MATERIALIZED (SELECT m.*, length(first) - length(replace(first, '-', '')) AS dashes,"
            f" first ~ '^{_V4_OCTET}(-{_V4_OCTET}){{3}}$' AS v4,"
            " first ~ '^[0-9]+(-[0-9]+){3}$' AS v4_shape FROM m)"
        )
        return ", ".join(ctes)
    ctes.append(
        "m AS MATERIALIZED (SELECT n, rel, length(rel) - length(replace(rel, '.', '')) AS dots,"
        " substr(rel, 1, instr(rel, '.') - 1) AS first, substr(rel, instr(rel, '.') + 1) AS second FROM l)"
    )
    # SQLite has no regular expressions: split the first label at its dashes and check each octet.
    ctes.append("o1 AS MATERIALIZED (SELECT m.*, substr(first, 1, instr(first, '-') - 1) AS a,"
                " substr(first, instr(first, '-') + 1) AS r1 FROM m)")
    ctes.append("o2 AS MATERIALIZED (SELECT o1.*, substr(r1, 1, instr(r1, '-') - 1) AS b,"
                " substr(r1, instr(r1, '-') + 1) AS r2 FROM o1)")
    ctes.append("o3 AS MATERIALIZED (SELECT o2.*, substr(r2, 1, instr(r2, '-') - 1) AS c,"
                " substr(r2, instr(r2, '-') + 1) AS d FROM o2)")
    octet = ("(length({0}) BETWEEN 1 AND 3 AND ({0} = '0' OR {0} NOT GLOB '0*')"
             " AND CAST({0} AS INTEGER) <= 255)")
    shape = ("(first <> '' AND first NOT GLOB '*[^0-9-]*'"
             " AND length(first) - length(replace(first, '-', '')) = 3)")
    ctes.append(
        "v AS MATERIALIZED (SELECT o3.*, length(first) - length(replace(first, '-', '')) AS dashes,"
        f" ({shape} AND {' AND '.join(octet.format(x) for x in 'abcd')}) AS v4, {shape} AS v4_shape FROM o3)"
    )
    return ", ".join(ctes)


def _records_sql(layout: PowerDNSLayout, postgres: bool) -> str:
    """A derived table (content, ttl, prio, type, domain_id, disabled, name, auth) for the name asked,
    over the CTEs of :func:`_name_ctes`; rows of other names may be in it, the lookup filters by name."""
    zone = layout.zone
    ns = ipaddress.ip_address(layout.ns_address)
    soa = f"ns.{zone} hostmaster.{zone} " + " ".join(str(t) for t in SOA_TIMERS)
    rows = [
        _row(zone, "SOA", soa, NEGATIVE_TTL),
        _row(zone, "NS", f"ns.{zone}", ANSWER_TTL),
        _row(f"ns.{zone}", "A" if ns.version == 4 else "AAAA", str(ns), ANSWER_TTL),
    ]
    rows += [_row(zone, "CAA", f'0 issue "{issuer}"', ANSWER_TTL) for issuer in layout.caa_issuers]
    if postgres:
        box_ok = "{} ~ '^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?$'"
        hex_dash = "first ~ '^[0-9a-f-]+$'"
    else:
        box_ok = ("({0} GLOB '[a-z0-9]*' AND {0} GLOB '*[a-z0-9]' AND {0} NOT GLOB '*[^a-z0-9-]*'"
                  " AND length({0}) <= 63)")
        hex_dash = "(first <> '' AND first NOT GLOB '*[^0-9a-f-]*')"
    ip_name = f"dots = 1 AND {box_ok.format('second')}"
    ipv4 = f"SELECT replace(first, '-', '.'), {ANSWER_TTL}, 0, 'A', 1, 0, n, 1 FROM v WHERE {ip_name} AND v4"
    ipv6 = (
        f"SELECT {_sql_string('AAAA ' + chr(34) + ';' + _LUA_AAAA + chr(34))}, {ANSWER_TTL}, 0, 'LUA', 1, 0,"
        f" n, 1 FROM v WHERE {ip_name} AND {hex_dash} AND dashes >= 2 AND NOT v4_shape"
    )
    ent = (
        "SELECT NULL, NULL, NULL, NULL, 1, 0, n, 1 FROM v"
        f" WHERE dots = 0 AND {box_ok.format('rel')} AND rel <> 'ns'"
    )
    txt = (
        f"SELECT '\"' || replace(value, '\"', '\\\"') || '\"', {TXT_TTL}, 0, 'TXT', 1, 0, name, 1"
        " FROM dns_txt_records, q WHERE name = q.n"
    )
    return " UNION ALL ".join([*rows, ipv4, ipv6, ent, txt])


_PARAM_TYPES = {"domain_id": "integer"}


def _params(names: list[str], postgres: bool) -> list[str]:
    """Placeholders in the order PowerDNS binds them: gsqlite3 binds ``:name``, gpgsql binds by
    position (``$1``...; typed, since PostgreSQL cannot infer the type of a bare ``SELECT $1``)."""
    if not postgres:
        return [f":{name}" for name in names]
    return [f"${i}::{_PARAM_TYPES.get(name, 'text')}" for i, name in enumerate(names, 1)]


def _lookup(ctes: str, records: str, params: list[str], where: str, postgres: bool) -> str:
    """One lookup query; each parameter appears once, in a CTE, whatever the dialect."""
    selects = ", ".join(f"{ph} AS {name}" for ph, name in zip(_params(params, postgres), params, strict=True))
    return (
        f"WITH p AS MATERIALIZED (SELECT {selects}), q AS MATERIALIZED (SELECT lower(p.qname) AS n FROM p),"
        f" {ctes} "
        "SELECT r.content, r.ttl, r.prio, r.type, r.domain_id, r.disabled, r.name, r.auth "
        # Scalar subqueries, not a join with p and q: the join made SQLite build an automatic index on
        # the derived table at every lookup (1.4 ms instead of 0.1 ms).
        f"FROM ({records}) r WHERE r.name = (SELECT n FROM q) {where}"
    )


def render(layout: PowerDNSLayout) -> str:
    """``pdns.conf`` for ``layout``."""
    url = make_url(layout.database)
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise LancertError(f"PowerDNS cannot read a {backend} database: use SQLite or PostgreSQL")
    postgres = backend == "postgresql"
    prefix = "gpgsql" if postgres else "gsqlite3"
    records = _records_sql(layout, postgres)
    ctes = _name_ctes(layout.zone, postgres)
    domain, kind = _params(["domain", "kind"], postgres)
    (include_disabled,) = _params(["include_disabled"], postgres)
    zone = layout.zone
    soa = f"ns.{zone} hostmaster.{zone} " + " ".join(str(t) for t in SOA_TIMERS)
    lines = [
        f"# Written by `lancert dns powerdns` for the zone {zone}: serve it with",
        "#   pdns_server --config-dir=<this directory>",
        "# Records come from lancert's database through the queries below (see lancert.dns.powerdns).",
        f"launch={prefix}",
        f"local-address={layout.address}",
        f"local-port={layout.port}",
        "daemon=no",
        "guardian=no",
        "write-pid=no",
        "disable-syslog=yes",
        "enable-lua-records=yes",
        # No query of this server ever leaves it: no security polling, no resolver, no notifies.
        "security-poll-suffix=",
        "resolver=no",
        "primary=no",
        "secondary=no",
        "version-string=anonymous",
        # TXT records must show within 2 s of their commit (lancert.dns.TXT_MAX_STALENESS).
        "cache-ttl=1",
        "query-cache-ttl=1",
        "negquery-cache-ttl=1",
        # The zone cache (from get-all-domains-query below) finds the zone without walking up the name
        # with SOA lookups: one SQL query per uncached DNS query instead of four or five.
        "zone-cache-refresh-interval=60",
        "consistent-backends=yes",
        "reuseport=yes",
        f"{prefix}-dnssec=no",
        f"{prefix}-basic-query="
        + _lookup(ctes, records, ["qtype", "qname"], "AND r.type = (SELECT qtype FROM p)", postgres),
        f"{prefix}-id-query="
        + _lookup(
            ctes,
            records,
            ["qtype", "qname", "domain_id"],
            "AND r.type = (SELECT qtype FROM p) AND r.domain_id = (SELECT domain_id FROM p)",
            postgres,
        ),
        f"{prefix}-any-query=" + _lookup(ctes, records, ["qname"], "", postgres),
        f"{prefix}-any-id-query="
        + _lookup(
            ctes, records, ["qname", "domain_id"], "AND r.domain_id = (SELECT domain_id FROM p)", postgres
        ),
        f"{prefix}-info-zone-query=SELECT 1, {_sql_string(zone)}, '', 0, 0, 'NATIVE', '', '', '' "
        f"WHERE {domain} = {_sql_string(zone)}",
        f"{prefix}-get-all-domains-query=SELECT 1, {_sql_string(zone)}, {_sql_string(soa)}, 'NATIVE', '',"
        f" 0, 0, '' WHERE {include_disabled} IS NULL OR 1 = 1",
        # No metadata, no DNSSEC keys: lancert's zone has neither (and no tables of PowerDNS exist).
        f"{prefix}-get-all-domain-metadata-query=SELECT '', '' WHERE 1 = 0 AND {domain} = ''",
        f"{prefix}-get-domain-metadata-query=SELECT '' WHERE 1 = 0 AND {domain} = '' AND {kind} = ''",
        f"{prefix}-list-domain-keys-query=SELECT 0, 0, 0, 0, '' WHERE 1 = 0 AND {domain} = ''",
    ]
    if postgres:
        lines += _postgres_connection(url)
    else:
        lines.append(f"gsqlite3-database={url.database}")
        lines.append("gsqlite3-pragma-journal-mode=WAL")
    return "\n".join(lines) + "\n"


def _postgres_connection(url: object) -> list[str]:
    from sqlalchemy.engine import URL

    assert isinstance(url, URL)
    lines = [f"gpgsql-dbname={url.database or ''}", f"gpgsql-user={url.username or ''}"]
    host = url.host or url.query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    if host:
        lines.append(f"gpgsql-host={host}")
    if url.port:
        lines.append(f"gpgsql-port={url.port}")
    if url.password:
        lines.append(f"gpgsql-password={url.password}")
    return lines


def write_config(out: Path, layout: PowerDNSLayout) -> Path:
    """``out/pdns.conf`` (0600: it may hold the database password)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pdns.conf"
    atomic_write(path, render(layout).encode(), mode=KEY_MODE)
    return path
