package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The hooks of .pre-commit-hooks.yaml, run by Debian's pre-commit in a throwaway consumer repository as its
// users run them: the README's snippet is that repository's .pre-commit-config.yaml (pointed at a snapshot
// of this working tree), pre-commit builds imgform with `go install` from it, and each case changes files
// and runs the hooks on them.
func TestPreCommitHooks(t *testing.T) {
	if _, err := exec.LookPath("pre-commit"); err != nil {
		t.Fatal("pre-commit is missing: run scripts/install-deps.sh (as root)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	hookRepo, rev := snapshotRepo(t, root)

	consumer := t.TempDir()
	gitIn(t, consumer, "init", "-q", "-b", "main")
	snippet := readmeSnippet(t, filepath.Join(root, "README.md"))
	snippet = regexp.MustCompile(`(?m)^(\s*- repo: ).*$`).ReplaceAllString(snippet, "${1}"+hookRepo)
	snippet = regexp.MustCompile(`(?m)^(\s*rev: ).*$`).ReplaceAllString(snippet, "${1}"+rev)
	writeFile(t, filepath.Join(consumer, ".pre-commit-config.yaml"), "repos:\n"+snippet)
	writeFile(t, filepath.Join(consumer, ".gitlab-ci.yml"), "build:\n  script: [make]\n")
	writeFile(t, filepath.Join(consumer, "images/base/scripts/setup.sh"), "#!/bin/sh\necho setup\n")
	writeFile(t, filepath.Join(consumer, "images/base/disk.raw"), "")
	valid := `image "base" {
  source {
    path = "disk.raw"
  }
  provision "setup" {
    script = "scripts/setup.sh"
  }
}
`
	writeFile(t, filepath.Join(consumer, "images/base/base.imgform.hcl"), valid)
	gitIn(t, consumer, "add", "-A")
	gitIn(t, consumer, "commit", "-q", "-m", "init")

	env := append(os.Environ(), "PRE_COMMIT_HOME="+t.TempDir(), "GOFLAGS=-mod=mod", "GOMODCACHE="+goEnv(t, "GOMODCACHE"),
		"GOCACHE="+goEnv(t, "GOCACHE"))
	hooks := func(files ...string) (string, bool) {
		cmd := exec.Command("pre-commit", append([]string{"run", "--color", "never", "--files"}, files...)...)
		cmd.Dir, cmd.Env = consumer, env
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}
	passed := regexp.MustCompile(`imgform validate\.+Passed`)
	nothing := regexp.MustCompile(`imgform fmt\.+\(no files to check\)Skipped`)

	// An unrelated YAML file at the top: validate finds no configuration folder above it and passes.
	out, ok := hooks(".gitlab-ci.yml")
	if !ok || !passed.MatchString(out) || !nothing.MatchString(out) {
		t.Fatalf("a change to .gitlab-ci.yml:\n%s", out)
	}
	// A script of the configuration: its folder's parent is checked.
	writeFile(t, filepath.Join(consumer, "images/base/scripts/setup.sh"), "#!/bin/sh\necho changed\n")
	if out, ok := hooks("images/base/scripts/setup.sh"); !ok || !passed.MatchString(out) {
		t.Fatalf("a change to a script of the configuration:\n%s", out)
	}
	// A configuration that names a missing script: validate fails with the file and position.
	broken := strings.Replace(valid, "scripts/setup.sh", "scripts/missing.sh", 1)
	writeFile(t, filepath.Join(consumer, "images/base/base.imgform.hcl"), broken)
	if out, ok := hooks("images/base/base.imgform.hcl"); ok || !strings.Contains(out, "base.imgform.hcl:6:") || !strings.Contains(out, "missing.sh") {
		t.Fatalf("a broken configuration passed or its error has no position:\n%s", out)
	}
	// A valid configuration out of the canonical layout: fmt rewrites it and fails, as formatters do.
	writeFile(t, filepath.Join(consumer, "images/base/base.imgform.hcl"), strings.Replace(valid, "    path = ", "    path =    ", 1))
	out, ok = hooks("images/base/base.imgform.hcl")
	if ok || !strings.Contains(out, "files were modified by this hook") || !passed.MatchString(out) {
		t.Fatalf("an unformatted configuration:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(consumer, "images/base/base.imgform.hcl")); err != nil || string(b) != valid {
		t.Errorf("fmt left:\n%s (%v)", b, err)
	}
}

// snapshotRepo returns a repository whose commit rev holds the working tree of root as git sees it (tracked
// files, changed or not): pre-commit installs hooks from a commit, and a test must try what is here.
func snapshotRepo(t *testing.T, root string) (string, string) {
	t.Helper()
	shadow := filepath.Join(t.TempDir(), "imgform")
	gitIn(t, "", "clone", "-q", "--shared", root, shadow)
	changed := strings.Fields(gitIn(t, root, "diff", "--name-only", "HEAD"))
	for _, f := range changed {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			gitIn(t, shadow, "rm", "-q", "--", f)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(shadow, f), string(b))
		gitIn(t, shadow, "add", "--", f)
	}
	if len(changed) > 0 {
		gitIn(t, shadow, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "working tree")
	}
	return shadow, strings.TrimSpace(gitIn(t, shadow, "rev-parse", "HEAD"))
}

// readmeSnippet returns the YAML block of the README's pre-commit section.
func readmeSnippet(t *testing.T, readme string) string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### pre-commit\n.*?```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("the README has no yaml block under ### pre-commit")
	}
	return string(m[1])
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
