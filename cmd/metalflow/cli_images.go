//go:build !agent

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/metalflow/metalflow/client"
)

// runImages is `metalflow images ...`: the OS image catalog.
func runImages(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runNoun(ctx, "images", map[string]verb{
		"list": {"the image catalog", imagesList},
		"show": {"one image, the profiles naming it and where machines fetch it", imagesShow},
		"add":  {"add an image: a URL metalflow proxies (--url) or a file uploaded (--file)", imagesAdd},
		"rm":   {"remove an image no profile names and no pending install writes", imagesRemove},
	}, args, stdout, stderr, cliEnvFromOS())
}

func imagesList(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("images list", out, &r)
	if _, err := parseArgs(fs, args, 0, 0, "metalflow images list [-o json]"); err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.Images(ctx)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	t := newTable(out.stdout, "NAME", "FORMAT", "OS", "SOURCE", "SIZE", "SHA256", "CREATED")
	for _, img := range a.Value.Images {
		// The digest's first 12 digits tell images apart in a table; show
		// and -o json give all of it.
		t.row(img.Name, img.Format, img.OSFamily, img.Source, imageSize(img.Size), img.SHA256[:min(12, len(img.SHA256))],
			img.CreatedAt.UTC().Format("2006-01-02 15:04"))
	}
	return t.flush()
}

func imagesShow(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("images show", out, &r)
	pos, err := parseArgs(fs, args, 1, 1, "metalflow images show NAME [-o json]")
	if err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.Image(ctx, pos[0])
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	return renderImage(out.stdout, a.Value)
}

func renderImage(w io.Writer, img client.ImageDetail) error {
	origin := "uploaded"
	if img.URL != "" {
		origin = img.URL
	}
	_, err := fmt.Fprintf(w, "Name:      %s\nFormat:    %s\nOS:        %s\nSource:    %s\nSize:      %s\nSHA256:    %s\nAdded:     %s by %s\nProfiles:  %s\nBoot path: %s\n",
		img.Name, img.Format, img.OSFamily, origin, imageSize(img.Size), img.SHA256,
		img.CreatedAt.UTC().Format("2006-01-02 15:04"), dash(img.CreatedBy), dash(strings.Join(img.Profiles, ", ")), img.BootPath)
	return err
}

// imageSize is an image's size as drive labels give sizes; "" (a dash)
// for a URL image added without one.
func imageSize(n int64) string {
	if n <= 0 {
		return ""
	}
	return formatBytes(n)
}

func imagesAdd(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var (
		r    remoteFlags
		img  client.NewImage
		file string
	)
	fs := newFlagSet("images add", out, &r)
	fs.StringVar(&img.URL, "url", "", "http(s) URL metalflow fetches the image from (Range passed on)")
	fs.StringVar(&file, "file", "", "image file to upload; --timeout does not bound the upload")
	fs.StringVar(&img.SHA256, "sha256", "", "SHA-256 of the image's bytes as stored (compressed for raw.gz/raw.zst), lower-case hex")
	fs.StringVar(&img.Format, "format", "", "raw, raw.gz, raw.zst or qcow2")
	fs.StringVar(&img.OSFamily, "os-family", "", "operating system family, e.g. debian, ubuntu, rhel")
	fs.Int64Var(&img.Size, "size", 0, "a URL image's size in bytes, if known (an upload's is measured)")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow images add NAME (--url URL | --file PATH) --sha256 HEX --format F --os-family F")
	if err != nil {
		return err
	}
	img.Name = pos[0]
	if (img.URL == "") == (file == "") {
		return usageError{errors.New("give exactly one of --url and --file")}
	}
	if img.SHA256 == "" || img.Format == "" || img.OSFamily == "" {
		return usageError{errors.New("--sha256, --format and --os-family are required")}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	var a client.Answer[client.ImageDetail]
	if file == "" {
		a, err = c.AddImage(ctx, img)
	} else {
		a, err = upload(ctx, c, img, file, out, r.output)
	}
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.stdout, "%s: added (%s, %s)\n", a.Value.Name, a.Value.Format, dash(imageSize(a.Value.Size)))
	return nil
}

// upload streams a file to the API; the API hashes it as it arrives and
// keeps it only if it is the image the digest names.
func upload(ctx context.Context, c *client.Client, img client.NewImage, path string, out cliOut, output string) (client.Answer[client.ImageDetail], error) {
	f, err := os.Open(path)
	if err != nil {
		return client.Answer[client.ImageDetail]{}, usageError{err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return client.Answer[client.ImageDetail]{}, err
	}
	fmt.Fprintf(out.progress(output), "uploading %s (%s)…\n", path, imageSize(st.Size()))
	return c.UploadImage(ctx, img, f, st.Size())
}

func imagesRemove(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("images rm", out, &r)
	pos, err := parseArgs(fs, args, 1, 1, "metalflow images rm NAME")
	if err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	if err := c.DeleteImage(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(out.progress(r.output), "%s: removed\n", pos[0])
	return nil
}
