"""``lancert dns powerdns``: a PowerDNS Authoritative configuration that serves the zone from lancert's
own database, answering what the embedded server answers.

Choice: PowerDNS's ``lua2`` backend (Debian ``pdns-backend-lua2``) alone, with a script written here
(``lancert-zone.lua``) that computes every answer inside PowerDNS, as :mod:`lancert.dns.zone` does,
and keeps the database's challenge TXT records (and the CAA issuers the service stored) in memory,
re-read at most every :data:`TXT_REFRESH_INTERVAL` while queries come in (LuaSQL, Debian
``lua-sql-postgres`` / ``lua-sql-sqlite3``). So no query costs an SQL round trip: a box name the caches
miss costs one call into a Lua state that each PowerDNS thread keeps for its life, about what a plain
zone's in-memory lookup costs; the database stays the one source of truth, each PowerDNS node reads it
over PostgreSQL (two SELECTs of a table of challenges in flight, twice a second per thread while it
answers), and nothing pushes to PowerDNS.

Measured against the alternatives, with dnsperf on this 2-core machine (``bench/dns_qps.py``, figures
as a fraction of plain-zone PowerDNS in the same run, 100,000 distinct names; README's table):

- the generic SQL backend with every name computed by one SQL query (the previous configuration):
  0.14-0.27x, one lookup of 66-104 µs of CPU each, because the 1-second caches that TXT freshness
  needs make almost every box name a miss;
- LUA records (``createForward()``) behind the SQL backend: PowerDNS builds a Lua state per query and
  never packet-caches them, 791 q/s (0.02x), and a flood of IPv6-style names took PowerDNS down;
- ``lua2`` for the computed names beside the SQL backend for TXT: PowerDNS asks the next backend
  only about lookups the earlier ones answer with nothing (seen with a second backend that logs its
  lookups), so an address name costs no SQL; but every name that does not exist costs three SQL queries
  (the name, then the wildcards ``*.<label>.<zone>`` and ``*.<zone>``), so a flood of made-up names
  is a flood of SQL round trips to the shared PostgreSQL, and a host name while its challenge is
  published (an empty non-terminal) needs the TXT table in the first backend anyway;
- a CNAME'd challenge zone with a short TTL, or longer caches with TXT outside them: the zone
  split only moves which caches TXT sits behind; it is the miss, not the cache hit, that costs, and at
  a million names a miss is the common case whatever the cache TTL;
- the remote backend (JSON over a socket to a lancert process): one process round trip and two JSON
  encodings per miss, more than the Python embedded server spends answering the query itself.

The ``lua2`` script alone is what bench/README.md measures against a plain zone (83% and 84% of its
q/s at 100,000 and 1,000,000 names in the run recorded there, 16.7 and 32.9 ms of CPU per 1,000
queries against 12.1 and 26.2), and it does what the embedded server does name by name
(tests/dns/test_dns_powerdns.py compares the two for every name class).

Differences that remain: ANY over UDP gets TC=1 (PowerDNS's ``any-to-tcp``) where the embedded server
gives one RRset; PowerDNS adds ``ns.<zone>``'s address as glue to NS answers; while the database cannot
be read for longer than :data:`lancert.dns.TXT_MAX_STALENESS`, both answer challenge names SERVFAIL
and PowerDNS logs it once a query. Response rate limiting: PowerDNS Authoritative has none; the
configuration keeps a flood from taking PowerDNS down (no Lua state per query, IPv6 names cost what
IPv4 names cost, each receiver thread answers itself so no queue can overflow, the guardian restarts a
crashed server, docs/powerdns.service restarts the guardian), and docs/dns.md shows where a per-source
limit goes (dnsdist in front, or the host's firewall).

Caches: PowerDNS's packet cache is off (``cache-ttl=0``) and its query cache keeps 60 s what the
script computes from the name alone. The answers that follow the database (challenge TXT, a host name
while its challenge is published, CAA read live) carry a scopeMask, which keeps them out of the query
cache (seen: a value that changes at each lookup shows at each query), and negative lookups are never
kept (``negquery-cache-ttl=0``); so every answer about a challenge is as fresh as the thread's snapshot,
at most :data:`TXT_REFRESH_INTERVAL` (0.5 s) plus one read old, inside
:data:`lancert.dns.TXT_MAX_STALENESS` (2 s). The query cache spares the SOA lookup PowerDNS makes for
every query (with it off, 85-98 µs of CPU per uncached query at a million names instead of 52-60).

Why no packet cache: it keeps whole responses and nothing marks a negative one as uncacheable (PowerDNS
4.7 skips the cache only when a record of the response has a scopeMask, and NXDOMAIN or NODATA has none
from the backend: the SOA comes from the zone's data, an empty non-terminal is not put in the response).
Its lifetimes count whole seconds of the wall clock (an entry made at second T with ``cache-ttl=1`` is
served until T+2), so a challenge name asked just before its TXT was committed stayed "no such name" up
to 2 s from the packet cache alone, then once more from a snapshot read just before the commit, cached
again: 2.06-2.37 s after the commit, seen by tests/dns/test_dns_powerdns.py
(``test_a_challenge_answered_nxdomain_just_before_its_txt_is_written_is_served_within_2_s``) with the
previous ``cache-ttl=1``. A shorter snapshot period cannot fix that (the packet cache alone reaches 2 s),
nor can a negative TTL of 0 (it would change the answers resolvers cache for every name). Off, the cache
costs nothing measurable at the counts that matter, where names recur less often than any cache
lifetime TXT allows: in one run under the bench lock (load 1.0-2.2, dnsperf -c 4, 6 s, 2 rounds,
medians, q/s as a fraction of a plain-zone PowerDNS in the same run) ``cache-ttl=1`` with the query
cache at 60 s gave 56% and 74% at 100,000 and 1,000,000 names (26.6 and 40.3 ms of CPU per 1,000
queries), ``cache-ttl=0`` with it at 60 s 57% and 74% (23.9 and 39.7 ms), and ``cache-ttl=0`` with
the query cache at 10 s 72% and 50% (19.5 and 43.9 ms; its two rounds at 100,000 spread less, the
others' from 18 to 31 ms): 60 s kept, it is what the million names need.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.engine import URL

from lancert.dns import TXT_MAX_STALENESS
from lancert.dns.zone import ANSWER_TTL, NEGATIVE_TTL, SOA_TIMERS, TXT_TTL
from lancert.errors import LancertError
from lancert.storage.files import KEY_MODE, atomic_write

TXT_REFRESH_INTERVAL = 0.5  # seconds between two reads of the TXT table by one PowerDNS thread


@dataclass(frozen=True)
class PowerDNSLayout:
    zone: str
    database: str  # the service's SQLAlchemy URL
    ns_address: str = "127.0.0.1"
    caa_issuers: tuple[str, ...] = ()  # empty: the issuers the service stored (read live)
    address: str = "127.0.0.1"
    port: int = 53
    threads: int = 0  # receiver threads; 0: the cores of the machine that writes the configuration


def _lua_string(value: str) -> str:
    """A Lua string literal for any text: printable ASCII as is, everything else as decimal escapes."""
    out = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _conninfo(url: URL) -> str:
    """A libpq connection string for the service's PostgreSQL URL (LuaSQL passes it to libpq)."""
    host = url.host or url.query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    fields = {"dbname": url.database, "user": url.username, "password": url.password, "host": host,
              "port": str(url.port) if url.port else None}
    return " ".join(
        f"{key}='" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
        for key, value in fields.items() if value
    )


_LUA = r"""-- Written by `lancert dns powerdns` for the zone ZONE_TEXT (see lancert.dns.powerdns): every
-- answer is computed here as lancert's embedded server computes it; challenge TXT records and the CAA
-- issuers come from lancert's database, re-read at most every REFRESH seconds while queries come in.
-- LuaJIT's trace compiler off: called from C once a query, with a different name each time, the
-- script kept growing side traces (hundreds in 3 s) and compiling them, until LuaJIT gave up and fell
-- back to the interpreter; interpreted throughout it costs less (lancert.dns.powerdns).
if jit then jit.off() end
local ffi = require("ffi")
local driver = require(DRIVER)
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } lancert_timespec;
int clock_gettime(int clock, lancert_timespec *now);
]]
local clock = ffi.new("lancert_timespec")
local function monotonic()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

local ZONE = ZONE_STRING
local ZONE_DN = newDN(ZONE .. ".")
local ZONE_LABELS = {}
for label in ZONE:gmatch("[^.]+") do ZONE_LABELS[#ZONE_LABELS + 1] = label end
local DEPTH = #ZONE_LABELS
local ANSWER_TTL, TXT_TTL, NEGATIVE_TTL = ANSWER_TTL_VALUE, TXT_TTL_VALUE, NEGATIVE_TTL_VALUE
local REFRESH, MAX_STALENESS = REFRESH_VALUE, MAX_STALENESS_VALUE
local SOA_CONTENT = SOA_STRING
local NS_TYPE, NS_ADDRESS = NS_TYPE_CODE, NS_ADDRESS_STRING
local FIXED_CAA = FIXED_CAA_TABLE  -- nil: the issuers the service stored
local CHALLENGE = "_acme-challenge"
local ENT, A, NS, SOA, TXT, AAAA, ANY, CAA = 0, 1, 2, 6, 16, 28, 255, 257
local SUFFIX, APEX = "." .. ZONE .. ".", ZONE .. "."
local SUFFIX_LEN = #SUFFIX
local MAX_DEPTH = 3  -- no name more than 3 labels below the apex has records
local byte, sub, find, lower, gsub = string.byte, string.sub, string.find, string.lower, string.gsub

-- The database ------------------------------------------------------------------------------------
local env = driver[DRIVER_NAME]()
local conn = nil
local txt, caa = {}, {}
local read_at, tried_at, failures = -1e9, -1e9, 0

local function query_rows(sql)
  local cursor = assert(conn:execute(sql))
  local rows = {}
  local row = cursor:fetch({}, "n")
  while row do
    rows[#rows + 1] = { row[1], row[2] }
    row = cursor:fetch({}, "n")
  end
  cursor:close()
  return rows
end

local function read_snapshot()
  if conn == nil then conn = assert(CONNECT) end
  local records = {}
  for _, row in ipairs(query_rows("SELECT name, value FROM dns_txt_records ORDER BY id")) do
    local name = row[1]:lower()
    local values = records[name]
    if values == nil then values = {}; records[name] = values end
    values[#values + 1] = row[2]
  end
  local issuers = {}
  if FIXED_CAA == nil then
    for _, row in ipairs(query_rows("SELECT value, name FROM service_state WHERE name = 'caa_issuers'")) do
      for issuer in row[1]:gmatch('"([a-z0-9.-]+)"') do issuers[#issuers + 1] = issuer end
    end
  end
  return records, issuers
end

local function refresh()
  local now = monotonic()
  if now - tried_at < REFRESH then return end
  tried_at = now
  local ok, records, issuers = pcall(read_snapshot)
  if ok then
    txt, caa, read_at, failures = records, issuers, now, 0
    return
  end
  failures = failures + 1
  if failures == 1 or failures % 120 == 0 then
    pdnslog("lancert: cannot read TXT records (" .. failures .. " time(s)): " .. tostring(records),
            pdns.loglevels.Warning)
  end
  if conn ~= nil then pcall(function() conn:close() end) end
  conn = nil
end

-- Names ---------------------------------------------------------------------------------------------
-- Every query that misses PowerDNS's caches runs this code, so it is written for LuaJIT's compiler:
-- byte loops and plain string.find (compiled), never Lua patterns (find with a pattern, match, gmatch,
-- gsub run in the interpreter), and the whole name as one string (DNSName:toString) rather than a
-- table of labels built by PowerDNS.
local function box_label(label)
  local n = #label
  if n == 0 or n > 63 then return false end
  for i = 1, n do
    local c = byte(label, i)
    if not ((c >= 97 and c <= 122) or (c >= 48 and c <= 57) or (c == 45 and i > 1 and i < n)) then
      return false
    end
  end
  return true
end

local function octet(text, first, last)  -- text[first..last], decimal digits: 0-255 without leading zeros
  local n = last - first + 1
  if n < 1 or n > 3 or (n > 1 and byte(text, first) == 48) then return false end
  local value = 0
  for i = first, last do value = value * 10 + byte(text, i) - 48 end
  return value <= 255
end

local function hextets(text, first, last)  -- groups of 1-4 hex digits separated by "-": their count, or nil
  if first > last then return 0 end
  local count, run = 1, 0
  for i = first, last do
    if byte(text, i) == 45 then
      if run == 0 then return nil end
      count, run = count + 1, 0
    else
      run = run + 1
      if run > 4 then return nil end
    end
  end
  if run == 0 then return nil end
  return count
end

-- The address a first label spells (lancert.dns.names.address_from_label): type code and text, or nil.
local function address_of(label)
  local n = #label
  local dashes, decimal, hex = 0, true, true
  for i = 1, n do
    local c = byte(label, i)
    if c == 45 then
      dashes = dashes + 1
    elseif c < 48 or c > 57 then
      decimal = false
      if c < 97 or c > 102 then hex = false; break end
    end
  end
  if dashes == 3 and decimal then
    local p1 = find(label, "-", 1, true)
    local p2 = find(label, "-", p1 + 1, true)
    local p3 = find(label, "-", p2 + 1, true)
    if octet(label, 1, p1 - 1) and octet(label, p1 + 1, p2 - 1) and octet(label, p2 + 1, p3 - 1)
        and octet(label, p3 + 1, n) then
      return A, sub(label, 1, p1 - 1) .. "." .. sub(label, p1 + 1, p2 - 1) .. "."
        .. sub(label, p2 + 1, p3 - 1) .. "." .. sub(label, p3 + 1, n)
    end
    return nil
  end
  if dashes < 2 or not hex then return nil end
  local double = find(label, "--", 1, true)  -- "::", at most once
  if double == nil then
    if hextets(label, 1, n) ~= 8 then return nil end
  else
    if find(label, "--", double + 2, true) then return nil end
    local before, after = hextets(label, 1, double - 1), hextets(label, double + 2, n)
    if before == nil or after == nil or before + after > 7 then return nil end
  end
  return AAAA, (gsub(label, "-", ":"))
end

-- Records: type codes (not names, which PowerDNS would look up), the DNSName PowerDNS gave (not a
-- string to parse again); auth is true unless said otherwise.
local function record(qname, rtype, ttl, content)
  return { type = rtype, name = qname, ttl = ttl, content = content, domain_id = 1 }
end

-- Answers that follow the database carry a scopeMask (the lua2 backend's ECS scope field): PowerDNS
-- keeps such records out of its query cache (the packet cache is off), so they are as fresh as the
-- snapshot.
local function live(one)
  one.scopeMask = 32
  return one
end

local function texts(qname, values)
  local out = {}
  for _, value in ipairs(values) do
    out[#out + 1] = live(record(qname, TXT, TXT_TTL, '"' .. value:gsub('([\\"])', "\\%1") .. '"'))
  end
  return out
end

local function challenge(name)  -- TXT values of a challenge name; an error (SERVFAIL) when stale
  refresh()
  if monotonic() - read_at > MAX_STALENESS then error("lancert: TXT records unreadable") end
  return txt[name]
end

-- Every record of the name (labels below the apex, lower-case), or nil if it does not exist.
local function records_of(qname, labels, name)
  local depth = #labels
  if depth == 0 then
    local apex = {
      record(qname, SOA, NEGATIVE_TTL, SOA_CONTENT), record(qname, NS, ANSWER_TTL, "ns." .. ZONE .. "."),
    }
    local issuers = FIXED_CAA
    if issuers == nil then refresh(); issuers = caa end
    for _, issuer in ipairs(issuers) do
      local one = record(qname, CAA, ANSWER_TTL, '0 issue "' .. issuer .. '"')
      apex[#apex + 1] = FIXED_CAA == nil and live(one) or one
    end
    return apex
  end
  if depth == 1 then
    if labels[1] == "ns" then return { record(qname, NS_TYPE, ANSWER_TTL, NS_ADDRESS) } end
    if box_label(labels[1]) then return { { type = ENT, name = qname, domain_id = 1 } } end
    return nil
  end
  if depth == 3 and labels[1] == CHALLENGE and box_label(labels[3]) then
    local values = challenge(name)
    return values and texts(qname, values)
  end
  if depth ~= 2 or not box_label(labels[2]) then return nil end
  if labels[1] == CHALLENGE then
    local values = challenge(name)
    return values and texts(qname, values)
  end
  local rtype, address = address_of(labels[1])
  if rtype ~= nil then return { { type = rtype, name = qname, ttl = ANSWER_TTL, content = address } } end
  refresh()
  if txt[CHALLENGE .. "." .. name] ~= nil then  -- <host>.<label>.<zone> while its challenge is published
    return { live({ type = ENT, name = qname, domain_id = 1 }) }
  end
  return nil
end

-- The labels below the apex (lower-case, at most MAX_DEPTH: deeper names have no records) and the
-- name without its final dot, or nil for a name outside the zone.
local function split(qname)
  local text = lower(qname:toString())
  if find(text, "\\", 1, true) then  -- a byte toString escapes (a dot inside a label...): label by label
    local raw = qname:getRawLabels()
    local depth = #raw - DEPTH
    if depth < 0 then return nil end
    for i = 1, DEPTH do
      if lower(raw[depth + i]) ~= ZONE_LABELS[i] then return nil end
    end
    local labels = {}
    for i = 1, math.min(depth, MAX_DEPTH) do labels[i] = lower(raw[i]) end
    if depth > MAX_DEPTH then labels[MAX_DEPTH + 1] = "" end
    local name = table.concat(labels, ".", 1, #labels)
    return labels, depth > 0 and (name .. "." .. ZONE) or ZONE
  end
  local n = #text
  if text == APEX then return {}, ZONE end
  if n <= SUFFIX_LEN or sub(text, n - SUFFIX_LEN + 1) ~= SUFFIX then return nil end
  local labels, start, stop = {}, 1, n - SUFFIX_LEN  -- the labels below the apex: text[1..stop]
  while true do
    local dot = find(text, ".", start, true)
    if dot > stop then
      labels[#labels + 1] = sub(text, start, stop)
      return labels, sub(text, 1, n - 1)
    end
    labels[#labels + 1] = sub(text, start, dot - 1)
    if #labels > MAX_DEPTH then return labels, sub(text, 1, n - 1) end
    start = dot + 1
  end
end

-- The lua2 backend's API (version 2) ----------------------------------------------------------------
function dns_get_all_domains()
  return { [ZONE_DN] = { id = 1, kind = "native", serial = 1 } }
end

function dns_get_domaininfo(domain)
  if domain == ZONE_DN then return { id = 1, kind = "native", serial = 1 } end
  return false
end

function dns_lookup(qtype, qname, domain_id, ctx)
  local labels, name = split(qname)
  if labels == nil then return {} end
  local records = records_of(qname, labels, name)
  if records == nil then return {} end
  local code = qtype:getCode()
  if code == ANY then return records end  -- what PowerDNS asks (consistent-backends)
  local wanted = {}
  for _, one in ipairs(records) do
    if one.type == code then wanted[#wanted + 1] = one end
  end
  return wanted
end
"""


def _lua_script(layout: PowerDNSLayout, postgres: bool, sqlite_path: str | None, url: URL) -> str:
    zone = layout.zone
    ns = ipaddress.ip_address(layout.ns_address)
    soa = f"ns.{zone}. hostmaster.{zone}. " + " ".join(str(t) for t in SOA_TIMERS)
    if postgres:
        connect = f"env:connect({_lua_string(_conninfo(url))})"
    else:
        connect = f"env:connect({_lua_string(sqlite_path or '')}, 1000)"
    fixed = "{" + ", ".join(_lua_string(i) for i in layout.caa_issuers) + "}" if layout.caa_issuers else "nil"
    values = {
        "ZONE_TEXT": zone,
        "DRIVER_NAME": _lua_string("postgres" if postgres else "sqlite3"),
        "DRIVER": _lua_string("luasql.postgres" if postgres else "luasql.sqlite3"),
        "CONNECT": connect,
        "ZONE_STRING": _lua_string(zone),
        "ANSWER_TTL_VALUE": str(ANSWER_TTL),
        "TXT_TTL_VALUE": str(TXT_TTL),
        "NEGATIVE_TTL_VALUE": str(NEGATIVE_TTL),
        "REFRESH_VALUE": str(TXT_REFRESH_INTERVAL),
        "MAX_STALENESS_VALUE": str(TXT_MAX_STALENESS),
        "SOA_STRING": _lua_string(soa),
        "NS_TYPE_CODE": "1" if ns.version == 4 else "28",
        "NS_ADDRESS_STRING": _lua_string(str(ns)),
        "FIXED_CAA_TABLE": fixed,
    }
    # One pass over the template: a value (a password...) is never scanned again for placeholders.
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, values)) + r")\b")
    return pattern.sub(lambda match: values[match.group(1)], _LUA)


def render(layout: PowerDNSLayout, config_dir: Path) -> tuple[str, str]:
    """``pdns.conf`` and ``lancert-zone.lua`` for ``layout``, the configuration living in ``config_dir``."""
    url = make_url(layout.database)
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise LancertError(f"PowerDNS cannot read a {backend} database: use SQLite or PostgreSQL")
    postgres = backend == "postgresql"
    script = _lua_script(layout, postgres, None if postgres else url.database, url)
    threads = layout.threads or os.cpu_count() or 1
    directory = config_dir.resolve()
    lines = [
        f"# Written by `lancert dns powerdns` for the zone {layout.zone}: serve it with",
        f"#   pdns_server --config-dir={directory}",
        "# Answers are computed by lancert-zone.lua (the lua2 backend); see lancert.dns.powerdns.",
        "launch=lua2",
        f"lua2-filename={directory / 'lancert-zone.lua'}",
        "lua2-api=2",
        f"local-address={layout.address}",
        f"local-port={layout.port}",
        f"socket-dir={directory}",
        "daemon=no",
        # The guardian restarts a server that dies (an exception, an overfull queue); a systemd unit
        # (docs/powerdns.service) restarts the guardian itself.
        "guardian=yes",
        "write-pid=no",
        "disable-syslog=yes",
        # No query of this server ever leaves it: no security polling, no resolver, no notifies.
        "security-poll-suffix=",
        "resolver=no",
        "primary=no",
        "secondary=no",
        "version-string=anonymous",
        # Sized for the machine: one receiver thread per core, each with its own socket and its own Lua
        # state, answering itself ("operating unthreaded": the answers are CPU work, not waits on a
        # database). So there is no queue between receiving and answering that a flood could fill up to
        # max-queue-length, where PowerDNS exits: the socket's buffer sheds what a thread cannot take.
        f"receiver-threads={threads}",
        "distributor-threads=1",
        "reuseport=yes",
        # A TXT record must show within 2 s of its commit (lancert.dns.TXT_MAX_STALENESS): no packet
        # cache (its whole-second lifetimes kept a challenge name's "no such name" from before the commit
        # up to 2.4 s, and nothing keeps a negative response out of it); answers that follow the
        # database are never in the query cache (scopeMask, in lancert-zone.lua), nor are negative
        # lookups; the rest never changes: the query cache keeps it 60 s, which spares the zone's SOA
        # lookup that PowerDNS makes for every query (60 instead of 90 µs of CPU per uncached query at
        # a million names). See the module docstring for the figures.
        "cache-ttl=0",
        "query-cache-ttl=60",
        "negquery-cache-ttl=0",
        # The zone cache finds the zone without SOA lookups up the name (dns_get_all_domains).
        "zone-cache-refresh-interval=300",
        "consistent-backends=yes",
    ]
    return "\n".join(lines) + "\n", script


def write_config(out: Path, layout: PowerDNSLayout) -> Path:
    """``out/pdns.conf`` and ``out/lancert-zone.lua`` (0600: the script may hold the database password)."""
    out.mkdir(parents=True, exist_ok=True)
    conf, script = render(layout, out)
    atomic_write(out / "lancert-zone.lua", script.encode(), mode=KEY_MODE)
    path = out / "pdns.conf"
    atomic_write(path, conf.encode(), mode=KEY_MODE)
    return path
