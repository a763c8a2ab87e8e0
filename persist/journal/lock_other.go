//go:build !unix

package journal

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/LOCK. Without flock, nothing keeps a second process
// off the directory.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
}
