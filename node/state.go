package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrStateDamaged: the state database cannot be read. The error names the
// file and what to do.
var ErrStateDamaged = errors.New("node: the state database is damaged")

// openState opens the state database of home and reads every page of it
// once, so that a damaged file (flipped bytes, truncated, zeroed) is
// reported here, clearly, instead of crashing the node later. A damaged
// file is left as it is: moving it aside loses the records of shares,
// fetches in progress and the catalog, which only the user may decide.
func openState(home string) (db *bolt.DB, err error) {
	path := filepath.Join(home, StateFile)
	damaged := func(why any) error {
		return fmt.Errorf("%w: %s: %v\n(move it aside, e.g. `mv %s %s.damaged`, to start with a fresh state: "+
			"shares must then be shared again and interrupted fetches start over; the identity is kept)",
			ErrStateDamaged, path, why, path, path)
	}
	// bbolt panics on some damage as it opens the file, and a file cut
	// short faults when its mapped pages are read: both become errors.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, damaged(r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s (is a shoal daemon running on it?)", ErrHomeLocked, home)
		}
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, fmt.Errorf("node: open state database: %w", err)
		}
		// Every other refusal is about the file's contents.
		return nil, damaged(err)
	}
	if err := checkSize(db, path); err != nil {
		db.Close()
		return nil, damaged(err)
	}
	if err := readAll(db); err != nil {
		db.Close()
		return nil, damaged(err)
	}
	return db, nil
}

// readAll reads every bucket, key and value of db once, on this
// goroutine (whose faults openState turns into panics it recovers).
func readAll(db *bolt.DB) error {
	var sink byte
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return walk(nb)
				}
				return nil
			}
			for i := 0; i < len(v); i += 512 {
				sink ^= v[i]
			}
			if len(v) > 0 {
				sink ^= v[len(v)-1]
			}
			return nil
		})
	}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
	runtime.KeepAlive(sink) // the reads must happen: they are the check
	return err
}

// checkSize compares the file's length with the pages its last
// transaction counts: a file cut short has lost some of them.
func checkSize(db *bolt.DB, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); st.Size() < need {
			return fmt.Errorf("cut short: %d bytes where its pages need %d", st.Size(), need)
		}
		return nil
	})
}
