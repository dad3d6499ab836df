package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/internal/config"
	"github.com/tandemswitch/tandem/internal/node"
)

// target is where a tool command (replay, state, audit, cdr, projections)
// works: on a data directory while no node runs on it (--config, whose
// data_dir is used, or --data), or on a running node through its HTTP API
// (--server). Exactly one of the three is given.
type target struct {
	configPath string
	dataDir    string
	server     string
}

func (t *target) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.configPath, "config", "c", "", "configuration file (YAML); the command works on its data_dir")
	cmd.Flags().StringVar(&t.dataDir, "data", "", "data directory of a node that is not running (the config's data_dir)")
	cmd.Flags().StringVar(&t.server, "server", "", "HTTP API of a running node, e.g. http://127.0.0.1:8080")
}

// check validates the flag combination.
func (t *target) check() error {
	n := 0
	for _, v := range []string{t.configPath, t.dataDir, t.server} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("say where to work: --config FILE, --data DIR or --server URL")
	case n > 1:
		return errors.New("--config, --data and --server exclude each other: give one")
	}
	if t.server != "" {
		u, err := url.Parse(t.server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--server %q: want an http:// or https:// URL with a host", t.server)
		}
	}
	return nil
}

// remote tells whether the command goes through a node's HTTP API.
func (t *target) remote() bool { return t.server != "" }

// local returns the data directory and, with --config, the configuration.
// With --data the configuration is the defaults with that data_dir.
func (t *target) local() (string, *config.Config, error) {
	if t.configPath != "" {
		cfg, err := config.Load(t.configPath)
		if err != nil {
			return "", nil, err
		}
		return cfg.DataDir, cfg, nil
	}
	cfg := config.Defaults()
	cfg.DataDir = t.dataDir
	return t.dataDir, cfg, nil
}

// openStore opens the event store of the local data directory, read-only
// unless writable. A store held by a running node is refused with advice.
func (t *target) openStore(writable bool) (*embedded.Store, error) {
	dir, _, err := t.local()
	if err != nil {
		return nil, err
	}
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir), ReadOnly: !writable})
	if errors.Is(err, embedded.ErrLocked) {
		return nil, fmt.Errorf("data directory %s is in use by a running node: use --server URL (its http.listen) instead", dir)
	}
	return st, err
}

// httpClient bounds every API call; a replay of a long history or an audit
// of a big store may take minutes.
var httpClient = &http.Client{Timeout: 30 * time.Minute}

// call makes one API request and decodes a JSON answer into out (when out
// is not nil). A non-2xx answer becomes an error carrying the API's message.
func (t *target) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	body, err := t.open(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer body.Close()
	if out == nil {
		_, err := io.Copy(io.Discard, body)
		return err
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: answer does not decode: %w", method, path, err)
	}
	return nil
}

// open makes one API request and returns the body of a 2xx answer.
func (t *target) open(ctx context.Context, method, path string, query url.Values, in any) (io.ReadCloser, error) {
	u := strings.TrimRight(t.server, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode/100 != 2 {
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, res.Status, msg)
	}
	return res.Body, nil
}
