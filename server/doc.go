// Package server serves the readstates commands over the Redis protocol
// (RESP2, and RESP3 after HELLO 3).
//
// Every connection runs one pipeline (conn.go): the request parser
// (resp.go) frames the input, enforces the limits of a request and hands
// each command's arguments, as slices of the input, to the dispatcher
// (package commands), whose replies are appended to the connection's
// reply buffer with redcon's encoders (github.com/tidwall/redcon). Two
// drivers feed it bytes and send its replies:
//   - on Linux, plaintext connections are driven by epoll event loops
//     (loop_linux.go, Config.EventLoops, one per core by default): each
//     loop reads every ready socket, runs the commands and writes the
//     replies, as Redis does; a command that must wait for the database (a
//     cache miss) runs on a pooled goroutine while its connection waits;
//   - with TLS, elsewhere, or with Config.EventLoops < 0, each connection
//     has a reader and a writer goroutine (stream.go).
//
// Connections are accepted, admitted (Config.MaxClients), counted and
// shut down in one place (server.go, conn.go), whichever drives them.
//
// What it promises:
//   - Every request is answered in order; pipelining works, including a
//     pipeline written whole before any reply is read. A request that
//     breaks the protocol (a bad or oversized length, see Config) gets
//     "-ERR Protocol error: ..." after the replies to the requests before
//     it, and its connection is closed, as in Redis; nothing a client
//     sends can crash the server or other connections.
//   - Shutdown is graceful, modeled on net/http.Server.Shutdown: no new
//     connections, every connection finishes the command it is running
//     (its reply is flushed) and is closed, and once Shutdown returns no
//     command is running or will run, so the engine can be closed.
//   - A client costs a bounded amount however it behaves: a request is at
//     most Config.MaxRequestBytes (a trickled request costs its bytes,
//     the parser resumes where it stopped); replies wait while the client
//     goes on sending, up to Config.OutputLimit, and a client past it, or
//     that takes no replies for Config.WriteTimeout, is closed; a TLS
//     handshake has Config.TLSHandshakeTimeout. An idle connection on an
//     event loop holds no buffer.
//   - With TLS (Config.TLS) the same limits apply to the decrypted stream.
//   - Without a password, admin commands (SHUTDOWN, CONFIG SET, CONFIG
//     RESETSTAT) are refused to clients not on the loopback interface.
//   - The command path allocates nothing; metrics (Prometheus) cost
//     nothing per command when disabled, and no allocation when enabled.
//
// Connection state (protocol version, authentication, name) lives in one
// commands.Session per connection.
package server
