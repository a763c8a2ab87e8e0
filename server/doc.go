// Package server serves the readstates commands over the Redis protocol
// (RESP2, and RESP3 after HELLO 3) with github.com/tidwall/redcon.
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
//     run in batches of one large request plus at most 64 KiB of small
//     ones, a client that takes no replies for Config.WriteTimeout (or is
//     sent more than Config.OutputLimit at once) is closed, and a TLS
//     handshake has Config.TLSHandshakeTimeout.
//   - With TLS (Config.TLS) the same limits apply to the decrypted stream.
//   - Without a password, admin commands (SHUTDOWN, CONFIG SET) are refused
//     to clients not on the loopback interface.
//   - Metrics (Prometheus) cost nothing per command when disabled, and no
//     allocation when enabled.
//
// Connection state (protocol version, authentication, name) lives in one
// commands.Session per connection, set as redcon's connection context.
package server
