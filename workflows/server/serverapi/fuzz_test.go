package serverapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// isSafeName is the property every accepted name must have, stated apart
// from isName so that a change to the validator that lets through a
// character unsafe in workflow IDs, queries or URLs is caught.
func isSafeName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return false
		}
	}
	return !strings.ContainsRune("._-", rune(s[0]))
}

func FuzzValidateLocation(f *testing.F) {
	f.Add("dc1", "", "r12", 7, "front")
	f.Add("dc1", "hall-2", "r12", 42, "rear")
	f.Add("", "", "", 0, "")
	f.Add("dc1", "room/1", "r12", 1, "front")
	f.Add("-dc", "", "r1", 1, "front")
	f.Add("dc1", "", "r1", -1, "Front")
	f.Add(strings.Repeat("a", 33), "", "r1", 1, "front")
	f.Add("dç1", "", "r1", 1, "rear")
	f.Add("dc1", "", "r1\x00", 1, "rear")
	f.Fuzz(func(t *testing.T, site, room, rack string, unit int, face string) {
		l := Location{Site: site, Room: room, Rack: rack, Unit: unit, Face: face}
		err := ValidateLocation(l)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid location: ") {
				t.Fatalf("refusal %q does not say what is wrong", err)
			}
			return
		}
		if !isSafeName(site) || !isSafeName(rack) || (room != "" && !isSafeName(room)) ||
			len(site) > stepapi.MaxNameLength || len(rack) > stepapi.MaxNameLength || len(room) > stepapi.MaxNameLength {
			t.Fatalf("accepted unsafe names in %+v", l)
		}
		if unit < 1 || (face != FaceFront && face != FaceRear) {
			t.Fatalf("accepted unit/face of %+v", l)
		}
		// What the API accepts travels as JSON into workflow history:
		// the round trip must keep it valid and unchanged.
		raw, err := json.Marshal(RackedInput{Location: l, By: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		var back RackedInput
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		if back.Location != l {
			t.Fatalf("JSON round trip changed %+v into %+v", l, back.Location)
		}
		if err := ValidateLocation(back.Location); err != nil {
			t.Fatalf("round-tripped location refused: %v", err)
		}
	})
}

func FuzzValidateNames(f *testing.F) {
	for _, s := range []string{"SN123", "abc-def.1_2", "", "-x", "a/b", "web", "web-1", "Web", "web-",
		strings.Repeat("x", 64), strings.Repeat("x", 65), "ümlaut", "a b", "a\x00", "a,b", "x,x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if stepapi.ValidateSerial(s) == nil {
			if !isSafeName(s) || len(s) > stepapi.MaxSerialLength {
				t.Fatalf("serial %q accepted", s)
			}
			if id := LifecycleWorkflowID(s); strings.Count(id, "/") != 1 {
				t.Fatalf("serial %q makes workflow ID %q", s, id)
			}
		}
		if ValidateTenant(s) == nil && s != "" && (!isSafeName(s) || len(s) > MaxTenantLength) {
			t.Fatalf("tenant %q accepted", s)
		}
		if vipapi.ValidateVIPName(s) == nil {
			if s == "" || len(s) > vipapi.MaxVIPNameLength || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") {
				t.Fatalf("VIP name %q accepted", s)
			}
			for _, r := range s {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
					t.Fatalf("VIP name %q accepted", s)
				}
			}
		}
		pools := strings.Split(s, ",")
		if ValidatePools(pools) == nil {
			seen := map[string]bool{}
			for _, p := range pools {
				if vipapi.ValidateVIPName(p) != nil || seen[p] {
					t.Fatalf("pools %q accepted", pools)
				}
				seen[p] = true
			}
		}
	})
}
