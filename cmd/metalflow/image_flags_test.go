//go:build !agent

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestImageMaxSizeIsChecked: a limit that refuses every upload is refused
// before anything starts.
func TestImageMaxSizeIsChecked(t *testing.T) {
	for _, bad := range []string{"0", "-1"} {
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		err := runAPI(context.Background(), []string{"--image-max-mib", bad, "--inventory-db", dir + "/inv.db"}, &out, &errOut)
		assert.ErrorContains(t, err, "--image-max-mib must be positive")
		assert.NoFileExists(t, dir+"/inv.db", "nothing was opened")
		err = runDev(context.Background(), []string{"--ephemeral", "--image-max-mib", bad}, &out, &errOut)
		assert.ErrorContains(t, err, "--image-max-mib must be positive")
	}
}
