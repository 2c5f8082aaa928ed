// Package openapicheck holds HTTP exchanges against metalflow's OpenAPI
// document: a request the document accepts, a response with a status the
// operation lists and a body its schema allows. Only tests import it; it
// keeps the contract checks of the unit and the integration tests one and
// the same, so a check shown to fail on a wrong document in one is the
// check the other relies on.
package openapicheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Document is a loaded, validated OpenAPI document.
type Document struct {
	spec *openapi3.T
	// paths are the documented path templates, split into segments, for
	// matching request paths without caring about the document's servers.
	paths []template
}

type template struct {
	path     string
	segments []string
}

// Operation is one documented method and path template.
type Operation struct {
	Method string // GET, POST, ...
	Path   string // e.g. /api/v1/servers/{serial}
}

func (o Operation) String() string { return o.Method + " " + o.Path }

// Load parses raw and checks that it is a valid OpenAPI 3 document: every
// reference resolves, every schema is well formed, every example matches.
func Load(raw []byte) (*Document, error) {
	loader := openapi3.NewLoader()
	spec, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	if err := spec.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI document: %w", err)
	}
	d := &Document{spec: spec}
	for _, p := range spec.Paths.InMatchingOrder() {
		d.paths = append(d.paths, template{path: p, segments: strings.Split(strings.Trim(p, "/"), "/")})
	}
	return d, nil
}

// Operations lists every documented operation, sorted.
func (d *Document) Operations() []Operation {
	var out []Operation
	for path, item := range d.spec.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, Operation{Method: method, Path: path})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Statuses lists the response codes an operation documents.
func (d *Document) Statuses(op Operation) []string {
	item := d.spec.Paths.Value(op.Path)
	if item == nil || item.GetOperation(op.Method) == nil {
		return nil
	}
	var out []string
	for code := range item.GetOperation(op.Method).Responses.Map() {
		out = append(out, code)
	}
	sort.Strings(out)
	return out
}

// route finds the operation a request is for. Literal segments beat
// parameters, as in Echo's router, so /api/v1/openapi.json never matches a
// parameter route.
func (d *Document) route(req *http.Request) (*routers.Route, map[string]string, error) {
	segs := strings.Split(strings.Trim(req.URL.EscapedPath(), "/"), "/")
	var best *template
	var bestParams map[string]string
	bestLiterals := -1
	for i := range d.paths {
		t := &d.paths[i]
		if len(t.segments) != len(segs) {
			continue
		}
		params, literals, ok := match(t.segments, segs)
		if ok && literals > bestLiterals {
			best, bestParams, bestLiterals = t, params, literals
		}
	}
	if best == nil {
		return nil, nil, fmt.Errorf("%s %s: no documented path", req.Method, req.URL.Path)
	}
	item := d.spec.Paths.Value(best.path)
	op := item.GetOperation(req.Method)
	if op == nil {
		return nil, nil, fmt.Errorf("%s %s: path %s documents no %s", req.Method, req.URL.Path, best.path, req.Method)
	}
	return &routers.Route{Spec: d.spec, Path: best.path, PathItem: item, Method: req.Method, Operation: op}, bestParams, nil
}

func match(tmpl, segs []string) (map[string]string, int, bool) {
	params := map[string]string{}
	literals := 0
	for i, t := range tmpl {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, 0, false
			}
			params[t[1:len(t)-1]] = v
			continue
		}
		if t != segs[i] {
			return nil, 0, false
		}
		literals++
	}
	return params, literals, true
}

// Operation says which documented operation a request is for.
func (d *Document) Operation(req *http.Request) (Operation, error) {
	r, _, err := d.route(req)
	if err != nil {
		return Operation{}, err
	}
	return Operation{Method: r.Method, Path: r.Path}, nil
}

// CheckRequest says whether the document accepts a request: its path and
// query parameters and its body (body is what will be or was sent; req's
// own Body is not read).
func (d *Document) CheckRequest(req *http.Request, body []byte) error {
	route, params, err := d.route(req)
	if err != nil {
		return err
	}
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
}

// CheckResponse says whether a response is one the document promises for
// the request: a status the operation lists (no undocumented codes, no
// default), its headers, and a body of a documented content type that
// matches the schema.
func (d *Document) CheckResponse(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := d.route(req)
	if err != nil {
		return err
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s → %d: %w", req.Method, route.Path, status, err)
	}
	return nil
}
