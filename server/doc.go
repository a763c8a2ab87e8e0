// Package server serves the readstates commands over the Redis protocol
// (RESP2, and RESP3 after HELLO 3), parsed and encoded with
// redcon (internal/redcon: github.com/tidwall/redcon with a
// zero-allocation reader).
//
// Two connection layers run the same guard, limits and commands:
//   - on Linux, plaintext connections are served by epoll event loops
//     (loop_linux.go, Config.EventLoops, one per core by default): each
//     loop reads every ready socket, runs the commands and writes the
//     replies, as Redis does; a command that must wait for the database (a
//     cache miss) runs on a pooled goroutine while its connection waits;
//   - with TLS, elsewhere, or with Config.EventLoops < 0, every connection
//     has a goroutine: redcon's own server (server.go).
//
// What it promises:
//   - Every request is answered in order; pipelining works. A request that
//     breaks the protocol (a bad or oversized length, see Config) gets
//     "-ERR Protocol error: ..." and its connection is closed, as in Redis;
//     nothing a client sends can crash the server or other connections.
//   - Shutdown is graceful, modeled on net/http.Server.Shutdown: no new
//     connections, every connection finishes the command it is running
//     (its reply is flushed) and is closed, and once Shutdown returns no
//     command is running or will run, so the engine can be closed.
//   - A client costs a bounded amount however it behaves: requests are
//     read 64 KiB at a time and run whole, replies a client does not take
//     are held up to a bound (then it is no longer read), a client that
//     takes no replies for Config.WriteTimeout, or has more than
//     Config.OutputLimit of them pending, is closed, and a TLS handshake
//     has Config.TLSHandshakeTimeout.
//   - With TLS (Config.TLS) the same limits apply to the decrypted stream.
//   - Without a password, admin commands (SHUTDOWN, CONFIG SET, CONFIG
//     RESETSTAT) are refused to clients not on the loopback interface.
//   - The command path allocates nothing; metrics (Prometheus) cost
//     nothing per command when disabled, and no allocation when enabled.
//
// Connection state (protocol version, authentication, name) lives in one
// commands.Session per connection.
package server
