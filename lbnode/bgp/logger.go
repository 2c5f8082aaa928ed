package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger hands gobgp's log lines to the node's slog logger, so BGP
// session events land in the same log as everything else the node does.
type gobgpLogger struct {
	logger *slog.Logger
}

func (l gobgpLogger) log(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !l.logger.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}

// Panic keeps gobgp's contract: it calls Panic only on its own logic bugs
// and does not expect to carry on afterwards.
func (l gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	l.log(slog.LevelError, msg, fields)
	panic(fmt.Sprintf("gobgp: %s", msg))
}

// Fatal does not exit: a library has no business ending the node's
// process, and gobgp calls it only on invariants it never reaches through
// the speaker (its gRPC listener, which the speaker does not start).
func (l gobgpLogger) Fatal(msg string, fields gobgplog.Fields) {
	l.log(slog.LevelError, msg, fields)
}

func (l gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	l.log(slog.LevelError, msg, fields)
}

func (l gobgpLogger) Warn(msg string, fields gobgplog.Fields) {
	l.log(slog.LevelWarn, msg, fields)
}

func (l gobgpLogger) Info(msg string, fields gobgplog.Fields) {
	l.log(slog.LevelInfo, msg, fields)
}

func (l gobgpLogger) Debug(msg string, fields gobgplog.Fields) {
	l.log(slog.LevelDebug, msg, fields)
}

// SetLevel does nothing: the slog handler owns the level.
func (l gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells gobgp whether building debug lines is worth it.
func (l gobgpLogger) GetLevel() gobgplog.LogLevel {
	if l.logger.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
