#!/usr/bin/env python3
"""Drive a running readstates server with redis-py, in RESP2 and RESP3.

Usage: redispy_check.py PORT [HOST]

Every check compares a reply with the value the spec
(shared/spec/commands.md) gives. Exits 0 when all pass, 1 with a list of
failures otherwise. Each protocol works on its own user_id, so the script
needs a server on which those read states are still unwritten.
"""

import sys

import redis

MAX_ID = 9223372036854775807
MAX_MENTIONS = 2147483647

failures = []
checks = 0


def check(what, got, want):
    global checks
    checks += 1
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def check_error(what, fn, exc_type, contains):
    global checks
    checks += 1
    try:
        got = fn()
    except exc_type as e:
        if contains not in str(e):
            failures.append(f"{what}: got {type(e).__name__}({e}), want it to contain {contains!r}")
        return
    except Exception as e:  # noqa: BLE001 - report any other exception
        failures.append(f"{what}: got {type(e).__name__}({e}), want {exc_type.__name__}")
        return
    failures.append(f"{what}: got reply {got!r}, want {exc_type.__name__}")


def run(host, port, protocol):
    r = redis.Redis(host=host, port=port, protocol=protocol, socket_timeout=20)
    u = 5000 + protocol
    p = f"resp{protocol}: "

    check(p + "PING", r.ping(), True)
    check(p + "RSINCR u 7", r.execute_command("RSINCR", u, 7), 1)
    check(p + "RSINCR u 7 4", r.execute_command("RSINCR", u, 7, 4), 5)
    check(p + "RSGET u 7", r.execute_command("RSGET", u, 7), [5, 0])
    check(p + "RSRESET u 7 1100", r.execute_command("RSRESET", u, 7, 1100), 5)
    check(p + "RSMGET u 7 8", r.execute_command("RSMGET", u, 7, 8), [[0, 1100], [0, 0]])
    check(p + "rsmget repeats", r.execute_command("rsmget", u, 8, 7, 8), [[0, 0], [0, 1100], [0, 0]])
    check(p + "leading zeros", r.execute_command("RSINCR", f"{u:012d}", "000000000007", "03"), 3)
    check(p + "clamp at 0", r.execute_command("RSINCR", u, 7, -10), 0)
    check(p + "max ids", r.execute_command("RSRESET", u, MAX_ID, MAX_ID), 0)
    check(p + "RSGET max", r.execute_command("RSGET", u, MAX_ID), [0, MAX_ID])
    check(p + "to the max", r.execute_command("RSINCR", u, 9, MAX_MENTIONS), MAX_MENTIONS)
    check_error(p + "overflow", lambda: r.execute_command("RSINCR", u, 9), redis.ResponseError, "overflow")
    check(p + "unchanged after overflow", r.execute_command("RSGET", u, 9), [MAX_MENTIONS, 0])

    # Errors: ResponseError, the connection goes on.
    check_error(p + "bad channel_id", lambda: r.execute_command("RSINCR", u, "abc"),
                redis.ResponseError,
                "invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807")
    check_error(p + "bad user_id", lambda: r.execute_command("RSGET", "0x1", 1),
                redis.ResponseError, "invalid user_id '0x1'")
    check_error(p + "above max", lambda: r.execute_command("RSGET", u, MAX_ID + 1),
                redis.ResponseError, f"invalid channel_id '{MAX_ID + 1}'")
    check_error(p + "bad message_id", lambda: r.execute_command("RSRESET", u, 7, -1),
                redis.ResponseError, "invalid message_id '-1'")
    check_error(p + "bad delta", lambda: r.execute_command("RSINCR", u, 7, "x"),
                redis.ResponseError, "delta")
    check_error(p + "arity", lambda: r.execute_command("RSGET", u),
                redis.ResponseError, "wrong number of arguments for 'rsget' command")
    check_error(p + "unknown", lambda: r.execute_command("FOO", "a", "b"),
                redis.ResponseError, "unknown command 'FOO', with args beginning with: 'a' 'b' ")
    check(p + "after errors", r.execute_command("RSGET", u, 7), [0, 1100])

    # A pipeline, in order, errors in place.
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.execute_command("RSINCR", u, 100 + i % 10, 2)
        if i % 50 == 0:
            pipe.execute_command("RSGET", u, "bad")
    got = pipe.execute(raise_on_error=False)
    want = []
    counts = {}
    for i in range(200):
        ch = 100 + i % 10
        counts[ch] = counts.get(ch, 0) + 2
        want.append(counts[ch])
        if i % 50 == 0:
            want.append("error")
    got = ["error" if isinstance(g, redis.ResponseError) else g for g in got]
    check(p + "pipeline", got, want)
    check(p + "RSMGET after pipeline", r.execute_command("RSMGET", u, *range(100, 110)),
          [[40, 0]] * 10)

    # Redis commands redis-py users call.
    check(p + "DBSIZE > 0", r.dbsize() > 0, True)
    info = r.info()
    check(p + "INFO redis_version", "redis_version" in info, True)
    check(p + "INFO role", info.get("role"), "master")
    check(p + "CLIENT SETNAME", r.client_setname("py-check"), True)
    # redis-py decodes the name in RESP2 only (with real Redis too).
    name = r.client_getname()
    check(p + "CLIENT GETNAME", name.decode() if isinstance(name, bytes) else name, "py-check")
    r.close()


def main():
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    for protocol in (2, 3):
        try:
            run(host, port, protocol)
        except Exception as e:  # noqa: BLE001 - any failure is reported
            failures.append(f"resp{protocol}: aborted: {type(e).__name__}: {e}")
    print(f"redis-py {redis.__version__}: {checks} checks, {len(failures)} failed")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
