package main

import (
	"testing"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("network = \"corp\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nadmins = [\"12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo\"]\n"))
	f.Add([]byte("upload_rate = -1\nfind_timeout = \"x\"\n"))
	f.Add([]byte("api_listen = \"127.0.0.1:5011\"\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n"))
	f.Add([]byte("[[x]]\ny = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data)
		if err != nil {
			return
		}
		cfg, err := c.nodeConfig("/nonexistent/home")
		if err != nil {
			return
		}
		if len(cfg.Admins) != len(c.Admins) {
			t.Fatalf("%d admins parsed from %d", len(cfg.Admins), len(c.Admins))
		}
	})
}

func TestParseConfigErrors(t *testing.T) {
	for _, bad := range []string{
		"nosuch = 1\n",
		"admins = [\"not-a-peer\"]\n",
		"api_listen = \"nohostport\"\n",
		"find_timeout = \"-1s\"\n",
		"network = \n",
	} {
		c, err := parseConfig([]byte(bad))
		if err == nil {
			_, err = c.nodeConfig(t.TempDir())
		}
		if err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
