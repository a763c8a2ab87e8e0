package commands

import (
	"context"
	"strings"

	"github.com/tidwall/match"
)

// Server commands: CONFIG, DBSIZE, SHUTDOWN. INFO is in info.go, LATENCY
// in latency.go, COMMAND in command.go.

// builtinParams are the CONFIG GET parameters every dispatcher reports:
// the ones tools check to learn that the server keeps no RDB or AOF (its
// durability is the write-behind store) and has one database.
func builtinParams() []Param {
	return []Param{
		{"save", ""},
		{"appendonly", "no"},
		{"databases", "1"},
	}
}

// CONFIG GET parameter [parameter ...]: glob patterns, matched
// case-insensitively as in Redis; no match is an empty map.
func configGet(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	params := append(builtinParams(), d.params...)
	params = append(params, Param{percentilesParam, formatPercentiles(d.percentiles())})
	var found []Param
	seen := make([]bool, len(params))
	for _, a := range args[2:] {
		pat := strings.ToLower(string(a))
		for i, p := range params {
			if !seen[i] && globMatch(p.Name, pat) {
				seen[i] = true
				found = append(found, p)
			}
		}
	}
	s.writeMap(w, len(found))
	for _, p := range found {
		w.WriteBulkString(p.Name)
		w.WriteBulkString(p.Value)
	}
}

// CONFIG SET parameter value [parameter value ...]: only
// latency-tracking-info-percentiles can change at run time; setting
// another parameter to the value it has is accepted, so that tools that
// "disable persistence" with CONFIG SET save "" work. As in Redis, nothing
// is set unless every pair is valid.
func configSet(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if len(args)%2 != 0 {
		s.writeError(w, wrongArity("config|set"))
		return
	}
	params := append(builtinParams(), d.params...)
	var pcts []float64
	setPcts := false
	for i := 2; i < len(args); i += 2 {
		name := strings.ToLower(string(args[i]))
		if name == percentilesParam {
			ps, err := parsePercentiles(string(args[i+1]))
			if err != nil {
				b := appendCut([]byte("ERR CONFIG SET failed (possibly related to argument '"), args[i], 128)
				s.writeError(w, string(append(b, "') - "+err.Error()...)))
				return
			}
			pcts, setPcts = ps, true
			continue
		}
		known := false
		for _, p := range params {
			if p.Name != name {
				continue
			}
			known = true
			if p.Value != string(args[i+1]) {
				b := appendCut([]byte("ERR CONFIG SET failed (possibly related to argument '"), args[i], 128)
				s.writeError(w, string(append(b, "') - can't set immutable config"...)))
				return
			}
		}
		if !known {
			b := appendCut([]byte("ERR Unknown option or number of arguments for CONFIG SET - '"), args[i], 128)
			s.writeError(w, string(append(b, '\'')))
			return
		}
	}
	if setPcts {
		d.pcts.Store(&pcts)
	}
	writeOK(w)
}

func configHelp(_ context.Context, _ *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	writeHelp(w, "CONFIG",
		"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
		"SET <directive> <value>", "    Set the configuration <directive> to <value> (latency-tracking-info-percentiles; any other only to its current value).",
		"RESETSTAT", "    Reset statistics reported by the INFO stats, commandstats, latencystats and errorstats sections.",
		"HELP", "    Print this help.",
	)
}

// DBSIZE: the number of read states in the cache. Every (user, channel)
// pair has a read state, so the number of "keys" is the cached ones.
func dbSize(_ context.Context, d *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	var n int64
	if d.stats != nil {
		n = d.stats.Stats().Entries
	}
	w.WriteInt64(n)
}

// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]
//
// Every form flushes: the durability promise covers SHUTDOWN, so NOSAVE
// (which in Redis skips the RDB save) does not skip the final flush. On
// success, as in Redis, there is no reply: the connection is closed and the
// server stops.
func shutdown(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	var save, nosave bool
	for _, a := range args[1:] {
		switch {
		case equalFold("nosave", a):
			nosave = true
		case equalFold("save", a):
			save = true
		case equalFold("now", a), equalFold("force", a):
		case equalFold("abort", a):
			s.writeError(w, "ERR No shutdown in progress.")
			return
		default:
			s.writeError(w, errSyntax)
			return
		}
	}
	if save && nosave {
		s.writeError(w, errSyntax)
		return
	}
	if d.host == nil || d.host.Shutdown() != nil {
		s.writeError(w, "ERR Errors trying to SHUTDOWN. Check logs.")
		return
	}
	s.closing = true
}

// globMatch matches a Redis glob pattern, with a bound on the work so a
// pattern of many stars cannot take exponential time.
func globMatch(s, pattern string) bool {
	ok, stopped := match.MatchLimit(s, pattern, 10000)
	return ok && !stopped
}
