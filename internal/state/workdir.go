package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WorkDir is a scratch folder in the store for a process's transient files (a VM's control socket and
// console log). It is flocked while in use, like a writer's temp folder, so gc and the next apply remove
// the ones a killed process left behind and never one in use.
type WorkDir struct {
	path string
	lock *os.File
}

func (s *Store) workDir() string { return filepath.Join(s.root, "work") }

// NewWorkDir creates a work folder whose name starts with prefix.
func (s *Store) NewWorkDir(prefix string) (*WorkDir, error) {
	if err := os.MkdirAll(s.workDir(), 0o755); err != nil {
		return nil, fmt.Errorf("work folder: %w", err)
	}
	for range maxTempAttempts {
		dir, err := os.MkdirTemp(s.workDir(), prefix)
		if err != nil {
			return nil, fmt.Errorf("work folder: %w", err)
		}
		lock, err := tryLockDir(dir, unix.LOCK_EX)
		if err != nil {
			return nil, fmt.Errorf("work folder: %w", err)
		}
		if lock != nil {
			return &WorkDir{path: dir, lock: lock}, nil
		}
		// A sweep saw it unlocked in the instant after MkdirTemp and is removing it.
	}
	return nil, errors.New("work folder: it kept disappearing")
}

// Path returns the folder.
func (w *WorkDir) Path() string { return w.path }

// Remove deletes the folder and its files.
func (w *WorkDir) Remove() error {
	return errors.Join(os.RemoveAll(w.path), w.lock.Close())
}

// leftoverWorkDirs lists the work folders; removeDead tells the dead ones from those in use.
func (s *Store) leftoverWorkDirs() ([]string, error) {
	entries, err := os.ReadDir(s.workDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(s.workDir(), e.Name()))
		}
	}
	return dirs, nil
}

// SweepLeftovers removes what killed processes left behind: the temp folders of writes that never
// committed and their work folders. Folders in use are flocked and stay. It needs no maintenance lock, so
// apply calls it on every run: a crashed build's half-written layers do not pile up until the next gc.
func (s *Store) SweepLeftovers() (removed []string, err error) {
	sc, err := s.scanObjects()
	if err != nil {
		return nil, err
	}
	var rep GCReport
	err = s.removeDead(sc, false, &rep)
	return rep.RemovedTemp, err
}
