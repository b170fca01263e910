package transfer

import (
	"encoding/json"
	"fmt"

	"github.com/ipfs/go-cid"
)

// The JSON forms write roots as plain CID strings ("bafy..."), for scripts.

func decodeRoot(s string) (cid.Cid, error) {
	if s == "" {
		return cid.Undef, nil
	}
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("root: %w", err)
	}
	return c, nil
}

func rootString(c cid.Cid) string {
	if !c.Defined() {
		return ""
	}
	return c.String()
}

// MarshalJSON writes the root as a CID string.
func (r ShareRecord) MarshalJSON() ([]byte, error) {
	type plain ShareRecord
	return json.Marshal(struct {
		plain
		Root string `json:"root"`
	}{plain(r), rootString(r.Root)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *ShareRecord) UnmarshalJSON(data []byte) error {
	type plain ShareRecord
	var v struct {
		plain
		Root string `json:"root"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	c, err := decodeRoot(v.Root)
	if err != nil {
		return err
	}
	*r = ShareRecord(v.plain)
	r.Root = c
	return nil
}

// MarshalJSON writes the root as a CID string.
func (p Progress) MarshalJSON() ([]byte, error) {
	type plain Progress
	return json.Marshal(struct {
		plain
		Root string `json:"root"`
	}{plain(p), rootString(p.Root)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Progress) UnmarshalJSON(data []byte) error {
	type plain Progress
	var v struct {
		plain
		Root string `json:"root"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	c, err := decodeRoot(v.Root)
	if err != nil {
		return err
	}
	*p = Progress(v.plain)
	p.Root = c
	return nil
}

// MarshalJSON writes the record's fields and Stale side by side.
func (s ShareInfo) MarshalJSON() ([]byte, error) {
	type plain ShareRecord
	return json.Marshal(struct {
		plain
		Root  string `json:"root"`
		Stale string `json:"stale,omitempty"`
	}{plain(s.ShareRecord), rootString(s.Root), s.Stale})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *ShareInfo) UnmarshalJSON(data []byte) error {
	if err := s.ShareRecord.UnmarshalJSON(data); err != nil {
		return err
	}
	var v struct {
		Stale string `json:"stale"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	s.Stale = v.Stale
	return nil
}
