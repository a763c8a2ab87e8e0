package readstates.jedischeck;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.function.Supplier;

import redis.clients.jedis.AbstractTransaction;
import redis.clients.jedis.BuilderFactory;
import redis.clients.jedis.CommandArguments;
import redis.clients.jedis.CommandObject;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.JedisPooled;
import redis.clients.jedis.Pipeline;
import redis.clients.jedis.Protocol;
import redis.clients.jedis.RedisProtocol;
import redis.clients.jedis.Response;
import redis.clients.jedis.Transaction;
import redis.clients.jedis.commands.ProtocolCommand;
import redis.clients.jedis.csc.Cache;
import redis.clients.jedis.csc.Cacheable;
import redis.clients.jedis.csc.DefaultCache;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.util.SafeEncoder;

/**
 * Drives a running readstates server with Jedis, with its default options,
 * in RESP2 and RESP3, plain, pooled, pipelined, in transactions and through
 * Jedis's client-side cache.
 *
 * <p>Usage: JedisCheck HOST PORT
 *
 * <p>Every check compares a reply with the value docs/commands.md gives.
 * Prints "jedis V: N checks, M failed" and then one FAIL line per failure;
 * exits 0 when all pass, 1 otherwise. NOTE lines report what is worth
 * knowing but is not a failure. Each check works on its own user_ids, above
 * a random base, so the checks do not see each other's writes; the cache
 * checks count the server's RSGET calls, so the server must be this run's
 * alone.
 */
public final class JedisCheck {
  static final long MAX_ID = Long.MAX_VALUE;
  static final long MAX_MENTIONS = Integer.MAX_VALUE;

  /** The read-state commands, as Jedis sends custom commands. */
  enum RS implements ProtocolCommand {
    RSINCR, RSRESET, RSGET, RSMGET;

    private final byte[] raw = SafeEncoder.encode(name());

    @Override
    public byte[] getRaw() {
      return raw;
    }
  }

  /** Any command by name (lower case, unknown ones). */
  static ProtocolCommand cmd(String name) {
    byte[] raw = SafeEncoder.encode(name);
    return () -> raw;
  }

  static final ProtocolCommand FOO = cmd("FOO");

  /** Jedis's version, from its jar (as Jedis reads it for CLIENT SETINFO). */
  static final String JEDIS_VERSION = jedisVersion();

  static String jedisVersion() {
    try (InputStream in = Jedis.class.getClassLoader().getResourceAsStream("redis/clients/jedis/pom.properties")) {
      Properties p = new Properties();
      p.load(in);
      return p.getProperty("version");
    } catch (Exception e) {
      return "?";
    }
  }

  // ---- bookkeeping (sections run one at a time, but a timed-out one may
  // still be running, hence synchronized)

  static final List<String> failures = new ArrayList<>();
  static final List<String> notes = new ArrayList<>();
  static int checks;

  static synchronized void fail(String what) {
    failures.add(what);
  }

  static synchronized void note(String what) {
    notes.add(what);
  }

  static synchronized void counted() {
    checks++;
  }

  /** Replies made printable and comparable: byte[] becomes a String. */
  static Object norm(Object o) {
    if (o instanceof byte[]) {
      return SafeEncoder.encode((byte[]) o);
    }
    if (o instanceof List) {
      List<Object> out = new ArrayList<>();
      for (Object e : (List<?>) o) {
        out.add(norm(e));
      }
      return out;
    }
    if (o instanceof JedisDataException) {
      return "(error) " + ((JedisDataException) o).getMessage();
    }
    return o;
  }

  static String show(Object o) {
    Object n = norm(o);
    String t = n instanceof String ? "\"" + n + "\"" : String.valueOf(n);
    return t.length() > 400 ? t.substring(0, 400) + "...(" + t.length() + " chars)" : t;
  }

  static boolean check(String what, Object got, Object want) {
    counted();
    if (!norm(got).equals(norm(want))) {
      fail(what + ": got " + show(got) + ", want " + show(want));
      return false;
    }
    return true;
  }

  /** An error reply: exact, or (prefix) starting with want. */
  static void checkErrorText(String what, Object got, String want, boolean prefix) {
    counted();
    if (!(got instanceof JedisDataException)) {
      fail(what + ": got " + show(got) + ", want an error " + (prefix ? "starting with " : "") + show(want));
      return;
    }
    String msg = ((JedisDataException) got).getMessage();
    if (prefix ? !msg.startsWith(want) : !msg.equals(want)) {
      fail(what + ": got error " + show(msg) + ", want " + (prefix ? "one starting with " : "") + show(want));
    }
  }

  /** Calls fn, which must throw a JedisDataException with want (exact, or a prefix). */
  static void checkError(String what, Supplier<Object> fn, String want, boolean prefix) {
    Object got;
    try {
      got = fn.get();
    } catch (JedisDataException e) {
      got = e;
    } catch (RuntimeException e) {
      counted();
      fail(what + ": got " + e.getClass().getName() + "(" + e.getMessage() + "), want JedisDataException");
      return;
    }
    checkErrorText(what, got, want, prefix);
  }

  static void checkErrorContains(String what, Supplier<Object> fn, String part) {
    counted();
    try {
      Object got = fn.get();
      fail(what + ": got reply " + show(got) + ", want an error containing " + show(part));
    } catch (JedisDataException e) {
      if (!e.getMessage().startsWith("ERR") || !e.getMessage().contains(part)) {
        fail(what + ": got error " + show(e.getMessage()) + ", want one starting with ERR and containing " + show(part));
      }
    } catch (RuntimeException e) {
      fail(what + ": got " + e.getClass().getName() + "(" + e.getMessage() + "), want JedisDataException");
    }
  }

  static List<Long> pair(long mentions, long lastMessage) {
    return Arrays.asList(mentions, lastMessage);
  }

  static String s(long v) {
    return Long.toString(v);
  }

  // ---- sections

  interface Body {
    void run(List<AutoCloseable> open) throws Exception;
  }

  /**
   * Runs body on its own thread. A body that has not returned after
   * timeoutSec is a failure (a hang): the connections it registered are
   * closed, which unblocks a read, and the run goes on with the next
   * section. A body still stuck 10 s later (a write blocked on a server
   * that stopped reading: Jedis's close flushes first, and blocks too) ends
   * the run: the summary is printed and the process exits 1.
   */
  static void section(String name, int timeoutSec, Body body) {
    List<AutoCloseable> open = Collections.synchronizedList(new ArrayList<>());
    long start = System.nanoTime();
    Thread t = new Thread(() -> {
      try {
        body.run(open);
      } catch (Throwable e) {
        counted();
        fail(name + ": aborted: " + e.getClass().getName() + ": " + e.getMessage());
      } finally {
        closeAll(open);
      }
    }, name);
    t.setDaemon(true);
    t.start();
    try {
      t.join(timeoutSec * 1000L);
      if (t.isAlive()) {
        counted();
        fail(name + ": no result after " + timeoutSec + " s (a hang?); closing its connections");
        Thread closer = new Thread(() -> closeAll(open), name + "-closer");
        closer.setDaemon(true);
        closer.start();
        t.join(10_000);
        if (t.isAlive()) {
          fail(name + ": still stuck 10 s after closing its connections; the run stops here");
          finish();
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    System.out.printf("section %s: %.1f s%n", name, (System.nanoTime() - start) / 1e9);
  }

  static void closeAll(List<AutoCloseable> open) {
    List<AutoCloseable> all;
    synchronized (open) {
      all = new ArrayList<>(open);
    }
    for (AutoCloseable c : all) {
      try {
        c.close();
      } catch (Exception ignored) {
        // closing after a failure, or to unblock the section
      }
    }
  }

  /** A way to send a custom command and get its raw reply. */
  interface Sender {
    Object send(ProtocolCommand c, String... args);
  }

  /** The reply, or the JedisDataException thrown for an error reply. */
  static Object reply(Sender r, ProtocolCommand c, String... args) {
    try {
      return r.send(c, args);
    } catch (JedisDataException e) {
      return e;
    }
  }

  /** The contract's commands and error replies, on user u (and u's channels). */
  static void basic(String p, Sender r, long u) {
    String us = s(u);
    check(p + "RSINCR u 7", reply(r, RS.RSINCR, us, "7"), 1L);
    check(p + "RSINCR u 7 4", reply(r, RS.RSINCR, us, "7", "4"), 5L);
    check(p + "RSGET u 7", reply(r, RS.RSGET, us, "7"), pair(5, 0));
    check(p + "RSRESET u 7 1100", reply(r, RS.RSRESET, us, "7", "1100"), 5L);
    check(p + "RSMGET u 7 8", reply(r, RS.RSMGET, us, "7", "8"), List.of(pair(0, 1100), pair(0, 0)));
    check(p + "rsmget repeats (lower case)", reply(r, cmd("rsmget"), us, "8", "7", "8"),
        List.of(pair(0, 0), pair(0, 1100), pair(0, 0)));
    check(p + "leading zeros", reply(r, RS.RSINCR, String.format("%020d", u), "000000000007", "03"), 3L);
    check(p + "clamp at 0", reply(r, RS.RSINCR, us, "7", "-10"), 0L);
    check(p + "RSGET after clamp", reply(r, RS.RSGET, us, "7"), pair(0, 1100));
    check(p + "delta min int64", reply(r, RS.RSINCR, us, "10", s(Long.MIN_VALUE)), 0L);
    check(p + "RSRESET without message_id", reply(r, RS.RSRESET, us, "11"), 0L);
    check(p + "max ids", reply(r, RS.RSRESET, us, s(MAX_ID), s(MAX_ID)), 0L);
    check(p + "RSGET max", reply(r, RS.RSGET, us, s(MAX_ID)), pair(0, MAX_ID));
    check(p + "to the max", reply(r, RS.RSINCR, us, "9", s(MAX_MENTIONS)), MAX_MENTIONS);
    checkErrorContains(p + "overflow", () -> r.send(RS.RSINCR, us, "9"), "overflow");
    check(p + "unchanged after overflow", reply(r, RS.RSGET, us, "9"), pair(MAX_MENTIONS, 0));
    // RSRESET returns the count it cleared, even the maximum.
    check(p + "RSRESET at the max", reply(r, RS.RSRESET, us, "9", "5"), MAX_MENTIONS);

    // Errors: a JedisDataException with the server's text; the connection goes on.
    checkError(p + "bad channel_id", () -> r.send(RS.RSINCR, us, "abc"),
        "ERR invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807", false);
    checkError(p + "bad user_id", () -> r.send(RS.RSGET, "0x1", "1"), "ERR invalid user_id '0x1'", true);
    checkError(p + "empty user_id", () -> r.send(RS.RSGET, "", "1"), "ERR invalid user_id ''", true);
    checkError(p + "signed user_id", () -> r.send(RS.RSGET, "+1", "1"), "ERR invalid user_id '+1'", true);
    checkError(p + "above max", () -> r.send(RS.RSGET, us, "9223372036854775808"),
        "ERR invalid channel_id '9223372036854775808'", true);
    checkError(p + "bad message_id", () -> r.send(RS.RSRESET, us, "7", "-1"), "ERR invalid message_id '-1'", true);
    checkErrorContains(p + "bad delta", () -> r.send(RS.RSINCR, us, "7", "x"), "delta");
    checkError(p + "RSMGET bad channel", () -> r.send(RS.RSMGET, us, "1", "z"), "ERR invalid channel_id 'z'", true);
    checkError(p + "arity rsget", () -> r.send(RS.RSGET, us), "ERR wrong number of arguments for 'rsget' command", false);
    checkError(p + "arity rsincr", () -> r.send(RS.RSINCR, us, "1", "2", "3"),
        "ERR wrong number of arguments for 'rsincr' command", false);
    checkError(p + "arity rsreset", () -> r.send(RS.RSRESET, us), "ERR wrong number of arguments for 'rsreset' command", false);
    checkError(p + "arity rsmget", () -> r.send(RS.RSMGET, us), "ERR wrong number of arguments for 'rsmget' command", false);
    checkError(p + "unknown command", () -> r.send(FOO, "a", "b"),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ", false);
    checkError(p + "EXEC without MULTI", () -> r.send(Protocol.Command.EXEC), "ERR EXEC without MULTI", false);
    checkError(p + "DISCARD without MULTI", () -> r.send(Protocol.Command.DISCARD), "ERR DISCARD without MULTI", false);
    check(p + "after errors", reply(r, RS.RSGET, us, "7"), pair(0, 1100));
    check(p + "RSMGET after errors", reply(r, RS.RSMGET, us, "7", "9", "10", "11", s(MAX_ID)),
        List.of(pair(0, 1100), pair(0, 5), pair(0, 0), pair(0, 0), pair(0, MAX_ID)));
  }

  static void basicSection(String host, int port, long base) {
    JedisClientConfig resp3 = DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP3).build();
    section("basic", 120, open -> {
      String[] names = {"resp2", "resp3"};
      for (int i = 0; i < 2; i++) {
        String p = names[i] + ": ";
        // DefaultJedisClientConfig's defaults: RESP2, and the handshake
        // (CLIENT SETINFO) that the bare new Jedis(host, port) skips.
        Jedis j = new Jedis(new HostAndPort(host, port), i == 0 ? DefaultJedisClientConfig.builder().build() : resp3);
        open.add(j);
        check(p + "PING", j.ping(), "PONG");
        basic(p, j::sendCommand, base + i);
        // Jedis's handshake: HELLO 3 in RESP3, CLIENT SETINFO in both.
        String info = j.clientInfo();
        counted();
        if (!info.contains(" resp=" + (i == 0 ? 2 : 3) + " ")) {
          fail(p + "CLIENT INFO resp: got " + show(info));
        }
        counted();
        if (!info.contains(" lib-name=jedis ") || !info.contains(" lib-ver=" + JEDIS_VERSION + " ")) {
          fail(p + "CLIENT INFO lib-name/lib-ver (Jedis's CLIENT SETINFO): got " + show(info));
        }
        check(p + "ECHO", j.echo("hello"), "hello");
        j.close();
      }
      // JedisPooled: each call borrows a pooled connection.
      for (int i = 0; i < 2; i++) {
        String p = (i == 0 ? "pooled" : "pooled-resp3") + ": ";
        JedisPooled pool = i == 0 ? new JedisPooled(host, port) : new JedisPooled(new HostAndPort(host, port), resp3);
        open.add(pool);
        basic(p, pool::sendCommand, base + 2 + i);
        // Several threads at once, so the pool opens several connections.
        long u = base + 4 + i;
        List<Thread> ts = new ArrayList<>();
        for (int w = 0; w < 8; w++) {
          Thread t = new Thread(() -> {
            for (int k = 0; k < 250; k++) {
              pool.sendCommand(RS.RSINCR, s(u), "1");
            }
          });
          ts.add(t);
          t.start();
        }
        for (Thread t : ts) {
          t.join();
        }
        check(p + "8 threads x 250 RSINCR", reply(pool::sendCommand, RS.RSGET, s(u), "1"), pair(2000, 0));
        pool.close();
      }
    });
  }

  // ---- pipelines

  static final int USERS = 4;
  static final int CHANNELS = 20;

  static long mentions(int k, int ch) {
    return 1000L * (k + 1) + ch * 7L + 3; // above Long's small-value cache
  }

  static long lastMessage(int k, int ch) {
    return 1_234_567_890_123L * (k + 1) + ch;
  }

  static void pipelineSection(String host, int port, long base) {
    section("pipeline", 180, open -> {
      Jedis j = new Jedis(host, port);
      open.add(j);
      String[] users = new String[USERS];
      String[] chans = new String[CHANNELS];
      for (int k = 0; k < USERS; k++) {
        users[k] = s(base + k);
      }
      for (int ch = 0; ch < CHANNELS; ch++) {
        chans[ch] = s(ch);
      }

      // The read states, written in a pipeline.
      Pipeline p = j.pipelined();
      for (int k = 0; k < USERS; k++) {
        for (int ch = 0; ch < CHANNELS; ch++) {
          p.sendCommand(RS.RSRESET, users[k], chans[ch], s(lastMessage(k, ch)));
          p.sendCommand(RS.RSINCR, users[k], chans[ch], s(mentions(k, ch)));
        }
      }
      List<Object> set = p.syncAndReturnAll();
      List<Object> wantSet = new ArrayList<>();
      for (int k = 0; k < USERS; k++) {
        for (int ch = 0; ch < CHANNELS; ch++) {
          wantSet.add(0L);
          wantSet.add(mentions(k, ch));
        }
      }
      check("pipeline: setup", set, wantSet);

      // 1,000,000 RSGET, all written before any reply is read (Jedis's
      // pipeline writes each command as it is added, and reads only in
      // syncAndReturnAll): the server must keep reading while its replies
      // wait for the client.
      final int n = 1_000_000;
      long t0 = System.nanoTime();
      p = j.pipelined();
      for (int i = 0; i < n; i++) {
        p.sendCommand(RS.RSGET, users[i % USERS], chans[(i / USERS) % CHANNELS]);
      }
      long t1 = System.nanoTime();
      List<Object> all = p.syncAndReturnAll();
      long t2 = System.nanoTime();
      System.out.printf("pipeline: %d RSGET written in %.2f s, replies read in %.2f s%n", n, (t1 - t0) / 1e9,
          (t2 - t1) / 1e9);
      counted();
      if (all.size() != n) {
        fail("pipeline: 1,000,000 RSGET: got " + all.size() + " replies");
      } else {
        int bad = 0;
        for (int i = 0; i < n; i++) {
          int k = i % USERS;
          int ch = (i / USERS) % CHANNELS;
          List<Long> want = pair(mentions(k, ch), lastMessage(k, ch));
          if (!want.equals(all.get(i))) {
            if (++bad <= 5) {
              fail("pipeline: RSGET #" + i + " (" + users[k] + " " + ch + "): got " + show(all.get(i)) + ", want " + want);
            }
          }
        }
        if (bad > 5) {
          fail("pipeline: " + bad + " of " + n + " RSGET replies wrong in all");
        }
      }
      all = null;

      // 100,000 RSMGET of 20 channels each (a different rotation each time).
      final int m = 100_000;
      t0 = System.nanoTime();
      p = j.pipelined();
      List<Response<Object>> rs = new ArrayList<>(m);
      String[] args = new String[CHANNELS + 1];
      for (int i = 0; i < m; i++) {
        args[0] = users[i % USERS];
        for (int c = 0; c < CHANNELS; c++) {
          args[c + 1] = chans[(i + c * 3) % CHANNELS];
        }
        rs.add(p.sendCommand(RS.RSMGET, args));
      }
      t1 = System.nanoTime();
      p.sync();
      t2 = System.nanoTime();
      System.out.printf("pipeline: %d RSMGET x %d written in %.2f s, replies read in %.2f s%n", m, CHANNELS,
          (t1 - t0) / 1e9, (t2 - t1) / 1e9);
      counted();
      int bad = 0;
      for (int i = 0; i < m; i++) {
        int k = i % USERS;
        List<List<Long>> want = new ArrayList<>(CHANNELS);
        for (int c = 0; c < CHANNELS; c++) {
          int ch = (i + c * 3) % CHANNELS;
          want.add(pair(mentions(k, ch), lastMessage(k, ch)));
        }
        Object got;
        try {
          got = rs.get(i).get();
        } catch (JedisDataException e) {
          got = e;
        }
        if (!want.equals(got) && ++bad <= 5) {
          fail("pipeline: RSMGET #" + i + ": got " + show(got) + ", want " + want);
        }
      }
      if (bad > 5) {
        fail("pipeline: " + bad + " of " + m + " RSMGET replies wrong in all");
      }
      rs = null;

      // Errors in place, and the connection goes on.
      long u = base + 10;
      p = j.pipelined();
      List<Object> want = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        p.sendCommand(RS.RSINCR, s(u), s(100 + i % 10), "2");
        want.add(2L * (i / 10 + 1));
        if (i % 50 == 0) {
          p.sendCommand(RS.RSGET, s(u), "bad");
          want.add(new JedisDataException(
              "ERR invalid channel_id 'bad': expected an integer from 0 to 9223372036854775807"));
        }
      }
      check("pipeline: errors in place", p.syncAndReturnAll(), want);
      String[] ten = new String[11];
      ten[0] = s(u);
      for (int c = 0; c < 10; c++) {
        ten[c + 1] = s(100 + c);
      }
      check("pipeline: RSMGET after", j.sendCommand(RS.RSMGET, ten), Collections.nCopies(10, pair(40, 0)));
      j.close();

      // RESP3 and a pooled connection: 100,000 RSGET.
      JedisPooled pool = new JedisPooled(new HostAndPort(host, port),
          DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP3).build());
      open.add(pool);
      final int n3 = 100_000;
      List<Object> got3;
      t0 = System.nanoTime();
      try (var pp = pool.pipelined()) {
        for (int i = 0; i < n3; i++) {
          pp.sendCommand(RS.RSGET, users[i % USERS], chans[(i / USERS) % CHANNELS]);
        }
        got3 = pp.syncAndReturnAll();
      }
      System.out.printf("pipeline: %d RSGET in RESP3 through JedisPooled in %.2f s%n", n3,
          (System.nanoTime() - t0) / 1e9);
      counted();
      bad = 0;
      for (int i = 0; i < n3 && i < got3.size(); i++) {
        int k = i % USERS;
        int ch = (i / USERS) % CHANNELS;
        if (!pair(mentions(k, ch), lastMessage(k, ch)).equals(got3.get(i)) && ++bad <= 5) {
          fail("pipeline resp3: RSGET #" + i + ": got " + show(got3.get(i)));
        }
      }
      if (got3.size() != n3) {
        fail("pipeline resp3: got " + got3.size() + " replies, want " + n3);
      }
      pool.close();
    });
  }

  // ---- transactions

  static Object execReply(Supplier<List<Object>> exec) {
    try {
      return exec.get();
    } catch (JedisDataException e) {
      return e;
    }
  }

  static final String EXECABORT = "EXECABORT Transaction discarded because of previous errors.";

  static void transactions(String p, Jedis j, long u) {
    String us = s(u);
    Sender r = j::sendCommand;

    // EXEC: every queued command's reply, in order.
    Transaction tx = j.multi();
    Response<Object> first = tx.sendCommand(RS.RSINCR, us, "1", "3");
    tx.sendCommand(RS.RSINCR, us, "1", "2");
    tx.sendCommand(RS.RSGET, us, "1");
    Response<Object> pong = tx.sendCommand(Protocol.Command.PING, new String[0]);
    tx.sendCommand(RS.RSRESET, us, "1", "77");
    Response<Object> echo = tx.sendCommand(Protocol.Command.ECHO, "hi");
    tx.sendCommand(RS.RSMGET, us, "1", "2");
    check(p + "EXEC", tx.exec(), List.of(3L, 5L, pair(5, 0), "PONG", 5L, "hi", List.of(pair(0, 77), pair(0, 0))));
    check(p + "EXEC: Response of RSINCR", first.get(), 3L);
    check(p + "EXEC: Response of PING", pong.get(), "PONG");
    check(p + "EXEC: Response of ECHO", echo.get(), "hi");
    check(p + "after EXEC", reply(r, RS.RSGET, us, "1"), pair(0, 77));

    // DISCARD: nothing runs.
    tx = j.multi();
    tx.sendCommand(RS.RSINCR, us, "2", "10");
    tx.sendCommand(RS.RSRESET, us, "1", "99");
    check(p + "DISCARD", tx.discard(), "OK");
    check(p + "after DISCARD", reply(r, RS.RSMGET, us, "1", "2"), List.of(pair(0, 77), pair(0, 0)));

    // A command refused while queueing: EXEC fails with EXECABORT, nothing runs.
    String[][] refused = {
        {"wrong number of arguments", "RSGET"},
        {"unknown command", "FOO"},
        {"not allowed in a transaction", "INFO"},
        {"bad arity among others", "RSINCR"},
    };
    for (String[] c : refused) {
      Transaction t = j.multi();
      t.sendCommand(RS.RSINCR, us, "3", "1");
      switch (c[1]) {
        case "RSGET":
          t.sendCommand(RS.RSGET, us);
          break;
        case "FOO":
          t.sendCommand(FOO, "a");
          break;
        case "INFO":
          t.sendCommand(Protocol.Command.INFO, new String[0]);
          break;
        default:
          t.sendCommand(RS.RSINCR, us, "3", "1", "2");
      }
      t.sendCommand(RS.RSINCR, us, "3", "1");
      checkErrorText(p + "EXECABORT (" + c[0] + ")", execReply(t::exec), EXECABORT, false);
      check(p + "after EXECABORT (" + c[0] + "): nothing ran", reply(r, RS.RSGET, us, "3"), pair(0, 0));
      check(p + "after EXECABORT (" + c[0] + "): connection goes on", j.ping(), "PONG");
    }

    // Errors when EXEC runs: in place in the result; the others run.
    tx = j.multi();
    tx.sendCommand(RS.RSINCR, us, "4", "5");
    Response<Object> badId = tx.sendCommand(RS.RSINCR, us, "abc");
    tx.sendCommand(RS.RSINCR, us, "5", s(MAX_MENTIONS));
    tx.sendCommand(RS.RSINCR, us, "5", "1"); // overflow
    tx.sendCommand(RS.RSRESET, us, "4", "-1"); // bad message_id
    tx.sendCommand(RS.RSGET, us, "4");
    tx.sendCommand(RS.RSINCR, us, "4", "-2");
    Object res = execReply(tx::exec);
    if (res instanceof List && ((List<?>) res).size() == 7) {
      List<?> l = (List<?>) res;
      check(p + "EXEC runtime errors [0]", l.get(0), 5L);
      checkErrorText(p + "EXEC runtime errors [1] bad id", l.get(1),
          "ERR invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807", false);
      check(p + "EXEC runtime errors [2]", l.get(2), MAX_MENTIONS);
      counted();
      if (!(l.get(3) instanceof JedisDataException) || !((JedisDataException) l.get(3)).getMessage().startsWith("ERR")
          || !((JedisDataException) l.get(3)).getMessage().contains("overflow")) {
        fail(p + "EXEC runtime errors [3] overflow: got " + show(l.get(3)));
      }
      checkErrorText(p + "EXEC runtime errors [4] bad message_id", l.get(4), "ERR invalid message_id '-1'", true);
      check(p + "EXEC runtime errors [5]", l.get(5), pair(5, 0));
      check(p + "EXEC runtime errors [6]", l.get(6), 3L);
    } else {
      counted();
      fail(p + "EXEC with runtime errors: got " + show(res) + ", want a list of 7 replies");
    }
    counted();
    try {
      badId.get();
      fail(p + "Response of a failed command: want it to throw");
    } catch (JedisDataException e) {
      // as Jedis documents
    }
    check(p + "after runtime errors", reply(r, RS.RSMGET, us, "4", "5"), List.of(pair(3, 0), pair(MAX_MENTIONS, 0)));

    // An empty transaction.
    tx = j.multi();
    check(p + "empty EXEC", tx.exec(), List.of());
  }

  static void transactionSection(String host, int port, long base) {
    section("transactions", 120, open -> {
      Jedis j2 = new Jedis(host, port);
      open.add(j2);
      transactions("tx resp2: ", j2, base);
      j2.close();
      Jedis j3 = new Jedis(new HostAndPort(host, port),
          DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP3).build());
      open.add(j3);
      transactions("tx resp3: ", j3, base + 1);
      j3.close();

      // Through the pool (UnifiedJedis.multi()).
      JedisPooled pool = new JedisPooled(host, port);
      open.add(pool);
      long u = base + 2;
      try (AbstractTransaction tx = pool.multi()) {
        tx.sendCommand(RS.RSINCR, s(u), "1", "4");
        tx.sendCommand(RS.RSRESET, s(u), "1", "8");
        tx.sendCommand(RS.RSGET, s(u), "1");
        check("tx pooled: EXEC", tx.exec(), List.of(4L, 4L, pair(0, 8)));
      }
      try (AbstractTransaction tx = pool.multi()) {
        tx.sendCommand(RS.RSINCR, s(u), "1", "4");
        tx.sendCommand(RS.RSINCR, s(u));
        checkErrorText("tx pooled: EXECABORT", execReply(tx::exec), EXECABORT, false);
      }
      check("tx pooled: after", reply(pool::sendCommand, RS.RSGET, s(u), "1"), pair(0, 8));
      pool.close();
    });
  }

  // ---- client-side caching

  /** RSGET and RSMGET are cached; everything else goes to the server. */
  static final Cacheable RS_CACHEABLE = (command, keys) -> command == RS.RSGET || command == RS.RSMGET;

  /** RSGET with the user_id marked as the key (what the cache invalidates by). */
  static CommandObject<Object> rsget(long u, long ch) {
    return new CommandObject<>(new CommandArguments(RS.RSGET).key(s(u)).add(s(ch)), BuilderFactory.RAW_OBJECT);
  }

  static CommandObject<Object> rsmget(long u, long... chs) {
    CommandArguments a = new CommandArguments(RS.RSMGET).key(s(u));
    for (long ch : chs) {
      a.add(s(ch));
    }
    return new CommandObject<>(a, BuilderFactory.RAW_OBJECT);
  }

  /** The server's count of RSGET calls (LATENCY HISTOGRAM rsget). */
  static long serverCalls(Jedis j, String command) {
    Object o = j.sendCommand(Protocol.Command.LATENCY, "HISTOGRAM", command);
    List<?> l = (List<?>) o;
    if (l.isEmpty()) {
      return 0;
    }
    List<?> fields = (List<?>) l.get(1);
    for (int i = 0; i + 1 < fields.size(); i += 2) {
      if ("calls".equals(norm(fields.get(i)))) {
        return (Long) fields.get(i + 1);
      }
    }
    throw new IllegalStateException("LATENCY HISTOGRAM " + command + ": no calls in " + show(o));
  }

  /**
   * Reads through the cache until it shows want: the invalidation push
   * reaches the cache's connection a moment after the writer's reply (Jedis
   * looks for pushes only in what has already arrived), so the first read
   * may still be served from the cache. Returns the reads it took (0 if
   * want never showed within 5 s).
   */
  static int readUntil(JedisPooled cached, CommandObject<Object> c, Object want) throws InterruptedException {
    long deadline = System.nanoTime() + 5_000_000_000L;
    for (int n = 1; ; n++) {
      if (norm(cached.executeCommand(c)).equals(norm(want))) {
        return n;
      }
      if (System.nanoTime() > deadline) {
        return 0;
      }
      Thread.sleep(1);
    }
  }

  static void checkInvalidated(String what, JedisPooled cached, CommandObject<Object> c, Object want)
      throws InterruptedException {
    counted();
    int n = readUntil(cached, c, want);
    if (n == 0) {
      fail(what + ": still " + show(cached.executeCommand(c)) + " after 5 s, want " + show(want)
          + " (the invalidation did not reach the cache)");
    } else if (n > 1) {
      note(what + ": the first read after the change was still served from the cache; read " + n
          + " showed the change");
    }
  }

  static void cacheSection(String host, int port, long base) {
    section("client-side cache", 120, open -> {
      Cache cache = new DefaultCache(10_000, RS_CACHEABLE) {}; // its constructor is protected; nothing overridden
      JedisPooled cached = new JedisPooled(new HostAndPort(host, port),
          DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP3).build(), cache);
      open.add(cached);
      Jedis writer = new Jedis(host, port);
      open.add(writer);
      long u = base;
      long v = base + 1;

      check("cache: writer RSINCR u 1 3", writer.sendCommand(RS.RSINCR, s(u), "1", "3"), 3L);
      long calls0 = serverCalls(writer, "rsget");
      check("cache: first RSGET u 1 (miss)", cached.executeCommand(rsget(u, 1)), pair(3, 0));
      check("cache: second RSGET u 1 (hit)", cached.executeCommand(rsget(u, 1)), pair(3, 0));
      check("cache: third RSGET u 1 (hit)", cached.executeCommand(rsget(u, 1)), pair(3, 0));
      check("cache: server saw one RSGET of the three", serverCalls(writer, "rsget") - calls0, 1L);
      check("cache: hits", cache.getStats().getHitCount(), 2L);
      check("cache: misses", cache.getStats().getMissCount(), 1L);
      check("cache: entries", cache.getSize(), 1);

      // Another user's read state, cached; a write to u must not drop it.
      check("cache: RSGET v 1", cached.executeCommand(rsget(v, 1)), pair(0, 0));

      // Another connection changes u: the cache is told, the next read sees it.
      check("cache: writer RSINCR u 1", writer.sendCommand(RS.RSINCR, s(u), "1"), 4L);
      checkInvalidated("cache: RSGET u 1 after another connection's RSINCR", cached, rsget(u, 1), pair(4, 0));
      counted();
      if (cache.getStats().getInvalidationCount() < 1) {
        fail("cache: invalidations: got " + cache.getStats().getInvalidationCount() + ", want at least 1");
      }
      long hits = cache.getStats().getHitCount();
      check("cache: RSGET v 1 still cached", cached.executeCommand(rsget(v, 1)), pair(0, 0));
      check("cache: ... served from the cache", cache.getStats().getHitCount() - hits, 1L);

      // RSMGET, cached too, and invalidated by a change to any channel of u.
      long mcalls0 = serverCalls(writer, "rsmget");
      check("cache: RSMGET u 1 2", cached.executeCommand(rsmget(u, 1, 2)), List.of(pair(4, 0), pair(0, 0)));
      check("cache: RSMGET u 1 2 again", cached.executeCommand(rsmget(u, 1, 2)), List.of(pair(4, 0), pair(0, 0)));
      check("cache: server saw one RSMGET of the two", serverCalls(writer, "rsmget") - mcalls0, 1L);
      check("cache: writer RSRESET u 2 9", writer.sendCommand(RS.RSRESET, s(u), "2", "9"), 0L);
      checkInvalidated("cache: RSMGET u 1 2 after another connection's RSRESET", cached, rsmget(u, 1, 2),
          List.of(pair(4, 0), pair(0, 9)));

      // A transaction on another connection invalidates too.
      cached.executeCommand(rsget(u, 1));
      Transaction tx = writer.multi();
      tx.sendCommand(RS.RSINCR, s(u), "1", "10");
      tx.exec();
      checkInvalidated("cache: RSGET u 1 after another connection's EXEC", cached, rsget(u, 1), pair(14, 0));

      // The cached client's own write (not cacheable: it goes to the server)
      // invalidates its cache too: the server tells a client of its own changes.
      check("cache: own RSINCR u 1", cached.sendCommand(RS.RSINCR, s(u), "1"), 15L);
      checkInvalidated("cache: RSGET u 1 after its own RSINCR", cached, rsget(u, 1), pair(15, 0));

      // A user_id with leading zeros is the same read state to the server,
      // but another cache key to Jedis, and the server's invalidation names
      // the user in canonical form: such an entry is never invalidated.
      // Not the contract's promise either way: reported as a note.
      CommandObject<Object> padded = new CommandObject<>(
          new CommandArguments(RS.RSGET).key("000" + s(v)).add("1"), BuilderFactory.RAW_OBJECT);
      cached.executeCommand(padded);
      writer.sendCommand(RS.RSINCR, s(v), "1");
      Thread.sleep(200);
      Object stale = cached.executeCommand(padded);
      if (!norm(stale).equals(norm(pair(1, 0)))) {
        note("cache: RSGET 000" + v + " 1 (user_id with leading zeros) stays cached as " + show(stale)
            + " after RSINCR " + v + " 1: the invalidation push names \"" + v
            + "\", Jedis keys the entry by \"000" + v + "\"");
      }

      // A connection lost drops the entries it cached (Jedis's own rule).
      writer.close();
      cached.close();
    });
  }

  public static void main(String[] argv) {
    if (argv.length != 2) {
      System.err.println("usage: JedisCheck HOST PORT");
      System.exit(2);
    }
    String host = argv[0];
    int port = Integer.parseInt(argv[1]);
    // Distinct users per section, far above anything else the server holds.
    long base = 7_000_000_000_000L + new Random().nextInt(1_000_000) * 1_000L;

    basicSection(host, port, base);
    pipelineSection(host, port, base + 100);
    transactionSection(host, port, base + 200);
    cacheSection(host, port, base + 300);

    finish();
  }

  /** Prints the notes, the summary line and the failures, and exits (1 on any failure). */
  static void finish() {
    List<String> f;
    List<String> n;
    int c;
    synchronized (JedisCheck.class) {
      f = new ArrayList<>(failures);
      n = new ArrayList<>(notes);
      c = checks;
    }
    for (String s : n) {
      System.out.println("NOTE " + s);
    }
    System.out.println("jedis " + JEDIS_VERSION + ": " + c + " checks, " + f.size() + " failed");
    for (String s : f) {
      System.out.println("FAIL " + s);
    }
    System.out.flush();
    System.exit(f.isEmpty() ? 0 : 1);
  }
}
