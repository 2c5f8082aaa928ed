package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Image is one entry of the OS image catalog, as stored; the API checks
// its fields against the image contract before it gets here.
type Image struct {
	Name      string
	Source    string
	URL       string
	SHA256    string
	Format    string
	OSFamily  string
	Size      int64
	CreatedAt time.Time
	CreatedBy string
}

// ErrInUse means a record cannot go while something still needs it: an
// image a pending install writes.
var ErrInUse = errors.New("in use")

// CreateImage adds an image to the catalog; a name taken is ErrExists,
// whatever the rest says: an image's bytes never change under its name.
func (s *Store) CreateImage(ctx context.Context, img Image) (Image, error) {
	if img.Name == "" || img.Source == "" || img.SHA256 == "" || img.Format == "" {
		return Image{}, fmt.Errorf("%w: an image needs a name, a source, a sha256 and a format", ErrInvalid)
	}
	img.CreatedAt = s.now()
	_, err := s.db.ExecContext(ctx, `INSERT INTO images (name, source, url, sha256, format, os_family, size_bytes, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		img.Name, img.Source, img.URL, img.SHA256, img.Format, img.OSFamily, img.Size, img.CreatedAt, img.CreatedBy)
	if err != nil {
		if isUniqueViolation(err) {
			return Image{}, fmt.Errorf("%w: image %s", ErrExists, img.Name)
		}
		return Image{}, err
	}
	return img, nil
}

// GetImage is one image of the catalog.
func (s *Store) GetImage(ctx context.Context, name string) (Image, error) {
	return getImage(ctx, s.db, name)
}

const imageColumns = `name, source, url, sha256, format, os_family, size_bytes, created_at, created_by`

func getImage(ctx context.Context, q querier, name string) (Image, error) {
	img, err := scanImage(q.QueryRowContext(ctx, `SELECT `+imageColumns+` FROM images WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Image{}, fmt.Errorf("%w: no image %s", ErrNotFound, name)
	}
	return img, err
}

func scanImage(row interface{ Scan(...any) error }) (Image, error) {
	var img Image
	err := row.Scan(&img.Name, &img.Source, &img.URL, &img.SHA256, &img.Format, &img.OSFamily, &img.Size, &img.CreatedAt, &img.CreatedBy)
	img.CreatedAt = img.CreatedAt.UTC()
	return img, err
}

// ListImages is the catalog, by name.
func (s *Store) ListImages(ctx context.Context) ([]Image, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+imageColumns+` FROM images ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Image{}
	for rows.Next() {
		img, err := scanImage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, rows.Err()
}

// DeleteImage removes an image from the catalog, refusing (ErrInUse) while
// a pending install attempt writes it. Finished attempts forget the image
// (their asset history keeps its name), so an image used once can go.
func (s *Store) DeleteImage(ctx context.Context, name string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := getImage(ctx, tx, name); err != nil {
			return err
		}
		now := s.now()
		var serial string
		var attempt int
		err := tx.QueryRowContext(ctx, `SELECT serial, attempt FROM boot_configs
			WHERE image = $1 AND retired_at IS NULL AND phoned_at IS NULL AND expires_at > $2
			ORDER BY serial, attempt LIMIT 1`, name, now).Scan(&serial, &attempt)
		if err == nil {
			return fmt.Errorf("%w: image %s is being installed on %s (attempt %d)", ErrInUse, name, serial, attempt)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE boot_configs SET image = NULL WHERE image = $1`, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM images WHERE name = $1`, name)
		return err
	})
	// An install that named the image between the check and the delete
	// holds it through the foreign key: it wins.
	if isForeignKeyViolation(err) {
		return fmt.Errorf("%w: image %s was just taken by an install", ErrInUse, name)
	}
	return err
}

// SetBootImage records that install attempt `attempt` of a server writes
// image: from then until the attempt ends the image cannot be deleted, and
// the attempt's phone-home token fetches its bytes. The install step calls
// it after IssueBoot; calling it again with the same image changes nothing.
func (s *Store) SetBootImage(ctx context.Context, serial string, attempt int, image string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		b, err := getBoot(ctx, tx, serial, attempt)
		if err != nil {
			return err
		}
		if _, err := getImage(ctx, tx, image); err != nil {
			return err
		}
		var cur sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT image FROM boot_configs WHERE serial = $1 AND attempt = $2`, serial, attempt).Scan(&cur); err != nil {
			return err
		}
		if cur.String == image {
			return nil
		}
		if !b.Active(s.now()) {
			return fmt.Errorf("%w: install attempt %d of %s has ended", ErrInvalid, attempt, serial)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE boot_configs SET image = $1 WHERE serial = $2 AND attempt = $3`, image, serial, attempt); err != nil {
			return err
		}
		return addChange(ctx, tx, serial, s.now(), "boot-service", "install image", fmt.Sprintf("attempt %d writes image %s", attempt, image))
	})
	if isForeignKeyViolation(err) {
		return fmt.Errorf("%w: image %s was just deleted", ErrNotFound, image)
	}
	return err
}

// BootImage is what a pending install attempt may fetch.
type BootImage struct {
	Serial  string
	Attempt int
	// Image is "" while the attempt names none.
	Image string
}

// BootImageByToken is the image the pending attempt holding token writes;
// an unknown, spent or expired token is ErrNotFound.
func (s *Store) BootImageByToken(ctx context.Context, token string) (BootImage, error) {
	b, err := activeBootByToken(ctx, s.db, token, s.now())
	if err != nil {
		return BootImage{}, err
	}
	var image sql.NullString
	if err := s.db.QueryRowContext(ctx, `SELECT image FROM boot_configs WHERE serial = $1 AND attempt = $2`, b.Serial, b.Attempt).Scan(&image); err != nil {
		return BootImage{}, err
	}
	return BootImage{Serial: b.Serial, Attempt: b.Attempt, Image: image.String}, nil
}

// isForeignKeyViolation recognises a broken reference on either database:
// SQLSTATE 23503 from PostgreSQL, extended code 787 from SQLite.
func isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState() == "23503"
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		return lite.Code() == 787
	}
	return strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}
