package bmcsim

import (
	"net/http"
	"net/url"
	"path"
	"slices"
)

type mediaState struct {
	image          string
	inserted       bool
	writeProtected bool
	protocol       string
}

func (b *BMC) renderMedia(key string, i int) map[string]any {
	doc := b.baseDoc(key)
	s := b.media[i]
	doc["Inserted"] = s.inserted
	doc["WriteProtected"] = s.writeProtected
	if s.inserted {
		doc["Image"] = s.image
		doc["ImageName"] = path.Base(s.image)
		doc["ConnectedVia"] = "URI"
		doc["TransferProtocolType"] = nilIfEmpty(s.protocol)
	} else {
		doc["Image"] = nil
		doc["ImageName"] = ""
		doc["ConnectedVia"] = "NotConnected"
		doc["TransferProtocolType"] = nil
	}
	return doc
}

func (b *BMC) insertMedia(i int, body []byte) (*reply, *redfishError) {
	const action = "VirtualMedia.InsertMedia"
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	img, ok := req["Image"].(string)
	if !ok || img == "" {
		return nil, errActionParameterMissing(action, "Image")
	}
	if err := b.loadMedia(i, img, req); err != nil {
		return nil, err
	}
	return &reply{status: http.StatusNoContent}, nil
}

func (b *BMC) loadMedia(i int, img string, req map[string]any) *redfishError {
	u, err := url.Parse(img)
	if err != nil || u.Host == "" || !slices.Contains([]string{"http", "https", "nfs", "cifs", "smb", "ftp", "sftp"}, u.Scheme) {
		return errorf(http.StatusBadRequest, "ActionParameterValueFormatError", "The value "+img+" for the parameter Image is of a different format than the parameter can accept.", img, "Image")
	}
	if b.media[i].inserted {
		return errConflict("Virtual media is already attached to this slot; eject it first.")
	}
	proto, _ := req["TransferProtocolType"].(string)
	if proto == "" {
		proto = map[string]string{"http": "HTTP", "https": "HTTPS", "nfs": "NFS", "cifs": "CIFS", "smb": "CIFS", "ftp": "FTP", "sftp": "SFTP"}[u.Scheme]
	}
	wp := true
	if v, ok := req["WriteProtected"].(bool); ok {
		wp = v
	}
	b.media[i] = mediaState{image: img, inserted: true, writeProtected: wp, protocol: proto}
	b.counters.MediaInserts++
	b.logEvent("OK", "Virtual media "+img+" attached")
	b.hw.mediaChanged(i)
	return nil
}

func (b *BMC) ejectMedia(i int) (*reply, *redfishError) {
	if !b.media[i].inserted {
		return nil, errConflict("No virtual media is attached to this slot.")
	}
	b.media[i] = mediaState{writeProtected: true}
	b.counters.MediaEjects++
	b.logEvent("OK", "Virtual media ejected")
	b.hw.mediaChanged(i)
	return &reply{status: http.StatusNoContent}, nil
}

// patchMedia is the XCC way (and gofish's fallback): set Image/Inserted.
func (b *BMC) patchMedia(i int, body []byte) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	img, hasImg := req["Image"]
	ins, hasIns := req["Inserted"].(bool)
	switch {
	case (hasImg && img == nil) || (hasIns && !ins):
		if b.media[i].inserted {
			if _, err := b.ejectMedia(i); err != nil {
				return nil, err
			}
		}
	case hasImg:
		s, ok := img.(string)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property Image is of a different type than the property can accept.", "Image")
		}
		if b.media[i].inserted && b.media[i].image != s {
			b.media[i] = mediaState{writeProtected: true}
			b.hw.mediaChanged(i)
		}
		if !b.media[i].inserted {
			if err := b.loadMedia(i, s, req); err != nil {
				return nil, err
			}
		}
	default:
		return nil, errorf(http.StatusBadRequest, "PropertyUnknown", "Only Image, Inserted and WriteProtected can be changed.")
	}
	return b.docReply(b.renderMedia(pathKey(b.m.mediaSlots[i]), i)), nil
}

func (b *BMC) insertedImage() string {
	for _, m := range b.media {
		if m.inserted {
			return m.image
		}
	}
	return ""
}
