package hardware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/common"
	gfredfish "github.com/stmcginnis/gofish/redfish"
)

// biosDoc is the part of a Bios resource (current or settings object)
// metalflow reads. The settings object is found through the link rather
// than a guessed path: iLO serves it at .../bios/settings/, Supermicro at
// .../Bios/SD, iDRAC and DMTF at .../Bios/Settings.
type biosDoc struct {
	Attributes map[string]any `json:"Attributes"`
	Settings   struct {
		SettingsObject struct {
			ID string `json:"@odata.id"`
		} `json:"SettingsObject"`
	} `json:"@Redfish.Settings"`
}

// BIOS reads the attributes in force. bmclib answers an empty set for a
// system ID it does not know, so gofish reads those BMCs instead.
func (s *session) BIOS(ctx context.Context) (map[string]string, error) {
	var attrs map[string]string
	err := s.run(ctx, "read BIOS", func() error {
		var err error
		attrs, err = s.bmclib().GetBiosConfiguration(ctx)
		if err != nil || len(attrs) > 0 {
			return err
		}
		doc, _, err := s.biosDoc(ctx)
		if err != nil {
			return err
		}
		attrs = attrStrings(doc.Attributes)
		return nil
	})
	return attrs, err
}

// PendingBIOS reads the settings object and keeps what differs from the
// attributes in force: iLO's settings object repeats every attribute.
func (s *session) PendingBIOS(ctx context.Context) (map[string]string, error) {
	var pending map[string]string
	err := s.run(ctx, "read pending BIOS", func() error {
		cur, api, err := s.biosDoc(ctx)
		if err != nil {
			return err
		}
		pending, err = pendingOf(api, cur)
		return err
	})
	return pending, err
}

func pendingOf(api *gofish.APIClient, cur biosDoc) (map[string]string, error) {
	pending := map[string]string{}
	link := cur.Settings.SettingsObject.ID
	if link == "" {
		return pending, nil // changes apply in place: nothing is ever pending
	}
	var settings biosDoc
	if err := getJSON(api, link, &settings); err != nil {
		return nil, err
	}
	now := attrStrings(cur.Attributes)
	for k, v := range attrStrings(settings.Attributes) {
		if old, ok := now[k]; !ok || old != v {
			pending[k] = v
		}
	}
	return pending, nil
}

// SetBIOS stages attrs for the next reset through bmclib (which PATCHes
// the settings object with ApplyTime OnReset; iDRAC then queues a job and
// refuses a second change until the reset: Rejected). Values already in
// force or already staged are not sent again, so an activity that runs
// twice does not trip over its own pending job.
func (s *session) SetBIOS(ctx context.Context, attrs map[string]string) error {
	if len(attrs) == 0 {
		return nil
	}
	return s.run(ctx, "stage BIOS", func() error {
		cur, api, err := s.biosDoc(ctx)
		if err != nil {
			return err
		}
		pending, err := pendingOf(api, cur)
		if err != nil {
			return err
		}
		now := attrStrings(cur.Attributes)
		needed := map[string]string{}
		for k, v := range attrs {
			next, staged := pending[k]
			if !staged {
				next = now[k]
			}
			if _, exists := now[k]; !exists || next != v {
				needed[k] = v
			}
		}
		if len(needed) == 0 {
			return nil
		}
		known, err := s.bmclib().GetBiosConfiguration(ctx)
		if err != nil {
			return err
		}
		if len(known) > 0 {
			err = s.bmclib().SetBiosConfiguration(ctx, needed)
		} else {
			// bmclib would silently do nothing for this system ID.
			err = s.stageWithGofish(ctx, needed)
		}
		if err != nil {
			return err
		}
		return s.unstage(ctx, needed)
	})
}

func (s *session) stageWithGofish(ctx context.Context, attrs map[string]string) error {
	bios, err := s.gofishBios(ctx)
	if err != nil {
		return err
	}
	sa := gfredfish.SettingsAttributes{}
	for k, v := range attrs {
		sa[k] = v
	}
	return bios.UpdateBiosAttributesApplyAt(sa, common.OnResetApplyTime)
}

// unstage sends what gofish left out: it skips an attribute whose value
// equals the one in force, so taking back a staged change ("X=a" then
// "X=<current>") would leave the first change pending.
func (s *session) unstage(ctx context.Context, attrs map[string]string) error {
	cur, api, err := s.biosDoc(ctx)
	if err != nil || cur.Settings.SettingsObject.ID == "" {
		return err
	}
	link := cur.Settings.SettingsObject.ID
	var settings biosDoc
	if err := getJSON(api, link, &settings); err != nil {
		return err
	}
	now, staged := attrStrings(cur.Attributes), attrStrings(settings.Attributes)
	back := map[string]any{}
	for k, v := range attrs {
		if p, ok := staged[k]; ok && p != v && now[k] == v {
			back[k] = cur.Attributes[k] // in the attribute's own JSON type
		}
	}
	if len(back) == 0 {
		return nil
	}
	resp, err := api.Patch(link, map[string]any{"Attributes": back,
		"@Redfish.SettingsApplyTime": map[string]string{"ApplyTime": string(common.OnResetApplyTime)}})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// ResetBIOS stages the defaults (Bios.ResetBios) for the next reset.
func (s *session) ResetBIOS(ctx context.Context) error {
	return s.run(ctx, "reset BIOS", func() error {
		known, err := s.bmclib().GetBiosConfiguration(ctx)
		if err != nil {
			return err
		}
		if len(known) > 0 {
			return s.bmclib().ResetBiosConfiguration(ctx)
		}
		bios, err := s.gofishBios(ctx)
		if err != nil {
			return err
		}
		return bios.ResetBios()
	})
}

func (s *session) gofishBios(ctx context.Context) (*gfredfish.Bios, error) {
	sys, err := s.system(ctx)
	if err != nil {
		return nil, err
	}
	bios, err := sys.Bios()
	if err != nil {
		return nil, err
	}
	if bios == nil {
		return nil, &Error{Kind: Unsupported, Op: "bios", Err: errors.New("the system has no Bios resource")}
	}
	return bios, nil
}

func (s *session) biosDoc(ctx context.Context) (biosDoc, *gofish.APIClient, error) {
	var doc biosDoc
	bios, err := s.gofishBios(ctx)
	if err != nil {
		return doc, nil, err
	}
	api, err := s.gofishAPI(ctx)
	if err != nil {
		return doc, nil, err
	}
	return doc, api, getJSON(api, bios.ODataID, &doc)
}

// getJSON reads one resource into v.
func getJSON(api *gofish.APIClient, uri string, v any) error {
	resp, err := api.Get(uri)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: unexpected status %d", uri, resp.StatusCode)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("GET %s: %w", uri, err)
	}
	return nil
}

// attrStrings renders attribute values the way bmclib does (fmt's %v), so
// that current and pending values compare equal when they are.
func attrStrings(attrs map[string]any) map[string]string {
	out := make(map[string]string, len(attrs))
	for k, v := range attrs {
		if v == nil {
			out[k] = ""
			continue
		}
		out[k] = fmt.Sprintf("%v", v)
	}
	return out
}
