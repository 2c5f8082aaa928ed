package agent

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

const gib = 1 << 30

// chooseDisk picks the install target among disks (in kernel-name order),
// as agentapi.RootDeviceHints documents: the first disk matching every
// hint, or with no hints the smallest that holds need bytes.
func chooseDisk(disks []blockDevice, hints agentapi.RootDeviceHints, need int64) (blockDevice, error) {
	var candidates []blockDevice
	for _, d := range disks {
		if !d.Removable && !d.ReadOnly {
			candidates = append(candidates, d)
		}
	}
	if len(candidates) == 0 {
		return blockDevice{}, fail(agentapi.ClassNoDisk, "no writable fixed disk found (%d block devices seen)", len(disks))
	}
	if hints.IsZero() {
		best := -1
		for i, d := range candidates {
			if d.Size >= need && (best < 0 || d.Size < candidates[best].Size) {
				best = i
			}
		}
		if best < 0 {
			largest := slices.MaxFunc(candidates, func(a, b blockDevice) int { return cmp.Compare(a.Size, b.Size) })
			return blockDevice{}, fail(agentapi.ClassDiskTooSmall, "no disk holds %d bytes; the largest, %s, has %d", need, largest.Name, largest.Size)
		}
		return candidates[best], nil
	}
	matchers, err := compileHints(hints)
	if err != nil {
		return blockDevice{}, fail(agentapi.ClassPlanInvalid, "root device hints: %v", err)
	}
	var seen []string
	for _, d := range candidates {
		if matchers.match(d.Disk) {
			return d, nil
		}
		seen = append(seen, describeDisk(d.Disk))
	}
	return blockDevice{}, fail(agentapi.ClassNoDisk, "no disk matches root device hints %s; disks: %s", describeHints(hints), strings.Join(seen, "; "))
}

func describeDisk(d agentapi.Disk) string {
	return fmt.Sprintf("%s size=%.1fGiB model=%q vendor=%q serial=%q wwn=%q rotational=%t by_path=%q",
		d.Name, float64(d.Size)/gib, d.Model, d.Vendor, d.Serial, d.WWN, d.Rotational, d.ByPath)
}

func describeHints(h agentapi.RootDeviceHints) string {
	var parts []string
	add := func(name, v string) {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", name, v))
		}
	}
	add("name", h.Name)
	add("model", h.Model)
	add("vendor", h.Vendor)
	add("serial", h.Serial)
	add("wwn", h.WWN)
	add("wwn_with_extension", h.WWNWithExtension)
	add("wwn_vendor_extension", h.WWNVendorExtension)
	add("hctl", h.HCTL)
	add("by_path", h.ByPath)
	add("size", string(h.Size))
	if h.Rotational != nil {
		add("rotational", strconv.FormatBool(*h.Rotational))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// hintMatchers are the hints compiled once, so a malformed expression is a
// plan error even when there is no disk to try it on.
type hintMatchers []func(agentapi.Disk) bool

func (m hintMatchers) match(d agentapi.Disk) bool {
	for _, f := range m {
		if !f(d) {
			return false
		}
	}
	return true
}

func compileHints(h agentapi.RootDeviceHints) (hintMatchers, error) {
	var m hintMatchers
	strHints := []struct {
		expr  string
		field func(agentapi.Disk) string
		// prefix is dropped from both sides, so "sda" and "/dev/sda" match.
		prefix string
	}{
		{h.Name, func(d agentapi.Disk) string { return d.Name }, "/dev/"},
		{h.Model, func(d agentapi.Disk) string { return d.Model }, ""},
		{h.Vendor, func(d agentapi.Disk) string { return d.Vendor }, ""},
		{h.Serial, func(d agentapi.Disk) string { return d.Serial }, ""},
		{h.WWN, func(d agentapi.Disk) string { return d.WWN }, ""},
		{h.WWNWithExtension, func(d agentapi.Disk) string { return d.WWNWithExtension }, ""},
		{h.WWNVendorExtension, func(d agentapi.Disk) string { return d.WWNVendorExtension }, ""},
		{h.HCTL, func(d agentapi.Disk) string { return d.HCTL }, ""},
		{h.ByPath, func(d agentapi.Disk) string { return d.ByPath }, "/dev/disk/by-path/"},
	}
	for _, sh := range strHints {
		if sh.expr == "" {
			continue
		}
		test, err := stringMatcher(sh.expr, sh.prefix)
		if err != nil {
			return nil, err
		}
		field, prefix := sh.field, sh.prefix
		m = append(m, func(d agentapi.Disk) bool {
			v := field(d)
			// As in Ironic, a disk without the attribute never matches.
			return v != "" && test(normalize(v, prefix))
		})
	}
	if h.Size != "" {
		test, err := sizeMatcher(string(h.Size))
		if err != nil {
			return nil, err
		}
		m = append(m, func(d agentapi.Disk) bool { return test(float64(d.Size) / gib) })
	}
	if h.Rotational != nil {
		want := *h.Rotational
		m = append(m, func(d agentapi.Disk) bool { return d.Rotational == want })
	}
	return m, nil
}

// normalize is how Ironic compares strings: trimmed, lower case.
func normalize(s, prefix string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if prefix != "" {
		s = strings.TrimPrefix(s, prefix)
	}
	return s
}

// splitOp separates a leading operator from an expression's value(s).
func splitOp(expr string, ops []string) (op, rest string) {
	expr = strings.TrimSpace(expr)
	for _, op := range ops {
		if rest, ok := strings.CutPrefix(expr, op); ok {
			return op, strings.TrimSpace(rest)
		}
	}
	return "", expr
}

// orValues splits "<or> a <or> b" into its alternatives.
func orValues(rest string) []string {
	var vals []string
	for v := range strings.SplitSeq(rest, "<or>") {
		if v = strings.TrimSpace(v); v != "" {
			vals = append(vals, v)
		}
	}
	return vals
}

func stringMatcher(expr, prefix string) (func(string) bool, error) {
	op, rest := splitOp(expr, []string{"s==", "s!=", "s>=", "s<=", "s>", "s<", "<in>", "<or>"})
	if rest == "" {
		return nil, fmt.Errorf("hint %q has no value", expr)
	}
	want := normalize(rest, prefix)
	switch op {
	case "", "s==":
		return func(v string) bool { return v == want }, nil
	case "s!=":
		return func(v string) bool { return v != want }, nil
	case "s>=":
		return func(v string) bool { return v >= want }, nil
	case "s<=":
		return func(v string) bool { return v <= want }, nil
	case "s>":
		return func(v string) bool { return v > want }, nil
	case "s<":
		return func(v string) bool { return v < want }, nil
	case "<in>":
		return func(v string) bool { return strings.Contains(v, want) }, nil
	default: // "<or>"
		var alts []string
		for _, a := range orValues(rest) {
			alts = append(alts, normalize(a, prefix))
		}
		return func(v string) bool { return slices.Contains(alts, v) }, nil
	}
}

func sizeMatcher(expr string) (func(float64) bool, error) {
	// Longer operators before their prefixes ("<or>" before "<").
	op, rest := splitOp(expr, []string{"<or>", "==", "!=", ">=", "<=", ">", "<", "="})
	var vals []float64
	texts := []string{rest}
	if op == "<or>" {
		texts = orValues(rest)
	}
	for _, t := range texts {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("size hint %q: want a positive whole number of GiB", expr)
		}
		vals = append(vals, float64(n))
	}
	want := vals[0]
	switch op {
	case "", "==":
		return func(v float64) bool { return v == want }, nil
	case "!=":
		return func(v float64) bool { return v != want }, nil
	case ">=", "=":
		// Ironic (oslo's specs matcher) reads a bare "=" as "at least".
		return func(v float64) bool { return v >= want }, nil
	case "<=":
		return func(v float64) bool { return v <= want }, nil
	case ">":
		return func(v float64) bool { return v > want }, nil
	case "<":
		return func(v float64) bool { return v < want }, nil
	default: // "<or>"
		return func(v float64) bool { return slices.Contains(vals, v) }, nil
	}
}
