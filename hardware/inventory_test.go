package hardware_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/hardware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInventoryTreeFaults reads each flavour clean, then with each tree
// fault the simulator serves: the read never fails, what the fault hides
// is missing with a warning naming its path, and everything else is what
// the clean read found.
func TestInventoryTreeFaults(t *testing.T) {
	type check func(t *testing.T, clean, got hardware.Inventory)
	warnedAbout := func(t *testing.T, got hardware.Inventory, part, pathPart, errPart string) {
		t.Helper()
		for _, w := range got.Warnings {
			if w.Part == part && strings.Contains(w.Path, pathPart) && strings.Contains(w.Error, errPart) {
				return
			}
		}
		t.Fatalf("no %q warning on a path with %q saying %q: %+v", part, pathPart, errPart, got.Warnings)
	}
	sameBut := func(t *testing.T, clean, got hardware.Inventory, drop func(*hardware.Inventory)) {
		t.Helper()
		clean.Warnings, got.Warnings = nil, nil
		if drop != nil {
			drop(&clean)
			drop(&got)
		}
		assert.Equal(t, clean, got)
	}
	cases := map[string]check{
		bmcsim.FaultDanglingDrive: func(t *testing.T, clean, got hardware.Inventory) {
			assert.Len(t, got.Drives, len(clean.Drives)-1)
			assert.Equal(t, clean.Drives[:len(clean.Drives)-1], got.Drives)
			warnedAbout(t, got, hardware.PartDrives, "/"+clean.Drives[len(clean.Drives)-1].ID, "404")
			sameBut(t, clean, got, func(i *hardware.Inventory) { i.Drives = nil })
		},
		bmcsim.FaultDanglingMemory: func(t *testing.T, clean, got hardware.Inventory) {
			warnedAbout(t, got, hardware.PartMemory, "/Memory/", "404")
			// The system's MemorySummary still counts the DIMM.
			sameBut(t, clean, got, nil)
		},
		bmcsim.FaultDanglingNIC: func(t *testing.T, clean, got hardware.Inventory) {
			assert.Equal(t, clean.NICs[:len(clean.NICs)-1], got.NICs)
			warnedAbout(t, got, hardware.PartNICs, "/"+clean.NICs[len(clean.NICs)-1].ID, "404")
			sameBut(t, clean, got, func(i *hardware.Inventory) { i.NICs = nil })
		},
		bmcsim.FaultEmptyStorage: func(t *testing.T, clean, got hardware.Inventory) {
			assert.Empty(t, got.Drives)
			warnedAbout(t, got, hardware.PartDrives, "/Storage", "no storage controller")
			sameBut(t, clean, got, func(i *hardware.Inventory) { i.Drives = nil })
		},
		bmcsim.FaultNoSerial: func(t *testing.T, clean, got hardware.Inventory) {
			assert.Empty(t, got.Serial)
			warnedAbout(t, got, "", "/Systems/", "no SerialNumber")
			sameBut(t, clean, got, func(i *hardware.Inventory) { i.Serial = "" })
		},
		bmcsim.FaultNoStatus: func(t *testing.T, clean, got hardware.Inventory) {
			assert.Empty(t, got.Warnings, "Status is nothing the inventory needs")
			sameBut(t, clean, got, nil)
		},
		bmcsim.FaultNumbersAsStrings: func(t *testing.T, clean, got hardware.Inventory) {
			assert.Empty(t, got.Warnings, "numbers in strings are read as numbers")
			sameBut(t, clean, got, nil)
		},
		bmcsim.FaultCountMismatch: func(t *testing.T, clean, got hardware.Inventory) {
			for part, coll := range map[string]string{hardware.PartCPUs: "/Processors", hardware.PartMemory: "/Memory",
				hardware.PartDrives: "/Storage", hardware.PartNICs: "/EthernetInterfaces"} {
				warnedAbout(t, got, part, coll, "Members@odata.count is")
			}
			sameBut(t, clean, got, nil)
		},
	}
	require.ElementsMatch(t, bmcsim.TreeFaultNames(), keysOf(cases), "every fault the simulator serves is tested")
	for _, vendor := range []string{bmcsim.VendorDell, bmcsim.VendorHPE, bmcsim.VendorSupermicro, bmcsim.VendorGeneric} {
		t.Run(vendor, func(t *testing.T) {
			t.Parallel()
			f, b := quickFleet(t, vendor)
			m := dial(t, endpointOf(f, b))
			clean, err := m.Inventory(ctxT(t))
			require.NoError(t, err)
			require.Empty(t, clean.Warnings, "a clean flavour reads without warnings")
			require.Len(t, clean.Drives, 4)
			require.Len(t, clean.NICs, 2)
			for name, check := range cases {
				t.Run(name, func(t *testing.T) {
					b.SetFaults(bmcsim.Faults{Tree: []string{name}})
					t.Cleanup(func() { b.SetFaults(bmcsim.Faults{}) })
					got, err := m.Inventory(ctxT(t))
					require.NoError(t, err)
					check(t, clean, got)
				})
			}
		})
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestInventoryOfABareSystem: a system that links none of its parts is
// read, each missing part named; one whose BMC does not answer is not.
func TestInventoryOfABareSystem(t *testing.T) {
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, Mockup: bareTree(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	b := f.BMCs()[0]
	m := dial(t, endpointOf(f, b))
	inv, err := m.Inventory(ctxT(t))
	require.NoError(t, err)
	assert.Equal(t, b.Serial(), inv.Serial)
	assert.Equal(t, "Nobody", inv.Vendor)
	sys := "/redfish/v1/Systems/Bare-1"
	assert.ElementsMatch(t, []hardware.InventoryWarning{
		{Path: sys, Error: "no Processors", Part: hardware.PartCPUs},
		{Path: sys, Error: "no Memory and no MemorySummary.TotalSystemMemoryGiB", Part: hardware.PartMemory},
		{Path: sys, Error: "no Storage", Part: hardware.PartDrives},
		{Path: sys, Error: "no EthernetInterfaces", Part: hardware.PartNICs},
	}, inv.Warnings)

	b.SetFaults(bmcsim.Faults{ErrorRate: 1, ErrorStatus: 503})
	_, err = m.Inventory(ctxT(t))
	requireKind(t, err, hardware.Transient)
}

// TestInventoryOfRecordedDellTree reads the recorded iDRAC tree in
// ../shared, whose controller links a drive (Disk.Bay.0) it does not
// serve: bmclib and gofish fail the whole read on it.
func TestInventoryOfRecordedDellTree(t *testing.T) {
	tree := filepath.Join("..", "..", "shared", "redfish-mockups", "dell-idrac9-composite")
	if _, err := os.Stat(filepath.Join(tree, "redfish", "v1")); err != nil {
		t.Skip("the shared vendor trees are not beside this worktree")
	}
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, Mockup: tree})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	b := f.BMCs()[0]
	m := dial(t, endpointOf(f, b))
	inv, err := m.Inventory(ctxT(t))
	require.NoError(t, err)
	assert.Equal(t, b.Serial(), inv.Serial)
	// Neither Processors nor Memory was recorded: the system's summaries
	// stand in for them.
	assert.Len(t, inv.CPUs, 1)
	assert.Equal(t, 48, inv.TotalThreads)
	assert.Equal(t, 64, inv.MemoryGiB)
	sys := "/redfish/v1/Systems/System.Embedded.1"
	assert.Subset(t, inv.Warnings, []hardware.InventoryWarning{
		{Path: sys + "/Processors", Error: "answered 404", Part: hardware.PartCPUs},
		{Path: sys + "/Memory", Error: "answered 404", Part: hardware.PartMemory},
		{Path: sys + "/Storage/RAID.Integrated.1-1/Drives/Disk.Bay.0", Error: "answered 404", Part: hardware.PartDrives},
	})
}

// TestInventoryMemberAnswering500: a drive the BMC answers 500 for, on
// every one of the transport's attempts, is a warning like a 404; the
// failed requests are the warning's, not failures the read swallowed.
func TestInventoryMemberAnswering500(t *testing.T) {
	f, b := quickFleet(t, bmcsim.VendorHPE, func(c *bmcsim.Config) { c.InsecureHTTP = true })
	target, err := url.Parse(b.Address())
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var broken atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/Drives/") && strings.HasSuffix(r.URL.Path, "/3") {
			broken.Add(1)
			http.Error(w, `{"error":{"code":"Base.1.8.InternalError"}}`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	ep := endpointOf(f, b)
	ep.Address = front.URL
	m := dial(t, ep)
	inv, err := m.Inventory(ctxT(t))
	require.NoError(t, err)
	assert.Len(t, inv.Drives, 3)
	require.Len(t, inv.Warnings, 1)
	assert.Equal(t, hardware.InventoryWarning{Path: inv.Warnings[0].Path, Error: "answered 500", Part: hardware.PartDrives}, inv.Warnings[0])
	assert.True(t, strings.HasSuffix(inv.Warnings[0].Path, "/Drives/3"), inv.Warnings[0].Path)
	assert.Greater(t, broken.Load(), int32(1), "the transport asked again before giving up")
}
