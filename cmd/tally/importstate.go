package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// importState is how far an import got, kept in a JSON file so that a
// rerun after a crash or Ctrl-C skips what was done. It is an optimization
// only: importing again is harmless, so a lost or ignored state costs time,
// never correctness.
type importState struct {
	// Version is the file format's version.
	Version int `json:"version"`
	// Server is the URL the import went to; another server's state is
	// ignored.
	Server string `json:"server"`
	// Files is keyed by absolute path.
	Files map[string]*fileState `json:"files"`

	path  string // "" when no state is kept
	dirty bool
	saved time.Time
}

// fileState is one input file's progress. A file that changed since (size
// or modification time) starts over.
type fileState struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	// Kinds lists the kinds the file holds, once a whole pass has read it.
	Kinds []importKind `json:"kinds,omitempty"`
	// Phases says, per kind, how far that kind's pass got.
	Phases map[importKind]*phaseState `json:"phases"`
}

// phaseState is how far one pass over a file got: every line up to byte
// Offset (the end of line Line) is done — imported, found already there, or
// reported as failed.
type phaseState struct {
	Offset int64 `json:"offset"`
	Line   int   `json:"line"`
	Done   bool  `json:"done,omitempty"`
}

const importStateVersion = 1

// loadImportState reads the state at path (none yet is an empty state) for
// an import to server; notes are what it ignored, for the user.
func loadImportState(path, server string, restart bool) (st *importState, notes []string, err error) {
	st = &importState{Version: importStateVersion, Server: server, Files: map[string]*fileState{}, path: path}
	if path == "" || restart {
		return st, nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state file: %w", err)
	}
	var old importState
	if err := json.Unmarshal(b, &old); err != nil || old.Version != importStateVersion {
		return st, []string{fmt.Sprintf("state file %s is not one this tally reads; starting from the beginning", path)}, nil
	}
	if old.Server != server {
		return st, []string{fmt.Sprintf("state file %s is of an import to %s, not %s; starting from the beginning", path, old.Server, server)}, nil
	}
	for k, v := range old.Files {
		if v != nil && v.Phases != nil {
			st.Files[k] = v
		}
	}
	return st, nil, nil
}

// file returns in's state, a fresh one when in changed since it was kept.
func (st *importState) file(in *importFile) (*fileState, string) {
	key, err := filepath.Abs(in.path)
	if err != nil {
		key = in.path
	}
	fs := st.Files[key]
	var note string
	if fs != nil && (fs.Size != in.size || !fs.ModTime.Equal(in.mod)) {
		note = fmt.Sprintf("%s changed since the last import; reading it from the beginning (what is there already is left as it is)", in.path)
		fs = nil
	}
	if fs == nil {
		fs = &fileState{Size: in.size, ModTime: in.mod, Phases: map[importKind]*phaseState{}}
		st.Files[key] = fs
		st.dirty = true
	}
	return fs, note
}

// phase returns the progress of kind's pass over the file.
func (fs *fileState) phase(kind importKind) *phaseState {
	p := fs.Phases[kind]
	if p == nil {
		p = &phaseState{}
		fs.Phases[kind] = p
	}
	return p
}

// advance records that every line up to l is done in p.
func (st *importState) advance(p *phaseState, l importLine) {
	if l.end > p.Offset {
		p.Offset, p.Line = l.end, l.last
		st.dirty = true
	}
}

// saveSoon saves the state when it changed and the last save is over a
// second old.
func (st *importState) saveSoon() error {
	if !st.dirty || time.Since(st.saved) < time.Second {
		return nil
	}
	return st.save()
}

// save writes the state file atomically: a crash leaves the old one or the
// new one.
func (st *importState) save() error {
	if st.path == "" || !st.dirty {
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := st.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp, st.path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	st.dirty, st.saved = false, time.Now()
	return nil
}
