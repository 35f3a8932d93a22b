//go:build unix

package audittail

import (
	"os"
	"syscall"
)

// inode returns the inode number of a file, the identity the tail follows
// across renames.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino) // the field type differs across platforms
	}
	return 0
}
