package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run("version")
	if err != nil || !strings.HasPrefix(out, "tandem ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

func TestServeRejectsBadConfigNamingKeyAndLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	doc := "node_id: n1\ndata_dir: " + dir + "\nsip:\n  listen: [\"udp:127.0.0.1:0\"]\n  domain: example.test\n  min_expires: soon\nhttp:\n  listen: 127.0.0.1:0\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := run("serve", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "sip.min_expires (line 6)") {
		t.Fatalf("err = %v, want it to name sip.min_expires at line 6", err)
	}
	if _, err := run("serve"); err == nil || !strings.Contains(err.Error(), "config") {
		t.Fatalf("serve without --config: %v", err)
	}
	if _, err := run("serve", "-c", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("serve with a missing file succeeded")
	}
}
