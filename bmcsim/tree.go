package bmcsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// document is one Redfish resource of a flavour's base tree. Base documents
// are shared read-only by every BMC of a flavour, so that a thousand BMCs
// cost one parsed tree; per-BMC state is rendered on top of them.
type document struct {
	id   string         // @odata.id as the tree spells it
	body map[string]any // never mutated once the tree is built
	raw  []byte
	etag string
}

// tree holds documents by pathKey, because real BMCs (iLO above all) link
// to paths whose case and trailing slash differ from the canonical ones.
type tree struct {
	docs map[string]*document
}

func newTree() *tree { return &tree{docs: map[string]*document{}} }

// pathKey folds case, drops the query and trailing slashes so that
// /redfish/v1/systems/1/bios/ and /redfish/v1/Systems/1/Bios meet.
func pathKey(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	p = strings.TrimRight(p, "/")
	if p == "" {
		p = "/"
	}
	return strings.ToLower(p)
}

func (t *tree) get(path string) *document { return t.docs[pathKey(path)] }

// put stores body at id. The body must not be changed afterwards.
func (t *tree) put(id string, body map[string]any) {
	if _, ok := body["@odata.id"]; !ok {
		body["@odata.id"] = id
	}
	t.docs[pathKey(id)] = &document{id: id, body: body}
}

// seal marshals every document once so that static GETs cost no encoding.
func (t *tree) seal() error {
	for k, d := range t.docs {
		raw, err := json.Marshal(d.body)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", k, err)
		}
		d.raw = raw
		d.etag = etagOf(raw)
	}
	return nil
}

func etagOf(raw []byte) string {
	h := fnv.New64a()
	h.Write(raw)
	return fmt.Sprintf("\"%016x\"", h.Sum64())
}

// loadMockup reads a DMTF Redfish-Mockup-Server tree: the resource at URI U
// is U/index.json; any other *.json is served under its own file name.
// Provenance and recorded responses are data about the tree, not resources.
func loadMockup(dir string) (*tree, error) {
	st, err := os.Stat(filepath.Join(dir, "redfish", "v1"))
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("mockup %s: no redfish/v1 directory", dir)
	}
	t := newTree()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), "_") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".json") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		uri := "/" + filepath.ToSlash(rel)
		if d.Name() == "index.json" {
			uri = strings.TrimSuffix(uri, "/index.json")
		}
		if !strings.HasPrefix(uri, "/redfish") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		body, err := decodeObject(data)
		if err != nil {
			return fmt.Errorf("mockup %s: %w", p, err)
		}
		id, _ := body["@odata.id"].(string)
		if id == "" || pathKey(id) != pathKey(uri) {
			// The file's location is what clients will request.
			id = uri
		}
		t.put(id, body)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if t.get("/redfish/v1") == nil {
		return nil, fmt.Errorf("mockup %s: no service root", dir)
	}
	return t, nil
}

// decodeObject keeps numbers as json.Number so that capacities and
// counters survive a round trip byte for byte.
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil {
		return nil, err
	}
	if body == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return body, nil
}

// cloneValue deep-copies decoded JSON so a render never touches a base doc.
func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func linkOf(body map[string]any, key string) string {
	if body == nil {
		return ""
	}
	m, _ := body[key].(map[string]any)
	s, _ := m["@odata.id"].(string)
	return s
}

func link(id string) map[string]any { return map[string]any{"@odata.id": id} }

func memberLinks(body map[string]any) []string {
	var out []string
	ms, _ := body["Members"].([]any)
	for _, m := range ms {
		if mm, ok := m.(map[string]any); ok {
			if s, ok := mm["@odata.id"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func linkList(ids []string) []any {
	out := make([]any, 0, len(ids))
	for _, id := range ids {
		out = append(out, link(id))
	}
	return out
}

func stringsOf(v any) []string {
	var out []string
	xs, _ := v.([]any)
	for _, x := range xs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func numberValue[T int | int64](n T) json.Number {
	return json.Number(fmt.Sprint(n))
}

func itoa(n int) string { return fmt.Sprint(n) }

// rename moves the resource at from (and everything under it) to to,
// rewriting every link in the tree. Recorded trees with fictional IDs
// (DMTF's 437XR1138R2) become trees bmclib recognises this way.
func (t *tree) rename(from, to string) {
	if from == to || from == "" {
		return
	}
	var fix func(v any) any
	fix = func(v any) any {
		switch x := v.(type) {
		case string:
			if x == from || strings.HasPrefix(x, from+"/") || strings.HasPrefix(x, from+"#") {
				return to + x[len(from):]
			}
			return x
		case map[string]any:
			for k, e := range x {
				x[k] = fix(e)
			}
			return x
		case []any:
			for i, e := range x {
				x[i] = fix(e)
			}
			return x
		}
		return v
	}
	docs := t.docs
	t.docs = make(map[string]*document, len(docs))
	for _, d := range docs {
		fix(d.body)
		id := d.id
		if id == from || strings.HasPrefix(id, from+"/") {
			id = to + id[len(from):]
			if id == to {
				d.body["Id"] = lastSegment(to)
			}
		}
		d.id = id
		t.docs[pathKey(id)] = d
	}
}
