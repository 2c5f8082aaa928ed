package inventory

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestImageCatalog(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		list, err := s.ListImages(ctx)
		require.NoError(t, err)
		require.Empty(t, list)
		require.NotNil(t, list, "an empty catalog lists as [] in JSON, not null")

		up := Image{Name: "debian-12", Source: "upload", SHA256: strings.Repeat("a", 64), Format: "raw.zst", OSFamily: "debian", Size: 5 << 30, CreatedBy: "alice"}
		got, err := s.CreateImage(ctx, up)
		require.NoError(t, err)
		require.False(t, got.CreatedAt.IsZero())
		remote := Image{Name: "alma-9", Source: "url", URL: "https://mirror.example/alma-9.qcow2", SHA256: strings.Repeat("b", 64), Format: "qcow2", OSFamily: "rhel"}
		_, err = s.CreateImage(ctx, remote)
		require.NoError(t, err)

		_, err = s.CreateImage(ctx, Image{Name: "debian-12", Source: "url", URL: "https://x/y", SHA256: strings.Repeat("c", 64), Format: "raw", OSFamily: "debian"})
		require.ErrorIs(t, err, ErrExists, "a name keeps its bytes")
		_, err = s.CreateImage(ctx, Image{Name: "no-digest", Source: "upload", Format: "raw"})
		require.ErrorIs(t, err, ErrInvalid)

		one, err := s.GetImage(ctx, "debian-12")
		require.NoError(t, err)
		require.Equal(t, int64(5<<30), one.Size, "sizes past 4 GiB survive")
		require.Equal(t, "alice", one.CreatedBy)
		require.Equal(t, got.CreatedAt.Truncate(time.Second), one.CreatedAt.Truncate(time.Second))
		_, err = s.GetImage(ctx, "nope")
		require.ErrorIs(t, err, ErrNotFound)

		list, err = s.ListImages(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, "alma-9", list[0].Name, "by name")
		require.Equal(t, "https://mirror.example/alma-9.qcow2", list[0].URL)

		require.NoError(t, s.DeleteImage(ctx, "alma-9"))
		require.ErrorIs(t, s.DeleteImage(ctx, "alma-9"), ErrNotFound)
		list, err = s.ListImages(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
	})
}

// An image a pending install writes stays until the install ends; its
// phone-home token, and only while pending, names the image.
func TestImageHeldByPendingInstall(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-I"}, "t")
		require.NoError(t, err)
		_, err = s.CreateImage(ctx, Image{Name: "debian-12", Source: "upload", SHA256: strings.Repeat("a", 64), Format: "raw", OSFamily: "debian"})
		require.NoError(t, err)
		b, err := s.IssueBoot(ctx, "SN-I", 1, []string{"02:00:00:00:00:01"}, time.Hour)
		require.NoError(t, err)

		named, err := s.BootImageByToken(ctx, b.Token)
		require.NoError(t, err)
		require.Equal(t, BootImage{Serial: "SN-I", Attempt: 1}, named, "an attempt names no image until the install step says")

		require.ErrorIs(t, s.SetBootImage(ctx, "SN-I", 1, "nope"), ErrNotFound)
		require.ErrorIs(t, s.SetBootImage(ctx, "SN-I", 9, "debian-12"), ErrNotFound)
		require.NoError(t, s.SetBootImage(ctx, "SN-I", 1, "debian-12"))
		require.NoError(t, s.SetBootImage(ctx, "SN-I", 1, "debian-12"), "a retried install step changes nothing")
		named, err = s.BootImageByToken(ctx, b.Token)
		require.NoError(t, err)
		require.Equal(t, "debian-12", named.Image)
		hist, err := s.History(ctx, "SN-I")
		require.NoError(t, err)
		var recorded int
		for _, c := range hist {
			if c.Action == "install image" {
				recorded++
				require.Contains(t, c.Detail, "debian-12")
			}
		}
		require.Equal(t, 1, recorded, "the asset history says which image went on, once")

		err = s.DeleteImage(ctx, "debian-12")
		require.ErrorIs(t, err, ErrInUse)
		require.ErrorContains(t, err, "SN-I (attempt 1)")
		_, err = s.GetImage(ctx, "debian-12")
		require.NoError(t, err, "a refused delete changes nothing")

		_, err = s.ConsumePhoneHome(ctx, b.Token)
		require.NoError(t, err)
		_, err = s.BootImageByToken(ctx, b.Token)
		require.ErrorIs(t, err, ErrNotFound, "a finished install fetches nothing more")
		require.NoError(t, s.SetBootImage(ctx, "SN-I", 1, "debian-12"), "the same image again is still no change")
		_, err = s.CreateImage(ctx, Image{Name: "alma-9", Source: "upload", SHA256: strings.Repeat("b", 64), Format: "raw", OSFamily: "rhel"})
		require.NoError(t, err)
		require.ErrorIs(t, s.SetBootImage(ctx, "SN-I", 1, "alma-9"), ErrInvalid, "a finished install writes nothing else")
		require.NoError(t, s.DeleteImage(ctx, "debian-12"), "the install finished: the image may go")
	})
}
