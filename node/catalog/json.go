package catalog

import (
	"encoding/json"
	"fmt"

	"github.com/ipfs/go-cid"
)

// MarshalJSON writes the root as a plain CID string.
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry
	return json.Marshal(struct {
		plain
		Root string `json:"root"`
	}{plain(e), e.Root.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Entry) UnmarshalJSON(data []byte) error {
	type plain Entry
	var v struct {
		plain
		Root string `json:"root"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	c, err := cid.Decode(v.Root)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	*e = Entry(v.plain)
	e.Root = c
	return nil
}
