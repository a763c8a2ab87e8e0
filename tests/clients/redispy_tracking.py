#!/usr/bin/env python3
"""Client-side caching (CLIENT TRACKING) of a running readstates server,
driven with redis-py in RESP3.

Usage: redispy_tracking.py PORT [HOST]

Two parts, checked against the contract (docs/commands.md, "Client-side
caching: CLIENT TRACKING"):

  A. redis-py's own client-side cache (redis.Redis(protocol=3,
     cache_config=...)): a cached RSGET/RSMGET is served without a round
     trip (the server's INFO commandstats does not count it), and another
     client's change of the user drops it (the "invalidate" push reached
     redis-py's cache), on the default pool, a single-connection client
     and an explicit ConnectionPool.
  B. Tracking by hand on a plain RESP3 connection (no cache): the push
     read through redis-py's parser is exactly [b'invalidate', [b'<user>']];
     OPTIN with CLIENT CACHING YES, OPTOUT with CLIENT CACHING NO, CLIENT
     TRACKINGINFO and CLIENT GETREDIR as the contract says; BCAST, PREFIX,
     REDIRECT and RESP2 refused; replies (plain, pipelined, MULTI/EXEC) stay
     in step with pushes in between.

Every user_id is drawn at random, so the script can run on a server that
is already in use. Prints a summary ending ", N failed" and exits 1 with a
list of failures when N > 0. Lines starting NOTE report what redis-py 6.4
itself does (its own limitations), not server checks.
"""

import random
import sys
import time

import redis
from redis.cache import CacheConfig, DefaultCache
from redis.connection import CacheProxyConnection, ConnectionPool

failures = []
notes = []
checks = 0

WAIT = 5.0  # longest wait for a push that must come
QUIET = 0.3  # how long "no push comes" is watched


def check(what, got, want):
    global checks
    checks += 1
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")
    return got == want


def check_true(what, ok, detail=""):
    global checks
    checks += 1
    if not ok:
        failures.append(f"{what}{': ' + detail if detail else ''}")
    return ok


def check_error(what, fn, contains):
    global checks
    checks += 1
    try:
        got = fn()
    except redis.ResponseError as e:
        if contains not in str(e):
            failures.append(f"{what}: got ResponseError({e}), want it to contain {contains!r}")
        return
    except Exception as e:  # noqa: BLE001 - report any other exception
        failures.append(f"{what}: got {type(e).__name__}({e}), want ResponseError")
        return
    failures.append(f"{what}: got reply {got!r}, want ResponseError containing {contains!r}")


def note(s):
    notes.append(s)


# ---------------------------------------------------------------------------
# A. redis-py's client-side cache
# ---------------------------------------------------------------------------

# redis-py caches only the commands its CacheConfig allows: the default
# allow-list (CacheConfig.DEFAULT_ALLOW_LIST) is Redis's read-only commands
# (GET, HGET, ...), and the check is CacheConfig.is_allowed_to_cache(name),
# called by CacheProxyConnection.send_command with the command name as the
# caller spelled it. Overriding that method in a subclass is the supported
# way to add commands (CacheConfig is the documented extension point, and
# the pool builds its cache from it); RSGET and RSMGET are read-only and
# their key is the user_id, so they qualify.
class ReadStatesCacheConfig(CacheConfig):
    CACHEABLE = ("RSGET", "RSMGET")

    def is_allowed_to_cache(self, command: str) -> bool:
        return command.upper() in self.CACHEABLE or super().is_allowed_to_cache(command)


# A DefaultCache that records the keys of the invalidations it is given,
# to show that a dropped entry was dropped by the server's push.
class RecordingCache(DefaultCache):
    def __init__(self, cache_config):
        super().__init__(cache_config)
        self.invalidated = []

    def delete_by_redis_keys(self, redis_keys):
        self.invalidated.extend(k.decode() if isinstance(k, bytes) else k for k in redis_keys)
        return super().delete_by_redis_keys(redis_keys)


def cache_config():
    return ReadStatesCacheConfig(cache_class=RecordingCache)


# redis-py passes the key names of a command through execute_command's
# keys= argument (its own commands do: get() passes keys=[name]); a generic
# execute_command without it cannot be cached ("Cannot create cache key").
# Two things about that argument in redis-py 6.4:
#   - the invalidation is matched by string equality against the keys, so
#     they must be str (an int user_id would never be invalidated);
#   - the cache key is (command, keys) only, not the other arguments
#     (redis-py issue #3612: HGET h f1 and HGET h f2 share an entry), so
#     RSGET u 7 and RSGET u 8 would share one. The channel_ids are added as
#     a second "key" that no invalidation can name (user_ids are digits).
def rsget(r, u, ch):
    return r.execute_command("RSGET", u, ch, keys=[str(u), f"ch={ch}"])


def rsmget(r, u, *chs):
    return r.execute_command("RSMGET", u, *chs, keys=[str(u), "ch=" + ",".join(map(str, chs))])


class Sent:
    """Counts the commands one connection of r has sent the server: the
    tot-cmds of its CLIENT LIST line, read through another client. (Not
    INFO commandstats: it counts every client of the server.) A read served
    from redis-py's cache sends nothing."""

    def __init__(self, r, plain):
        self.id = r.client_id()  # not cacheable: goes to the server
        self.plain = plain

    def __call__(self):
        for c in self.plain.client_list():
            if int(c["id"]) == self.id:
                return int(c["tot-cmds"])
        raise AssertionError(f"client id {self.id} is not in CLIENT LIST")


def entries_of(cache, u):
    return sorted(k.command + " " + " ".join(k.redis_keys) for k in cache.collection if str(u) in k.redis_keys)


def poll_fresh(read, want):
    """Reads until read() == want or WAIT passes; returns (last, stale reads).

    An invalidation to an idle connection is sent as soon as the change is
    made, but it travels on its own socket: the writer may get its reply
    first, and redis-py reads pushes only when it next uses the connection
    (can_read(0) before each command). A cached read in that window is
    stale, as with Redis itself.
    """
    deadline = time.monotonic() + WAIT
    stale = 0
    while True:
        got = read()
        if got == want or time.monotonic() > deadline:
            return got, stale
        stale += 1
        time.sleep(0.01)


def cache_accepted(host, port):
    """redis-py enables its cache only if HELLO says server "redis",
    version >= 7.4 (CacheProxyConnection.connect): the server says so."""
    r = redis.Redis(host=host, port=port, protocol=3, cache_config=CacheConfig(), socket_timeout=10)
    try:
        r.ping()
        check("redis-py accepts its cache with this server, unpatched", True, True)
    except redis.ConnectionError as e:
        check(f"redis-py {redis.__version__} accepts its cache with this server, unpatched ({e})", False, True)
    finally:
        r.close()


def part_a_default_pool(host, port, writer, base):
    p = "A default pool: "
    u = base + 1
    r = redis.Redis(host=host, port=port, protocol=3, cache_config=cache_config(), socket_timeout=10)
    cache = r.get_cache()
    check_true(p + "the cache is a RecordingCache", isinstance(cache, RecordingCache), repr(cache))
    check(p + "writer RSINCR u 7 5", writer.execute_command("RSINCR", u, 7, 5), 5)
    # One thread: the pool hands out the same connection every time.
    sent = Sent(r, writer)

    n = sent()
    check(p + "first RSGET u 7", rsget(r, u, 7), [5, 0])
    check(p + "the first RSGET went to the server", sent() - n, 1)
    check(p + "cache entries after the first RSGET", entries_of(cache, u), [f"RSGET {u} ch=7"])
    for i in range(3):
        check(p + f"cached RSGET u 7 #{i + 2}", rsget(r, u, 7), [5, 0])
    check(p + "the cached RSGETs did not reach the server", sent() - n, 1)
    # redis-py turned tracking on by itself (its connect callback).
    check(p + "CLIENT TRACKINGINFO of the caching connection",
          r.client_trackinginfo(), {b"flags": [b"on"], b"redirect": 0, b"prefixes": []})

    # RSMGET: an entry of its own, for the same user.
    n = sent()
    check(p + "first RSMGET u 7 8", rsmget(r, u, 7, 8), [[5, 0], [0, 0]])
    check(p + "cached RSMGET u 7 8", rsmget(r, u, 7, 8), [[5, 0], [0, 0]])
    check(p + "RSMGET reached the server once", sent() - n, 1)
    check(p + "cache entries for u", entries_of(cache, u), [f"RSGET {u} ch=7", f"RSMGET {u} ch=7,8"])

    # Another client changes channel 8 of the user: the one invalidation of
    # the user drops both entries (the key is the user_id).
    n = sent()
    check(p + "writer RSINCR u 8 2", writer.execute_command("RSINCR", u, 8, 2), 2)
    got, stale = poll_fresh(lambda: rsmget(r, u, 7, 8), [[5, 0], [2, 0]])
    check(p + "RSMGET u 7 8 after another client's RSINCR u 8", got, [[5, 0], [2, 0]])
    if stale:
        note(f"{p}{stale} stale cached RSMGET(s) before the push was read (allowed: it travels on its own socket)")
    check_true(p + "the cache was told of u", str(u) in cache.invalidated, repr(cache.invalidated))
    check(p + "the fresh RSMGET is the only command sent", sent() - n, 1)
    n = sent()
    check(p + "RSGET u 7 after the invalidation", rsget(r, u, 7), [5, 0])
    check(p + "the RSGET entry was dropped too: RSGET went to the server", sent() - n, 1)
    check(p + "RSGET u 7 cached again", rsget(r, u, 7), [5, 0])
    check(p + "... without a round trip", sent() - n, 1)

    # A change through the caching client itself: its reply shows the
    # change, so the invalidation comes before it and the next read is
    # fresh at once (no polling).
    check(p + "own RSINCR u 7 3", r.execute_command("RSINCR", u, 7, 3), 8)
    n = sent()
    check(p + "RSGET u 7 right after the own RSINCR", rsget(r, u, 7), [8, 0])
    check(p + "... read from the server", sent() - n, 1)

    # Another user's change drops nothing of u.
    other = base + 2
    check(p + "RSGET other 1", rsget(r, other, 1), [0, 0])
    k = len(cache.invalidated)
    writer.execute_command("RSINCR", other, 1)
    got, _ = poll_fresh(lambda: rsget(r, other, 1), [1, 0])
    check(p + "RSGET other 1 after its change", got, [1, 0])
    check(p + "only 'other' was invalidated", cache.invalidated[k:], [str(other)])
    n = sent()
    check(p + "RSGET u 7 still cached", rsget(r, u, 7), [8, 0])
    check(p + "... without a round trip", sent() - n, 0)
    r.close()


def part_a_single_connection(host, port, writer, base):
    """One connection: wait for the push on its socket, then the very next
    read must be fresh (no polling)."""
    p = "A single connection: "
    u = base + 3
    r = redis.Redis(host=host, port=port, protocol=3, cache_config=cache_config(),
                    single_connection_client=True, socket_timeout=10)
    cache = r.get_cache()
    sent = Sent(r, writer)
    n = sent()
    check(p + "first RSGET u 1", rsget(r, u, 1), [0, 0])
    check(p + "cached RSGET u 1", rsget(r, u, 1), [0, 0])
    check(p + "one round trip", sent() - n, 1)
    check(p + "writer RSRESET u 1 99", writer.execute_command("RSRESET", u, 1, 99), 0)
    check_true(p + "the push arrives on the idle caching connection", r.connection.can_read(timeout=WAIT))
    check(p + "RSGET u 1 right after the push", rsget(r, u, 1), [0, 99])
    check(p + "... read from the server", sent() - n, 2)
    check(p + "the cache was told of u exactly once", cache.invalidated.count(str(u)), 1)
    check_true(p + "nothing more on the socket", not r.connection.can_read(timeout=QUIET))
    r.close()


def part_a_explicit_pool(host, port, writer, base):
    p = "A ConnectionPool: "
    u = base + 4
    pool = ConnectionPool(host=host, port=port, protocol=3, cache_config=cache_config(), socket_timeout=10)
    r = redis.Redis(connection_pool=pool)
    cache = r.get_cache()
    check_true(p + "the client's cache is the pool's", cache is pool.cache)
    sent = Sent(r, writer)
    n = sent()
    check(p + "first RSMGET u 1 2 3", rsmget(r, u, 1, 2, 3), [[0, 0]] * 3)
    check(p + "cached RSMGET u 1 2 3", rsmget(r, u, 1, 2, 3), [[0, 0]] * 3)
    check(p + "one round trip", sent() - n, 1)
    writer.execute_command("RSINCR", u, 3, 4)
    got, _ = poll_fresh(lambda: rsmget(r, u, 1, 2, 3), [[0, 0], [0, 0], [4, 0]])
    check(p + "RSMGET u 1 2 3 after another client's change", got, [[0, 0], [0, 0], [4, 0]])
    check_true(p + "the cache was told of u", str(u) in cache.invalidated, repr(cache.invalidated))
    check(p + "two round trips", sent() - n, 2)
    r.close()
    pool.disconnect()


def part_b_pool_note(host, port, writer, base):
    """A pooled client without the cache: the pool checks an idle
    connection for unread data when it hands it out and reconnects it if
    there is any (ConnectionPool.get_connection), so a waiting invalidation
    silently turns tracking off. Tracking by hand needs a single-connection
    client (or redis-py's cache, which skips that check)."""
    u = base + 50
    r = redis.Redis(host=host, port=port, protocol=3, socket_timeout=10)
    r.client_tracking_on()
    before = r.client_id()
    r.execute_command("RSGET", u, 1)
    writer.execute_command("RSINCR", u, 1)
    conn = r.connection_pool._available_connections[-1]  # the idle one; only to wait for the push
    conn.can_read(timeout=WAIT)
    flags = r.client_trackinginfo()[b"flags"]
    after = r.client_id()
    if after != before:
        note(f"a pooled redis-py client (no cache) reconnected when an invalidation waited on its idle "
             f"connection (client id {before} -> {after}, tracking flags now {flags}): tracking is lost")
    r.close()


def part_a_notes(host, port, writer, base):
    """What redis-py 6.4 itself gets wrong, reported as NOTEs."""
    # #3612: the cache key ignores the non-key arguments.
    u = base + 5
    writer.execute_command("RSINCR", u, 8, 6)
    r = redis.Redis(host=host, port=port, protocol=3, cache_config=cache_config(), socket_timeout=10)
    a = r.execute_command("RSGET", u, 7, keys=[str(u)])
    b = r.execute_command("RSGET", u, 8, keys=[str(u)])
    if b != [6, 0]:
        note(f"redis-py issue #3612 present: with keys=[user] only, RSGET u 8 was served RSGET u 7's entry "
             f"({a!r} then {b!r}, want [6, 0]); the script keys entries by user and channel_ids")
    r.close()

    # #3600: a cache hit on another pooled connection whose entry was
    # invalidated sends nothing and then waits for a reply.
    u = base + 6
    pool = ConnectionPool(host=host, port=port, protocol=3, cache_config=cache_config(), socket_timeout=1)
    first, second = pool.get_connection(), pool.get_connection()
    try:
        first.send_command("RSGET", u, 1, keys=[str(u), "ch=1"])
        first.read_response()
        writer.execute_command("RSINCR", u, 1)
        first.can_read(timeout=WAIT)  # the push is on the first connection's socket
        second.send_command("RSGET", u, 1, keys=[str(u), "ch=1"])
        got = second.read_response()
        note(f"redis-py issue #3600 absent: a hit on another pooled connection after an invalidation read {got!r}")
    except redis.TimeoutError:
        note("redis-py issue #3600 present: after an invalidation read from another pooled connection, "
             "CacheProxyConnection sent no command and timed out waiting for its reply (a client bug; "
             "a single-threaded pool never takes this path)")
    finally:
        pool.release(first)
        pool.release(second)
        pool.disconnect()


# ---------------------------------------------------------------------------
# B. Tracking by hand, redis-py RESP3 without its cache
# ---------------------------------------------------------------------------

def tracker(host, port):
    """A single-connection RESP3 client whose invalidation pushes are
    recorded. redis-py 6.4 has no public API for them: the RESP3 parser's
    set_invalidation_push_handler is what its own cache uses. The handler's
    return value is what read_response(push_request=True) returns for a
    push; while a command's reply is read, pushes before it go to the
    handler and the reply is returned."""
    t = redis.Redis(host=host, port=port, protocol=3, single_connection_client=True, socket_timeout=10)
    t.ping()  # connect: the parser exists from here
    pushes = []

    def handler(msg):
        pushes.append(msg)
        return msg

    t.connection._parser.set_invalidation_push_handler(handler)
    return t, pushes


def read_push(t):
    """The next push on t's idle connection, or None if none comes in WAIT."""
    if not t.connection.can_read(timeout=WAIT):
        return None
    return t.connection.read_response(push_request=True)


def quiet(t):
    """True when no push comes within QUIET."""
    return not t.connection.can_read(timeout=QUIET)


def inv(u):
    return [b"invalidate", [str(u).encode()]]


def pipelined(conn, *cmds):
    """Sends cmds in one write on conn and reads their replies, as redis-py's
    Pipeline does. (Redis.pipeline() would take another connection from the
    pool, not a single-connection client's own, which is the tracking one.)"""
    conn.send_packed_command(conn.pack_commands(cmds))
    return [conn.read_response() for _ in cmds]


def transaction(conn, *cmds):
    """MULTI, cmds, EXEC pipelined on conn; returns EXEC's reply after
    checking the OK and QUEUED replies before it."""
    replies = pipelined(conn, ("MULTI",), *cmds, ("EXEC",))
    check("MULTI/QUEUED replies of a transaction", replies[:-1], [b"OK"] + [b"QUEUED"] * len(cmds))
    return replies[-1]


INFO_OFF = {b"flags": [b"off"], b"redirect": -1, b"prefixes": []}


def info(*flags):
    return {b"flags": [f.encode() for f in flags], b"redirect": 0, b"prefixes": []}


def part_b_default(host, port, writer, base):
    p = "B default mode: "
    u = base + 10
    t, pushes = tracker(host, port)
    check(p + "CLIENT TRACKINGINFO before", t.client_trackinginfo(), INFO_OFF)
    check(p + "CLIENT GETREDIR before", t.client_getredir(), -1)
    check(p + "CLIENT TRACKING ON", t.client_tracking_on(), b"OK")
    check(p + "CLIENT TRACKINGINFO", t.client_trackinginfo(), info("on"))
    check(p + "CLIENT GETREDIR", t.client_getredir(), 0)
    check(p + "NOLOOP accepted", t.execute_command("CLIENT", "TRACKING", "ON", "NOLOOP"), b"OK")
    check(p + "CLIENT TRACKINGINFO after NOLOOP", t.client_trackinginfo(), info("on"))

    check(p + "RSGET u 7", t.execute_command("RSGET", u, 7), [0, 0])
    check(p + "writer RSINCR u 7", writer.execute_command("RSINCR", u, 7), 1)
    check(p + "the push on the idle connection", read_push(t), inv(u))
    check_true(p + "one push only", quiet(t))
    # Forgotten until read again: a second change sends nothing.
    writer.execute_command("RSINCR", u, 7)
    check_true(p + "no push for a user not read since its invalidation", quiet(t))
    check(p + "RSGET u 7 (tracked again)", t.execute_command("RSGET", u, 7), [2, 0])

    # Ordering: the change is made, then this client reads the user. The
    # reply shows the change, so the push comes before it: redis-py hands
    # it to the handler while it reads the reply.
    n = len(pushes)
    writer.execute_command("RSINCR", u, 8, 5)
    check(p + "RSMGET u 7 8 right after another client's change", t.execute_command("RSMGET", u, 7, 8),
          [[2, 0], [5, 0]])
    check(p + "the invalidation came before that reply", pushes[n:n + 1], [inv(u)])
    # A push that came after that reply would be on the socket now.
    while t.connection.can_read(timeout=QUIET):
        t.connection.read_response(push_request=True)
    check(p + "pushes for that change", pushes[n:], [inv(u)])

    # Another user's change: nothing for this client.
    writer.execute_command("RSINCR", base + 11, 1)
    check_true(p + "no push for a user never read", quiet(t))

    # Own change: the reply shows it, the push comes before it (and may be
    # repeated after it: the command ran while it was queued).
    n = len(pushes)
    check(p + "own RSINCR u 7", t.execute_command("RSINCR", u, 7), 3)
    check(p + "the push came before the own RSINCR's reply", pushes[n:n + 1], [inv(u)])
    while t.connection.can_read(timeout=QUIET):
        t.connection.read_response(push_request=True)
    check_true(p + "own change: every push names u", all(m == inv(u) for m in pushes[n:]), repr(pushes[n:]))
    check_true(p + "own change: at most 2 pushes", 1 <= len(pushes[n:]) <= 2, repr(pushes[n:]))

    # RSMGET registers too; a change of any channel of the user reports it.
    check(p + "RSMGET u 1 2", t.execute_command("RSMGET", u, 1, 2), [[0, 0], [0, 0]])
    writer.execute_command("RSRESET", u, 2, 77)
    check(p + "push after RSMGET and a change of channel 2", read_push(t), inv(u))

    check(p + "CLIENT TRACKING OFF", t.client_tracking_off(), b"OK")
    check(p + "CLIENT TRACKINGINFO after OFF", t.client_trackinginfo(), INFO_OFF)
    check(p + "CLIENT GETREDIR after OFF", t.client_getredir(), -1)
    t.execute_command("RSGET", u, 7)
    writer.execute_command("RSINCR", u, 7)
    check_true(p + "no push after OFF", quiet(t))
    t.close()


def part_b_optin(host, port, writer, base):
    p = "B OPTIN: "
    u = base + 20
    t, pushes = tracker(host, port)
    check(p + "CLIENT TRACKING ON OPTIN", t.client_tracking_on(optin=True), b"OK")
    check(p + "CLIENT TRACKINGINFO", t.client_trackinginfo(), info("on", "optin"))
    check(p + "RSGET u 1 (not opted in)", t.execute_command("RSGET", u, 1), [0, 0])
    writer.execute_command("RSINCR", u, 1)
    check_true(p + "no push for a read without CLIENT CACHING YES", quiet(t))

    check(p + "CLIENT CACHING YES", t.execute_command("CLIENT", "CACHING", "YES"), b"OK")
    check(p + "CLIENT TRACKINGINFO right after CACHING YES", t.client_trackinginfo(),
          info("on", "optin", "caching-yes"))
    # That TRACKINGINFO was the command the flag was for.
    check(p + "CLIENT TRACKINGINFO once more", t.client_trackinginfo(), info("on", "optin"))
    check(p + "RSGET u 1 (flag used up)", t.execute_command("RSGET", u, 1), [1, 0])
    writer.execute_command("RSINCR", u, 1)
    check_true(p + "no push: the flag covered only the next command", quiet(t))

    check(p + "CLIENT CACHING YES again", t.execute_command("CLIENT", "CACHING", "YES"), b"OK")
    check(p + "RSGET u 1 (opted in)", t.execute_command("RSGET", u, 1), [2, 0])
    writer.execute_command("RSINCR", u, 1)
    check(p + "the push after an opted-in read", read_push(t), inv(u))
    check_true(p + "one push only", quiet(t))

    # The flag lasts through MULTI ... EXEC (redis-py: a transaction pipeline).
    check(p + "CLIENT CACHING YES before MULTI", t.execute_command("CLIENT", "CACHING", "YES"), b"OK")
    check(p + "MULTI RSGET u 1, RSMGET u+1 1 EXEC",
          transaction(t.connection, ("RSGET", u, 1), ("RSMGET", u + 1, 1)), [[3, 0], [[0, 0]]])
    writer.execute_command("RSINCR", u + 1, 1)
    check(p + "push for the second command of the transaction", read_push(t), inv(u + 1))
    writer.execute_command("RSINCR", u, 1)
    check(p + "push for the first command of the transaction", read_push(t), inv(u))

    check_error(p + "CLIENT CACHING NO in OPTIN mode", lambda: t.execute_command("CLIENT", "CACHING", "NO"),
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode")
    check(p + "connection in step after the error", t.execute_command("RSGET", u, 1), [4, 0])
    check(p + "no stray push handled", [m for m in pushes if m != inv(u) and m != inv(u + 1)], [])
    t.close()


def part_b_optout(host, port, writer, base):
    p = "B OPTOUT: "
    u = base + 30
    t, pushes = tracker(host, port)
    check(p + "CLIENT TRACKING ON OPTOUT", t.client_tracking_on(optout=True), b"OK")
    check(p + "CLIENT TRACKINGINFO", t.client_trackinginfo(), info("on", "optout"))
    check(p + "CLIENT CACHING NO", t.execute_command("CLIENT", "CACHING", "NO"), b"OK")
    check(p + "CLIENT TRACKINGINFO right after CACHING NO", t.client_trackinginfo(),
          info("on", "optout", "caching-no"))
    check(p + "CLIENT CACHING NO again", t.execute_command("CLIENT", "CACHING", "NO"), b"OK")
    check(p + "RSGET u 1 (opted out)", t.execute_command("RSGET", u, 1), [0, 0])
    writer.execute_command("RSINCR", u, 1)
    check_true(p + "no push for an opted-out read", quiet(t))
    check(p + "RSGET u 1 (tracked)", t.execute_command("RSGET", u, 1), [1, 0])
    writer.execute_command("RSINCR", u, 1)
    check(p + "the push after a tracked read", read_push(t), inv(u))
    check_error(p + "CLIENT CACHING YES in OPTOUT mode", lambda: t.execute_command("CLIENT", "CACHING", "YES"),
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode")
    check(p + "CLIENT TRACKING OFF", t.client_tracking_off(), b"OK")
    check_error(p + "CLIENT CACHING YES with tracking off",
                lambda: t.execute_command("CLIENT", "CACHING", "YES"), "CLIENT CACHING")
    check(p + "pushes in all", pushes, [inv(u)])
    t.close()


def part_b_refused(host, port):
    p = "B refused: "
    t = redis.Redis(host=host, port=port, protocol=3, single_connection_client=True, socket_timeout=10)
    check_error(p + "BCAST", lambda: t.client_tracking_on(bcast=True), "BCAST")
    check_error(p + "BCAST PREFIX", lambda: t.client_tracking_on(bcast=True, prefix=["1"]), "PREFIX")
    check_error(p + "REDIRECT", lambda: t.client_tracking_on(clientid=1), "REDIRECT")
    check(p + "still off after the refusals", t.client_trackinginfo(), INFO_OFF)
    t.close()
    two = redis.Redis(host=host, port=port, protocol=2, single_connection_client=True, socket_timeout=10)
    check_error(p + "RESP2 CLIENT TRACKING ON", lambda: two.client_tracking_on(), "RESP3")
    check(p + "RESP2 CLIENT GETREDIR", two.client_getredir(), -1)
    two.close()


def part_b_in_step(host, port, writer, base):
    """Tracking on, no handler: redis-py drops the pushes it meets while it
    reads replies, and every reply is the right one."""
    p = "B in step: "
    u = base + 40
    t = redis.Redis(host=host, port=port, protocol=3, single_connection_client=True, socket_timeout=10)
    check(p + "CLIENT TRACKING ON", t.client_tracking_on(), b"OK")
    want = {}
    for i in range(30):
        ch = i % 3
        check(p + f"RSGET u {ch} #{i}", t.execute_command("RSGET", u, ch), [want.get(ch, 0), 0])
        want[ch] = want.get(ch, 0) + 1
        writer.execute_command("RSINCR", u, ch)
        if i % 2:  # and one of its own
            want[ch] += 1
            check(p + f"own RSINCR u {ch} #{i}", t.execute_command("RSINCR", u, ch), want[ch])

    # A pipeline with changes by both clients in between.
    t.execute_command("RSGET", u, 0)
    writer.execute_command("RSINCR", u, 0, 10)
    want[0] += 10
    cmds, expect = [], []
    for i in range(20):
        ch = i % 3
        cmds.append(("RSGET", u, ch))
        expect.append([want[ch], 0])
        cmds.append(("RSINCR", u, ch))
        want[ch] += 1
        expect.append(want[ch])
        cmds.append(("RSMGET", u, 0, 1, 2))
        expect.append([[want[c], 0] for c in range(3)])
    check(p + "pipeline of RSGET/RSINCR/RSMGET", pipelined(t.connection, *cmds), expect)

    # A transaction: QUEUED replies and EXEC's array with pushes around.
    writer.execute_command("RSINCR", u, 1)
    want[1] += 1
    check(p + "MULTI RSINCR RSGET RSMGET EXEC",
          transaction(t.connection, ("RSINCR", u, 1), ("RSGET", u, 1), ("RSMGET", u, 0, 1)),
          [want[1] + 1, [want[1] + 1, 0], [[want[0], 0], [want[1] + 1, 0]]])
    want[1] += 1
    check(p + "PING after all that", t.ping(), True)
    check(p + "final RSMGET", t.execute_command("RSMGET", u, 0, 1, 2), [[want[c], 0] for c in range(3)])
    t.close()


def main():
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    base = random.randrange(10**12, 10**15) * 100
    r3 = redis.Redis(host=host, port=port, protocol=3, socket_timeout=10)
    hello = r3.execute_command("HELLO")
    r3.close()
    server = hello.get(b"server", b"?").decode()
    version = hello.get(b"version", b"?").decode()
    writer = redis.Redis(host=host, port=port, protocol=2, socket_timeout=10)

    cache_accepted(host, port)
    parts = [
        ("A default pool", lambda: part_a_default_pool(host, port, writer, base)),
        ("A single connection", lambda: part_a_single_connection(host, port, writer, base)),
        ("A ConnectionPool", lambda: part_a_explicit_pool(host, port, writer, base)),
        ("A notes", lambda: part_a_notes(host, port, writer, base)),
        ("B default mode", lambda: part_b_default(host, port, writer, base)),
        ("B OPTIN", lambda: part_b_optin(host, port, writer, base)),
        ("B OPTOUT", lambda: part_b_optout(host, port, writer, base)),
        ("B refused", lambda: part_b_refused(host, port)),
        ("B in step", lambda: part_b_in_step(host, port, writer, base)),
        ("B pool note", lambda: part_b_pool_note(host, port, writer, base)),
    ]
    for name, fn in parts:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any failure is reported
            failures.append(f"{name}: aborted: {type(e).__name__}: {e}")
    for n in notes:
        print("NOTE", n)
    print(f"redis-py {redis.__version__} tracking (server {server!r} {version!r}): "
          f"{checks} checks, {len(failures)} failed")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
