package stack_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/internal/stack"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A stack without a data directory keeps its state in a temporary one,
// answers with the token it was asked to issue, and leaves nothing behind.
func TestStackServesAndCleansUp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{
		Log:      quiet(),
		Temporal: stack.TemporalConfig{Store: stack.TemporalInMemory, LogLevel: slog.LevelError},
		API:      stack.APIConfig{Token: &auth.IssueInput{Name: "t", User: "tester", Role: auth.Admin, By: "test"}},
	})
	require.NoError(t, err)
	require.Equal(t, "default", st.Namespace)
	require.FileExists(t, st.InventoryURL)
	require.FileExists(t, st.CredentialsKey, "the key lives beside the inventory for a worker elsewhere to share")

	c, err := client.New(client.Config{API: st.APIURL, Token: st.Token})
	require.NoError(t, err)
	who, err := c.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, "tester", who.Value.User)

	stopped, stop := context.WithCancel(ctx)
	stop()
	require.NoError(t, st.Wait(stopped), "an operator's Ctrl-C is no failure")
	require.NoError(t, st.Close(), "closing after Wait is harmless")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left)
}

// A start that fails part way leaves nothing running or on disk.
func TestStackStartFailureLeavesNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	dir := filepath.Join(t.TempDir(), "data")
	_, err = stack.Start(context.Background(), stack.Config{
		Log: quiet(), DataDir: dir,
		Temporal: stack.TemporalConfig{Store: stack.TemporalSQLite},
		API:      stack.APIConfig{Address: taken.Addr().String()},
	})
	require.ErrorContains(t, err, "API listen on "+taken.Addr().String())
	require.FileExists(t, filepath.Join(dir, "metalflow.db"), "a data directory is kept")
	require.NoFileExists(t, filepath.Join(dir, "temporal.db"), "Temporal never started")
}
