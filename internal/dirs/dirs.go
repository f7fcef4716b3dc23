package dirs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// trashPrefix marks renamed directories. Object names cannot start with
// '.', so no live object's directory has it.
const trashPrefix = ".deleted-"

// Discard renames root/name out of the way and removes it in the
// background. A missing directory is not an error.
func Discard(root, name string) error {
	trash := filepath.Join(root, fmt.Sprintf("%s%s-%d", trashPrefix, name, time.Now().UnixNano()))
	if err := os.Rename(filepath.Join(root, name), trash); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	go os.RemoveAll(trash)
	return nil
}

// Sweep removes, in the background, what Discard left in root when the
// process stopped before it was done.
func Sweep(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), trashPrefix) {
			go os.RemoveAll(filepath.Join(root, de.Name()))
		}
	}
}
