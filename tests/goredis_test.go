package tests

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var protocols = []int{2, 3}

// goRedis returns a go-redis client for sp, closed when the test ends.
func (sp *serverProc) goRedis(t testing.TB, protocol int, mod ...func(*redis.Options)) *redis.Client {
	t.Helper()
	opt := &redis.Options{
		Addr:         sp.addr,
		Protocol:     protocol,
		DialTimeout:  5 * time.Second,
		ReadTimeout:  20 * time.Second,
		WriteTimeout: 20 * time.Second,
		MaxRetries:   -1, // a retried write would hide a lost reply
	}
	for _, m := range mod {
		m(opt)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// state is a read state as the tests model it.
type state struct{ mentions, lastMsg int64 }

// model is the expected read states: the reference the server must match.
type model map[[2]int64]state

func (m model) incr(u, c, delta int64) (int64, bool) {
	s := m[[2]int64{u, c}]
	n := s.mentions + delta
	if delta > 0 && n > maxMentions {
		return 0, false
	}
	s.mentions = max(n, 0)
	m[[2]int64{u, c}] = s
	return s.mentions, true
}

func (m model) reset(u, c int64, msg *int64) int64 {
	s := m[[2]int64{u, c}]
	before := s.mentions
	s.mentions = 0
	if msg != nil {
		s.lastMsg = *msg
	}
	m[[2]int64{u, c}] = s
	return before
}

const maxMentions = 2147483647

// asInt64s converts a reply of integers.
func asInt64s(v any) ([]int64, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reply %#v is %T, want an array", v, v)
	}
	out := make([]int64, len(arr))
	for i, e := range arr {
		n, ok := e.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d of %#v is %T, want int64", i, v, e)
		}
		out[i] = n
	}
	return out, nil
}

// asStates converts an RSMGET reply.
func asStates(v any) ([]state, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reply %#v is %T, want an array", v, v)
	}
	out := make([]state, len(arr))
	for i, e := range arr {
		p, err := asInt64s(e)
		if err != nil {
			return nil, err
		}
		if len(p) != 2 {
			return nil, fmt.Errorf("element %d is %v, want [mention_count last_message_id]", i, p)
		}
		out[i] = state{p[0], p[1]}
	}
	return out, nil
}

func wantRedisError(t *testing.T, err error, prefix string) {
	t.Helper()
	var re redis.Error
	if !errors.As(err, &re) {
		t.Errorf("got error %v (%T), want a redis.Error starting with %q", err, err, prefix)
		return
	}
	if !strings.HasPrefix(re.Error(), prefix) {
		t.Errorf("got redis error %q, want prefix %q", re.Error(), prefix)
	}
}

func TestGoRedisCommands(t *testing.T) {
	sp := startServer(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := testCtx(t)
			c := sp.goRedis(t, proto)
			u := int64(1000 + proto)

			if got, err := c.Do(ctx, "RSINCR", u, 7).Int64(); err != nil || got != 1 {
				t.Errorf("RSINCR %d 7: got %d, %v, want 1", u, got, err)
			}
			if got, err := c.Do(ctx, "rsincr", u, 7, 4).Int64(); err != nil || got != 5 {
				t.Errorf("rsincr %d 7 4: got %d, %v, want 5", u, got, err)
			}
			if got, err := c.Do(ctx, "RSGET", u, 7).Int64Slice(); err != nil || !slices.Equal(got, []int64{5, 0}) {
				t.Errorf("RSGET %d 7: got %v, %v, want [5 0]", u, got, err)
			}
			if got, err := c.Do(ctx, "RSRESET", u, 7, int64(1)<<62).Int64(); err != nil || got != 5 {
				t.Errorf("RSRESET: got %d, %v, want 5", got, err)
			}
			if got, err := c.Do(ctx, "RSINCR", u, 7, -10).Int64(); err != nil || got != 0 {
				t.Errorf("RSINCR -10: got %d, %v, want 0 (clamped)", got, err)
			}
			v, err := c.Do(ctx, "RSMGET", u, 7, 8, 7).Result()
			if err != nil {
				t.Fatalf("RSMGET: %v", err)
			}
			got, err := asStates(v)
			if want := []state{{0, 1 << 62}, {0, 0}, {0, 1 << 62}}; err != nil || !slices.Equal(got, want) {
				t.Errorf("RSMGET %d 7 8 7: got %v, %v, want %v", u, got, err, want)
			}

			// Errors are redis.Error values; the connection goes on.
			conn := c.Conn()
			defer conn.Close()
			wantRedisError(t, conn.Do(ctx, "RSINCR", u, "abc").Err(), "ERR invalid channel_id 'abc'")
			wantRedisError(t, conn.Do(ctx, "RSGET", "-1", 7).Err(), "ERR invalid user_id '-1'")
			wantRedisError(t, conn.Do(ctx, "RSRESET", u, 7, "x").Err(), "ERR invalid message_id 'x'")
			wantRedisError(t, conn.Do(ctx, "RSINCR", u, 7, "1.5").Err(), "ERR invalid delta '1.5'")
			overflow := conn.Do(ctx, "RSINCR", u, 9, maxMentions+1).Err()
			wantRedisError(t, overflow, "ERR ")
			if overflow == nil || !strings.Contains(overflow.Error(), "overflow") {
				t.Errorf("RSINCR %d 9 %d: got %v, want an error that contains \"overflow\"", u, maxMentions+1, overflow)
			}
			wantRedisError(t, conn.Do(ctx, "RSGET", u).Err(), "ERR wrong number of arguments for 'rsget' command")
			wantRedisError(t, conn.Do(ctx, "NOSUCH", 1).Err(), "ERR unknown command 'NOSUCH', with args beginning with: '1' ")
			if got, err := conn.Do(ctx, "RSGET", u, 9).Int64Slice(); err != nil || !slices.Equal(got, []int64{0, 0}) {
				t.Errorf("RSGET after a refused overflow: got %v, %v, want [0 0]", got, err)
			}
			if got, err := conn.Do(ctx, "RSGET", u, 7).Int64Slice(); err != nil || !slices.Equal(got, []int64{0, 1 << 62}) {
				t.Errorf("RSGET after errors: got %v, %v, want [0 %d]", got, err, int64(1)<<62)
			}

			// Redis commands clients and tools use.
			if got, err := conn.Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Errorf("PING: got %q, %v", got, err)
			}
			if got, err := conn.Echo(ctx, "a b\r\n").Result(); err != nil || got != "a b\r\n" {
				t.Errorf("ECHO: got %q, %v", got, err)
			}
			name := fmt.Sprintf("tests-resp%d", proto)
			if err := conn.ClientSetName(ctx, name).Err(); err != nil {
				t.Errorf("CLIENT SETNAME: %v", err)
			}
			if got, err := conn.ClientGetName(ctx).Result(); err != nil || got != name {
				t.Errorf("CLIENT GETNAME: got %q, %v, want %q", got, err, name)
			}
			if got, err := conn.ClientList(ctx).Result(); err != nil || !strings.Contains(got, "name="+name+" ") {
				t.Errorf("CLIENT LIST: got %q, %v, want a line with name=%s", got, err, name)
			}
			if n, err := c.DBSize(ctx).Result(); err != nil || n < 2 {
				t.Errorf("DBSIZE: got %d, %v, want at least the 2 read states written", n, err)
			}
			info, err := c.Info(ctx).Result()
			if err != nil {
				t.Fatalf("INFO: %v", err)
			}
			for _, s := range []string{"# Server\r\n", "redis_version:", "# Persistence\r\n", "# Keyspace\r\n"} {
				if !strings.Contains(info, s) {
					t.Errorf("INFO: no %q in %q", s, abbrev(info))
				}
			}
			if info, err := c.Info(ctx, "clients").Result(); err != nil || !strings.Contains(info, "connected_clients:") || strings.Contains(info, "# Server") {
				t.Errorf("INFO clients: got %q, %v", info, err)
			}
			hello, err := conn.Do(ctx, "HELLO", proto).Result()
			if err != nil {
				t.Fatalf("HELLO %d: %v", proto, err)
			}
			fields := map[string]any{}
			switch h := hello.(type) {
			case map[any]any: // RESP3
				for k, v := range h {
					fields[fmt.Sprint(k)] = v
				}
			case []any: // RESP2: a flat list of pairs
				for i := 0; i+1 < len(h); i += 2 {
					fields[fmt.Sprint(h[i])] = h[i+1]
				}
			default:
				t.Fatalf("HELLO %d: got %T %#v", proto, hello, hello)
			}
			if fields["server"] != "redis" || fields["proto"] != int64(proto) || fields["role"] != "master" {
				t.Errorf("HELLO %d: got %v, want server readstates, proto %d, role master", proto, fields, proto)
			}
			if got, err := conn.Do(ctx, "RSINCR", u, 7).Int64(); err != nil || got != 1 {
				t.Errorf("RSINCR after HELLO: got %d, %v, want 1", got, err)
			}
		})
	}
}

// TestGoRedisPipeline sends 1,000 mixed commands (valid and invalid) in
// one pipeline and checks every reply, in order, against a model.
func TestGoRedisPipeline(t *testing.T) {
	sp := startServer(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := testCtx(t)
			c := sp.goRedis(t, proto)
			rng := rand.New(rand.NewPCG(uint64(proto), 1))
			m := model{}
			u := int64(2000 + proto)
			type check func(*redis.Cmd) error
			pipe := c.Pipeline()
			var cmds []*redis.Cmd
			var checks []check
			add := func(cmd *redis.Cmd, ch check) { cmds = append(cmds, cmd); checks = append(checks, ch) }
			wantInt := func(want int64) check {
				return func(cmd *redis.Cmd) error {
					got, err := cmd.Int64()
					if err != nil || got != want {
						return fmt.Errorf("got %d, %v, want %d", got, err, want)
					}
					return nil
				}
			}
			wantErr := func(prefix string) check {
				return func(cmd *redis.Cmd) error {
					var re redis.Error
					if err := cmd.Err(); !errors.As(err, &re) || !strings.HasPrefix(re.Error(), prefix) {
						return fmt.Errorf("got %v, want a redis.Error starting with %q", err, prefix)
					}
					return nil
				}
			}
			for range 1000 {
				ch := int64(rng.IntN(20))
				switch op := rng.IntN(10); {
				case op < 4:
					delta := int64(rng.IntN(15) - 4)
					want, _ := m.incr(u, ch, delta)
					add(pipe.Do(ctx, "RSINCR", u, ch, delta), wantInt(want))
				case op < 5:
					var msg *int64
					args := []any{"RSRESET", u, ch}
					if rng.IntN(2) == 0 {
						v := rng.Int64()
						msg = &v
						args = append(args, v)
					}
					add(pipe.Do(ctx, args...), wantInt(m.reset(u, ch, msg)))
				case op < 7:
					want := m[[2]int64{u, ch}]
					add(pipe.Do(ctx, "RSGET", u, ch), func(cmd *redis.Cmd) error {
						got, err := cmd.Int64Slice()
						if err != nil || !slices.Equal(got, []int64{want.mentions, want.lastMsg}) {
							return fmt.Errorf("got %v, %v, want %v", got, err, want)
						}
						return nil
					})
				case op < 8:
					args := []any{"RSMGET", u}
					var want []state
					for range 1 + rng.IntN(4) {
						ch := int64(rng.IntN(20))
						args = append(args, ch)
						want = append(want, m[[2]int64{u, ch}])
					}
					add(pipe.Do(ctx, args...), func(cmd *redis.Cmd) error {
						v, err := cmd.Result()
						if err != nil {
							return err
						}
						got, err := asStates(v)
						if err != nil || !slices.Equal(got, want) {
							return fmt.Errorf("got %v, %v, want %v", got, err, want)
						}
						return nil
					})
				case op < 9:
					add(pipe.Do(ctx, "RSINCR", u, "x"+fmt.Sprint(ch)), wantErr("ERR invalid channel_id"))
				default:
					add(pipe.Do(ctx, "PING"), func(cmd *redis.Cmd) error {
						if got, err := cmd.Text(); err != nil || got != "PONG" {
							return fmt.Errorf("got %q, %v, want PONG", got, err)
						}
						return nil
					})
				}
			}
			_, err := pipe.Exec(ctx)
			var re redis.Error
			if err != nil && !errors.As(err, &re) {
				t.Fatalf("pipeline: %v", err) // a transport error, not one of the error replies
			}
			for i, cmd := range cmds {
				if err := checks[i](cmd); err != nil {
					t.Errorf("pipeline command %d %v: %v", i, cmd.Args(), err)
				}
			}
		})
	}
}

// TestGoRedisConcurrentClients runs 50 clients, each on its own connection,
// incrementing the same few read states. Every RSINCR reply must be unique
// per read state (no lost or torn update) and the final counts exact.
func TestGoRedisConcurrentClients(t *testing.T) {
	sp := startServer(t)
	const clients, perClient, keys = 50, 100, 4
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := testCtx(t)
			u := int64(3000 + proto)
			var mu sync.Mutex
			seen := make([][]int64, keys)
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for g := range clients {
				c := sp.goRedis(t, proto, func(o *redis.Options) { o.PoolSize = 1 })
				wg.Add(1)
				go func() {
					defer wg.Done()
					var mine [keys][]int64
					for i := range perClient {
						k := (g + i) % keys
						n, err := c.Do(ctx, "RSINCR", u, k).Int64()
						if err != nil {
							errs <- fmt.Errorf("client %d: RSINCR %d %d: %w", g, u, k, err)
							return
						}
						mine[k] = append(mine[k], n)
					}
					mu.Lock()
					for k := range keys {
						seen[k] = append(seen[k], mine[k]...)
					}
					mu.Unlock()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				return
			}
			c := sp.goRedis(t, proto)
			for k := range keys {
				want := int64(clients * perClient / keys)
				got, err := c.Do(ctx, "RSGET", u, k).Int64Slice()
				if err != nil || !slices.Equal(got, []int64{want, 0}) {
					t.Errorf("RSGET %d %d: got %v, %v, want [%d 0]", u, k, got, err, want)
				}
				slices.Sort(seen[k])
				for i, n := range seen[k] {
					if n != int64(i+1) {
						t.Errorf("read state %d: the RSINCR replies, sorted, are not 1..%d: position %d is %d", k, want, i, n)
						break
					}
				}
			}
		})
	}
}

// TestGoRedisAuth: with --requirepass, no password gets NOAUTH, a wrong
// one WRONGPASS, the right one works.
func TestGoRedisAuth(t *testing.T) {
	const pass = "s3cret-Pass"
	sp := startServer(t, "--requirepass", pass, "--log-level", "debug")
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := testCtx(t)
			noAuth := sp.goRedis(t, proto)
			wantRedisError(t, noAuth.Ping(ctx).Err(), "NOAUTH")
			wantRedisError(t, noAuth.Do(ctx, "RSGET", 1, 2).Err(), "NOAUTH")

			wrong := sp.goRedis(t, proto, func(o *redis.Options) { o.Password = pass + "x" })
			wantRedisError(t, wrong.Ping(ctx).Err(), "WRONGPASS")
			wrongUser := sp.goRedis(t, proto, func(o *redis.Options) { o.Username, o.Password = "bob", pass })
			wantRedisError(t, wrongUser.Ping(ctx).Err(), "WRONGPASS")

			good := sp.goRedis(t, proto, func(o *redis.Options) { o.Password = pass })
			if got, err := good.Do(ctx, "RSINCR", 1, proto).Int64(); err != nil || got != 1 {
				t.Errorf("RSINCR with the password: got %d, %v, want 1", got, err)
			}
			if got, err := good.Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Errorf("PING with the password: got %q, %v", got, err)
			}

			// AUTH on a connection that started without.
			conn := noAuth.Conn()
			defer conn.Close()
			wantRedisError(t, conn.Do(ctx, "AUTH", "nope").Err(), "WRONGPASS")
			wantRedisError(t, conn.Do(ctx, "RSGET", 1, proto).Err(), "NOAUTH")
			if err := conn.Do(ctx, "AUTH", pass).Err(); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			if got, err := conn.Do(ctx, "RSGET", 1, proto).Int64Slice(); err != nil || !slices.Equal(got, []int64{1, 0}) {
				t.Errorf("RSGET after AUTH: got %v, %v, want [1 0]", got, err)
			}

			// The password shows nowhere a client or an operator can read.
			for _, args := range [][]any{{"INFO", "everything"}, {"CONFIG", "GET", "*"}, {"CLIENT", "LIST"}, {"CLIENT", "INFO"}} {
				v, err := good.Do(ctx, args...).Result()
				if err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				if strings.Contains(fmt.Sprint(v), pass) {
					t.Errorf("%v shows the password: %v", args, v)
				}
			}
		})
	}
	for _, line := range strings.Split(sp.out.String(), "\n") {
		// The harness's own lines echo the command line it ran.
		if !strings.HasPrefix(line, "=== tests:") && strings.Contains(line, pass) {
			t.Errorf("the server's log shows the password: %s", line)
		}
	}
}

// TestGoRedisHelloSwitch: HELLO 3 on a RESP2 connection switches the
// reply format; the read-state replies are the same in both.
func TestGoRedisHelloSwitch(t *testing.T) {
	sp := startServer(t)
	rc := sp.raw(t)
	rc.expect(":1\r\n", "RSINCR", "5", "5")
	h := rc.do("HELLO", "3")
	if !strings.HasPrefix(h, "%7\r\n") || !strings.Contains(h, "$5\r\nproto\r\n:3\r\n") {
		t.Errorf("HELLO 3: got %q, want a RESP3 map of 7 with proto 3", h)
	}
	rc.expect(respInts(1, 0), "RSGET", "5", "5")
	rc.expect("*1\r\n"+respInts(1, 0), "RSMGET", "5", "5")
	h = rc.do("HELLO", "2")
	if !strings.HasPrefix(h, "*14\r\n") || !strings.Contains(h, "$5\r\nproto\r\n:2\r\n") {
		t.Errorf("HELLO 2: got %q, want a flat array of 14 with proto 2", h)
	}
	if got := rc.do("HELLO", "4"); !strings.HasPrefix(got, "-NOPROTO") {
		t.Errorf("HELLO 4: got %q, want -NOPROTO", got)
	}
	if got := rc.do("CLIENT", "GETNAME"); got != "$-1\r\n" {
		t.Errorf("CLIENT GETNAME (RESP2, no name): got %q, want $-1", got)
	}
}
