package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	bolt "go.etcd.io/bbolt"
)

// Buckets of the state database owned by this package. The node owns the
// database file and passes it in; other packages use other buckets.
var (
	bucketBlocks   = []byte("transfer/blocks")   // block CID -> manifest block
	bucketShares   = []byte("transfer/shares")   // root CID -> shareRecord (JSON)
	bucketPartials = []byte("transfer/partials") // root CID + dst -> partialRecord (JSON)
	bucketBits     = []byte("transfer/bits")     // root CID + dst -> have-bitfield
)

// ShareRecord is a share this node serves from disk.
type ShareRecord struct {
	Root    cid.Cid   `json:"root"`
	Name    string    `json:"name"`
	Path    string    `json:"path"` // absolute path of the file or directory served
	Size    int64     `json:"size"`
	Files   int       `json:"files"`
	Fetched bool      `json:"fetched,omitempty"` // obtained by a fetch, not shared by hand
	Added   time.Time `json:"added"`
	// Stats are the files' sizes and modification times when indexed, in
	// manifest order (file entries only): a file that no longer matches is
	// not served.
	Stats []FileStat `json:"stats"`
}

// FileStat is what a shared file looked like when it was indexed.
type FileStat struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

// partialRecord is a fetch in progress, kept so that a restart resumes it.
type partialRecord struct {
	Root    cid.Cid   `json:"root"`
	Dst     string    `json:"dst"`
	Temp    string    `json:"temp"`
	Started time.Time `json:"started"`
}

func initBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBlocks, bucketShares, bucketPartials, bucketBits} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("transfer: create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

func putBlocks(db *bolt.DB, blocks map[cid.Cid][]byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		for c, data := range blocks {
			if err := b.Put(c.Bytes(), data); err != nil {
				return err
			}
		}
		return nil
	})
}

var errNoBlock = errors.New("block not stored")

func getBlock(db *bolt.DB, c cid.Cid) ([]byte, error) {
	var out []byte
	err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlocks).Get(c.Bytes())
		if v == nil {
			return errNoBlock
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

func deleteBlocks(db *bolt.DB, cids []cid.Cid) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		for _, c := range cids {
			if err := b.Delete(c.Bytes()); err != nil {
				return err
			}
		}
		return nil
	})
}

func putJSON(db *bolt.DB, bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, data) })
}

func getJSON(db *bolt.DB, bucket, key []byte, v any) (bool, error) {
	var found bool
	err := db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucket).Get(key)
		if data == nil {
			return nil
		}
		found = true
		return json.Unmarshal(data, v)
	})
	return found, err
}

func loadShares(db *bolt.DB) ([]ShareRecord, error) {
	var out []ShareRecord
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketShares).ForEach(func(k, v []byte) error {
			var r ShareRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("transfer: share record %x: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

func partialKey(root cid.Cid, dst string) []byte {
	return append(append(root.Bytes(), 0), dst...)
}

func savePartial(db *bolt.DB, r *partialRecord) error {
	return putJSON(db, bucketPartials, partialKey(r.Root, r.Dst), r)
}

func saveBits(db *bolt.DB, root cid.Cid, dst string, bits Bitfield) error {
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBits).Put(partialKey(root, dst), bits)
	})
}

func loadPartial(db *bolt.DB, root cid.Cid, dst string) (*partialRecord, Bitfield, error) {
	var r partialRecord
	found, err := getJSON(db, bucketPartials, partialKey(root, dst), &r)
	if err != nil || !found {
		return nil, nil, err
	}
	var bits Bitfield
	err = db.View(func(tx *bolt.Tx) error {
		bits = Bitfield(append([]byte(nil), tx.Bucket(bucketBits).Get(partialKey(root, dst))...))
		return nil
	})
	return &r, bits, err
}

func deletePartial(db *bolt.DB, root cid.Cid, dst string) error {
	return db.Update(func(tx *bolt.Tx) error {
		k := partialKey(root, dst)
		if err := tx.Bucket(bucketPartials).Delete(k); err != nil {
			return err
		}
		return tx.Bucket(bucketBits).Delete(k)
	})
}
