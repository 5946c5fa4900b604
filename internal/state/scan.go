package state

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ObjectInfo summarises a stored object for listings and maintenance reports.
type ObjectInfo struct {
	Key      Key
	Kind     string
	Size     int64 // total bytes of its files
	Files    int
	Created  time.Time
	LastUsed time.Time
	// Age is the time since Created, by the store's clock.
	Age    time.Duration
	Image  string
	Step   string
	Parent Key
	// Problem says why a lookup would miss (damaged metadata or files, missing parent); "" when the cheap
	// checks pass. It does not cover content hashes: see VerifyAll.
	Problem string
}

// node is an object seen by a scan, linked to its parent and children.
type node struct {
	info     ObjectInfo
	dir      string
	meta     *Meta // nil when unreadable
	parent   *node
	children []*node
	depth    int       // parents above it
	lastUsed time.Time // of it and everything built on it
	removed  bool
}

// scan is a snapshot of the objects folder.
type scan struct {
	nodes map[Key]*node
	temps []string // writes in progress or interrupted
	trash []string // removals interrupted by a crash
}

// scanObjects reads every object's metadata and checks its files cheaply, then links layers to parents.
func (s *Store) scanObjects() (*scan, error) {
	sc := &scan{nodes: map[Key]*node{}}
	shards, err := os.ReadDir(s.objectsDir())
	if err != nil {
		return nil, fmt.Errorf("scan store: %w", err)
	}
	now := s.now()
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		shardDir := filepath.Join(s.objectsDir(), sh.Name())
		entries, err := os.ReadDir(shardDir)
		if err != nil {
			return nil, fmt.Errorf("scan store: %w", err)
		}
		for _, e := range entries {
			path := filepath.Join(shardDir, e.Name())
			switch name := e.Name(); {
			case strings.HasPrefix(name, tmpPrefix):
				sc.temps = append(sc.temps, path)
			case strings.HasPrefix(name, delPrefix):
				sc.trash = append(sc.trash, path)
			default:
				key, err := ParseKey(name)
				if err != nil || !e.IsDir() {
					continue // not ours; leave it alone
				}
				sc.nodes[key] = scanOne(key, path, now)
			}
		}
	}
	sc.link()
	return sc, nil
}

func scanOne(key Key, dir string, now time.Time) *node {
	n := &node{dir: dir, info: ObjectInfo{Key: key}}
	m, err := readMeta(dir, key)
	if err == nil {
		err = checkFiles(filepath.Join(dir, dataName), m)
	}
	if m != nil {
		n.meta = m
		n.info = ObjectInfo{
			Key: key, Kind: m.Kind, Size: m.Size, Files: len(m.Files), Created: m.Created,
			LastUsed: m.LastUsed, Age: now.Sub(m.Created), Image: m.Image, Step: m.Step, Parent: m.Parent,
		}
	} else if st, serr := os.Stat(dir); serr == nil {
		// Unreadable metadata: the folder's time is the best guess of the object's age.
		n.info.LastUsed = st.ModTime()
		n.info.Created = st.ModTime()
		n.info.Age = now.Sub(st.ModTime())
	}
	if err != nil {
		n.info.Problem = err.Error()
	}
	return n
}

// link connects layers to their parents, marks objects whose parent is missing or damaged, and computes
// depth and the last use of each object's subtree.
func (sc *scan) link() {
	for _, n := range sc.nodes {
		if n.info.Parent.IsZero() {
			continue
		}
		if p := sc.nodes[n.info.Parent]; p != nil {
			n.parent = p
			p.children = append(p.children, n)
		} else if n.info.Problem == "" {
			n.info.Problem = fmt.Sprintf("parent %s is missing", n.info.Parent.Short())
		}
	}
	// Walk down from the roots; nodes never reached sit on a parent cycle, which only damage can make.
	reached := map[*node]bool{}
	var walk func(n *node, depth int) time.Time
	walk = func(n *node, depth int) time.Time {
		reached[n] = true
		n.depth = depth
		n.lastUsed = n.info.LastUsed
		if p := n.parent; p != nil && n.info.Problem == "" {
			switch {
			case p.info.Problem != "":
				n.info.Problem = fmt.Sprintf("parent %s is damaged", p.info.Key.Short())
			case p.meta != nil && n.meta != nil && p.meta.SHA256 != n.meta.ParentSHA256:
				n.info.Problem = fmt.Sprintf("parent %s was rebuilt after this was built on it", p.info.Key.Short())
			}
		}
		for _, c := range n.children {
			if t := walk(c, depth+1); t.After(n.lastUsed) {
				n.lastUsed = t
			}
		}
		return n.lastUsed
	}
	for _, n := range sc.nodes {
		if n.parent == nil {
			walk(n, 0)
		}
	}
	for _, n := range sc.nodes {
		if !reached[n] {
			if n.info.Problem == "" {
				n.info.Problem = "parent chain loops"
			}
			n.lastUsed = n.info.LastUsed
		}
	}
}

// sorted returns the nodes most recently used first, then by key, the order listings use.
func (sc *scan) sorted() []*node {
	out := make([]*node, 0, len(sc.nodes))
	for _, n := range sc.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *node) int {
		if c := b.info.LastUsed.Compare(a.info.LastUsed); c != 0 {
			return c
		}
		return slices.Compare(a.info.Key[:], b.info.Key[:])
	})
	return out
}

// subtree returns n and everything built on it that is not removed yet, deepest first, so that removal
// never leaves a layer without its parent.
func (n *node) subtree() []*node {
	var out []*node
	seen := map[*node]bool{} // damaged metadata can link layers into a cycle
	var walk func(*node)
	walk = func(m *node) {
		if m.removed || seen[m] {
			return
		}
		seen[m] = true
		for _, c := range m.children {
			walk(c)
		}
		out = append(out, m)
	}
	walk(n)
	return out
}

// List returns every object in the store, most recently used first. Damaged objects are listed too, with
// their Problem set, so that "cache ls" shows what gc will remove.
func (s *Store) List() ([]ObjectInfo, error) {
	sc, err := s.scanObjects()
	if err != nil {
		return nil, err
	}
	nodes := sc.sorted()
	out := make([]ObjectInfo, len(nodes))
	for i, n := range nodes {
		out[i] = n.info
	}
	return out, nil
}
