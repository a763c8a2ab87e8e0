package readstates.jedischeck;

import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntFunction;

import io.lettuce.core.ClientOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.RedisURI;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.cluster.ClusterClientOptions;
import io.lettuce.core.cluster.RedisClusterClient;
import io.lettuce.core.cluster.SlotHash;
import io.lettuce.core.cluster.api.StatefulRedisClusterConnection;
import io.lettuce.core.cluster.api.async.RedisAdvancedClusterAsyncCommands;
import io.lettuce.core.cluster.api.sync.RedisAdvancedClusterCommands;
import io.lettuce.core.cluster.api.sync.RedisClusterCommands;
import io.lettuce.core.cluster.models.partitions.ClusterPartitionParser;
import io.lettuce.core.cluster.models.partitions.Partitions;
import io.lettuce.core.cluster.models.partitions.RedisClusterNode;
import io.lettuce.core.cluster.models.slots.ClusterSlotRange;
import io.lettuce.core.cluster.models.slots.ClusterSlotsParser;
import io.lettuce.core.codec.StringCodec;
import io.lettuce.core.output.CommandOutput;
import io.lettuce.core.output.IntegerOutput;
import io.lettuce.core.output.NestedMultiOutput;
import io.lettuce.core.protocol.CommandArgs;
import io.lettuce.core.protocol.ProtocolKeyword;
import io.lettuce.core.protocol.ProtocolVersion;

import redis.clients.jedis.ClusterCommandArguments;
import redis.clients.jedis.ClusterPipeline;
import redis.clients.jedis.CommandArguments;
import redis.clients.jedis.Connection;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.JedisCluster;
import redis.clients.jedis.RedisProtocol;
import redis.clients.jedis.Response;
import redis.clients.jedis.commands.ProtocolCommand;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.exceptions.JedisMovedDataException;
import redis.clients.jedis.providers.ClusterConnectionProvider;
import redis.clients.jedis.resps.ClusterShardInfo;
import redis.clients.jedis.resps.ClusterShardNodeInfo;
import redis.clients.jedis.util.JedisClusterCRC16;
import redis.clients.jedis.util.SafeEncoder;

/**
 * Drives a cluster of readstates nodes with the JVM's two cluster clients,
 * Jedis's JedisCluster and Lettuce's RedisClusterClient, each made with its
 * default options from the startup nodes, as an application makes it.
 *
 * <p>Usage: ClusterCheck HOST:PORT [HOST:PORT ...]
 *
 * <p>For each client: its map (every slot served, every startup node in
 * it; CLUSTER SLOTS, NODES, SHARDS, INFO and KEYSLOT parsed by the client's
 * own parsers agree with it; the two clients agree with each other); the
 * read-state commands one by one (the example session of docs/commands.md,
 * errors included); MOVED as the client parses it, and a stale map
 * followed; a pipeline across the nodes (Jedis's ClusterPipeline,
 * Lettuce's async commands with flushing held back), errors in place; a
 * churn of several threads, each with users of its own, whose every reply
 * is compared with a model, with no command redirected (INFO commandstats),
 * and whose every read state is then read back through the other client
 * and compared with the model; and the other protocol (Jedis RESP3,
 * Lettuce RESP2).
 *
 * <p>Prints "jedis V, lettuce V (cluster, N nodes): C checks, F failed" and
 * one FAIL line per failure (NOTE lines are figures, not failures); exits
 * 0 when all pass, 1 otherwise. Users are above a random base, so it can
 * run again on the same cluster.
 */
@SuppressWarnings("deprecation") // Jedis.clusterSlots (raw, on purpose), ProtocolKeyword.name
public final class ClusterCheck {
  static final long MAX_ID = Long.MAX_VALUE;
  static final long MAX_MENTIONS = Integer.MAX_VALUE;
  static final int SLOTS = 16384;
  static final long[] CHANNELS = {0, 1, 2, 3, 7, 1000, 1L << 40, MAX_ID};
  static final StringCodec CODEC = StringCodec.UTF8;

  /** The read-state commands, for Jedis and for Lettuce. */
  enum RS implements ProtocolCommand, ProtocolKeyword {
    RSINCR, RSRESET, RSGET, RSMGET;

    private final byte[] raw = SafeEncoder.encode(name());

    @Override
    public byte[] getRaw() {
      return raw;
    }

    @Override
    public byte[] getBytes() {
      return raw;
    }

    boolean integerReply() {
      return this == RSINCR || this == RSRESET;
    }
  }

  // ---- bookkeeping (threads report at once, hence synchronized)

  static final List<String> failures = new ArrayList<>();
  static final List<String> notes = new ArrayList<>();
  static final AtomicLong checks = new AtomicLong();

  static synchronized void fail(String what) {
    failures.add(what);
  }

  static synchronized void note(String what) {
    notes.add(what);
  }

  /** Replies made printable and comparable. */
  static Object norm(Object o) {
    if (o instanceof byte[]) {
      return SafeEncoder.encode((byte[]) o);
    }
    if (o instanceof Integer) {
      return ((Integer) o).longValue();
    }
    if (o instanceof List) {
      List<Object> out = new ArrayList<>();
      for (Object e : (List<?>) o) {
        out.add(norm(e));
      }
      return out;
    }
    if (o instanceof ExecutionException && o != null && ((Throwable) o).getCause() != null) {
      return norm(((Throwable) o).getCause());
    }
    if (o instanceof Throwable) {
      Throwable t = (Throwable) o;
      String kind = t instanceof JedisDataException || t instanceof RedisCommandExecutionException ? "error"
          : t.getClass().getSimpleName();
      return "(" + kind + ") " + t.getMessage();
    }
    return o;
  }

  static String show(Object o) {
    Object n = norm(o);
    String t = n instanceof String ? "\"" + n + "\"" : String.valueOf(n);
    return t.length() > 300 ? t.substring(0, 300) + "...(" + t.length() + " chars)" : t;
  }

  static boolean check(String what, Object got, Object want) {
    checks.incrementAndGet();
    if (!java.util.Objects.equals(norm(got), norm(want))) {
      fail(what + ": got " + show(got) + ", want " + show(want));
      return false;
    }
    return true;
  }

  /** An error reply whose text contains want. */
  static void checkError(String what, Object got, String want) {
    checks.incrementAndGet();
    Object n = norm(got);
    if (!(n instanceof String) || !((String) n).startsWith("(error) ") || !((String) n).contains(want)) {
      fail(what + ": got " + show(got) + ", want an error containing " + show(want));
    }
  }

  static List<Object> st(long mc, long lm) {
    return List.of(mc, lm);
  }

  static String addr(String host, int port) {
    return host + ":" + port;
  }

  // ---- the model of the read states and random commands

  record Key(long u, long c) {}

  static final class Model {
    final Map<Key, long[]> st = new HashMap<>();

    List<Object> get(long u, long c) {
      long[] s = st.get(new Key(u, c));
      return s == null ? st(0, 0) : st(s[0], s[1]);
    }

    long incr(long u, long c, long d) {
      long[] s = st.computeIfAbsent(new Key(u, c), k -> new long[2]);
      s[0] = Math.max(0, s[0] + d);
      return s[0];
    }

    long reset(long u, long c, Long msg) {
      long[] s = st.computeIfAbsent(new Key(u, c), k -> new long[2]);
      long old = s[0];
      s[0] = 0;
      if (msg != null) {
        s[1] = msg;
      }
      return old;
    }
  }

  /** A command: name, user_id (its key), the other arguments, the reply the model wants. */
  record Op(RS cmd, long u, long[] rest, Object want) {
    String[] args() {
      String[] a = new String[rest.length + 1];
      a[0] = Long.toString(u);
      for (int i = 0; i < rest.length; i++) {
        a[i + 1] = Long.toString(rest[i]);
      }
      return a;
    }

    @Override
    public String toString() {
      return cmd + " " + String.join(" ", args());
    }
  }

  static Op op(RS cmd, long u, long... rest) {
    return new Op(cmd, u, rest, null);
  }

  static Op randomOp(Random rng, long[] users, Model m) {
    long u = users[rng.nextInt(users.length)];
    long c = CHANNELS[rng.nextInt(CHANNELS.length)];
    double r = rng.nextDouble();
    if (r < 0.45) {
      if (rng.nextDouble() < 0.3) {
        return new Op(RS.RSINCR, u, new long[] {c}, m.incr(u, c, 1));
      }
      long d = rng.nextInt(10) - 3;
      return new Op(RS.RSINCR, u, new long[] {c, d}, m.incr(u, c, d));
    }
    if (r < 0.65) {
      if (rng.nextDouble() < 0.3) {
        return new Op(RS.RSRESET, u, new long[] {c}, m.reset(u, c, null));
      }
      long[] msgs = {1 + rng.nextInt(1 << 20), 1 + (rng.nextLong() & (MAX_ID - 1)), MAX_ID};
      long msg = msgs[rng.nextInt(3)];
      return new Op(RS.RSRESET, u, new long[] {c, msg}, m.reset(u, c, msg));
    }
    if (r < 0.8) {
      return new Op(RS.RSGET, u, new long[] {c}, m.get(u, c));
    }
    long[] chs = new long[1 + rng.nextInt(6)];
    List<Object> want = new ArrayList<>();
    for (int i = 0; i < chs.length; i++) {
      chs[i] = CHANNELS[rng.nextInt(CHANNELS.length)];
      want.add(m.get(u, chs[i]));
    }
    long[] rest = new long[chs.length];
    System.arraycopy(chs, 0, rest, 0, chs.length);
    return new Op(RS.RSMGET, u, rest, want);
  }

  // ---- the two clients behind one interface

  /** Sends commands through one client: singly, or as one pipeline. */
  interface Driver extends AutoCloseable {
    /** The reply, or the exception that stands for an error reply. */
    Object single(Op op);

    /** The replies in order, exceptions in place of error replies. */
    List<Object> batch(List<Op> ops) throws Exception;

    @Override
    default void close() {}
  }

  static CommandArguments jedisArgs(Op op) {
    CommandArguments a = new ClusterCommandArguments(op.cmd).key(Long.toString(op.u));
    for (long r : op.rest) {
      a.add(Long.toString(r));
    }
    return a;
  }

  /** Jedis: JedisCluster for single commands, its ClusterPipeline for batches. */
  static Driver jedisDriver(JedisCluster jc) {
    return new Driver() {
      @Override
      public Object single(Op op) {
        try {
          return jc.sendCommand(Long.toString(op.u), op.cmd, op.args());
        } catch (JedisDataException e) {
          return e;
        }
      }

      @Override
      public List<Object> batch(List<Op> ops) {
        List<Response<Object>> rs = new ArrayList<>();
        try (ClusterPipeline p = jc.pipelined()) {
          for (Op op : ops) {
            rs.add(p.sendCommand(jedisArgs(op)));
          }
          p.sync();
        }
        List<Object> out = new ArrayList<>();
        for (Response<Object> r : rs) {
          try {
            out.add(r.get());
          } catch (JedisDataException e) {
            out.add(e);
          }
        }
        return out;
      }
    };
  }

  static CommandArgs<String, String> lettuceArgs(Op op) {
    CommandArgs<String, String> a = new CommandArgs<>(CODEC).addKey(Long.toString(op.u));
    for (long r : op.rest) {
      a.add(r);
    }
    return a;
  }

  static CommandOutput<String, String, ?> lettuceOutput(RS cmd) {
    return cmd.integerReply() ? new IntegerOutput<>(CODEC) : new NestedMultiOutput<>(CODEC);
  }

  static Object lettuceSync(RedisAdvancedClusterCommands<String, String> sync, Op op) {
    try {
      return sync.dispatch(op.cmd, lettuceOutput(op.cmd), lettuceArgs(op));
    } catch (RedisCommandExecutionException e) {
      return e;
    }
  }

  /**
   * Lettuce: the sync API of a shared connection for single commands; for
   * batches, the async API of a connection of the driver's own with
   * flushing held back until the batch is written (Lettuce's pipelining).
   */
  static Driver lettuceDriver(RedisClusterClient client, StatefulRedisClusterConnection<String, String> shared) {
    StatefulRedisClusterConnection<String, String> own = client.connect();
    // Lettuce connects to a node on the first command for it; a command
    // queued while that connection is still being made is written to it
    // once it is up, but flushCommands() only flushes the connections that
    // exist when it is called: with flushing held back, such a command
    // would wait for the next flush. So every node's connection is made
    // first, by a read of a user it serves, with flushing on.
    Set<RedisClusterNode> reached = new HashSet<>();
    Partitions parts = client.getPartitions();
    for (long u = 0; reached.size() < parts.size() && u < 100_000; u++) {
      if (reached.add(parts.getPartitionBySlot(SlotHash.getSlot(Long.toString(u))))) {
        own.sync().dispatch(RS.RSGET, new NestedMultiOutput<>(CODEC), lettuceArgs(op(RS.RSGET, u, 0)));
      }
    }
    own.setAutoFlushCommands(false);
    RedisAdvancedClusterAsyncCommands<String, String> async = own.async();
    RedisAdvancedClusterCommands<String, String> sync = shared.sync();
    return new Driver() {
      @Override
      public Object single(Op op) {
        return lettuceSync(sync, op);
      }

      @Override
      public List<Object> batch(List<Op> ops) throws Exception {
        List<RedisFuture<?>> fs = new ArrayList<>();
        for (Op op : ops) {
          fs.add(async.dispatch(op.cmd, lettuceOutput(op.cmd), lettuceArgs(op)));
        }
        own.flushCommands();
        List<Object> out = new ArrayList<>();
        for (RedisFuture<?> f : fs) {
          try {
            out.add(f.get(60, TimeUnit.SECONDS));
          } catch (ExecutionException e) {
            out.add(e.getCause());
          }
        }
        return out;
      }

      @Override
      public void close() {
        own.close();
      }
    };
  }

  // ---- the map

  /** The owner ("host:port") of every slot, from raw CLUSTER SLOTS of one node. */
  static String[] rawOwners(HostAndPort node) {
    String[] owner = new String[SLOTS];
    try (Jedis j = new Jedis(node)) {
      for (Object r : j.clusterSlots()) {
        List<?> range = (List<?>) r;
        List<?> master = (List<?>) range.get(2);
        String a = addr(SafeEncoder.encode((byte[]) master.get(0)), ((Long) master.get(1)).intValue());
        for (long s = (Long) range.get(0); s <= (Long) range.get(1); s++) {
          owner[(int) s] = a;
        }
      }
    }
    return owner;
  }

  static void checkOwners(String what, String[] got, String[] want) {
    checks.incrementAndGet();
    int bad = 0;
    int first = -1;
    for (int s = 0; s < SLOTS; s++) {
      if (!java.util.Objects.equals(got[s], want[s])) {
        bad++;
        if (first < 0) {
          first = s;
        }
      }
    }
    if (bad > 0) {
      fail(what + ": " + bad + " slots differ, the first " + first + ": " + got[first] + ", want " + want[first]);
    }
  }

  static Set<String> distinct(String[] owner) {
    return new LinkedHashSet<>(Arrays.asList(owner));
  }

  /**
   * JedisCluster, unchanged, with an accessor for its map (the slot's node
   * in its ClusterConnectionProvider).
   */
  static final class Cluster extends JedisCluster {
    /**
     * Jedis's defaults but the socket timeout: 2 s is less than a
     * race-built server on two shared cores may take for a pipeline of
     * 500 (and Jedis then hands back a connection stuck in its pipeline).
     */
    Cluster(Set<HostAndPort> nodes) {
      super(nodes, DefaultJedisClientConfig.builder().socketTimeoutMillis(30_000).build());
    }

    Cluster(Set<HostAndPort> nodes, JedisClientConfig cfg) {
      super(nodes, cfg);
    }

    HostAndPort node(int slot) {
      return ((ClusterConnectionProvider) provider).getNode(slot);
    }
  }

  /** Jedis's map, checked against the startup nodes and against what every node says. */
  static String[] jedisMap(Cluster jc, List<HostAndPort> startup, String p) {
    String[] owner = new String[SLOTS];
    int unserved = 0;
    for (int s = 0; s < SLOTS; s++) {
      HostAndPort h = ((Cluster) jc).node(s);
      if (h == null) {
        unserved++;
      } else {
        owner[s] = h.toString();
      }
    }
    check(p + "slots without a node in JedisCluster's map", unserved, 0);
    Set<String> nodes = jc.getClusterNodes().keySet();
    for (HostAndPort h : startup) {
      check(p + "startup node " + h + " in JedisCluster's nodes " + nodes, nodes.contains(h.toString()), true);
    }
    check(p + "every node serves slots", new HashSet<>(distinct(owner)), new HashSet<>(nodes));

    Random rng = new Random(7);
    for (String a : nodes) {
      HostAndPort node = HostAndPort.from(a);
      checkOwners(p + "CLUSTER SLOTS of " + a, rawOwners(node), owner);
      try (Jedis j = new Jedis(node)) {
        String info = j.clusterInfo();
        check(p + "CLUSTER INFO " + a + " cluster_state", info.contains("cluster_state:ok"), true);
        check(p + "CLUSTER INFO " + a + " cluster_slots_assigned", info.contains("cluster_slots_assigned:16384"), true);
        check(p + "CLUSTER INFO " + a + " cluster_known_nodes", info.contains("cluster_known_nodes:" + nodes.size()), true);

        // CLUSTER NODES: <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
        String[] fromNodes = new String[SLOTS];
        List<String> myself = new ArrayList<>();
        for (String line : j.clusterNodes().split("\n")) {
          if (line.isBlank()) {
            continue;
          }
          String[] f = line.trim().split(" ");
          String hp = f[1].split("@")[0];
          if (f[2].contains("myself")) {
            myself.add(hp);
          }
          check(p + "CLUSTER NODES " + a + ": " + hp + " master, connected",
              List.of(f[2].contains("master"), f[3], f[7]), List.of(true, "-", "connected"));
          for (int i = 8; i < f.length; i++) {
            String[] r = f[i].split("-");
            int lo = Integer.parseInt(r[0]);
            int hi = Integer.parseInt(r[r.length - 1]);
            for (int s = lo; s <= hi; s++) {
              fromNodes[s] = hp;
            }
          }
        }
        check(p + "CLUSTER NODES " + a + ": myself", myself, List.of(a));
        checkOwners(p + "CLUSTER NODES of " + a, fromNodes, owner);

        // CLUSTER SHARDS, parsed by Jedis (ClusterShardInfo).
        String[] fromShards = new String[SLOTS];
        for (ClusterShardInfo sh : j.clusterShards()) {
          List<ClusterShardNodeInfo> ns = sh.getNodes();
          check(p + "CLUSTER SHARDS " + a + ": one node a shard", ns.size(), 1);
          ClusterShardNodeInfo n = ns.get(0);
          String hp = addr(n.getEndpoint(), n.getPort().intValue());
          if (!sh.getSlots().isEmpty()) {
            check(p + "CLUSTER SHARDS " + a + ": " + hp + " role, health, ip",
                List.of(n.getRole(), n.getHealth(), n.getIp()), List.of("master", "online", n.getEndpoint()));
          }
          for (List<Long> r : sh.getSlots()) {
            for (long s = r.get(0); s <= r.get(1); s++) {
              fromShards[(int) s] = hp;
            }
          }
        }
        checkOwners(p + "CLUSTER SHARDS of " + a, fromShards, owner);

        // The server's slot of a user_id is the client's.
        for (int i = 0; i < 10; i++) {
          String k = Long.toString(i < 2 ? i * MAX_ID : rng.nextLong() & MAX_ID);
          check(p + "CLUSTER KEYSLOT " + k + " on " + a, j.clusterKeySlot(k), (long) JedisClusterCRC16.getSlot(k));
        }
      }
    }
    return owner;
  }

  /** Lettuce's map, checked against owner and against what every node says, parsed by Lettuce. */
  static void lettuceMap(RedisClusterClient client, StatefulRedisClusterConnection<String, String> conn,
      String[] owner, String p) {
    Partitions parts = client.getPartitions();
    String[] mine = new String[SLOTS];
    for (int s = 0; s < SLOTS; s++) {
      RedisClusterNode n = parts.getPartitionBySlot(s);
      mine[s] = n == null ? null : addr(n.getUri().getHost(), n.getUri().getPort());
    }
    checkOwners(p + "Lettuce's partitions", mine, owner);
    check(p + "Lettuce's partitions: nodes", parts.size(), distinct(owner).size());
    for (RedisClusterNode n : parts) {
      check(p + "Lettuce's partitions: " + n.getUri() + " upstream", n.is(RedisClusterNode.NodeFlag.UPSTREAM), true);
    }
    Random rng = new Random(8);
    for (String a : distinct(owner)) {
      HostAndPort hp = HostAndPort.from(a);
      RedisClusterCommands<String, String> node = conn.getConnection(hp.getHost(), hp.getPort()).sync();
      String[] got = new String[SLOTS];
      Partitions fromNodes = ClusterPartitionParser.parse(node.clusterNodes());
      List<String> myself = new ArrayList<>();
      for (RedisClusterNode n : fromNodes) {
        String na = addr(n.getUri().getHost(), n.getUri().getPort());
        if (n.is(RedisClusterNode.NodeFlag.MYSELF)) {
          myself.add(na);
        }
        for (int s : n.getSlots()) {
          got[s] = na;
        }
      }
      check(p + "CLUSTER NODES of " + a + " (Lettuce's parser): myself", myself, List.of(a));
      checkOwners(p + "CLUSTER NODES of " + a + " (Lettuce's parser)", got, owner);

      got = new String[SLOTS];
      Partitions fromShards = ClusterPartitionParser.parse(node.clusterShards());
      for (RedisClusterNode n : fromShards) {
        for (int s : n.getSlots()) {
          got[s] = addr(n.getUri().getHost(), n.getUri().getPort());
        }
      }
      checkOwners(p + "CLUSTER SHARDS of " + a + " (Lettuce's parser)", got, owner);

      got = new String[SLOTS];
      for (ClusterSlotRange r : ClusterSlotsParser.parse(node.clusterSlots())) {
        RedisURI u = r.getUpstream().getUri();
        for (int s = r.getFrom(); s <= r.getTo(); s++) {
          got[s] = addr(u.getHost(), u.getPort());
        }
      }
      checkOwners(p + "CLUSTER SLOTS of " + a + " (Lettuce's parser)", got, owner);

      check(p + "CLUSTER INFO " + a + " (Lettuce)", node.clusterInfo().contains("cluster_state:ok"), true);
      for (int i = 0; i < 5; i++) {
        String k = Long.toString(rng.nextLong() & MAX_ID);
        check(p + "CLUSTER KEYSLOT " + k + " on " + a + " (Lettuce)", node.clusterKeyslot(k), (long) SlotHash.getSlot(k));
      }
    }
  }

  // ---- the commands one by one

  /** The example session and the errors, through d's single commands. */
  static void commands(Driver d, long base, String p) {
    long u = base;
    check(p + "RSINCR u 7", d.single(op(RS.RSINCR, u, 7)), 1L);
    check(p + "RSINCR u 7 4", d.single(op(RS.RSINCR, u, 7, 4)), 5L);
    check(p + "RSGET u 7", d.single(op(RS.RSGET, u, 7)), st(5, 0));
    check(p + "RSRESET u 7 1100", d.single(op(RS.RSRESET, u, 7, 1100)), 5L);
    check(p + "RSMGET u 7 8", d.single(op(RS.RSMGET, u, 7, 8)), List.of(st(0, 1100), st(0, 0)));
    check(p + "RSMGET repeats", d.single(op(RS.RSMGET, u, 8, 7, 8)), List.of(st(0, 0), st(0, 1100), st(0, 0)));
    check(p + "clamp at 0", d.single(op(RS.RSINCR, u, 7, -10)), 0L);
    check(p + "RSRESET without message_id", d.single(op(RS.RSRESET, u, 7)), 0L);
    check(p + "RSGET after reset", d.single(op(RS.RSGET, u, 7)), st(0, 1100));
    check(p + "max ids", d.single(op(RS.RSRESET, u, MAX_ID, MAX_ID)), 0L);
    check(p + "RSGET max", d.single(op(RS.RSGET, u, MAX_ID)), st(0, MAX_ID));
    check(p + "to the max", d.single(op(RS.RSINCR, u, 9, MAX_MENTIONS)), MAX_MENTIONS);
    checkError(p + "overflow", d.single(op(RS.RSINCR, u, 9)), "overflow");
    check(p + "unchanged after overflow", d.single(op(RS.RSGET, u, 9)), st(MAX_MENTIONS, 0));
    checkError(p + "bad message_id", d.single(op(RS.RSRESET, u, 7, -1)), "ERR invalid message_id '-1'");
    checkError(p + "arity", d.single(op(RS.RSGET, u)), "ERR wrong number of arguments for 'rsget' command");
    check(p + "after errors", d.single(op(RS.RSGET, u, 7)), st(0, 1100));
    for (long edge : new long[] {0, MAX_ID}) {
      Object before = d.single(op(RS.RSGET, edge, base));
      long mc = before instanceof List ? (Long) ((List<?>) before).get(0) : -1;
      check(p + "RSINCR " + edge + " (user at the edge)", d.single(op(RS.RSINCR, edge, base, 2)), mc + 2);
      check(p + "RSRESET " + edge, d.single(op(RS.RSRESET, edge, base, 5)), mc + 2);
      check(p + "RSGET " + edge, d.single(op(RS.RSGET, edge, base)), st(0, 5));
    }
  }

  /** Jedis-only: arguments a Driver cannot express (non-numeric, leading zeros). */
  static void jedisOddArgs(JedisCluster jc, long u, String p) {
    Object got;
    try {
      got = jc.sendCommand(Long.toString(u), RS.RSINCR, Long.toString(u), "abc");
    } catch (JedisDataException e) {
      got = e;
    }
    checkError(p + "bad channel_id", got, "ERR invalid channel_id 'abc'");
  }

  /**
   * Two users whose zero-padded spelling ("0" + id) the client hashes to a
   * slot of the node that serves the user, and of another node.
   */
  static long[] paddedUsers(String[] owner, long base) {
    // CRC16 is linear: for ids of one length, the slot of "0" + id is the
    // slot of id XOR a constant, so one length may have no user of a kind;
    // the search goes on through other lengths.
    List<Long> candidates = new ArrayList<>();
    for (int i = 0; i < 200; i++) {
      candidates.add(base + 500 + i);
    }
    for (long p = 1000; p <= 100_000_000_000_000_000L; p *= 10) {
      for (int i = 0; i < 200; i++) {
        candidates.add(p + (base % p) / 2 + i);
      }
    }
    long same = -1, other = -1;
    for (long v : candidates) {
      if (same >= 0 && other >= 0) {
        break;
      }
      boolean eq = owner[JedisClusterCRC16.getSlot("0" + v)].equals(owner[JedisClusterCRC16.getSlot(Long.toString(v))]);
      if (eq && same < 0) {
        same = v;
      } else if (!eq && other < 0) {
        other = v;
      }
    }
    return new long[] {same, other};
  }

  interface Call {
    Object call(RS cmd, String user, String... rest);
  }

  /**
   * docs/commands.md: a user_id is routed by the slot of its canonical
   * spelling; "0<id>" names user id. The client hashes the bytes it sends:
   * where that slot's node also serves the user, it runs the command;
   * where not, it answers MOVED with the user's slot and node.
   */
  static void padded(Call c, String[] owner, long base, String p) {
    long[] vs = paddedUsers(owner, base);
    for (int i = 0; i < 2; i++) {
      long v = vs[i];
      if (v < 0) {
        note(p + "padded user_id: no user found whose padded slot is on " + (i == 0 ? "the user's node" : "another node"));
        continue;
      }
      String pad = "0" + v;
      String what = p + "padded user_id " + pad + " (the client's slot " + JedisClusterCRC16.getSlot(pad) + " is on "
          + (i == 0 ? "the user's node" : "another node") + "; the user's slot " + JedisClusterCRC16.getSlot(Long.toString(v)) + ")";
      // Short ids may be shared by the passes: the checks are relative.
      Object r = c.call(RS.RSINCR, Long.toString(v), "7", "3");
      Object g = c.call(RS.RSGET, Long.toString(v), "7");
      if (!(r instanceof Long) || !(g instanceof List)) {
        fail(what + ": RSINCR/RSGET of the canonical id: " + show(r) + " " + show(g));
        continue;
      }
      long mc = (Long) r;
      long lm = (Long) ((List<?>) g).get(1);
      if (i == 1) {
        // Not the user's node: refused (a MOVED would name the client's
        // own slot, whose node is this one).
        checkError(what + ": RSGET refused", c.call(RS.RSGET, pad, "7"), "leading zeros");
        checkError(what + ": RSINCR refused", c.call(RS.RSINCR, pad, "7", "2"), "leading zeros");
        check(what + ": the canonical id unchanged", c.call(RS.RSGET, Long.toString(v), "7"), st(mc, lm));
        continue;
      }
      check(what + ": RSGET", c.call(RS.RSGET, pad, "7"), st(mc, lm));
      check(what + ": RSINCR", c.call(RS.RSINCR, pad, "7", "2"), mc + 2);
      check(what + ": RSGET of the canonical id after", c.call(RS.RSGET, Long.toString(v), "7"), st(mc + 2, lm));
    }
  }

  static Call jedisCall(JedisCluster jc) {
    return (cmd, user, rest) -> {
      String[] args = new String[rest.length + 1];
      args[0] = user;
      System.arraycopy(rest, 0, args, 1, rest.length);
      try {
        return jc.sendCommand(user, cmd, args);
      } catch (RuntimeException e) {
        return e;
      }
    };
  }

  /** Jedis's ClusterPipeline does not follow MOVED: a padded id on another node's slot is a MOVED reply. */
  static void paddedPipeline(JedisCluster jc, String[] owner, long base, String p) {
    long[] vs = paddedUsers(owner, base);
    if (vs[0] < 0 || vs[1] < 0) {
      return;
    }
    List<Response<Object>> rs = new ArrayList<>();
    try (ClusterPipeline pl = jc.pipelined()) {
      for (long v : vs) {
        rs.add(pl.sendCommand(new ClusterCommandArguments(RS.RSGET).key("0" + v).add("7")));
      }
      pl.sync();
    }
    for (int i = 0; i < 2; i++) {
      Object got;
      try {
        got = rs.get(i).get();
      } catch (RuntimeException e) {
        got = e;
      }
      note(p + "RSGET 0" + vs[i] + " 7 (padded id, the client's slot on " + (i == 0 ? "the user's node" : "another node")
          + "): " + show(got));
    }
  }

  static Call lettuceCall(RedisAdvancedClusterCommands<String, String> sync) {
    return (cmd, user, rest) -> {
      CommandArgs<String, String> a = new CommandArgs<>(CODEC).addKey(user);
      for (String r : rest) {
        a.add(r);
      }
      try {
        return sync.dispatch(cmd, lettuceOutput(cmd), a);
      } catch (RuntimeException e) {
        return e;
      }
    };
  }

  /** A plain (non-cluster) connection to a node that does not serve u gets MOVED to the one that does. */
  static void jedisMoved(String[] owner, long base, String p) {
    for (long u = base + 100; u < base + 120; u++) {
      int slot = JedisClusterCRC16.getSlot(Long.toString(u));
      for (String a : distinct(owner)) {
        if (a.equals(owner[slot])) {
          continue;
        }
        try (Jedis j = new Jedis(HostAndPort.from(a))) {
          Object got = j.sendCommand(RS.RSGET, Long.toString(u), "1");
          fail(p + "RSGET " + u + " on " + a + ": got " + show(got) + ", want MOVED " + slot + " " + owner[slot]);
        } catch (JedisMovedDataException e) {
          check(p + "RSGET " + u + " on " + a + ": MOVED as Jedis parses it",
              List.of(e.getSlot(), e.getTargetNode().toString()), List.of((long) slot, owner[slot]));
        } catch (JedisDataException e) {
          fail(p + "RSGET " + u + " on " + a + ": got " + show(e) + ", want MOVED " + slot + " " + owner[slot]);
        }
      }
    }
  }

  /**
   * A stale map: a JedisCluster whose provider sends the commands of some
   * users to a node that does not serve them, as after a slot moved. Jedis
   * must follow MOVED (and reload its map) and the replies be right.
   */
  static void jedisStale(List<HostAndPort> startup, String[] owner, long base, String p) {
    List<String> all = new ArrayList<>(distinct(owner));
    Set<Integer> misrouted = new HashSet<>();
    JedisClientConfig cfg = DefaultJedisClientConfig.builder().build();
    ClusterConnectionProvider provider = new ClusterConnectionProvider(new HashSet<>(startup), cfg) {
      @Override
      public Connection getConnection(CommandArguments args) {
        int slot = ((ClusterCommandArguments) args).getCommandHashSlot();
        if (slot >= 0 && misrouted.remove(slot)) {
          String wrong = all.get((all.indexOf(owner[slot]) + 1) % all.size());
          return getConnection(HostAndPort.from(wrong));
        }
        return super.getConnection(args);
      }
    };
    long[] before = commandStats(owner);
    int n = 0;
    try (JedisCluster jc = new JedisCluster(provider, 5, Duration.ofSeconds(10))) {
      for (long u = base + 200; u < base + 230; u++) {
        misrouted.add(JedisClusterCRC16.getSlot(Long.toString(u)));
        n++;
        Object got;
        try {
          got = jc.sendCommand(Long.toString(u), RS.RSINCR, Long.toString(u), "1", "3");
        } catch (RuntimeException e) {
          got = e;
        }
        check(p + "RSINCR " + u + " sent to a node that does not serve it, MOVED followed", got, 3L);
        check(p + "RSGET " + u + " after", jc.sendCommand(Long.toString(u), RS.RSGET, Long.toString(u), "1"), st(3, 0));
      }
    }
    long[] after = commandStats(owner);
    check(p + "redirected commands (failed or rejected calls in INFO commandstats)", after[1] - before[1], (long) n);
  }

  /** The same stale map for Lettuce: its partitions changed before a connection is made. */
  static void lettuceStale(List<RedisURI> startup, String[] owner, long base, String p) {
    RedisClusterClient client = RedisClusterClient.create(startup);
    try {
      List<String> all = new ArrayList<>(distinct(owner));
      Partitions parts = client.getPartitions();
      Map<String, RedisClusterNode> byAddr = new HashMap<>();
      for (RedisClusterNode n : parts) {
        byAddr.put(addr(n.getUri().getHost(), n.getUri().getPort()), n);
      }
      Map<String, Set<Integer>> slots = new HashMap<>();
      for (RedisClusterNode n : parts) {
        slots.put(addr(n.getUri().getHost(), n.getUri().getPort()), new java.util.TreeSet<>(n.getSlots()));
      }
      int n = 0;
      for (long u = base + 300; u < base + 330; u++, n++) {
        int slot = SlotHash.getSlot(Long.toString(u));
        String wrong = all.get((all.indexOf(owner[slot]) + 1) % all.size());
        slots.get(owner[slot]).remove(slot);
        slots.get(wrong).add(slot);
      }
      for (Map.Entry<String, Set<Integer>> e : slots.entrySet()) {
        byAddr.get(e.getKey()).setSlots(new ArrayList<>(e.getValue()));
      }
      parts.updateCache();
      long[] before = commandStats(owner);
      try (StatefulRedisClusterConnection<String, String> conn = client.connect()) {
        RedisAdvancedClusterCommands<String, String> sync = conn.sync();
        for (long u = base + 300; u < base + 330; u++) {
          check(p + "RSINCR " + u + " sent to a node that does not serve it, MOVED followed",
              lettuceSync(sync, op(RS.RSINCR, u, 1, 3)), 3L);
        }
      }
      long[] after = commandStats(owner);
      // Lettuce refreshes its map after a MOVED (adaptive refresh), in the
      // background: the first commands are redirected, later ones may not be.
      long moved = after[1] - before[1];
      check(p + "redirected commands (failed or rejected calls in INFO commandstats): between 1 and " + n,
          moved >= 1 && moved <= n, true);
      note(p + moved + " of " + n + " misrouted commands redirected by MOVED before Lettuce's map was refreshed");
    } finally {
      client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
    }
  }

  /** A pipeline over users of every node: replies in order, errors in place. */
  static void pipeline(Driver d, long base, String p) throws Exception {
    List<Op> ops = new ArrayList<>();
    for (long u = base + 1000; u < base + 1300; u++) {
      ops.add(new Op(RS.RSINCR, u, new long[] {1, u % 5 + 1}, u % 5 + 1));
      ops.add(new Op(RS.RSRESET, u, new long[] {2, u * 10}, 0L));
      if (u % 50 == 0) {
        ops.add(new Op(RS.RSINCR, u, new long[] {1, MAX_MENTIONS}, "(error) ERR overflow"));
      }
      ops.add(new Op(RS.RSGET, u, new long[] {1}, st(u % 5 + 1, 0)));
      ops.add(new Op(RS.RSMGET, u, new long[] {1, 2, 3}, List.of(st(u % 5 + 1, 0), st(0, u * 10), st(0, 0))));
    }
    List<Object> got = d.batch(ops);
    check(p + "pipeline of " + ops.size() + ": replies", got.size(), ops.size());
    int bad = 0;
    for (int i = 0; i < Math.min(got.size(), ops.size()); i++) {
      Object want = ops.get(i).want;
      Object g = norm(got.get(i));
      boolean ok = want instanceof String ? g instanceof String && ((String) g).startsWith("(error) ERR")
          && ((String) g).contains("overflow") : g.equals(norm(want));
      checks.incrementAndGet();
      if (!ok && ++bad <= 5) {
        fail(p + "pipeline: " + ops.get(i) + ": got " + show(g) + ", want " + show(want));
      }
    }
    check(p + "pipeline: replies that differ, of " + ops.size(), bad, 0);
  }

  // ---- the churn

  static final String[] STAT_COMMANDS = {"rsincr", "rsreset", "rsget", "rsmget"};

  /** {calls, failed + rejected calls} of the read-state commands, summed over the nodes. */
  static long[] commandStats(String[] owner) {
    long[] out = new long[2];
    for (String a : distinct(owner)) {
      try (Jedis j = new Jedis(HostAndPort.from(a))) {
        for (String line : j.info("commandstats").split("\r?\n")) {
          for (String c : STAT_COMMANDS) {
            if (!line.startsWith("cmdstat_" + c + ":")) {
              continue;
            }
            for (String kv : line.substring(line.indexOf(':') + 1).split(",")) {
              String[] f = kv.split("=");
              if (f[0].equals("calls")) {
                out[0] += Long.parseLong(f[1]);
              } else if (f[0].equals("failed_calls") || f[0].equals("rejected_calls")) {
                out[1] += Long.parseLong(f[1]);
              }
            }
          }
        }
      }
    }
    return out;
  }

  static final class Churn {
    long[][] users;
    Model[] models;
  }

  static Churn churn(String name, IntFunction<Driver> drivers, String[] owner, long base, int threads,
      int usersPerThread, int opsPerThread) throws Exception {
    Churn ch = new Churn();
    ch.users = new long[threads][usersPerThread];
    ch.models = new Model[threads];
    Map<String, Integer> perNode = new TreeMap<>();
    for (int t = 0; t < threads; t++) {
      ch.models[t] = new Model();
      for (int i = 0; i < usersPerThread; i++) {
        long u = base + (long) i * threads + t;
        ch.users[t][i] = u;
        perNode.merge(owner[JedisClusterCRC16.getSlot(Long.toString(u))], 1, Integer::sum);
      }
    }
    check(name + " churn: every node serves some of the users", perNode.size(), distinct(owner).size());
    // The drivers first: Lettuce's reads its nodes as it starts.
    Driver[] ds = new Driver[threads];
    for (int t = 0; t < threads; t++) {
      ds[t] = drivers.apply(t);
    }
    long[] before = commandStats(owner);
    long[] sent = new long[threads];
    long[] wrong = new long[threads];
    Thread[] ts = new Thread[threads];
    long start = System.nanoTime();
    for (int t = 0; t < threads; t++) {
      final int tt = t;
      ts[t] = new Thread(() -> {
        Random rng = new Random(base * 31 + tt);
        int[] sizes = {1, 2, 10, 50, 200, 500};
        try (Driver d = ds[tt]) {
          while (sent[tt] < opsPerThread) {
            List<Op> ops = new ArrayList<>();
            List<Object> got;
            if (rng.nextDouble() < 0.1) {
              ops.add(randomOp(rng, ch.users[tt], ch.models[tt]));
              got = List.of(norm(d.single(ops.get(0))));
            } else {
              int n = (int) Math.min(opsPerThread - sent[tt], sizes[rng.nextInt(sizes.length)]);
              for (int i = 0; i < n; i++) {
                ops.add(randomOp(rng, ch.users[tt], ch.models[tt]));
              }
              got = d.batch(ops);
            }
            sent[tt] += ops.size();
            checks.addAndGet(ops.size());
            if (got.size() != ops.size()) {
              fail(name + " churn thread " + tt + ": " + ops.size() + " commands, " + got.size() + " replies");
              wrong[tt]++;
              continue;
            }
            for (int i = 0; i < ops.size(); i++) {
              if (!norm(got.get(i)).equals(norm(ops.get(i).want)) && ++wrong[tt] <= 5) {
                fail(name + " churn thread " + tt + " (" + (ops.size() == 1 ? "single" : "pipeline of " + ops.size())
                    + "): " + ops.get(i) + ": got " + show(got.get(i)) + ", want " + show(ops.get(i).want));
              }
            }
          }
        } catch (Throwable e) {
          fail(name + " churn thread " + tt + ": aborted after " + sent[tt] + " commands: " + e);
          wrong[tt]++;
        }
      });
      ts[t].start();
    }
    for (Thread t : ts) {
      t.join();
    }
    double took = (System.nanoTime() - start) / 1e9;
    long total = Arrays.stream(sent).sum();
    check(name + " churn: commands sent", total, (long) threads * opsPerThread);
    check(name + " churn: replies that differ from the model", Arrays.stream(wrong).sum(), 0L);
    long[] after = commandStats(owner);
    check(name + " churn: read-state calls counted by the nodes (INFO commandstats)", after[0] - before[0], total);
    check(name + " churn: failed or rejected calls (a MOVED is one)", after[1] - before[1], 0L);
    note(String.format("%s churn: %d threads, %d users over %d nodes %s, %d commands in %.1fs (%.0f/s)", name,
        threads, threads * usersPerThread, perNode.size(), perNode, total, took, total / took));
    return ch;
  }

  /** Every read state of a churn, read back with RSMGET in pipelines of reader, compared with the model. */
  static void verify(String name, Churn ch, Driver reader) throws Exception {
    long start = System.nanoTime();
    long compared = 0;
    int bad = 0;
    int written = 0;
    for (int t = 0; t < ch.users.length; t++) {
      written += ch.models[t].st.size();
      long[] us = ch.users[t];
      for (int i = 0; i < us.length; i += 500) {
        List<Op> ops = new ArrayList<>();
        for (int j = i; j < Math.min(i + 500, us.length); j++) {
          List<Object> want = new ArrayList<>();
          for (long c : CHANNELS) {
            want.add(ch.models[t].get(us[j], c));
          }
          ops.add(new Op(RS.RSMGET, us[j], CHANNELS, want));
        }
        List<Object> got = reader.batch(ops);
        for (int j = 0; j < ops.size(); j++) {
          compared += CHANNELS.length;
          Object g = j < got.size() ? got.get(j) : "(missing)";
          if (!norm(g).equals(norm(ops.get(j).want)) && ++bad <= 5) {
            fail(name + ": final " + ops.get(j) + ": got " + show(g) + ", want " + show(ops.get(j).want));
          }
        }
      }
    }
    checks.addAndGet(compared);
    check(name + ": final read states that differ from the model", bad, 0);
    note(String.format("%s: %d read states (%d written) compared with the model in %.1fs, %d differ", name,
        compared, written, (System.nanoTime() - start) / 1e9, bad));
  }

  // ---- main

  static String version(Class<?> c, String resource, String key) {
    try (InputStream in = c.getClassLoader().getResourceAsStream(resource)) {
      Properties p = new Properties();
      p.load(in);
      return p.getProperty(key);
    } catch (Exception e) {
      return "?";
    }
  }

  interface Section {
    void run() throws Exception;
  }

  static void section(String name, Section s) {
    long start = System.nanoTime();
    try {
      s.run();
    } catch (Throwable e) {
      fail(name + ": aborted: " + e);
      e.printStackTrace();
    }
    note(String.format("%s: %.1fs", name, (System.nanoTime() - start) / 1e9));
  }

  public static void main(String[] argv) throws Exception {
    if (argv.length < 1) {
      System.err.println("usage: ClusterCheck HOST:PORT [HOST:PORT ...]");
      System.exit(2);
    }
    List<HostAndPort> startup = new ArrayList<>();
    List<RedisURI> uris = new ArrayList<>();
    for (String a : argv) {
      HostAndPort h = HostAndPort.from(a);
      startup.add(h);
      uris.add(RedisURI.create(h.getHost(), h.getPort()));
    }
    long base = 1_000_000_000_000L + (new Random().nextLong() & ((1L << 50) - 1));
    long start = System.nanoTime();
    String[][] owner = new String[1][];
    int[] nodes = {0};

    // Jedis: JedisCluster with its defaults (RESP2).
    Cluster jc = new Cluster(new HashSet<>(startup));
    // Lettuce: RedisClusterClient with its defaults (RESP3 by HELLO).
    RedisClusterClient lc = RedisClusterClient.create(uris);
    StatefulRedisClusterConnection<String, String> lconn = null;
    try {
      section("jedis map", () -> {
        owner[0] = jedisMap(jc, startup, "jedis: ");
        nodes[0] = distinct(owner[0]).size();
      });
      if (owner[0] == null) {
        owner[0] = rawOwners(startup.get(0));
      }
      lconn = lc.connect();
      StatefulRedisClusterConnection<String, String> lc0 = lconn;
      String[] own = owner[0];
      section("lettuce map", () -> lettuceMap(lc, lc0, own, "lettuce: "));

      Driver jd = jedisDriver(jc);
      section("jedis commands", () -> {
        commands(jd, base, "jedis: ");
        jedisOddArgs(jc, base, "jedis: ");
        padded(jedisCall(jc), own, base, "jedis: ");
        paddedPipeline(jc, own, base + 1000, "jedis ClusterPipeline: ");
        jedisMoved(own, base, "jedis: ");
        jedisStale(startup, own, base, "jedis: ");
        pipeline(jd, base, "jedis ClusterPipeline: ");
      });
      section("lettuce commands", () -> {
        try (Driver ld = lettuceDriver(lc, lc0)) {
          commands(ld, base + 10_000, "lettuce: ");
          padded(lettuceCall(lc0.sync()), own, base + 10_000, "lettuce: ");
          lettuceStale(uris, own, base + 10_000, "lettuce: ");
          pipeline(ld, base + 10_000, "lettuce pipeline: ");
        }
        // MOVED as a node says it, to a plain Lettuce connection.
        for (long u = base + 10_100; u < base + 10_110; u++) {
          int slot = SlotHash.getSlot(Long.toString(u));
          for (String a : distinct(own)) {
            if (a.equals(own[slot])) {
              continue;
            }
            HostAndPort h = HostAndPort.from(a);
            RedisClient plain = RedisClient.create(RedisURI.create(h.getHost(), h.getPort()));
            try (StatefulRedisConnection<String, String> c = plain.connect()) {
              Object got;
              try {
                got = c.sync().dispatch(RS.RSGET, new NestedMultiOutput<>(CODEC), lettuceArgs(op(RS.RSGET, u, 1)));
              } catch (RedisCommandExecutionException e) {
                got = e;
              }
              check("lettuce: RSGET " + u + " on " + a + " (plain connection)", got,
                  "(error) MOVED " + slot + " " + own[slot]);
            } finally {
              plain.shutdown(Duration.ZERO, Duration.ofSeconds(2));
            }
          }
        }
      });

      Churn[] jch = new Churn[1];
      Churn[] lch = new Churn[1];
      section("jedis churn", () -> jch[0] = churn("jedis", t -> jedisDriver(jc), own, base + 1_000_000, 4, 1500, 20000));
      section("lettuce churn", () -> lch[0] = churn("lettuce", t -> lettuceDriver(lc, lc0), own, base + 2_000_000, 4, 1500, 20000));
      // Each client reads back what the other wrote.
      section("jedis churn read back by lettuce", () -> {
        if (jch[0] != null) {
          try (Driver ld = lettuceDriver(lc, lc0)) {
            verify("jedis churn read by lettuce", jch[0], ld);
          }
        }
      });
      section("lettuce churn read back by jedis", () -> {
        if (lch[0] != null) {
          try (JedisCluster other = new JedisCluster(Set.of(startup.get(startup.size() - 1)))) {
            verify("lettuce churn read by jedis", lch[0], jedisDriver(other));
          }
        }
      });

      // The other protocol of each.
      section("jedis resp3", () -> {
        JedisClientConfig cfg = DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP3).socketTimeoutMillis(30_000).build();
        try (Cluster j3 = new Cluster(new HashSet<>(startup), cfg)) {
          String[] o3 = jedisMap(j3, startup, "jedis resp3: ");
          checkOwners("jedis resp3: the map", o3, own);
          Driver d = jedisDriver(j3);
          commands(d, base + 20_000, "jedis resp3: ");
          pipeline(d, base + 20_000, "jedis resp3 ClusterPipeline: ");
        }
      });
      section("lettuce resp2", () -> {
        RedisClusterClient l2 = RedisClusterClient.create(uris);
        l2.setOptions(ClusterClientOptions.builder().protocolVersion(ProtocolVersion.RESP2).build());
        try (StatefulRedisClusterConnection<String, String> c2 = l2.connect()) {
          lettuceMap(l2, c2, own, "lettuce resp2: ");
          try (Driver d = lettuceDriver(l2, c2)) {
            commands(d, base + 30_000, "lettuce resp2: ");
            pipeline(d, base + 30_000, "lettuce resp2 pipeline: ");
          }
        } finally {
          l2.shutdown(Duration.ZERO, Duration.ofSeconds(2));
        }
      });
    } finally {
      jc.close();
      if (lconn != null) {
        lconn.close();
      }
      lc.shutdown(Duration.ZERO, Duration.ofSeconds(2));
    }

    for (String n : notes) {
      System.out.println("NOTE " + n);
    }
    System.out.printf("jedis %s, lettuce %s (cluster, %d nodes, %.1fs): %d checks, %d failed%n",
        version(Jedis.class, "redis/clients/jedis/pom.properties", "version"),
        version(RedisClient.class, "META-INF/maven/io.lettuce/lettuce-core/pom.properties", "version"),
        nodes[0], (System.nanoTime() - start) / 1e9, checks.get(), failures.size());
    for (String f : failures) {
      System.out.println("FAIL " + f);
    }
    System.exit(failures.isEmpty() ? 0 : 1);
  }
}
