package agent

import (
	"encoding/binary"
	"os"
	"slices"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"gopkg.in/yaml.v3"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

const (
	// seedBytes is the cidata partition: room to spare for the seed, and
	// within FAT16's cluster counts (FAT32 is not valid this small).
	seedBytes = 16 * mib
	// seedReserve is what the image must leave free at the disk's end: the
	// seed partition, its alignment, and the backup GPT.
	seedReserve = seedBytes + mib
	seedLabel   = "cidata"
)

// seedFiles renders the NoCloud seed for the installed OS's cloud-init.
func seedFiles(seed agentapi.Seed, mac string) (map[string][]byte, error) {
	if seed.InstanceID == "" || seed.Hostname == "" {
		return nil, fail(agentapi.ClassPlanInvalid, "seed needs an instance_id and a hostname")
	}
	meta, err := yaml.Marshal(map[string]string{"instance-id": seed.InstanceID, "local-hostname": seed.Hostname})
	if err != nil {
		return nil, err
	}
	user := map[string]any{}
	if seed.UserData != "" {
		if err := yaml.Unmarshal([]byte(seed.UserData), &user); err != nil {
			return nil, fail(agentapi.ClassPlanInvalid, "seed user_data is not a YAML mapping: %v", err)
		}
	}
	for _, key := range []string{"hostname", "ssh_authorized_keys", "phone_home"} {
		if _, ok := user[key]; ok {
			return nil, fail(agentapi.ClassPlanInvalid, "seed user_data sets %q, which the agent writes from the plan", key)
		}
	}
	user["hostname"] = seed.Hostname
	if len(seed.SSHAuthorizedKeys) > 0 {
		user["ssh_authorized_keys"] = seed.SSHAuthorizedKeys
	}
	if seed.PhoneHomeURL != "" {
		user["phone_home"] = map[string]any{
			"url":   seed.PhoneHomeURL,
			"post":  []string{"instance_id", "hostname"},
			"tries": 10,
		}
	}
	userYAML, err := yaml.Marshal(user)
	if err != nil {
		return nil, err
	}
	if mac == "" {
		return nil, fail(agentapi.ClassPlanInvalid, "no MAC for the network-config: the seed names none and the agent's route to the boot service has none")
	}
	network, err := yaml.Marshal(map[string]any{
		"version": 2,
		"ethernets": map[string]any{
			"provisioning": map[string]any{
				"match": map[string]string{"macaddress": mac},
				"dhcp4": true,
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"meta-data":      meta,
		"user-data":      append([]byte("#cloud-config\n"), userYAML...),
		"network-config": network,
	}, nil
}

// writeSeed adds the cidata partition at the end of the disk and writes the
// seed files to its FAT16 filesystem. On a GPT disk the image's backup
// GPT, which lies at the image's end, moves to the disk's end first; a disk
// with an MBR gets an MBR partition (below 2 TiB, MBR's reach).
// imageBytes is how much of the disk the image took.
func writeSeed(t *target, imageBytes int64, files map[string][]byte) error {
	d, err := diskfs.OpenBackend(file.New(t.f, false), diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fail(agentapi.ClassWriteFailed, "seed: open disk: %v", err)
	}
	lbs := d.LogicalBlocksize
	var start int64 // in logical blocks
	switch table := d.Table.(type) {
	case *gpt.Table:
		oldBackup, err := backupGPTLBA(t, lbs)
		if err != nil {
			return err
		}
		table.Resize(uint64(d.Size))
		end := int64(table.LastDataSector())
		start = alignDown(end+1-seedBytes/lbs, mib/lbs)
		index := 1
		for _, p := range table.Partitions {
			if int64(p.End) >= start {
				return fail(agentapi.ClassDiskTooSmall, "seed: partition %d of the image ends at block %d, where the seed partition must start (%d)", p.Index, p.End, start)
			}
			index = max(index, p.Index+1)
		}
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: index, Start: uint64(start), End: uint64(start + seedBytes/lbs - 1),
			Type: gpt.MicrosoftBasicData, Name: seedLabel,
		})
		if err := writeTable(d, table); err != nil {
			return err
		}
		// The image's backup header, now stale, would confuse tools that
		// find it; the one at the disk's end replaces it.
		if oldBackup*lbs < start*lbs {
			if _, err := t.f.WriteAt(make([]byte, lbs), oldBackup*lbs); err != nil {
				return fail(agentapi.ClassWriteFailed, "seed: erase the image's old backup GPT: %v", err)
			}
		}
	case *mbr.Table:
		reach := min(d.Size/lbs, 1<<32)
		start = alignDown(reach-seedBytes/lbs, mib/lbs)
		slot := -1
		for i, p := range table.Partitions {
			if p.Type == mbr.Empty {
				if slot < 0 {
					slot = i
				}
				continue
			}
			if int64(p.Start)+int64(p.Size) > start {
				return fail(agentapi.ClassDiskTooSmall, "seed: MBR partition %d of the image reaches block %d, where the seed partition must start (%d)", p.Index, int64(p.Start)+int64(p.Size), start)
			}
		}
		if slot < 0 {
			return fail(agentapi.ClassImageInvalid, "seed: the image's MBR has no free slot for the seed partition")
		}
		table.Partitions[slot] = &mbr.Partition{Index: slot + 1, Type: mbr.Fat32LBA, Start: uint32(start), Size: uint32(seedBytes / lbs)}
		if err := writeTable(d, table); err != nil {
			return err
		}
	default:
		return fail(agentapi.ClassImageInvalid, "seed: the image has no GPT or MBR partition table to add the seed partition to")
	}
	if start*lbs < imageBytes {
		return fail(agentapi.ClassDiskTooSmall, "seed: the image's %d bytes leave no room for the seed partition", imageBytes)
	}
	// FAT16 has 512-byte sectors whatever the disk's: a 4Kn disk's kernel
	// would not mount it, though cloud-init reads it; noted, not handled.
	fs, err := fat16.Create(d.Backend, seedBytes, start*lbs, 512, seedLabel, false)
	if err != nil {
		return fail(agentapi.ClassWriteFailed, "seed: make the FAT16 filesystem: %v", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fail(agentapi.ClassWriteFailed, "seed: create %s: %v", name, err)
		}
		if _, err := f.Write(files[name]); err != nil {
			return fail(agentapi.ClassWriteFailed, "seed: write %s: %v", name, err)
		}
		if err := f.Close(); err != nil {
			return fail(agentapi.ClassWriteFailed, "seed: close %s: %v", name, err)
		}
	}
	return t.sync()
}

// writeTable writes the partition table. The kernel re-reading it is a
// courtesy (the installed OS reads it at boot), so that may fail.
func writeTable(d *disk.Disk, table partition.Table) error {
	w, err := d.Backend.Writable()
	if err != nil {
		return fail(agentapi.ClassWriteFailed, "seed: %v", err)
	}
	if err := table.Write(w, d.Size); err != nil {
		return fail(agentapi.ClassWriteFailed, "seed: write the partition table: %v", err)
	}
	d.Table = table
	_ = d.ReReadPartitionTable()
	return nil
}

// backupGPTLBA is where the primary GPT header says its backup is.
func backupGPTLBA(t *target, lbs int64) (int64, error) {
	hdr := make([]byte, 512)
	if _, err := t.f.ReadAt(hdr, lbs); err != nil {
		return 0, fail(agentapi.ClassWriteFailed, "seed: read the GPT header: %v", err)
	}
	return int64(binary.LittleEndian.Uint64(hdr[32:])), nil
}

func alignDown(n, align int64) int64 { return n / align * align }
