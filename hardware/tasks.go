package hardware

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/stmcginnis/gofish"
)

// taskDoc is what a Task (or an iDRAC Job behind a task monitor) says
// about its progress.
type taskDoc struct {
	ID        string `json:"Id"`
	TaskState string `json:"TaskState"`
	JobState  string `json:"JobState"`
	Messages  []struct {
		Message string `json:"Message"`
	} `json:"Messages"`
}

// awaitAccepted follows a 202 Accepted to the end of the BMC's task. Other
// answers mean the BMC did the work before replying.
func awaitAccepted(ctx context.Context, api *gofish.APIClient, resp *http.Response) error {
	if resp.StatusCode != http.StatusAccepted {
		return nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil // nothing to follow; the caller reads the result back
	}
	return awaitTask(ctx, api, loc)
}

// awaitTask polls a task (or task monitor) until it completes. Polls start
// fast, because simulated and small tasks finish in moments, and back off
// to once a second for controllers that take minutes.
func awaitTask(ctx context.Context, api *gofish.APIClient, location string) error {
	uri := location
	if u, err := url.Parse(location); err == nil && u.Path != "" {
		uri = u.RequestURI()
	}
	delay := 50 * time.Millisecond
	for {
		done, err := pollTask(api, uri)
		if done || err != nil {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &Error{Kind: Transient, Op: "wait for task " + uri, Err: ctx.Err()}
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

func pollTask(api *gofish.APIClient, uri string) (bool, error) {
	resp, err := api.Get(uri)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return false, err
	}
	var t taskDoc
	_ = json.Unmarshal(raw, &t) // a monitor may answer with the finished resource instead
	state := t.TaskState
	if state == "" {
		state = t.JobState
	}
	switch state {
	case "Completed":
		return true, nil
	case "Exception", "Killed", "Cancelled", "Failed", "CompletedWithErrors":
		msg := state
		if len(t.Messages) > 0 {
			msg += ": " + t.Messages[0].Message
		}
		// The BMC took the request and could not carry it out; repeating
		// it blindly would not change its mind, so a human looks.
		return true, &Error{Kind: Rejected, Op: "task " + uri, Err: fmt.Errorf("task %s ended %s", t.ID, msg)}
	case "":
		// A task monitor answers 202 while running and the result after.
		return resp.StatusCode != http.StatusAccepted, nil
	}
	return false, nil
}
