package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// newHTTPClient keeps an idle connection for every concurrent caller
// (the default keeps two per host, and the rest would reconnect each time).
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// benchCaller sends API requests with the bench token over real HTTP.
type benchCaller struct {
	http  *http.Client
	base  string
	token string
}

func (st *harness) caller() benchCaller {
	return benchCaller{http: st.HTTP, base: st.APIURL, token: st.Token}
}

// apiRefusal is a non-2xx answer.
type apiRefusal struct {
	Status int
	Body   string
}

func (e *apiRefusal) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// call sends body (when non-nil) as JSON and decodes a 2xx answer into out
// (when non-nil).
func (b benchCaller) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	res, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	if err != nil {
		return err
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return &apiRefusal{Status: res.StatusCode, Body: string(bytes.TrimSpace(raw))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// benchServerRow is the part of a fleet list row the benchmarks read.
type benchServerRow struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
}

// listAll pages through GET /api/v1/servers (state "" lists every state)
// and returns every row and the number of pages read.
func (b benchCaller) listAll(ctx context.Context, state string, pageSize int) ([]benchServerRow, int, error) {
	var rows []benchServerRow
	token, pages := "", 0
	for {
		q := fmt.Sprintf("/api/v1/servers?pageSize=%d", pageSize)
		if state != "" {
			q += "&state=" + state
		}
		if token != "" {
			q += "&pageToken=" + token
		}
		var page struct {
			Servers       []benchServerRow `json:"servers"`
			NextPageToken string           `json:"nextPageToken"`
		}
		if err := b.call(ctx, http.MethodGet, q, nil, &page); err != nil {
			return rows, pages, err
		}
		pages++
		rows = append(rows, page.Servers...)
		if page.NextPageToken == "" {
			return rows, pages, nil
		}
		token = page.NextPageToken
	}
}
