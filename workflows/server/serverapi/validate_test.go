package serverapi

import (
	"strings"
	"testing"

	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
)

func TestValidateSerial(t *testing.T) {
	cases := []struct {
		serial string
		want   string // substring of the error; "" means valid
	}{
		{"SN-0001", ""},
		{"7X3K2L3.dell_01", ""},
		{strings.Repeat("a", stepapi.MaxSerialLength), ""},
		{"", "serial is required"},
		{"has space", "may contain only"},
		{"-leading", "may contain only"},
		{"semi;colon", "may contain only"},
		{"slash/inside", "may contain only"},
		{"ünïcode", "may contain only"},
		{strings.Repeat("a", 300), "300 characters long"},
	}
	for _, c := range cases {
		err := stepapi.ValidateSerial(c.serial)
		if c.want == "" {
			require.NoError(t, err, c.serial)
			continue
		}
		require.Error(t, err, c.serial)
		require.Contains(t, err.Error(), c.want, c.serial)
	}
}

func TestValidateLocation(t *testing.T) {
	ok := Location{Site: "dc1", Room: "A", Rack: "R01", Unit: 1, Face: FaceFront}
	require.NoError(t, ValidateLocation(ok))
	noRoom := ok
	noRoom.Room = ""
	require.NoError(t, ValidateLocation(noRoom))

	cases := []struct {
		name string
		edit func(*Location)
		want string
	}{
		{"no site", func(l *Location) { l.Site = "" }, "site is required"},
		{"no rack", func(l *Location) { l.Rack = "" }, "rack is required"},
		{"bad room", func(l *Location) { l.Room = "a b" }, "room may contain only"},
		{"unit zero", func(l *Location) { l.Unit = 0 }, "unit must be 1 or more, got 0"},
		{"negative unit", func(l *Location) { l.Unit = -3 }, "got -3"},
		{"bad face", func(l *Location) { l.Face = "top" }, `face must be "front" or "rear", got "top"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := ok
			c.edit(&l)
			err := ValidateLocation(l)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}
