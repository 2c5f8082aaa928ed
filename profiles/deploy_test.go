package profiles

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

const (
	edKey    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKv2oMjPcLITFgW6Mdmj3zGef2jF3wuncBd/8JOAXvHS ops@example"
	ecdsaKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJjk68f9etqP7Ou0LQB0kNyU70pGhS/BZv7OflUuB+ojYFqArvTehZQw2iLm7ktrCLKaXSAkfDZQhshwUJcUHM4="
)

func TestSSHAuthorizedKeys(t *testing.T) {
	require.NoError(t, ValidateSSHAuthorizedKeys([]string{edKey, ecdsaKey}))
	for key, want := range map[string]string{
		"":                                    "empty SSH key",
		`command="rm -rf /" ` + edKey:         "starts with options",
		`no-pty,from="10.0.0.1" ` + ecdsaKey:  "starts with options",
		edKey + "\nssh-rsa AAAA":              "one line",
		"ssh-dss AAAAB3NzaC1kc3M=":            "is not one of",
		"ssh-ed25519":                         "without its base64",
		"ssh-ed25519 not*base64":              "not base64",
		"ssh-rsa " + strings.Fields(edKey)[1]: "does not hold a ssh-rsa key",
		"ssh-ed25519 AAAA":                    "cut short",
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5":    "does not hold",
	} {
		err := ValidateSSHAuthorizedKeys([]string{edKey, key})
		require.Error(t, err, "%q", key)
		require.Contains(t, err.Error(), "[1]: ", "names the key")
		require.Contains(t, err.Error(), want, "%q", key)
	}
}

func TestUserData(t *testing.T) {
	for _, ok := range []string{"", "#cloud-config\n", "#cloud-config\npackages: [htop]\nruncmd:\n  - [touch, /x]\n", "#cloud-config \r\ntimezone: UTC\r\n"} {
		require.NoError(t, ValidateUserData(ok), "%q", ok)
	}
	for doc, want := range map[string]string{
		"packages: [htop]\n":                           `first line must be "#cloud-config"`,
		"#!/bin/sh\necho hi\n":                         `first line must be "#cloud-config"`,
		"#cloud-config\n- a\n- b\n":                    "not a YAML mapping",
		"#cloud-config\npackages: [\n":                 "not a YAML mapping",
		"#cloud-config\na: 1\n---\nb: 2\n":             "one YAML document",
		"#cloud-config\n" + strings.Repeat("#", 70000): "larger than",
	} {
		err := ValidateUserData(doc)
		require.Error(t, err, "%q", doc)
		require.NotErrorIs(t, err, ErrReservedUserData)
		require.Contains(t, err.Error(), want, "%q", doc)
	}
	err := ValidateUserData("#cloud-config\nhostname: evil\nphone_home: {url: http://x}\npackages: [htop]\n")
	require.ErrorIs(t, err, ErrReservedUserData)
	require.ErrorContains(t, err, "hostname, phone_home")

	require.Equal(t, "packages: [htop]\n", UserDataBody("#cloud-config\npackages: [htop]\n"))
}

func TestRootDeviceHints(t *testing.T) {
	h, err := RootDeviceHints(map[string]string{"size": ">= 60", "rotational": "false", "model": "<in> Samsung", "by_path": "pci-0000:00:04.0", "wwn": "0x5000c500"})
	require.NoError(t, err)
	no := false
	require.Equal(t, agentapi.RootDeviceHints{Size: ">= 60", Rotational: &no, Model: "<in> Samsung", ByPath: "pci-0000:00:04.0", WWN: "0x5000c500"}, h)
	h, err = RootDeviceHints(nil)
	require.NoError(t, err)
	require.True(t, h.IsZero())
	for _, size := range []string{"60", "<or> 60 <or> 120", "= 100", "< 2000"} {
		_, err := RootDeviceHints(map[string]string{"size": size})
		require.NoError(t, err, size)
	}

	_, err = RootDeviceHints(map[string]string{"size": "big", "rotational": "maybe", "disk": "sda", "name": " "})
	require.Error(t, err)
	for _, want := range []string{`root_device.size: "big" is not whole GiB`, "root_device.rotational must be true or false", "root_device.disk is not a root-device hint", "root_device.name is empty"} {
		require.Contains(t, err.Error(), want)
	}
	_, err = RootDeviceHints(map[string]string{"size": "-5"})
	require.Error(t, err)
}

// A profile names the deploy's settings, checked by the same rules as an
// API request's.
func TestProfileDeploySettings(t *testing.T) {
	p, err := Parse([]byte("name: x\nimage: debian-12\nroot_device: {size: \">= 60\", rotational: \"false\"}\nssh_authorized_keys: [\"" + edKey + "\"]\nuser_data: |\n  #cloud-config\n  packages: [htop]\n"))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"size": ">= 60", "rotational": "false"}, p.RootDevice)
	require.Equal(t, []string{edKey}, p.SSHAuthorizedKeys)
	require.Equal(t, "#cloud-config\npackages: [htop]\n", p.UserData)

	for yamlDoc, want := range map[string]string{
		"name: x\nroot_device: {disk: sda}\n":                      "root_device.disk is not a root-device hint",
		"name: x\nssh_authorized_keys: [\"ssh-rsa no*pe\"]\n":      "ssh_authorized_keys[0]: ssh-rsa key data is not base64",
		"name: x\nuser_data: \"#cloud-config\\nhostname: a\\n\"\n": "user_data: user-data sets a key metalflow writes: hostname",
	} {
		_, err := Parse([]byte(yamlDoc))
		require.ErrorContains(t, err, want, yamlDoc)
	}
}
