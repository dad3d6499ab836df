package peers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the driver the CDR sink uses
)

// PostgresBinDir finds the server binaries of Debian's postgresql package
// (/usr/lib/postgresql/<version>/bin, the newest), or initdb on PATH.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server not found (apt-get install -y postgresql)")
}

// Postgres is a throwaway PostgreSQL server started for a test: its own
// cluster in a temporary directory, listening on 127.0.0.1 only, trust
// authentication for user tandem, stopped by its PID.
type Postgres struct {
	*Proc
	Port int
	// DSN connects to database "tandem" as user "tandem".
	DSN string
	dir string
}

// StartPostgres creates a cluster under dir and starts it. As root, the
// server runs as the postgres user (it refuses to run as root).
func StartPostgres(dir string, ready time.Duration) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	pgdir := filepath.Join(dir, "pg")
	if err := os.MkdirAll(pgdir, 0o700); err != nil {
		return nil, err
	}
	// The server's user must reach its directory through the test's.
	for d := pgdir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 && d != pgdir {
			_ = os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
	if cred != nil {
		if err := os.Chown(pgdir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(pgdir, "data")
	initdb, err := StartAs(cred, "initdb", dir, pgdir, nil, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "tandem", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if err != nil {
		return nil, err
	}
	if err := initdb.Wait(60 * time.Second); err != nil || initdb.ExitCode() != 0 {
		return nil, fmt.Errorf("initdb failed (%v):\n%s", err, initdb.Tail(20))
	}
	port, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	p, err := StartAs(cred, "postgres", dir, pgdir, nil, filepath.Join(bin, "postgres"),
		"-D", data, "-p", strconv.Itoa(port), "-k", pgdir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Proc: p, Port: port, dir: dir,
		DSN: fmt.Sprintf("postgres://tandem@127.0.0.1:%d/tandem?sslmode=disable", port)}
	admin := fmt.Sprintf("postgres://tandem@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(ready)
	for {
		err := pg.exec(admin, "CREATE DATABASE tandem")
		if err == nil {
			return pg, nil
		}
		if p.Exited() || time.Now().After(deadline) {
			_ = p.Stop(5 * time.Second)
			return nil, fmt.Errorf("postgres not ready after %v: %v\n%s", ready, err, p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (pg *Postgres) exec(dsn, query string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, query)
	return err
}
