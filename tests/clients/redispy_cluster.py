#!/usr/bin/env python3
"""Drive a cluster of readstates nodes with redis-py's RedisCluster.

Usage: redispy_cluster.py HOST:PORT [HOST:PORT ...]

The addresses are the startup nodes; the client is made with redis-py's
default options (RESP2), as an application would make it, and learns the
rest of the cluster itself (CLUSTER SLOTS, COMMAND). It checks:

- the map: every startup node is a primary of the client's map, every slot
  is served, and CLUSTER SLOTS, NODES, SHARDS, INFO and KEYSLOT, parsed by
  redis-py, agree with it;
- the read-state commands one by one (the example session of
  docs/commands.md, errors included) and their routing: the node the client
  picks serves the user; another answers MOVED to it;
- a ClusterPipeline across the nodes, errors in place, and a single-slot
  transaction pipeline (MULTI/EXEC);
- a churn: several threads on one client, each with users of its own, send
  random RSINCR/RSRESET/RSGET/RSMGET singly and in ClusterPipelines; every
  reply is compared with a model, no command is redirected (INFO
  commandstats of every node), and at the end every read state is read
  back by a second client, made from the last startup node, and compared
  with the model;
- the same basics with protocol=3 (RESP3).

Prints "redis-py V (cluster, N nodes): C checks, F failed" and then one
FAIL line per failure (NOTE lines are figures, not failures); exits 0 when
all pass, 1 otherwise. Users are above a random base, so the script can run
again on the same cluster.
"""

import random
import sys
import threading
import time

import redis
from redis.cluster import ClusterNode, RedisCluster

MAX_ID = 9223372036854775807
MAX_MENTIONS = 2147483647
SLOTS = 16384
RS_COMMANDS = ("rsincr", "rsreset", "rsget", "rsmget")

failures = []
notes = []
checks = 0
lock = threading.Lock()


def fail(what):
    with lock:
        failures.append(what)


def counted(n=1):
    global checks
    with lock:
        checks += n


def check(what, got, want):
    counted()
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")
        return False
    return True


def check_error(what, fn, exc_type, contains):
    counted()
    try:
        got = fn()
    except exc_type as e:
        if contains not in str(e):
            fail(f"{what}: got {type(e).__name__}({e}), want it to contain {contains!r}")
        return
    except Exception as e:  # noqa: BLE001 - report any other exception
        fail(f"{what}: got {type(e).__name__}({e}), want {exc_type.__name__}")
        return
    fail(f"{what}: got reply {got!r}, want {exc_type.__name__}")


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def cluster(addrs, **kw):
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in addrs], **kw)


# ---- the map


def check_map(rc, addrs):
    nodes = rc.get_nodes()
    names = {n.name for n in nodes}
    for h, p in addrs:
        check(f"startup node {h}:{p} in the client's nodes {sorted(names)}", f"{h}:{p}" in names, True)
    check("every node a primary", sorted({n.server_type for n in nodes}), ["primary"])
    owner = {}
    for slot in range(SLOTS):
        n = rc.nodes_manager.get_node_from_slot(slot)
        owner[slot] = n.name if n is not None else None
    check("every slot served in the client's map",
          sum(1 for s in owner.values() if s is not None), SLOTS)
    check("every node serves slots", set(owner.values()) == names, True)

    # CLUSTER INFO of every node, parsed by redis-py.
    infos = rc.cluster_info(target_nodes=RedisCluster.ALL_NODES)
    for name, info in sorted(infos.items()):
        check(f"CLUSTER INFO {name} cluster_state", info.get("cluster_state"), "ok")
        check(f"CLUSTER INFO {name} cluster_slots_assigned", info.get("cluster_slots_assigned"), str(SLOTS))
        check(f"CLUSTER INFO {name} cluster_known_nodes", info.get("cluster_known_nodes"), str(len(nodes)))

    # CLUSTER SLOTS, parsed by redis-py: the same owners.
    slots = rc.cluster_slots(target_nodes=RedisCluster.RANDOM)
    got = {}
    for (start, end), v in slots.items():
        host, port = v["primary"]
        for s in range(start, end + 1):
            got[s] = f"{text(host)}:{port}"
    check("CLUSTER SLOTS: the client's owners", got == owner, True)

    # CLUSTER NODES of every node, parsed by redis-py: the same owners, one
    # myself each.
    for target in nodes:
        parsed = rc.execute_command("CLUSTER NODES", target_nodes=target)
        got = {}
        myself = []
        for addr, n in parsed.items():
            if "myself" in n["flags"]:
                myself.append(addr)
            check(f"CLUSTER NODES {target.name}: {addr} connected master",
                  (n["connected"], "master" in n["flags"], n["master_id"]), (True, True, "-"))
            for r in n["slots"]:
                lo, hi = int(r[0]), int(r[-1])
                for s in range(lo, hi + 1):
                    got[s] = addr
        check(f"CLUSTER NODES {target.name}: myself", myself, [target.name])
        check(f"CLUSTER NODES {target.name}: the client's owners", got == owner, True)

    # CLUSTER SHARDS (RESP2 parse of redis-py): the same owners.
    shards = rc.cluster_shards(target_nodes=RedisCluster.RANDOM)
    got = {}
    for sh in shards:
        ns = sh["nodes"]
        check("CLUSTER SHARDS: one node a shard", len(ns), 1)
        n = {text(k): text(v) for k, v in ns[0].items()}
        for lo, hi in sh["slots"]:
            for s in range(int(lo), int(hi) + 1):
                got[s] = f"{n['endpoint']}:{n['port']}"
        if sh["slots"]:
            check(f"CLUSTER SHARDS {n.get('endpoint')}:{n.get('port')} role/health",
                  (n.get("role"), n.get("health")), ("master", "online"))
    check("CLUSTER SHARDS: the client's owners", got == owner, True)

    # The server's slot of a key is the client's (CRC16 of the user_id).
    rng = random.Random(7)
    for u in [0, 1, 42, MAX_ID] + [rng.randrange(MAX_ID) for _ in range(20)]:
        check(f"CLUSTER KEYSLOT {u}", rc.cluster_keyslot(str(u)), rc.keyslot(str(u)))
    return owner


# ---- the commands one by one


def check_commands(rc, base, owner, p=""):
    u = base
    check(p + "RSINCR u 7", rc.execute_command("RSINCR", u, 7), 1)
    check(p + "RSINCR u 7 4", rc.execute_command("RSINCR", u, 7, 4), 5)
    check(p + "RSGET u 7", rc.execute_command("RSGET", u, 7), [5, 0])
    check(p + "RSRESET u 7 1100", rc.execute_command("RSRESET", u, 7, 1100), 5)
    check(p + "RSMGET u 7 8", rc.execute_command("RSMGET", u, 7, 8), [[0, 1100], [0, 0]])
    check(p + "rsmget repeats", rc.execute_command("rsmget", u, 8, 7, 8), [[0, 0], [0, 1100], [0, 0]])
    check(p + "clamp at 0", rc.execute_command("RSINCR", u, 7, -10), 0)
    check(p + "RSRESET without message_id", rc.execute_command("RSRESET", u, 7), 0)
    check(p + "RSGET after reset", rc.execute_command("RSGET", u, 7), [0, 1100])
    check(p + "max ids", rc.execute_command("RSRESET", u, MAX_ID, MAX_ID), 0)
    check(p + "RSGET max", rc.execute_command("RSGET", u, MAX_ID), [0, MAX_ID])
    check(p + "to the max", rc.execute_command("RSINCR", u, 9, MAX_MENTIONS), MAX_MENTIONS)
    check_error(p + "overflow", lambda: rc.execute_command("RSINCR", u, 9), redis.ResponseError, "overflow")
    check(p + "unchanged after overflow", rc.execute_command("RSGET", u, 9), [MAX_MENTIONS, 0])
    check_error(p + "bad channel_id", lambda: rc.execute_command("RSINCR", u, "abc"),
                redis.ResponseError, "invalid channel_id 'abc'")
    check_error(p + "bad message_id", lambda: rc.execute_command("RSRESET", u, 7, -1),
                redis.ResponseError, "invalid message_id '-1'")
    check_error(p + "arity", lambda: rc.execute_command("RSGET", u),
                redis.ResponseError, "wrong number of arguments for 'rsget' command")
    check_error(p + "bad user_id", lambda: rc.execute_command("RSGET", "0x1", 1),
                redis.ResponseError, "invalid user_id '0x1'")
    check(p + "after errors", rc.execute_command("RSGET", u, 7), [0, 1100])
    check_padded(rc, base, owner, p)
    # The user_id at its extremes.
    for edge in (0, MAX_ID):
        before = rc.execute_command("RSGET", edge, base)[0]
        check(p + f"RSINCR {edge} (user at the edge)", rc.execute_command("RSINCR", edge, base, 2), before + 2)
        check(p + f"RSRESET {edge}", rc.execute_command("RSRESET", edge, base, 5), before + 2)
        check(p + f"RSGET {edge}", rc.execute_command("RSGET", edge, base), [0, 5])

    # Routing: the client's node for a user serves it; another node
    # redirects with MOVED to it (redis-py's MovedError is parsed from it).
    direct = {}
    for n in rc.get_nodes():
        direct[n.name] = redis.Redis(host=n.host, port=n.port, socket_timeout=20)
    try:
        for v in range(base + 100, base + 130):
            slot = rc.keyslot(str(v))
            mine = rc.get_node_from_key(str(v)).name
            check(p + f"the client's node for {v} is the map's", mine, owner[slot])
            check(p + f"RSINCR {v} on its node {mine}", direct[mine].execute_command("RSINCR", v, 1), 1)
            for name, c in direct.items():
                if name == mine:
                    continue
                counted()
                try:
                    got = c.execute_command("RSGET", v, 1)
                    fail(p + f"RSGET {v} on {name}: got {got!r}, want MOVED {slot} {mine}")
                except redis.exceptions.MovedError as e:
                    # "-MOVED <slot> <host>:<port>", parsed by redis-py.
                    if (e.slot_id, f"{e.host}:{e.port}") != (slot, mine):
                        fail(p + f"RSGET {v} on {name}: got MOVED {e.slot_id} {e.host}:{e.port}, want MOVED {slot} {mine}")
                except Exception as e:  # noqa: BLE001 - report any other exception
                    fail(p + f"RSGET {v} on {name}: got {type(e).__name__}({e}), want MOVED {slot} {mine}")
            check(p + f"RSGET {v} through the cluster client", rc.execute_command("RSGET", v, 1), [1, 0])
    finally:
        for c in direct.values():
            c.close()


def padded_users(rc, base, owner):
    """Two users whose zero-padded spelling ("0" + id) the client hashes to
    a slot of the node that serves the user (same), and of another node
    (other)."""
    # CRC16 is linear: for ids of one length, the slot of "0" + id is the
    # slot of id XOR a constant, so one length may have no user of a kind;
    # the search goes on through other lengths.
    same = other = None
    candidates = [base + 500 + i for i in range(200)]
    for digits in range(4, 19):
        candidates += [10 ** (digits - 1) + base % 10 ** (digits - 1) // 2 + i for i in range(200)]
    for v in candidates:
        if owner[rc.keyslot(f"0{v}")] == owner[rc.keyslot(str(v))]:
            same = same or v
        else:
            other = other or v
        if same and other:
            break
    return same, other


def check_padded(rc, base, owner, p=""):
    # docs/commands.md: "0<id>" names user <id>, whose node is the one of
    # the slot of "<id>". The client hashes the bytes it sends: where the
    # node of that slot serves the user, it runs the command; where not, it
    # refuses it with an error (a MOVED would name the client's own slot,
    # whose node is that one: the client would loop).
    same, other = padded_users(rc, base, owner)
    for v, where in ((same, "the user's node"), (other, "another node")):
        if v is None:
            notes.append(f"{p}padded user_id: no user found whose padded slot is on {where}")
            continue
        pad = f"0{v}"
        # Short ids may be shared by the passes: the checks are relative.
        mc = rc.execute_command("RSINCR", v, 7, 3)
        lm = rc.execute_command("RSGET", v, 7)[1]
        what = (f"{p}padded user_id {pad} (the client's slot {rc.keyslot(pad)} is on {where}; "
                f"the user's slot {rc.keyslot(str(v))})")
        if where == "another node":
            check_error(what + ": RSGET refused", lambda: rc.execute_command("RSGET", pad, 7),
                        redis.ResponseError, "leading zeros")
            check_error(what + ": RSINCR refused", lambda: rc.execute_command("RSINCR", pad, 7, 2),
                        redis.ResponseError, "leading zeros")
            check(what + ": the canonical id unchanged", rc.execute_command("RSGET", v, 7), [mc, lm])
            continue
        try:
            check(what + ": RSGET", rc.execute_command("RSGET", pad, 7), [mc, lm])
            check(what + ": RSINCR", rc.execute_command("RSINCR", pad, 7, 2), mc + 2)
            check(what + ": RSGET of the canonical id after", rc.execute_command("RSGET", v, 7), [mc + 2, lm])
        except Exception as e:  # noqa: BLE001 - report any other exception
            counted()
            fail(f"{what}: {type(e).__name__}: {e}")


def check_pipeline(rc, base, p=""):
    # A ClusterPipeline over users of every node: replies in order, errors
    # in place.
    users = list(range(base + 1000, base + 1300))
    pipe = rc.pipeline()
    want = []
    for i, u in enumerate(users):
        pipe.execute_command("RSINCR", u, 1, u % 5 + 1)
        want.append(u % 5 + 1)
        pipe.execute_command("RSRESET", u, 2, u * 10)
        want.append(0)
        if i % 50 == 0:
            pipe.execute_command("RSGET", u, "bad")
            want.append("error")
        pipe.execute_command("RSGET", u, 1)
        want.append([u % 5 + 1, 0])
        pipe.execute_command("RSMGET", u, 1, 2, 3)
        want.append([[u % 5 + 1, 0], [0, u * 10], [0, 0]])
    got = pipe.execute(raise_on_error=False)
    got = ["error" if isinstance(g, redis.ResponseError) else g for g in got]
    check(p + f"ClusterPipeline of {len(want)} commands", got, want)

    # Default raise_on_error: the first error is raised.
    pipe = rc.pipeline()
    pipe.execute_command("RSINCR", users[0], 1)
    pipe.execute_command("RSINCR", users[0], 1, "x")
    check_error(p + "ClusterPipeline raises the error", pipe.execute, redis.ResponseError, "delta")

    # A transaction pipeline: one user, so one slot.
    u = base + 2000
    tx = rc.pipeline(transaction=True)
    tx.execute_command("RSINCR", u, 1, 3)
    tx.execute_command("RSINCR", u, 2)
    tx.execute_command("RSRESET", u, 1, 77)
    tx.execute_command("RSMGET", u, 1, 2)
    check(p + "transaction pipeline (MULTI/EXEC)", tx.execute(), [3, 1, 3, [[0, 77], [1, 0]]])


# ---- the churn


class Model:
    def __init__(self):
        self.st = {}

    def get(self, u, c):
        return list(self.st.get((u, c), (0, 0)))

    def incr(self, u, c, d):
        mc, lm = self.st.get((u, c), (0, 0))
        mc = max(0, mc + d)
        self.st[(u, c)] = (mc, lm)
        return mc

    def reset(self, u, c, msg):
        mc, lm = self.st.get((u, c), (0, 0))
        self.st[(u, c)] = (0, lm if msg is None else msg)
        return mc


CHANNELS = [0, 1, 2, 3, 7, 1000, 1 << 40, MAX_ID]


def random_op(rng, users, model):
    """A random command on a random user and the reply the model wants."""
    u = rng.choice(users)
    c = rng.choice(CHANNELS)
    r = rng.random()
    if r < 0.45:
        if rng.random() < 0.3:
            return ("RSINCR", u, c), model.incr(u, c, 1)
        d = rng.randint(-3, 6)
        return ("RSINCR", u, c, d), model.incr(u, c, d)
    if r < 0.65:
        if rng.random() < 0.3:
            return ("RSRESET", u, c), model.reset(u, c, None)
        msg = rng.choice([rng.randrange(1, 1 << 20), rng.randrange(1, MAX_ID), MAX_ID])
        return ("RSRESET", u, c, msg), model.reset(u, c, msg)
    if r < 0.8:
        return ("RSGET", u, c), model.get(u, c)
    chs = [rng.choice(CHANNELS) for _ in range(rng.randint(1, 6))]
    return ("RSMGET", u, *chs), [model.get(u, ch) for ch in chs]


def commandstats(addrs):
    """calls and failed+rejected calls of the read-state commands, summed over
    the nodes (a redirect is a failed or rejected call)."""
    calls = bad = 0
    for h, port in addrs:
        c = redis.Redis(host=h, port=port, socket_timeout=20)
        try:
            stats = c.info("commandstats")
        finally:
            c.close()
        for name in RS_COMMANDS:
            s = stats.get(f"cmdstat_{name}", {})
            calls += int(s.get("calls", 0))
            bad += int(s.get("failed_calls", 0)) + int(s.get("rejected_calls", 0))
    return calls, bad


def churn_worker(rc, t, users, model, ops, seed, sent, errors):
    rng = random.Random(seed * 1000 + t)
    bad = 0
    n = 0
    try:
        while n < ops:
            if rng.random() < 0.1:
                # One command on its own.
                args, want = random_op(rng, users, model)
                got = rc.execute_command(*args)
                n += 1
                counted()
                if got != want:
                    bad += 1
                    if bad <= 5:
                        fail(f"churn thread {t}: {' '.join(map(str, args))}: got {got!r}, want {want!r}")
                continue
            size = min(ops - n, rng.choice([1, 2, 10, 50, 200, 500]))
            pipe = rc.pipeline()
            batch = []
            for _ in range(size):
                args, want = random_op(rng, users, model)
                pipe.execute_command(*args)
                batch.append((args, want))
            got = pipe.execute(raise_on_error=False)
            n += size
            counted(size)
            if len(got) != size:
                fail(f"churn thread {t}: a pipeline of {size} answered {len(got)} replies")
                bad += 1
                continue
            for (args, want), g in zip(batch, got):
                if g != want:
                    bad += 1
                    if bad <= 5:
                        fail(f"churn thread {t} (pipeline of {size}): {' '.join(map(str, args))}: got {g!r}, want {want!r}")
    except Exception as e:  # noqa: BLE001 - any failure is reported
        fail(f"churn thread {t}: aborted after {n} commands: {type(e).__name__}: {e}")
    finally:
        sent[t] = n
        errors[t] = bad


def churn(rc, addrs, base, owner):
    threads, users_per_thread, ops_per_thread = 4, 1500, 15000
    seed = base
    models = [Model() for _ in range(threads)]
    all_users = []
    user_sets = []
    for t in range(threads):
        us = [base + 100_000 + i * threads + t for i in range(users_per_thread)]
        user_sets.append(us)
        all_users += us
    # Every node gets some of the users.
    per_node = {}
    for u in all_users:
        n = owner[rc.keyslot(str(u))]
        per_node[n] = per_node.get(n, 0) + 1
    check("churn: every node serves some of the users", len(per_node), len(rc.get_nodes()))

    calls0, bad0 = commandstats(addrs_of(rc))
    sent = [0] * threads
    errors = [0] * threads
    start = time.monotonic()
    ts = [threading.Thread(target=churn_worker,
                           args=(rc, t, user_sets[t], models[t], ops_per_thread, seed, sent, errors))
          for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    took = time.monotonic() - start
    total = sum(sent)
    check("churn: commands sent", total, threads * ops_per_thread)
    check("churn: replies that differ from the model", sum(errors), 0)
    calls1, bad1 = commandstats(addrs_of(rc))
    # Every command ran on the node the client sent it to: none redirected.
    check("churn: read-state calls counted by the nodes (INFO commandstats)", calls1 - calls0, total)
    check("churn: failed or rejected calls (a MOVED is one)", bad1 - bad0, 0)
    notes.append(f"churn: {threads} threads, {len(all_users)} users over {len(per_node)} nodes "
                 f"({', '.join(f'{k}: {v}' for k, v in sorted(per_node.items()))}), "
                 f"{total} commands in {took:.1f}s ({total / took:.0f}/s)")

    # Every read state, read back by another client (from the last startup
    # node) with RSMGET in ClusterPipelines, compared with the model.
    rc2 = cluster(addrs[-1:])
    start = time.monotonic()
    compared = bad = 0
    try:
        for t in range(threads):
            us = user_sets[t]
            for i in range(0, len(us), 500):
                pipe = rc2.pipeline()
                part = us[i:i + 500]
                for u in part:
                    pipe.execute_command("RSMGET", u, *CHANNELS)
                for u, got in zip(part, pipe.execute()):
                    want = [models[t].get(u, c) for c in CHANNELS]
                    compared += len(CHANNELS)
                    if got != want:
                        bad += 1
                        if bad <= 5:
                            fail(f"churn: final RSMGET {u}: got {got!r}, want {want!r}")
        # And some singly, through the first client.
        rng = random.Random(seed)
        for _ in range(300):
            t = rng.randrange(threads)
            u = rng.choice(user_sets[t])
            c = rng.choice(CHANNELS)
            if rc.execute_command("RSGET", u, c) != models[t].get(u, c):
                bad += 1
                fail(f"churn: final RSGET {u} {c}: differs from the model {models[t].get(u, c)}")
    finally:
        rc2.close()
    counted(compared)
    check("churn: final read states that differ from the model", bad, 0)
    written = sum(len(m.st) for m in models)
    notes.append(f"churn: {compared} read states ({written} written) compared with the model "
                 f"in {time.monotonic() - start:.1f}s, {bad} differ")


def addrs_of(rc):
    return sorted((n.host, n.port) for n in rc.get_nodes())


# ---- RESP3


def resp3(addrs, base, owner):
    rc = cluster(addrs, protocol=3)
    try:
        nodes = {n.name for n in rc.get_nodes()}
        check("resp3: the same nodes", nodes, set(owner.values()))
        for slot in range(0, SLOTS, 97):
            n = rc.nodes_manager.get_node_from_slot(slot)
            if not check(f"resp3: slot {slot} owner", n.name if n else None, owner[slot]):
                break
        check_commands(rc, base, owner, "resp3: ")
        check_pipeline(rc, base, "resp3: ")
    finally:
        rc.close()


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    addrs = []
    for a in sys.argv[1:]:
        h, _, p = a.rpartition(":")
        addrs.append((h, int(p)))
    base = random.randrange(10**12, 10**15)
    nodes = "?"
    start = time.monotonic()
    try:
        rc = cluster(addrs)  # redis-py's defaults
        nodes = len(rc.get_nodes())
        try:
            owner = check_map(rc, addrs)
            for name, fn in (("commands", lambda: check_commands(rc, base, owner)),
                             ("pipeline", lambda: check_pipeline(rc, base + 10_000)),
                             ("churn", lambda: churn(rc, addrs, base + 1_000_000, owner)),
                             ("resp3", lambda: resp3(addrs, base + 20_000_000, owner))):
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - any failure is reported
                    fail(f"{name}: aborted: {type(e).__name__}: {e}")
        finally:
            rc.close()
    except Exception as e:  # noqa: BLE001 - any failure is reported
        fail(f"aborted: {type(e).__name__}: {e}")
    for n in notes:
        print("NOTE", n)
    print(f"redis-py {redis.__version__} (cluster, {nodes} nodes, {time.monotonic() - start:.1f}s): "
          f"{checks} checks, {len(failures)} failed")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
