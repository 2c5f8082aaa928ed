package hardware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stmcginnis/gofish"
	gfredfish "github.com/stmcginnis/gofish/redfish"
)

// storageDoc holds the links gofish keeps private.
type storageDoc struct {
	Volumes struct {
		ID string `json:"@odata.id"`
	} `json:"Volumes"`
}

// driveActions is where a Drive advertises SecureErase.
type driveActions struct {
	Actions struct {
		SecureErase struct {
			Target string `json:"target"`
		} `json:"#Drive.SecureErase"`
	} `json:"Actions"`
}

// controller is one Storage resource read through gofish.
type controller struct {
	storage *gfredfish.Storage
	drives  []*gfredfish.Drive
}

// Storage lists every Storage resource with its drives and volumes.
func (s *session) Storage(ctx context.Context) ([]StorageController, error) {
	var out []StorageController
	err := s.run(ctx, "list storage", func() error {
		ctls, _, err := s.controllers(ctx)
		if err != nil {
			return err
		}
		out = nil
		for _, c := range ctls {
			sc := StorageController{ID: c.storage.ID, Drives: []Drive{}, Volumes: []Volume{}, SupportedRAID: supportedRAID(c.storage)}
			for _, d := range c.drives {
				sc.Drives = append(sc.Drives, driveOf(d))
			}
			vols, err := c.volumes()
			if err != nil {
				return err
			}
			sc.Volumes = vols
			out = append(out, sc)
		}
		return nil
	})
	return out, err
}

// CreateVolume POSTs a Volume with RAIDType and Links.Drives to the
// controller's Volumes collection, follows the task where the controller
// builds in the background, and reads the new volume back.
func (s *session) CreateVolume(ctx context.Context, req VolumeRequest) (Volume, error) {
	level := raidLevel(req.RAIDType)
	if level == "" || len(req.DriveIDs) == 0 {
		return Volume{}, &Error{Kind: Rejected, Op: "create volume", Err: errors.New("a RAID type and at least one drive are required")}
	}
	var made Volume
	err := s.run(ctx, "create "+level+" volume", func() error {
		ctls, api, err := s.controllers(ctx)
		if err != nil {
			return err
		}
		c, links, err := pickController(ctls, req.ControllerID, req.DriveIDs)
		if err != nil {
			return err
		}
		var doc storageDoc
		if err := getJSON(api, c.storage.ODataID, &doc); err != nil {
			return err
		}
		if doc.Volumes.ID == "" {
			return &Error{Kind: Unsupported, Op: "create volume", Err: fmt.Errorf("storage %s has no Volumes collection", c.storage.ID)}
		}
		before, err := c.volumes()
		if err != nil {
			return err
		}
		// A volume on these drives is this request done before (an earlier
		// attempt whose answer was lost): building it again would fail or,
		// worse, succeed.
		if v, ok := volumeOn(before, level, req.DriveIDs); ok {
			made = v
			return nil
		}
		body := map[string]any{"RAIDType": level, "Links": map[string]any{"Drives": links}}
		if req.Name != "" {
			body["DisplayName"] = req.Name
		}
		if req.CapacityBytes > 0 {
			body["CapacityBytes"] = req.CapacityBytes
		}
		resp, err := api.Post(doc.Volumes.ID, body)
		if err != nil && statusOf(err) == http.StatusConflict {
			// Drives taken by a volume the BMC does not list yet are held
			// by one still being built, by an earlier attempt cut short.
			made, err = awaitVolume(ctx, c, level, req.DriveIDs, err)
			return err
		}
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := awaitAccepted(ctx, api, resp); err != nil {
			return err
		}
		after, err := c.volumes()
		if err != nil {
			return err
		}
		for _, v := range after {
			if !slices.ContainsFunc(before, func(b Volume) bool { return b.ID == v.ID }) && sameDrives(v.DriveIDs, req.DriveIDs) {
				made = v
				return nil
			}
		}
		return &Error{Kind: Transient, Op: "create volume", Err: errors.New("the BMC accepted the volume but does not list it")}
	})
	return made, err
}

// volumeOn finds the volume of this level built on exactly these drives.
func volumeOn(vols []Volume, level string, driveIDs []string) (Volume, bool) {
	for _, v := range vols {
		if raidLevel(v.RAIDType) == level && sameDrives(v.DriveIDs, driveIDs) {
			return v, true
		}
	}
	return Volume{}, false
}

// volumeBuildPatience bounds the wait for a volume another attempt is
// building; beyond it the drives are busy with something else.
const volumeBuildPatience = 10 * time.Minute

// awaitVolume waits until a volume of this level on exactly these drives
// is listed. A listed volume of another shape on any of them means the
// conflict is real (refused). One that outlasts the patience is transient:
// the activity's retry reads the controller afresh.
func awaitVolume(ctx context.Context, c controller, level string, driveIDs []string, conflict error) (Volume, error) {
	deadline := time.Now().Add(volumeBuildPatience)
	for {
		vols, err := c.volumes()
		if err != nil {
			return Volume{}, err
		}
		if v, ok := volumeOn(vols, level, driveIDs); ok {
			return v, nil
		}
		for _, v := range vols {
			if slices.ContainsFunc(v.DriveIDs, func(d string) bool { return slices.Contains(driveIDs, d) }) {
				return Volume{}, conflict
			}
		}
		if time.Now().After(deadline) {
			return Volume{}, &Error{Kind: Transient, Op: "create volume",
				Err: fmt.Errorf("drives %v stay in use by a volume the BMC does not list", driveIDs)}
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return Volume{}, classify("create volume", ctx.Err())
		case <-t.C:
		}
	}
}

// DeleteVolume DELETEs the volume and follows the controller's task.
func (s *session) DeleteVolume(ctx context.Context, volumeID string) error {
	return s.run(ctx, "delete volume "+volumeID, func() error {
		ctls, api, err := s.controllers(ctx)
		if err != nil {
			return err
		}
		for _, c := range ctls {
			vols, err := c.storage.Volumes()
			if err != nil {
				return err
			}
			for _, v := range vols {
				if v.ID != volumeID {
					continue
				}
				resp, err := api.Delete(v.ODataID)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				return awaitAccepted(ctx, api, resp)
			}
		}
		return &Error{Kind: Rejected, Op: "delete volume", Err: fmt.Errorf("no volume %q", volumeID)}
	})
}

// SecureErase runs Drive.SecureErase where the drive advertises it.
func (s *session) SecureErase(ctx context.Context, driveID string) error {
	return s.run(ctx, "secure erase "+driveID, func() error {
		ctls, api, err := s.controllers(ctx)
		if err != nil {
			return err
		}
		for _, c := range ctls {
			for _, d := range c.drives {
				if d.ID != driveID {
					continue
				}
				var doc driveActions
				if err := getJSON(api, d.ODataID, &doc); err != nil {
					return err
				}
				if doc.Actions.SecureErase.Target == "" {
					return &Error{Kind: Unsupported, Op: "secure erase", Err: fmt.Errorf("drive %s offers no Drive.SecureErase action", driveID)}
				}
				resp, err := api.Post(doc.Actions.SecureErase.Target, map[string]any{})
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				return awaitAccepted(ctx, api, resp)
			}
		}
		return &Error{Kind: Rejected, Op: "secure erase", Err: fmt.Errorf("no drive %q", driveID)}
	})
}

// controllers reads the system's Storage resources with their drives; a
// BMC without any cannot do RAID through Redfish.
func (s *session) controllers(ctx context.Context) ([]controller, *gofish.APIClient, error) {
	sys, err := s.system(ctx)
	if err != nil {
		return nil, nil, err
	}
	api, err := s.gofishAPI(ctx)
	if err != nil {
		return nil, nil, err
	}
	storages, err := sys.Storage()
	if err != nil {
		return nil, nil, err
	}
	if len(storages) == 0 {
		return nil, nil, &Error{Kind: Unsupported, Op: "storage", Err: errors.New("the system has no Redfish Storage")}
	}
	out := make([]controller, 0, len(storages))
	for _, st := range storages {
		drives, err := st.Drives()
		if err != nil {
			return nil, nil, err
		}
		out = append(out, controller{storage: st, drives: drives})
	}
	return out, api, nil
}

func (c controller) volumes() ([]Volume, error) {
	vols, err := c.storage.Volumes()
	if err != nil {
		return nil, err
	}
	out := make([]Volume, 0, len(vols))
	for _, v := range vols {
		drives, err := v.Drives()
		if err != nil {
			return nil, err
		}
		vol := Volume{ID: v.ID, Name: v.Name, RAIDType: string(v.RAIDType), CapacityBytes: int64(v.CapacityBytes), DriveIDs: []string{}}
		for _, d := range drives {
			vol.DriveIDs = append(vol.DriveIDs, d.ID)
		}
		out = append(out, vol)
	}
	return out, nil
}

// pickController finds the controller holding every drive asked for (the
// named one, or the first that does) and the drives' links.
func pickController(ctls []controller, id string, driveIDs []string) (controller, []any, error) {
	for _, c := range ctls {
		if id != "" && c.storage.ID != id {
			continue
		}
		var links []any
		for _, want := range driveIDs {
			for _, d := range c.drives {
				if d.ID == want {
					links = append(links, map[string]string{"@odata.id": d.ODataID})
					break
				}
			}
		}
		if len(links) == len(driveIDs) {
			return c, links, nil
		}
	}
	where := "no storage controller holds"
	if id != "" {
		where = "storage controller " + id + " does not hold"
	}
	return controller{}, nil, &Error{Kind: Rejected, Op: "create volume", Err: fmt.Errorf("%s all of the drives %s", where, strings.Join(driveIDs, ","))}
}

func supportedRAID(st *gfredfish.Storage) []string {
	var out []string
	for _, sc := range st.StorageControllers {
		for _, t := range sc.SupportedRAIDTypes {
			if !slices.Contains(out, string(t)) {
				out = append(out, string(t))
			}
		}
	}
	return out
}

func driveOf(d *gfredfish.Drive) Drive {
	return Drive{ID: d.ID, Model: d.Model, CapacityBytes: d.CapacityBytes, MediaType: string(d.MediaType), Protocol: string(d.Protocol)}
}

// raidLevel accepts "RAID1", "raid1" and "1" alike.
func raidLevel(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "" {
		return ""
	}
	if !strings.HasPrefix(s, "RAID") {
		s = "RAID" + s
	}
	return s
}

func sameDrives(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
