package bench

import (
	"context"
	"net/http"
	"time"

	"github.com/metalflow/metalflow/client"
)

// newAPIClient calls the stack's API with its bench token. The transport
// keeps an idle connection for every concurrent caller (the default keeps
// two per host, and the rest would reconnect each time), so that a
// benchmark measures requests, not TCP handshakes. Decisions are sent
// once: a benchmark retries a 503 itself, and counts it.
func newAPIClient(apiURL, token string) (*client.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024
	return client.New(client.Config{
		API: apiURL, Token: token, Timeout: 2 * time.Minute, Transport: tr, DecideAttempts: 1,
	})
}

// listAll pages through the fleet list (state "" lists every state) and
// returns every row and the number of pages read.
func listAll(ctx context.Context, c *client.Client, state string, pageSize int) ([]client.ServerSummary, int, error) {
	var rows []client.ServerSummary
	token, pages := "", 0
	for {
		page, err := c.ListServers(ctx, client.ServerFilter{State: state, PageSize: pageSize}, token)
		if err != nil {
			return rows, pages, err
		}
		pages++
		rows = append(rows, page.Value.Servers...)
		if page.Value.NextPageToken == "" {
			return rows, pages, nil
		}
		token = page.Value.NextPageToken
	}
}
