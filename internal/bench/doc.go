// Package bench measures metalflow: a fleet through its whole lifecycle,
// the API under concurrent callers, many parked lifecycles in one process,
// and the XDP data plane against a baseline. Each benchmark prints a table
// and ends with a RESULT line; `metalflow bench` maps flags to its configs.
package bench
